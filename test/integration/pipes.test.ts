// Pipes as sources and targets, as dd has them: no if= (or if=-) reads
// standard input, no of= (or of=-) writes standard output, a named FIFO is a
// pipe too. Every case runs through GNU dd on the same input for comparison
// (data, and dd's record counts with iflag=fullblock, since devmove always
// fills its buffers from a pipe), once per I/O driver. Streams are real: the
// shell's pipes, mkfifo, zstd.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { attachLoop, detachAll, makeImage, sha256File, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const DEVMOVE = `'${process.execPath}' '${CLI}'`;
const DRIVERS = ['io_uring', 'threads'] as const;
const hasZstd = spawnSync('zstd', ['--version']).status === 0;
const hasScript = spawnSync('script', ['--version']).status === 0;

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** A shell pipeline; `engine` picks devmove's I/O driver for the whole run. */
function sh(command: string, engine: string): Run {
  const run = spawnSync('sh', ['-c', command], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, DEVMOVE_IO_ENGINE: engine },
  });
  return { status: run.status, signal: run.signal, stderr: run.stderr };
}

/** dd's two record lines (the transfer line's time differs). */
function recordLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => / records (in|out)$/.test(l));
}

describe.each(DRIVERS)('pipes like GNU dd (%s driver)', (engine) => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = tempDir('/var/tmp');
    source = makeImage(dir, 'source.img', 5 * MiB + 1234);
  });

  // A pipe as the source: cat SOURCE | X of=OUT. dd gets iflag=fullblock (devmove reads full blocks).
  const sourceCases: string[][] = [
    [],
    ['bs=1M'],
    ['bs=4k', 'count=10'],
    ['bs=1M', 'skip=2'],
    ['ibs=4096', 'obs=512', 'skip=3', 'count=100'],
    ['iflag=skip_bytes,count_bytes', 'skip=12345', 'count=100000'],
    ['bs=1M', 'seek=3'],
    ['bs=1M', 'count=100'],
  ];

  it.each(sourceCases)('cat SOURCE | dd %j', (...operands) => {
    const ddOut = path.join(dir, 'dd-in.img');
    const ourOut = path.join(dir, 'ours-in.img');
    const dd = sh(`cat '${source}' | dd of='${ddOut}' iflag=fullblock ${operands.join(' ')}`, engine);
    const ours = sh(`cat '${source}' | ${DEVMOVE} of='${ourOut}' ${operands.join(' ')}`, engine);
    expect(ours.status).toBe(dd.status);
    expect(recordLines(ours.stderr)).toEqual(recordLines(dd.stderr));
    expect(sha256File(ourOut)).toBe(sha256File(ddOut));
  });

  // A pipe as the target: X if=SOURCE | cat > OUT.
  const targetCases: string[][] = [[], ['bs=1M'], ['bs=64K', 'count=7', 'skip=1'], ['bs=1000', 'count=3000'], ['conv=sparse', 'bs=64K']];

  it.each(targetCases)('dd if=SOURCE %j | cat', (...operands) => {
    const ddOut = path.join(dir, 'dd-out.img');
    const ourOut = path.join(dir, 'ours-out.img');
    const dd = sh(`dd if='${source}' ${operands.join(' ')} | cat > '${ddOut}'`, engine);
    const ours = sh(`${DEVMOVE} if='${source}' ${operands.join(' ')} | cat > '${ourOut}'`, engine);
    expect(ours.status).toBe(dd.status);
    expect(recordLines(ours.stderr)).toEqual(recordLines(dd.stderr));
    expect(sha256File(ourOut)).toBe(sha256File(ddOut));
  });

  it('seek= on a pipe target fails as in dd (nothing written, exit 1)', () => {
    const out = path.join(dir, 'seek.img');
    const dd = sh(`dd if='${source}' bs=1M seek=2 | cat > '${out}-dd'; echo $? >&2`, engine);
    const ours = sh(`${DEVMOVE} if='${source}' bs=1M seek=2 | cat > '${out}'`, engine);
    expect(dd.stderr).toMatch(/cannot seek/);
    const status = spawnSync('bash', ['-c', `set -o pipefail; ${DEVMOVE} if='${source}' bs=1M seek=2 | cat > /dev/null`], { env: { ...process.env, DEVMOVE_IO_ENGINE: engine } }).status;
    expect(status).toBe(1);
    expect(spawnSync('bash', ['-c', `set -o pipefail; dd if='${source}' bs=1M seek=2 2>/dev/null | cat > /dev/null`]).status).toBe(1);
    expect(ours.stderr).toMatch(/^devmove: of=-: cannot seek on a pipe/m);
    expect(fs.statSync(out).size).toBe(0);
  });

  it('standard input and output as regular files (< and >): continue at the descriptor, like dd', () => {
    const out = path.join(dir, 'redirected.img');
    const ours = sh(`${DEVMOVE} bs=64K skip=1 < '${source}' > '${out}'`, engine);
    const dd = sh(`dd bs=64K skip=1 < '${source}' > '${out}-dd'`, engine);
    expect(ours.status).toBe(0);
    expect(recordLines(ours.stderr)).toEqual(recordLines(dd.stderr));
    expect(sha256File(out)).toBe(sha256File(`${out}-dd`));
    // Standard input after a reader took 1 MiB of it: the copy starts there.
    const rest = sh(`(head -c 1048576 > /dev/null; ${DEVMOVE} of='${out}' status=none) < '${source}'`, engine);
    expect(rest.status).toBe(0);
    expect(fs.statSync(out).size).toBe(4 * MiB + 1234);
    expect(sha256File(out)).toBe(sha256Range(source, MiB, 4 * MiB + 1234));
  });


  it('standard input or output redirected from or to the other side itself is refused: nothing written', () => {
    const image = path.join(dir, 'self.img');
    fs.copyFileSync(source, image);
    const before = sha256File(image);
    // dd would read what it has just written (seek= ahead of the reader) or append the file to itself.
    const fromItself = sh(`${DEVMOVE} of='${image}' bs=4096 seek=1 conv=notrunc < '${image}'`, engine);
    expect(fromItself.status).toBe(1);
    expect(fromItself.stderr).toMatch(/the target is also the source standard input \(.*self\.img\).*nothing was written/);
    const toItself = sh(`${DEVMOVE} if='${image}' >> '${image}'`, engine);
    expect(toItself.status).toBe(1);
    expect(toItself.stderr).toMatch(/standard output \(.*self\.img\): the target is also the source/);
    expect(sha256File(image)).toBe(before);
    // A pipe in between is no storage: the same bytes through cat are a copy like any other.
    expect(sh(`cat '${image}' | ${DEVMOVE} of='${image}.copy' status=none`, engine).status).toBe(0);
    expect(sha256File(`${image}.copy`)).toBe(before);
  });
  it('the reader goes away (EPIPE): killed by SIGPIPE, silently, as dd is', () => {
    const big = makeImage(dir, 'big.img', 8 * MiB);
    const dd = spawnSync('bash', ['-c', `set -o pipefail; dd if='${big}' bs=64K 2>/dev/null | head -c 1000 > /dev/null; echo $?`], { encoding: 'utf8' });
    const ours = spawnSync('bash', ['-c', `set -o pipefail; ${DEVMOVE} if='${big}' bs=64K | head -c 1000 > /dev/null; echo $?`], {
      encoding: 'utf8',
      env: { ...process.env, DEVMOVE_IO_ENGINE: engine },
    });
    expect(dd.stdout.trim()).toBe('141');
    expect(ours.stdout.trim()).toBe('141');
    expect(ours.stderr).toBe('');
  });

  it('--json and --hash report on standard error when the data is on standard output', () => {
    const out = path.join(dir, 'json.img');
    const run = spawnSync('sh', ['-c', `${DEVMOVE} if='${source}' --json --hash=sha256 > '${out}'`], {
      encoding: 'utf8',
      env: { ...process.env, DEVMOVE_IO_ENGINE: engine },
    });
    expect(run.status).toBe(0);
    expect(sha256File(out)).toBe(sha256File(source));
    const result = JSON.parse(run.stderr.trim().split('\n').at(-1) ?? '{}') as { type: string; bytesCopied: number; hash: { hex: string } };
    expect(result).toMatchObject({ type: 'result', bytesCopied: 5 * MiB + 1234 });
    expect(result.hash.hex).toBe(sha256File(source));
  });

  it('a terminal as standard input or output is refused (exit 2)', (ctx) => {
    if (!hasScript) ctx.skip();
    const run = spawnSync('script', ['--quiet', '--return', '--command', `${DEVMOVE} of=/dev/null`, '/dev/null'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).toBe(2);
    expect(run.stdout).toMatch(/standard input is a terminal: give if=SOURCE/);
  });
});

