// The package a user installs (issue 17): `npm pack` yields a tarball with the prebuilt linux-x64
// glibc binary; installed into a scratch project whose PATH has no compiler, it loads that binary
// and copies; with the prebuild gone (a platform without one) it builds from source instead.
// Runs under whichever Node runs the suite (.ci/run: 20, 22 and 24): one Node-API binary for all.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.join(__dirname, '..', '..');
const MiB = 1024 * 1024;
const TIMEOUT_MS = 600_000;

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}
const missingTools = ['npm', 'make', 'g++', 'strip', 'readelf', 'objdump', 'tar'].filter((t) => !has(t));

/** What a compiler toolchain is made of: none of these may be on the no-compiler PATH. */
const TOOLCHAIN = /^(make|gmake|cc|c\+\+|gcc|g\+\+|cpp|clang.*|(gcc|g\+\+|cpp)-\d+|.*-linux-gnu-.*|python.*|cmake|ld(\..*)?|as)$/;

/**
 * A user's environment: without the sanitizer build's addon override and runtime preload
 * (`npm run test:sanitize` runs this suite with them; the package must find its own binary, and
 * the compilers and npm are tools here, not code under test).
 */
function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of ['DEVMOVE_NATIVE_PATH', 'LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS']) delete env[name];
  return env;
}

function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): SpawnSyncReturns<string> {
  const result = spawnSync(cmd, args, { cwd: options.cwd, env: options.env ?? userEnv(), encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 64 * MiB });
  if (result.error) throw result.error;
  return result;
}

function expectOk(result: SpawnSyncReturns<string>, what: string): void {
  expect(result.status, `${what}:\n${result.stdout}\n${result.stderr}`).toBe(0);
}

/** A directory of links to everything on PATH except a compiler toolchain, and this process's node first. */
function pathWithoutCompiler(dir: string): string {
  fs.mkdirSync(dir);
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  for (const bin of (process.env.PATH ?? '').split(':')) {
    let names: string[];
    try {
      names = fs.readdirSync(bin);
    } catch {
      continue;
    }
    for (const name of names) {
      const link = path.join(dir, name);
      if (TOOLCHAIN.test(name) || fs.existsSync(link)) continue;
      fs.symlinkSync(path.join(bin, name), link);
    }
  }
  return dir;
}

