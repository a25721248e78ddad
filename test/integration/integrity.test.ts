// The integrity issue's failures, each on real kernel objects: a resume that
// destroyed finished work, a map that claimed bytes a dropped target lacked, a
// mapfile that was the target, two job pairs writing one file through a
// dangling symlink, a loop device over the source device, job-file '..' read
// as text, SIGUSR1 opening Node's inspector, and EBUSY right after kill -9.
// Every one of these failed on the main before this change.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/index';
import { RescueMap } from '../../src/resume/mapfile';
import { attachLoop, detachAll, makeImage, readRange, sha256File, skipWithoutLoop, tempDir } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const BIN = path.join(ROOT, 'bin', 'devmove');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: readonly string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts a CLI copy and interrupts it with `signal` once it has written `atLeast` bytes. */
async function interrupted(args: readonly string[], atLeast: number, signal: NodeJS.Signals = 'SIGINT'): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig })));
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const lines = stdout.split('\n').slice(0, -1).filter((l) => l.startsWith('{'));
      const last = lines.length > 0 ? (JSON.parse(lines[lines.length - 1]) as { bytesDone?: number }) : {};
      if ((last.bytesDone ?? 0) >= atLeast) resolve();
    });
  });
  child.kill(signal);
  const { code, signal: sig } = await exited;
  return { code, signal: sig, stdout, stderr };
}

describe.skipIf(skipWithoutLoop)('resume never destroys finished work', () => {
  afterAll(() => detachAll());

  it('SIGINT, then the same command (dd truncation on): the target is whole and identical', async () => {
    const dir = tempDir('/var/tmp');
    const src = makeImage(dir, 'src.img', 24 * MiB);
    const dst = path.join(dir, 'dst.img');
    const map = path.join(dir, 'copy.map');
    const args = [`if=${src}`, `of=${dst}`, `--mapfile=${map}`, '--checkpoint-interval=100', '--rate=16M'];
    const first = await interrupted(args, 4 * MiB);
    expect(first.code).toBe(130);
    const done = RescueMap.parse(fs.readFileSync(map, 'utf8'), map).bytes('+');
    expect(done).toBeGreaterThanOrEqual(4 * MiB);
    const again = cli(args.filter((a) => !a.startsWith('--rate')));
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true);
    expect(RescueMap.parse(fs.readFileSync(map, 'utf8'), map).bytes('+')).toBe(24 * MiB);
    // The interrupted run said exactly how to go on.
    expect(first.stderr).toMatch(/records \d+ bytes finished; resume with: devmove if=\S+ of=\S+ --mapfile=\S+ --checkpoint-interval=100 --rate=16M --json/);
  });

  it('a target deleted and recreated since: refused, nothing written, the message says how to start over', async () => {
    const dir = tempDir('/var/tmp');
    const src = makeImage(dir, 'src.img', 16 * MiB);
    const dst = path.join(dir, 'dst.img');
    const map = path.join(dir, 'copy.map');
    const args = [`if=${src}`, `of=${dst}`, `--mapfile=${map}`, '--checkpoint-interval=100', '--rate=6M'];
    expect((await interrupted(args, 2 * MiB)).code).toBe(130);
    const mapBefore = fs.readFileSync(map, 'utf8');
    fs.rmSync(dst);
    const missing = cli(args);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^devmove: the target \S+dst\.img does not exist, but mapfile \S+ records \d+ bytes already copied to it .*to start over instead, delete \S+copy\.map/);
    expect(fs.existsSync(dst)).toBe(false);
    makeImage(dir, 'dst.img', 16 * MiB, { pattern: 0x5a });
    const recreated = sha256File(dst);
    const replaced = cli(args);
    expect(replaced.code).toBe(1);
    expect(replaced.stderr).toMatch(/^devmove: the target \S+dst\.img is not the one mapfile \S+ was made for: it was replaced, recreated or renamed since/);
    expect(sha256File(dst)).toBe(recreated);
    expect(fs.readFileSync(map, 'utf8')).toBe(mapBefore);
  });

  it("a GNU ddrescue map (no devmove identity line): a missing or too short target is refused; a whole one resumes without truncation", async () => {
    const dir = tempDir('/var/tmp');
    const src = makeImage(dir, 'src.img', 8 * MiB);
    const dst = path.join(dir, 'dst.img');
    const map = path.join(dir, 'rescue.map');
    // What ddrescue writes after finishing the first 3 MiB.
    fs.writeFileSync(map, `# Mapfile. Created by GNU ddrescue version 1.27\n0x00300000     ?               1\n0x00000000  0x00300000  +\n0x00300000  0x00500000  ?\n`);
    const fresh = cli([`if=${src}`, `of=${dst}`, `--mapfile=${map}`]);
    expect(fresh.code).toBe(1);
    expect(fresh.stderr).toMatch(/the target \S+ does not exist, but mapfile/);
    fs.writeFileSync(dst, fs.readFileSync(src).subarray(0, 1 * MiB));
    const short = cli([`if=${src}`, `of=${dst}`, `--mapfile=${map}`]);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/holds 1048576 bytes, but mapfile \S+ says bytes up to 3145728 of it are done/);
    fs.writeFileSync(dst, fs.readFileSync(src).subarray(0, 3 * MiB));
    const ok = cli([`if=${src}`, `of=${dst}`, `--mapfile=${map}`]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true);
  });

  it('a map that says bytes past the end of the source are finished is refused', () => {
    const dir = tempDir('/var/tmp');
    const src = makeImage(dir, 'src.img', 1 * MiB);
    const dst = makeImage(dir, 'dst.img', 4 * MiB, 'zero');
    const map = path.join(dir, 'big.map');
    fs.writeFileSync(map, '0x00000000     ?               1\n0x00000000  0x00400000  +\n');
    const before = sha256File(dst);
    const run = cli([`if=${src}`, `of=${dst}`, `--mapfile=${map}`, 'conv=notrunc']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/records bytes up to 4194304 as done, but the source \S+ has only 1048576/);
    expect(sha256File(dst)).toBe(before);
  });
});