describe.each(DRIVERS)('named FIFOs (%s driver)', (engine) => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = tempDir('/var/tmp');
    source = makeImage(dir, 'source.img', 3 * MiB + 17);
  });

  it('a FIFO as source and as target: waits for the other end like dd, copies identically', () => {
    const fifo = path.join(dir, 'fifo-a');
    spawnSync('mkfifo', [fifo]);
    const out = path.join(dir, 'from-fifo.img');
    const read = sh(`(sleep 0.3; cat '${source}' > '${fifo}') & ${DEVMOVE} if='${fifo}' of='${out}' status=none; wait`, engine);
    expect(read.status).toBe(0);
    expect(sha256File(out)).toBe(sha256File(source));
    const back = path.join(dir, 'to-fifo.img');
    const write = sh(`(sleep 0.3; cat '${fifo}' > '${back}') & ${DEVMOVE} if='${source}' of='${fifo}' status=none; wait`, engine);
    expect(write.status).toBe(0);
    expect(sha256File(back)).toBe(sha256File(source));
  });

  it('SIGTERM ends the wait for a writer that never comes: exit 143, no target created', async () => {
    const fifo = path.join(dir, 'fifo-b');
    spawnSync('mkfifo', [fifo]);
    const target = path.join(dir, 'never.img');
    const child = spawn(process.execPath, [CLI, `if=${fifo}`, `of=${target}`], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEVMOVE_IO_ENGINE: engine } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(child.exitCode).toBeNull(); // still waiting, as dd would
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(143);
    expect(stderr).toMatch(/interrupted by SIGTERM/);
    expect(fs.existsSync(target)).toBe(false);
  });

  it('a stalled pipe: SIGINT ends a read that waits for data (exit 130)', async () => {
    // A writer that holds the pipe open and writes nothing.
    const writer = spawn('sleep', ['30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const child = spawn(process.execPath, [CLI, `of=${path.join(dir, 'stalled.img')}`], {
        stdio: [writer.stdout, 'ignore', 'pipe'],
        env: { ...process.env, DEVMOVE_IO_ENGINE: engine },
      });
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(child.exitCode).toBeNull();
      child.kill('SIGINT');
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code).toBe(130);
    } finally {
      writer.kill('SIGTERM');
    }
  });
});