/** `npm pack` of a copy of this checkout (packing builds in place; the checkout stays as it is). */
function pack(work: string): string {
  const stage = path.join(work, 'stage');
  fs.mkdirSync(path.join(stage, 'scripts'), { recursive: true });
  for (const entry of ['package.json', 'tsconfig.json', 'README.md', 'binding.gyp', 'CMakeLists.txt', 'bin', 'src', 'native']) {
    fs.cpSync(path.join(ROOT, entry), path.join(stage, entry), { recursive: true });
  }
  fs.copyFileSync(path.join(ROOT, 'scripts', 'bundle-cli.js'), path.join(stage, 'scripts', 'bundle-cli.js'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'));
  const out = path.join(work, 'out');
  fs.mkdirSync(out);
  expectOk(run('npm', ['pack', '--pack-destination', out, '--json'], { cwd: stage }), 'npm pack');
  const [tarball] = fs.readdirSync(out).filter((f) => f.endsWith('.tgz'));
  return path.join(out, tarball);
}

describe.skipIf(missingTools.length > 0)(`the packed package (needs ${['npm', 'make', 'g++', 'strip', 'readelf', 'objdump', 'tar'].join(', ')})`, () => {
  let work: string;
  let tarball: string;
  let scratch: string;
  let noCompilerPath: string;
  let prebuild: string;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-package-'));
    tarball = pack(work);
    const unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', ['xzf', tarball, '-C', unpacked]);
    prebuild = path.join(unpacked, 'package', 'prebuilds', 'linux-x64', 'devmove.glibc.node');
    noCompilerPath = pathWithoutCompiler(path.join(work, 'bin'));
    scratch = path.join(work, 'scratch');
    fs.mkdirSync(scratch);
    // npm >= 11 runs a dependency's install script only when package.json allows it: allow it, so
    // the test also proves that the install step (node-gyp-build) needs no compiler here.
    fs.writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, allowScripts: { [`file:${tarball}`]: true } }));
  }, TIMEOUT_MS);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('the tarball holds the prebuilt binary, the bundled CLI and the sources to build from, not a local build', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const f of ['prebuilds/linux-x64/devmove.glibc.node', 'bin/devmove', 'dist/cli/main.js', 'dist/cli/signal-guard.js', 'dist/cli/cli.js', 'dist/index.js', 'binding.gyp', 'native/sources.json', 'native/addon.cc']) {
      expect(files).toContain(`package/${f}`);
    }
    expect(files.filter((f) => f.startsWith('package/build/') || f.startsWith('package/src/') || f.startsWith('package/test/'))).toEqual([]);
    const pkg = JSON.parse(fs.readFileSync(path.join(work, 'unpacked', 'package', 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.install).toBe('node-gyp-build');
  });

  it('the prebuilt binary needs only libc, the loader and libgcc_s, and no glibc newer than 2.28', () => {
    const dynamic = execFileSync('readelf', ['-d', prebuild], { encoding: 'utf8' });
    const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]).sort();
    expect(needed).toEqual(['ld-linux-x86-64.so.2', 'libc.so.6', 'libgcc_s.so.1']);
    const symbols = execFileSync('objdump', ['-T', prebuild], { encoding: 'utf8', maxBuffer: 64 * MiB });
    const glibc = [...symbols.matchAll(/\bGLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]));
    expect(glibc.length).toBeGreaterThan(10);
    expect(Math.max(...glibc), 'highest GLIBC_ symbol version (x1000)').toBeLessThanOrEqual(2028);
    expect(symbols).not.toMatch(/GLIBCXX_|CXXABI_/); // the C++ runtime is inside, not the system's
    expect(symbols).not.toMatch(/\*UND\*.*__wrap_/); // every --wrap has its definition
    expect(symbols).toMatch(/napi_register_module_v1/);
  });

  it('installs with no compiler on PATH, loads the prebuild and copies (CLI and library)', () => {
    const env = userEnv({ PATH: noCompilerPath });
    for (const tool of ['make', 'g++', 'gcc', 'cc', 'c++']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status, `${tool} on the no-compiler PATH`).not.toBe(0);
    }
    expectOk(run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tarball], { cwd: scratch, env }), 'npm install');
    const installed = path.join(scratch, 'node_modules', 'devmove');
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);

    const source = path.join(scratch, 'source.img');
    const bytes = Buffer.alloc(3 * MiB + 4096);
    for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(source, bytes);
    const cli = run(path.join(scratch, 'node_modules', '.bin', 'devmove'), [`if=${source}`, 'of=target.img', '--json'], { cwd: scratch, env });
    expectOk(cli, 'devmove copy');
    expect(fs.readFileSync(path.join(scratch, 'target.img')).equals(bytes)).toBe(true);
    expect(JSON.parse(cli.stdout.trim().split('\n').pop() ?? '{}')).toMatchObject({ type: 'result', bytesCopied: bytes.length });

    const script = `
      const { nativePath } = require('devmove/dist/addon/binding.js');
      require('devmove').copy({ source: 'source.img', target: 'library.img' })
        .then((r) => console.log(JSON.stringify({ native: nativePath(), bytes: r.bytesCopied })));`;
    const lib = run(process.execPath, ['-e', script], { cwd: scratch, env });
    expectOk(lib, 'library copy');
    expect(JSON.parse(lib.stdout)).toEqual({ native: path.join(installed, 'prebuilds', 'linux-x64', 'devmove.glibc.node'), bytes: bytes.length });
    expect(fs.readFileSync(path.join(scratch, 'library.img')).equals(bytes)).toBe(true);
  });

  it('where no prebuild fits, npm rebuild builds from source and the loader takes that build', () => {
    const installed = path.join(scratch, 'node_modules', 'devmove');
    fs.rmSync(path.join(installed, 'prebuilds'), { recursive: true, force: true });
    const without = run(process.execPath, ['-e', "require('devmove').probeIoUring()"], { cwd: scratch });
    expect(without.status).not.toBe(0);
    expect(without.stderr).toMatch(/devmove could not load its native addon: No native build was found .*npm rebuild devmove/);

    expectOk(run('npm', ['rebuild', 'devmove', '--foreground-scripts'], { cwd: scratch }), 'npm rebuild');
    expect(fs.existsSync(path.join(installed, 'build', 'Release', 'devmove.node'))).toBe(true);
    const script = `
      const { nativePath } = require('devmove/dist/addon/binding.js');
      require('devmove').copy({ source: 'source.img', target: 'rebuilt.img' })
        .then((r) => console.log(JSON.stringify({ native: nativePath(), bytes: r.bytesCopied })));`;
    const lib = run(process.execPath, ['-e', script], { cwd: scratch });
    expectOk(lib, 'copy with the source build');
    expect(JSON.parse(lib.stdout).native).toBe(path.join(installed, 'build', 'Release', 'devmove.node'));
    expect(fs.readFileSync(path.join(scratch, 'rebuilt.img')).equals(fs.readFileSync(path.join(scratch, 'source.img')))).toBe(true);
  });
});