describe.skipIf(skipWithoutLoop || skipWithoutFuse)('fan-out with a dropped target and a mapfile', () => {
  afterAll(async () => {
    await FaultyDevice.destroyAll();
    detachAll();
  });

  it('the map never claims what the dropped target lacks, and a rerun brings it up to date', async () => {
    const dir = tempDir();
    const srcImage = makeImage(dir, 'src.img', 8 * MiB);
    const good = path.join(dir, 'good.img');
    const bad = await FaultyDevice.create({ sizeBytes: 8 * MiB, fill: 'zero', failWritesAfterBytes: 2 * MiB });
    const map = path.join(dir, 'fan.map');
    // Slow enough for several checkpoints before the bad target dies at 2 MiB.
    const args = [`if=${srcImage}`, `of=${good}`, `of=${bad.device}`, '--on-target-error=drop', `--mapfile=${map}`, '--checkpoint-interval=100', '--rate=4M'];
    const first = cli(args);
    expect(first.code).toBe(1);
    expect(first.stderr).toMatch(new RegExp(`of=${bad.device}: dropped after an error`));
    expect(first.stderr).toMatch(/to bring the dropped target up to date, run: devmove if=/);
    const rescue = RescueMap.parse(fs.readFileSync(map, 'utf8'), map);
    const source = fs.readFileSync(srcImage);
    for (const [offset, length] of rescue.ranges(['+'])) {
      expect(fs.readFileSync(bad.imagePath).subarray(offset, offset + length).equals(source.subarray(offset, offset + length))).toBe(true);
    }
    expect(rescue.bytes('+')).toBeGreaterThan(0);
    expect(rescue.bytes('+')).toBeLessThanOrEqual(2 * MiB);
    await bad.setFaults({});
    const again = cli(args.filter((a) => !a.startsWith('--rate')));
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readFileSync(bad.imagePath).equals(source)).toBe(true);
    expect(fs.readFileSync(good).equals(source)).toBe(true);
  });
});