describe.skipIf(skipWithoutLoop)('pipes and devices', () => {
  let dir: string;
  let source: string;
  let target: string;
  const SIZE = 48 * MiB;
  beforeAll(() => {
    dir = tempDir();
    source = attachLoop(makeImage(dir, 'source.img', SIZE));
    target = attachLoop(makeImage(dir, 'target.img', SIZE, 'zero'));
  });
  afterAll(detachAll);

  it.each(DRIVERS)('the device side keeps O_DIRECT, the pipe side has none; the result says what each side is (%s)', (engine) => {
    const run = spawnSync('sh', ['-c', `cat '${source}' | ${DEVMOVE} of='${target}' --json`], {
      encoding: 'utf8',
      env: { ...process.env, DEVMOVE_IO_ENGINE: engine },
    });
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const result = lines.at(-1) as { ioEngine: string; bytesCopied: number; source: Record<string, unknown>; target: Record<string, unknown> };
    expect(result.ioEngine).toBe(engine);
    expect(result.bytesCopied).toBe(SIZE);
    expect(result.source).toMatchObject({ path: '-', kind: 'pipe', direct: false, directNote: 'a pipe has no O_DIRECT' });
    expect(result.target).toMatchObject({ kind: 'block', direct: true });
    // Progress without a total: the size of a pipe is not known.
    const progress = lines.filter((l) => l.type === 'progress');
    expect(progress.length).toBeGreaterThan(0);
    for (const p of progress) {
      expect(p.bytesTotal).toBeUndefined();
      expect(p.percent).toBeUndefined();
    }
    expect(sha256Range(target, 0, SIZE)).toBe(sha256Range(source, 0, SIZE));
  });

  it.skipIf(!hasZstd)('devmove if=DEVICE | zstd -T0 > x.zst, then zstd -dc x.zst | devmove of=DEVICE: identical', () => {
    const zst = path.join(dir, 'image.zst');
    const out = sh(`${DEVMOVE} if='${source}' status=none | zstd -q -T0 -1 > '${zst}'`, 'auto');
    expect(out.status).toBe(0);
    spawnSync('dd', [`of=${target}`, 'if=/dev/zero', 'bs=1M', `count=${SIZE / MiB}`, 'oflag=direct', 'status=none']);
    const back = sh(`zstd -q -dc '${zst}' | ${DEVMOVE} of='${target}' status=none`, 'auto');
    expect(back.status).toBe(0);
    expect(sha256Range(target, 0, SIZE)).toBe(sha256Range(source, 0, SIZE));
  });

  it('on a terminal with a pipe as the source: the live line has bytes and rate, no percent', (ctx) => {
    if (!hasScript) ctx.skip();
    const command = `cat '${source}' | ${DEVMOVE} of='${target}' bs=4K --queue-depth=1`;
    const run = spawnSync('script', ['--quiet', '--return', '--command', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(0);
    const live = run.stdout.split('\r\x1b[K').filter((l) => l.includes('B/s') && !l.includes('copied'));
    expect(live.length).toBeGreaterThan(0);
    expect(live[0]).toMatch(/^\d+(\.\d)? [KMG]?i?B  [\d.]+ [kMG]?B\/s$/);
  });
});

describe('copy() with standard input as the source', () => {
  it("copy({ source: '-' }) reads the process's standard input", () => {
    const dir = tempDir();
    const data = makeImage(dir, 'data.img', 2 * MiB + 3);
    const out = path.join(dir, 'out.img');
    const script = `require(${JSON.stringify(path.join(ROOT, 'dist'))}).copy({ source: '-', target: ${JSON.stringify(out)} })
      .then((r) => console.log(JSON.stringify({ kind: r.source.kind, sizeKnown: r.source.sizeBytes, bytes: r.bytesCopied })))`;
    const run = spawnSync(process.execPath, ['-e', script], { input: fs.readFileSync(data), encoding: 'utf8' });
    expect(run.status).toBe(0);
    // Node gives a child's standard input as a socket pair: a stream all the same.
    expect(JSON.parse(run.stdout)).toEqual({ kind: 'socket', sizeKnown: 0, bytes: 2 * MiB + 3 });
    expect(sha256File(out)).toBe(sha256File(data));
  });
});