describe.skipIf(skipWithoutLoop)('a mapfile is never a side', () => {
  afterAll(() => detachAll());

  it('the target or the source under any spelling (same path, ./x, symlink, hard link, loop device): refused, nothing written', () => {
    const dir = tempDir('/var/tmp');
    const src = makeImage(dir, 'src.img', 2 * MiB);
    const dst = makeImage(dir, 'dst.img', 2 * MiB, 'zero');
    fs.symlinkSync(dst, path.join(dir, 'link.img'));
    fs.linkSync(dst, path.join(dir, 'hard.img'));
    fs.symlinkSync(src, path.join(dir, 'srclink.img'));
    const loop = attachLoop(dst);
    const srcHash = sha256File(src);
    const dstHash = sha256File(dst);
    const spellings = [dst, `${path.relative(process.cwd(), dir)}/./dst.img`, path.join(dir, 'link.img'), path.join(dir, 'hard.img'), src, path.join(dir, 'srclink.img')];
    for (const map of spellings) {
      const run = cli([`if=${src}`, `of=${dst}`, `--mapfile=${map}`, 'conv=notrunc']);
      expect(run.code, map).toBe(1);
      expect(run.stderr, map).toMatch(/the mapfile (is also|is the same storage as) the (target|source) .*a mapfile must not be a source or target/);
    }
    // The image behind a loop device that is the target.
    const viaLoop = cli([`if=${src}`, `of=${loop}`, `--mapfile=${dst}`]);
    expect(viaLoop.code).toBe(1);
    expect(viaLoop.stderr).toMatch(/is the same storage as the target/);
    expect(sha256File(src)).toBe(srcHash);
    expect(sha256File(dst)).toBe(dstHash);
  });
});

describe.skipIf(skipWithoutLoop)('aliases the kernel sees and text does not', () => {
  afterAll(() => detachAll());

  it('a loop device over the source block device (and one with an offset) is the source: the overlapping copy is refused', () => {
    const dir = tempDir();
    const image = makeImage(dir, 'b.img', 8 * MiB);
    const loopB = attachLoop(image);
    const loopA = execFileSync('losetup', ['--find', '--show', loopB], { encoding: 'utf8' }).trim();
    const loopC = execFileSync('losetup', ['--find', '--show', '--offset', String(1 * MiB), loopB], { encoding: 'utf8' }).trim();
    try {
      const before = sha256File(image);
      const run = cli([`if=${loopB}`, `of=${loopA}`, 'seek=2048']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/the byte ranges overlap/);
      const withOffset = cli([`if=${loopB}`, `of=${loopC}`, 'count=4096']);
      expect(withOffset.code).toBe(1);
      expect(withOffset.stderr).toMatch(/the byte ranges overlap/);
      expect(sha256File(image)).toBe(before);
      // Disjoint ranges through the alias are fine: loopC byte 0 is loopB byte 1 MiB.
      const disjoint = cli([`if=${loopB}`, `of=${loopC}`, 'count=1024', 'seek=4096']);
      expect(disjoint.code, disjoint.stderr).toBe(0);
    } finally {
      execFileSync('losetup', ['-d', loopA]);
      execFileSync('losetup', ['-d', loopC]);
    }
  });

  it("dd's truncation touches every byte from the cut on: a source that is a loop device over the target file is refused (found by the model test)", () => {
    const dir = tempDir();
    const image = makeImage(dir, 't.img', 8 * MiB);
    const loop = attachLoop(image, { directIo: false });
    const before = sha256File(image);
    // Copy the image's second half (through the loop device) to its first 1 MiB: the ranges are
    // disjoint, but dd's truncation at seek= 0 would cut the source away.
    const run = cli([`if=${loop}`, `of=${image}`, 'bs=1M', 'skip=4', 'count=1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/truncating it at byte 0 would destroy source data/);
    expect(sha256File(image)).toBe(before);
    const notrunc = cli([`if=${loop}`, `of=${image}`, 'bs=1M', 'skip=4', 'count=1', 'conv=notrunc']);
    expect(notrunc.code, notrunc.stderr).toBe(0);
    // …and a job pair that cuts a file another pair reads.
    const job = path.join(dir, 'job.json');
    const other = makeImage(dir, 'o.img', 1 * MiB);
    fs.writeFileSync(job, JSON.stringify({ version: 1, pairs: [{ name: 'reader', source: loop, sourceOffset: '6M', target: path.join(dir, 'copy.img') }, { name: 'cutter', source: other, target: image, truncateTarget: true }] }));
    const cutter = spawnSync(process.execPath, [CLI, 'run', job], { encoding: 'utf8' });
    expect(cutter.status).toBe(2);
    expect(cutter.stderr).toMatch(/of pair 'cutter' is the same storage as .* the source of pair 'reader'/);
  });

  it("two job pairs writing one file through a dangling symlink, and '..' after a symlinked directory, are resolved as the kernel does", () => {
    const dir = tempDir('/var/tmp');
    const a = makeImage(dir, 'a.img', 1 * MiB);
    const b = makeImage(dir, 'b.img', 1 * MiB);
    fs.symlinkSync('t.img', path.join(dir, 'lnk'));
    const job = path.join(dir, 'job.json');
    fs.writeFileSync(job, JSON.stringify({ version: 1, pairs: [{ source: a, target: 'lnk' }, { source: b, target: 't.img' }] }));
    const run = spawnSync(process.execPath, [CLI, 'run', job], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/pairs\[1\]\.target: '\S*\/t\.img' of pair 'pair-1' is also the target of pair 'pair-0' \(pairs\[0\]\.target\); two pairs must not write to one target/);
    expect(fs.existsSync(path.join(dir, 't.img'))).toBe(false);

    // lnkdir -> real/deep: lnkdir/../x.img is real/x.img to the kernel, not ./x.img.
    fs.mkdirSync(path.join(dir, 'real', 'deep'), { recursive: true });
    fs.symlinkSync(path.join('real', 'deep'), path.join(dir, 'lnkdir'));
    fs.writeFileSync(job, JSON.stringify({ version: 1, pairs: [{ source: a, target: 'lnkdir/../x.img' }] }));
    const dotdot = spawnSync(process.execPath, [CLI, 'run', job], { encoding: 'utf8' });
    expect(dotdot.status, dotdot.stderr).toBe(0);
    expect(fs.existsSync(path.join(dir, 'x.img'))).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'real', 'x.img')).equals(fs.readFileSync(a))).toBe(true);
    // …and the conflict check reasons about that file.
    fs.writeFileSync(job, JSON.stringify({ version: 1, pairs: [{ source: a, target: 'lnkdir/../x.img' }, { source: b, target: 'real/x.img' }] }));
    const clash = spawnSync(process.execPath, [CLI, 'run', job], { encoding: 'utf8' });
    expect(clash.status).toBe(2);
    expect(clash.stderr).toMatch(/is also the target of pair 'pair-0'/);
  });
});

/** Listening TCP sockets whose inode belongs to `pid` (ss -ltnp without ss). */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    }
  } catch {
    return []; // exited
  }
  const found: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9])) found.push(`${table} ${f[1]}`); // 0A = LISTEN
    }
  }
  return found;
}

function inspectorPortOpen(): boolean {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && f[1]?.endsWith(':2405')) return true; // 9229 = 0x240D
    }
  }
  return false;
}

/** Runs `args` through bin/devmove and sends SIGUSR1 every few ms from the moment Node runs until it exits. */
async function sigusr1Burst(args: readonly string[], stopWhen?: RegExp): Promise<{ run: Run; sent: number; listeners: string[] }> {
  // The launcher runs the Node that runs this test (CI runs the suite under several).
  const child: ChildProcess = spawn(BIN, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEVMOVE_NODE: process.execPath } });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const pid = child.pid as number;
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    }),
  );
  // From the moment the launcher has exec'd Node: before that, bin/devmove ignores SIGUSR1 (but for
  // the first instructions of the shell, which is what `trap` cannot cover).
  for (let i = 0; i < 1000 && !done; i++) {
    let exe = '';
    try {
      exe = fs.readlinkSync(`/proc/${pid}/exe`);
    } catch {
      break;
    }
    if (path.basename(exe).startsWith('node')) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  let sent = 0;
  const listeners: string[] = [];
  const started = Date.now();
  while (!done) {
    try {
      process.kill(pid, 'SIGUSR1');
      sent++;
    } catch {
      break;
    }
    listeners.push(...listeningSockets(pid));
    if (inspectorPortOpen()) listeners.push('127.0.0.1:9229');
    // Stop a command that runs until interrupted once it says it runs (and has burst a while).
    if (stopWhen !== undefined && stopWhen.test(stderr) && Date.now() - started > 300) child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 3));
  }
  const { code, signal } = await exited;
  return { run: { code, signal, stdout, stderr }, sent, listeners };
}

describe.skipIf(skipWithoutLoop)('SIGUSR1 never opens a debugger', () => {
  afterAll(() => detachAll());

  it('a burst of SIGUSR1 from the start to the end of every subcommand: nothing listens, the command does its work', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 32 * MiB);
    const job = path.join(dir, 'job.json');
    fs.writeFileSync(job, JSON.stringify({ version: 1, pairs: [{ source: src, target: path.join(dir, 'j.img'), rate: '64M' }] }));
    const cases: Array<{ args: string[]; stopWhen?: RegExp; code: number }> = [
      { args: [`if=${src}`, `of=${path.join(dir, 'c.img')}`, '--rate=64M'], code: 0 },
      { args: ['run', job], code: 0 },
      { args: ['devices'], code: 0 },
      { args: ['devices', 'watch'], stopWhen: /watching block devices/, code: 0 },
      { args: ['--help'], code: 0 },
      { args: ['--version'], code: 0 },
    ];
    for (const c of cases) {
      const { run, sent, listeners } = await sigusr1Burst(c.args, c.stopWhen);
      expect(listeners, c.args.join(' ')).toEqual([]);
      expect(run.signal, `${c.args.join(' ')}: ${run.stderr}`).toBeNull();
      expect(run.code, `${c.args.join(' ')}: ${run.stderr}`).toBe(c.code);
      expect(sent, c.args.join(' ')).toBeGreaterThan(0);
      expect(run.stderr).not.toMatch(/Debugger listening/);
      // The copy answered the signals with dd's statistics (more than its final ones).
      if (c.args[0].startsWith('if=')) expect(run.stderr.match(/records out/g)?.length ?? 0).toBeGreaterThan(1);
    }
    expect(fs.readFileSync(path.join(dir, 'c.img')).equals(fs.readFileSync(src))).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'j.img')).equals(fs.readFileSync(src))).toBe(true);
  });
});

describe.skipIf(skipWithoutLoop)('right after kill -9', () => {
  afterAll(() => detachAll());

  it('an immediate rerun on the same devices is not refused as busy', async () => {
    const dir = tempDir();
    const src = attachLoop(makeImage(dir, 'src.img', 64 * MiB));
    const dst = attachLoop(makeImage(dir, 'dst.img', 64 * MiB, 'zero'));
    for (let i = 0; i < 5; i++) {
      const child = spawn(process.execPath, [CLI, `if=${src}`, `of=${dst}`, '--rate=32M', 'status=none'], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 300));
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
      const result = await copy({ source: src, target: dst, length: 1 * MiB });
      expect(result.bytesCopied).toBe(1 * MiB);
    }
    expect(readRange(dst, 0, MiB).equals(readRange(src, 0, MiB))).toBe(true);
  });
});

describe.skipIf(skipWithoutLoop)('smaller things', () => {
  afterAll(() => detachAll());

  it('a job of more than ten pairs prints no MaxListenersExceededWarning', () => {
    const dir = tempDir();
    const pairs = Array.from({ length: 12 }, (_, i) => ({ source: makeImage(dir, `s${i}.img`, 64 * KiB), target: path.join(dir, `t${i}.img`) }));
    const job = path.join(dir, 'job.json');
    fs.writeFileSync(job, JSON.stringify({ version: 1, maxQueueDepth: 24, pairs }));
    const run = spawnSync(process.execPath, [CLI, 'run', job], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/MaxListeners|memory leak/);
  });

  it('mapfile errors name the mapfile, not a temporary file; a failed copy with nothing finished does not invite a resume', () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 1 * MiB);
    fs.mkdirSync(path.join(dir, 'q.map'));
    const run = cli([`if=${src}`, `of=${path.join(dir, 'd.img')}`, `--mapfile=${path.join(dir, 'q.map')}`]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^devmove: cannot read mapfile \S+q\.map: EISDIR/);
    expect(run.stderr).not.toMatch(/devmove-tmp/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('devmove-tmp'))).toEqual([]);
    const tooSmall = makeImage(dir, 'small.img', 64 * KiB, 'zero');
    const blocked = cli([`if=${src}`, `of=${attachLoop(tooSmall)}`, `--mapfile=${path.join(dir, 'r.map')}`]);
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toMatch(/records nothing finished yet/);
    expect(blocked.stderr).not.toMatch(/resume/);
  });

  it('buffer memory follows the copy: bs=1G for 64 MiB, and count=0, stay small', () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 64 * MiB);
    // A copy in a fresh process that prints its own peak RSS (VmHWM) at the end.
    const peak = (options: Record<string, unknown>): number => {
      const script = `
        const { copy } = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
        copy(${JSON.stringify(options)}).then(() => {
          const hwm = /VmHWM:\\s+(\\d+) kB/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'));
          console.log(Number(hwm[1]) * 1024);
        }, (e) => { console.error(e); process.exit(1); });`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return Number(r.stdout.trim());
    };
    const baseline = peak({ source: src, target: path.join(dir, 'z.img'), maxLength: 0 });
    expect(peak({ source: src, target: path.join(dir, 'a.img'), blockSize: '1G', queueDepth: 1 }) - baseline).toBeLessThan(100 * MiB);
    expect(peak({ source: src, target: path.join(dir, 'b.img'), blockSize: '1G', queueDepth: 1, maxLength: 0 }) - baseline).toBeLessThan(16 * MiB);
    expect(fs.readFileSync(path.join(dir, 'a.img')).equals(fs.readFileSync(src))).toBe(true);
  });
});

describe.skipIf(skipWithoutLoop)('conv=sparse never lets a map or verify vouch for old bytes (found by the model test)', () => {
  afterAll(() => detachAll());

  /** Data, a zero MiB, data: the zero MiB is what conv=sparse passes over. */
  function zeroInTheMiddle(dir: string): string {
    const file = path.join(dir, 'src.img');
    fs.writeFileSync(file, Buffer.concat([fs.readFileSync(makeImage(dir, 'a.img', MiB)), Buffer.alloc(MiB), fs.readFileSync(makeImage(dir, 'b.img', MiB))]));
    return file;
  }

  it('a file target with data: with --mapfile or --verify the zero block reads zeros (a hole), plain dd conv=sparse keeps the old bytes', () => {
    const dir = tempDir();
    const src = zeroInTheMiddle(dir);
    const old = makeImage(dir, 'old.img', 3 * MiB);
    for (const extra of [[`--mapfile=${path.join(dir, 'm.map')}`], ['--verify']]) {
      const target = path.join(dir, `t${extra[0].slice(2, 5)}.img`);
      fs.copyFileSync(old, target);
      const run = cli([`if=${src}`, `of=${target}`, 'conv=sparse,notrunc', 'status=none', ...extra]);
      expect(run.code, run.stderr).toBe(0);
      expect(sha256File(target)).toBe(sha256File(src));
      // Still sparse: the zero MiB became a hole, not written zeros.
      expect(fs.statSync(target).blocks * 512).toBeLessThanOrEqual(2 * MiB + 64 * KiB);
    }
    expect(RescueMap.load(path.join(dir, 'm.map'))?.bytes('+')).toBe(3 * MiB);
    const plain = path.join(dir, 'plain.img');
    fs.copyFileSync(old, plain);
    expect(cli([`if=${src}`, `of=${plain}`, 'conv=sparse,notrunc', 'status=none']).code).toBe(0);
    expect(readRange(plain, MiB, MiB).equals(readRange(old, MiB, MiB))).toBe(true);
  });

  it('a block device with data, resumed with --mapfile: every range the map calls finished is the source', () => {
    const dir = tempDir();
    const src = zeroInTheMiddle(dir);
    const dev = attachLoop(makeImage(dir, 'dev.img', 3 * MiB));
    const map = path.join(dir, 'dev.map');
    const run = cli([`if=${src}`, `of=${dev}`, 'conv=sparse', 'status=none', `--mapfile=${map}`]);
    expect(run.code, run.stderr).toBe(0);
    expect(RescueMap.load(map)?.bytes('+')).toBe(3 * MiB);
    expect(readRange(dev, 0, 3 * MiB).equals(fs.readFileSync(src))).toBe(true);
  });
});

