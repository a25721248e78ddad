// Many pairs in one job, on loop devices this suite creates: runJob() copies every pair
// at once within the shared budget, each with its own progress and result; one pair
// failing leaves the others alone; the signal cancels all; `devmove run` end to end.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CopyAbortError, DevmoveError } from '../../src/base/errors';
import { runJob, type JobEvent } from '../../src/jobs/job';
import { JobFileError, validateJob } from '../../src/jobs/jobfile';
import { attachLoop, detachAll, makeImage, sha256File, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

const zeros = (bytes: number): string => crypto.createHash('sha256').update(Buffer.alloc(bytes)).digest('hex');

type ProgressEvent = Extract<JobEvent, { type: 'progress' }>;

function collect(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe.skipIf(skipWithoutLoop)('runJob: many pairs in one job', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(detachAll);

  it('copies two pairs at once, byte-identical, each with its own progress and result', async () => {
    const srcA = attachLoop(makeImage(dir, 'a-src.img', 8 * MiB));
    const dstA = attachLoop(makeImage(dir, 'a-dst.img', 8 * MiB, 'zero'));
    const srcB = attachLoop(makeImage(dir, 'b-src.img', 6 * MiB));
    const dstB = attachLoop(makeImage(dir, 'b-dst.img', 10 * MiB, 'zero'));
    const spec = validateJob({
      version: 1,
      pairs: [
        { name: 'alpha', source: srcA, target: dstA },
        { name: 'beta', source: srcB, target: dstB, sourceOffset: '1M', targetOffset: '2M', length: '4M', blockSize: '64K', queueDepth: 4 },
      ],
    });
    const events: JobEvent[] = [];
    const result = await runJob(spec, { onEvent: (e) => events.push(e), progressInterval: 100 });

    expect(result.ok).toBe(true);
    expect(result.cancelled).toBe(false);
    expect(result.bytesCopied).toBe(12 * MiB);
    expect(result.pairs.map((p) => [p.name, p.status, p.bytesCopied, p.queueDepth, p.blockSize])).toStrictEqual([
      ['alpha', 'done', 8 * MiB, 8, 512 * 1024],
      ['beta', 'done', 4 * MiB, 4, 64 * 1024],
    ]);
    expect(result.pairs[0].result).toMatchObject({ bytesCopied: 8 * MiB, source: { path: srcA }, target: { path: dstA } });
    // alpha may have grown when beta finished first (JobBudget), never past what it was granted.
    expect(result.pairs[0].result?.queueDepth).toBeGreaterThanOrEqual(8);
    expect(result.pairs[0].result?.queueDepth).toBeLessThanOrEqual(result.pairs[0].queueDepthGranted);
    expect(result.pairs[1].result).toMatchObject({ bytesCopied: 4 * MiB, queueDepth: 4, blockSize: 64 * 1024, target: { path: dstB } });

    expect(sha256File(dstA)).toBe(sha256File(srcA));
    expect(sha256Range(dstB, 2 * MiB, 4 * MiB)).toBe(sha256Range(srcB, MiB, 4 * MiB));
    expect(sha256Range(dstB, 0, 2 * MiB)).toBe(zeros(2 * MiB));
    expect(sha256Range(dstB, 6 * MiB, 4 * MiB)).toBe(zeros(4 * MiB));

    // Each pair: started with its share, its own progress ending at its total, then done.
    for (const [name, total] of [['alpha', 8 * MiB], ['beta', 4 * MiB]] as const) {
      const own = events.filter((e) => e.pair === name);
      expect(own[0]).toMatchObject({ type: 'pair-start', pair: name });
      expect(own.at(-1)).toMatchObject({ type: 'pair-done', pair: name, result: { bytesCopied: total } });
      const progress = own.filter((e): e is ProgressEvent => e.type === 'progress');
      expect(progress.length).toBeGreaterThan(0);
      expect(progress.at(-1)).toMatchObject({ bytesDone: total, bytesTotal: total, percent: 100 });
      const done = progress.map((p) => p.bytesDone);
      expect(done).toStrictEqual([...done].sort((x, y) => x - y));
    }
    expect(events.filter((e) => e.type === 'pair-failed')).toHaveLength(0);
  });

  it('shares maxQueueDepth and maxBufferMemory between the pairs', async () => {
    const pairs = [0, 1, 2].map((i) => ({
      name: `p${i}`,
      source: attachLoop(makeImage(dir, `share-src-${i}.img`, 2 * MiB)),
      target: attachLoop(makeImage(dir, `share-dst-${i}.img`, 2 * MiB, 'zero')),
      blockSize: '256K',
    }));
    // 7 I/Os over 3 pairs: 2 each; 2M of buffers over 3 pairs: 699050 bytes each, 2 buffers of 256K.
    const spec = validateJob({ version: 1, maxQueueDepth: 7, maxBufferMemory: '2M', pairs });
    const result = await runJob(spec);
    expect(result.ok).toBe(true);
    for (const [i, p] of result.pairs.entries()) {
      expect(p.queueDepth).toBe(2);
      expect(p.result).toMatchObject({ blockSize: 256 * 1024, bytesCopied: 2 * MiB });
      // A pair that outlived another may have grown, within what the job granted it.
      expect(p.result?.queueDepth).toBeGreaterThanOrEqual(2);
      expect(p.result?.queueDepth).toBeLessThanOrEqual(p.queueDepthGranted);
      expect(sha256File(pairs[i].target)).toBe(sha256File(pairs[i].source));
    }
  });

  it('a pair that finishes hands its buffers to the pair still running: its ring grows', async () => {
    // Pair 'late' reads a FIFO this test feeds only once 'early' has settled and its budget was
    // handed to 'late' (pair-budget comes right after the grow request), so it is still running then
    // however loaded the machine is, and its engine sees the request before the data. Fed at
    // 'early''s pair-done, the data raced the request: under the sanitizer with the threads driver
    // the 8 MiB were copied before the ring grew (queueDepth 8 at the end).
    const srcEarly = attachLoop(makeImage(dir, 'grow-early-src.img', MiB));
    const dstEarly = attachLoop(makeImage(dir, 'grow-early-dst.img', MiB, 'zero'));
    const fifo = path.join(dir, 'grow-late.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const data = makeImage(dir, 'grow-late-data.img', 8 * MiB);
    const dstLate = attachLoop(makeImage(dir, 'grow-late-dst.img', 8 * MiB, 'zero'));
    const spec = validateJob({ version: 1, pairs: [{ name: 'early', source: srcEarly, target: dstEarly }, { name: 'late', source: fifo, target: dstLate }] });
    const events: JobEvent[] = [];
    let feeder: Promise<unknown> | undefined;
    const onEvent = (e: JobEvent): void => {
      events.push(e);
      if (e.type === 'pair-budget' && e.pair === 'late' && feeder === undefined) feeder = collect(spawn('dd', [`if=${data}`, `of=${fifo}`, 'bs=1M', 'status=none']));
    };
    const result = await runJob(spec, { onEvent, progressInterval: 100 });
    await feeder;

    expect(result.pairs.map((p) => [p.name, p.status, p.bytesCopied])).toStrictEqual([['early', 'done', MiB], ['late', 'done', 8 * MiB]]);
    expect(sha256Range(dstLate, 0, 8 * MiB)).toBe(sha256File(data));
    // Default budget: 16 I/Os and 8 MiB of 512 KiB buffers for two pairs, 8 each; early's 8 go to late.
    const [early, late] = result.pairs;
    expect([early.queueDepth, early.queueDepthGranted, late.queueDepth, late.queueDepthGranted]).toStrictEqual([8, 8, 8, 16]);
    const budgetEvents = events.filter((e) => e.type === 'pair-budget');
    expect(budgetEvents).toStrictEqual([{ type: 'pair-budget', pair: 'late', queueDepth: 16, bufferBytes: 16 * 512 * 1024 }]);
    expect(events.indexOf(budgetEvents[0])).toBeGreaterThan(events.findIndex((e) => e.type === 'pair-done' && e.pair === 'early'));
    // The engine took them: its ring has 16 buffers at the end, in the result and the last progress event.
    expect(late.result?.queueDepth).toBe(16);
    const lateProgress = events.filter((e): e is ProgressEvent => e.type === 'progress' && e.pair === 'late');
    expect(lateProgress[0].queueDepth).toBe(8);
    expect(lateProgress.at(-1)?.queueDepth).toBe(16);
  });

  it('one pair failing (target too small) does not stop the other', async () => {
    const source = attachLoop(makeImage(dir, 'f-src.img', 4 * MiB));
    const small = attachLoop(makeImage(dir, 'f-small.img', MiB, 'zero'));
    const srcOk = attachLoop(makeImage(dir, 'f-ok-src.img', 4 * MiB));
    const dstOk = attachLoop(makeImage(dir, 'f-ok-dst.img', 4 * MiB, 'zero'));
    const spec = validateJob({
      version: 1,
      pairs: [
        { name: 'small', source, target: small },
        { name: 'ok', source: srcOk, target: dstOk },
      ],
    });
    const events: JobEvent[] = [];
    const result = await runJob(spec, { onEvent: (e) => events.push(e) });
    expect(result.ok).toBe(false);
    expect(result.cancelled).toBe(false);
    const [failed, ok] = result.pairs;
    expect(failed).toMatchObject({ name: 'small', status: 'failed', bytesCopied: 0 });
    expect(failed.error).toBeInstanceOf(DevmoveError);
    expect(failed.error).toMatchObject({ code: 'ENOSPC', path: small });
    expect(ok).toMatchObject({ name: 'ok', status: 'done', bytesCopied: 4 * MiB });
    expect(sha256File(dstOk)).toBe(sha256File(srcOk));
    expect(sha256File(small)).toBe(zeros(MiB));
    const failure = events.find((e) => e.type === 'pair-failed');
    expect(failure).toMatchObject({ pair: 'small', error: { code: 'ENOSPC' } });
    expect(events.filter((e) => e.type === 'pair-done').map((e) => e.pair)).toStrictEqual(['ok']);
  });

  it('aborting the signal cancels every pair; what was written is flushed', async () => {
    const pairs = ['x', 'y'].map((name) => ({
      name,
      source: attachLoop(makeImage(dir, `c-src-${name}.img`, 16 * MiB)),
      target: attachLoop(makeImage(dir, `c-dst-${name}.img`, 16 * MiB, 'zero')),
      blockSize: 512,
      queueDepth: 1,
    }));
    const spec = validateJob({ version: 1, pairs });
    const controller = new AbortController();
    const result = await runJob(spec, {
      signal: controller.signal,
      progressInterval: 100,
      onEvent: (e) => {
        if (e.type === 'progress' && e.bytesDone > 0) controller.abort();
      },
    });
    expect(result.cancelled).toBe(true);
    expect(result.ok).toBe(false);
    for (const [i, p] of result.pairs.entries()) {
      expect(p.status).toBe('cancelled');
      expect(p.error).toBeInstanceOf(CopyAbortError);
      expect(p.bytesCopied).toBeLessThan(16 * MiB);
      // The flushed prefix is the source's.
      expect(sha256Range(pairs[i].target, 0, p.bytesCopied)).toBe(sha256Range(pairs[i].source, 0, p.bytesCopied));
    }
  });

  it('an already aborted signal starts nothing', async () => {
    const source = makeImage(dir, 'pre-src.img', MiB);
    const target = path.join(dir, 'pre-dst.img');
    const result = await runJob(validateJob({ version: 1, pairs: [{ source, target }] }), { signal: AbortSignal.abort() });
    expect(result).toMatchObject({ cancelled: true, ok: false, pairs: [{ status: 'cancelled', bytesCopied: 0 }] });
    expect(fs.existsSync(target)).toBe(false);
  });

  it('refuses, before any write, a pair writing to another pair\'s source under another name', async () => {
    const image = makeImage(dir, 'alias.img', 2 * MiB);
    const before = sha256File(image);
    const source = attachLoop(image);
    const sameFile = attachLoop(image); // a second loop device over the same image file
    const other = attachLoop(makeImage(dir, 'alias-other.img', 2 * MiB));
    const spec = validateJob({
      version: 1,
      pairs: [
        { name: 'reader', source, target: path.join(dir, 'alias-copy.img') },
        { name: 'writer', source: other, target: sameFile },
      ],
    });
    const error = await runJob(spec).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(JobFileError);
    expect((error as JobFileError).message).toBe(
      `pairs[1].target: '${sameFile}' of pair 'writer' is the same storage as '${source}', the source of pair 'reader' (pairs[0].source), and the byte ranges overlap; a pair must not write to what another pair reads`,
    );
    expect(sha256File(image)).toBe(before);
    expect(fs.existsSync(path.join(dir, 'alias-copy.img'))).toBe(false);

    // The same device by MAJ:MIN instead of its node: refused too, already when the job is
    // validated (the number resolves to the source's own node).
    const devno = fs.readFileSync(`/sys/class/block/${path.basename(source)}/dev`, 'utf8').trim();
    expect(() => validateJob({ version: 1, pairs: [{ name: 'reader', source, target: path.join(dir, 'alias-copy.img') }, { name: 'writer', source: other, target: devno }] })).toThrow(
      /^pairs\[1\]\.target: '\d+:\d+' of pair 'writer' is also the source of pair 'reader' \(pairs\[0\]\.source\)/,
    );
    const bySecondLoop = validateJob({ version: 1, pairs: [{ name: 'reader', source, target: path.join(dir, 'alias-copy.img') }, { name: 'writer', source: other, target: fs.readFileSync(`/sys/class/block/${path.basename(sameFile)}/dev`, 'utf8').trim() }] });
    await expect(runJob(bySecondLoop)).rejects.toThrow(/^pairs\[1\]\.target: '\d+:\d+' of pair 'writer' is the same storage as/);
  });
});

describe.skipIf(skipWithoutLoop)('devmove run JOBFILE', () => {
  let dir: string;
  let srcLoop: string;
  let dstLoop: string;
  beforeAll(() => {
    dir = tempDir();
    srcLoop = attachLoop(makeImage(dir, 'cli-src.img', 4 * MiB));
    dstLoop = attachLoop(makeImage(dir, 'cli-dst.img', 4 * MiB, 'zero'));
    makeImage(dir, 'file-src.img', 3 * MiB + 4321);
  });
  afterAll(detachAll);

  function writeJob(name: string, job: unknown): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, typeof job === 'string' ? job : JSON.stringify(job, null, 2));
    return file;
  }

  function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
    // From another directory: relative paths in the job are the job file's.
    const r = spawnSync(process.execPath, [CLI, 'run', ...args], { encoding: 'utf8', cwd: '/', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('--json: events per pair, then the result; exit 0', () => {
    fs.rmSync(path.join(dir, 'file-copy.img'), { force: true });
    const file = writeJob('job.json', {
      version: 1,
      maxQueueDepth: 8,
      pairs: [
        { name: 'disk', source: srcLoop, target: dstLoop },
        { name: 'file', source: 'file-src.img', target: 'file-copy.img', blockSize: '128K' },
      ],
    });
    const r = run([file, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const events = jsonLines(r.stdout);
    expect(events.every((e) => ['pair-start', 'progress', 'pair-budget', 'pair-done', 'result'].includes(e.type as string))).toBe(true);
    // Whichever pair finished first, the other may have been given its share, and said so.
    for (const e of events.filter((x) => x.type === 'pair-budget')) expect(e).toMatchObject({ pair: expect.stringMatching(/^(disk|file)$/), queueDepth: expect.any(Number), bufferBytes: expect.any(Number) });
    expect(events.filter((e) => e.type === 'pair-start')).toStrictEqual([
      { type: 'pair-start', pair: 'disk', source: srcLoop, targets: [dstLoop], queueDepth: 4, blockSize: 512 * 1024 },
      { type: 'pair-start', pair: 'file', source: path.join(dir, 'file-src.img'), targets: [path.join(dir, 'file-copy.img')], queueDepth: 4, blockSize: 128 * 1024 },
    ]);
    for (const name of ['disk', 'file']) {
      expect(events.some((e) => e.type === 'progress' && e.pair === name)).toBe(true);
      expect(events.filter((e) => e.type === 'pair-done' && e.pair === name)).toHaveLength(1);
    }
    const last = events.at(-1) as { type: string; ok: boolean; pairs: Array<Record<string, unknown>> };
    expect(last).toMatchObject({ type: 'result', ok: true, cancelled: false, bytesCopied: 7 * MiB + 4321 });
    expect(last.pairs).toMatchObject([
      { name: 'disk', status: 'done', bytesCopied: 4 * MiB, queueDepth: 4, queueDepthGranted: expect.any(Number) },
      { name: 'file', status: 'done', bytesCopied: 3 * MiB + 4321, result: { target: { created: true } } },
    ]);
    expect(sha256File(dstLoop)).toBe(sha256File(srcLoop));
    expect(sha256File(path.join(dir, 'file-copy.img'))).toBe(sha256File(path.join(dir, 'file-src.img')));
  });

  it('human output: one line per pair and a summary', () => {
    const file = writeJob('human.json', { version: 1, pairs: [{ name: 'disk', source: srcLoop, target: dstLoop, length: '1M' }] });
    const r = run([file]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^disk: 1048576 bytes \(1\.0 MiB\) copied in [0-9.e-]+ s, [0-9.]+ [kMG]?B\/s$/);
    expect(lines[1]).toMatch(/^1 pair: 1 done; 1048576 bytes \(1\.0 MiB\) in [0-9.e-]+ s$/);
    expect(run([file, '--quiet'])).toMatchObject({ status: 0, stdout: '', stderr: '' });
  });

  it('a failing pair: exit 1, the others still done', () => {
    const small = attachLoop(makeImage(dir, 'cli-small.img', MiB, 'zero'));
    fs.rmSync(path.join(dir, 'file-copy2.img'), { force: true });
    const file = writeJob('failing.json', {
      version: 1,
      pairs: [
        { name: 'small', source: srcLoop, target: small },
        { name: 'file', source: 'file-src.img', target: 'file-copy2.img' },
      ],
    });
    const r = run([file, '--json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('devmove: 1 of 2 pairs failed: small\n');
    const events = jsonLines(r.stdout);
    expect(events.find((e) => e.type === 'pair-failed')).toMatchObject({ pair: 'small', error: { name: 'DevmoveError', code: 'ENOSPC', path: small } });
    expect(events.at(-1)).toMatchObject({ type: 'result', ok: false, pairs: [{ name: 'small', status: 'failed' }, { name: 'file', status: 'done' }] });
    expect(sha256File(path.join(dir, 'file-copy2.img'))).toBe(sha256File(path.join(dir, 'file-src.img')));

    const human = run([file]);
    expect(human.status).toBe(1);
    expect(human.stdout).toMatch(new RegExp(`^small: failed after 0 bytes: ${small}: target too small: .*\\(ENOSPC from \\w+\\)$`, 'm'));
    expect(human.stdout).toMatch(/^file: \d+ bytes .* copied in /m);
    expect(human.stdout).toMatch(/^2 pairs: 1 done, 1 failed; /m);
    const quiet = run([file, '--quiet']);
    expect(quiet.status).toBe(1);
    expect(quiet.stdout).toBe('');
    expect(quiet.stderr).toMatch(/^devmove: small: failed after 0 bytes: .*ENOSPC.*\n$/);
  });

  it.each([
    ['a bad size', { version: 1, pairs: [{ source: 'a.img', target: 'b.img', blockSize: 'lots' }] }, "pairs[0].blockSize: must be a size such as '512K' or '4M' (got 'lots')"],
    ['no pairs', { version: 1, pairs: [] }, 'pairs: is empty: a job needs at least one pair'],
    ['a JSON syntax error', '{\n  "version": 1,\n  "pairs": [,]\n}', null],
  ])('a bad job file (%s) exits 2 with one line', (_what, job, reason) => {
    const file = writeJob('bad.json', job);
    const r = run([file, '--json']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    if (reason === null) expect(r.stderr).toBe(`devmove: ${file}:3:13: invalid JSON: unexpected ',': expected a value (an object, array, string, number, true, false or null)\n`);
    else expect(r.stderr).toBe(`devmove: ${file}: ${reason}\n`);
  });

  it('usage errors and a missing file exit 2 with one line; --help exits 0', () => {
    expect(run([])).toMatchObject({ status: 2, stderr: 'devmove: run needs a JOBFILE (usage: devmove run JOBFILE [--json] [--quiet])\n' });
    expect(run(['a.json', '--frob'])).toMatchObject({ status: 2, stderr: "devmove: run: unknown option '--frob'\n" });
    expect(run([path.join(dir, 'nope.json')])).toMatchObject({ status: 2, stderr: `devmove: ${path.join(dir, 'nope.json')}: cannot read the job file: no such file or directory (ENOENT)\n` });
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: devmove run JOBFILE/);
    const main = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    expect(main.stdout).toContain('or:  devmove run JOBFILE [--json]');
  });

  it('reads the job from standard input with -', () => {
    const job = JSON.stringify({ version: 1, pairs: [{ name: 'disk', source: srcLoop, target: dstLoop, maxLength: '64K' }] });
    const r = spawnSync(process.execPath, [CLI, 'run', '-', '--json', '--quiet'], { input: job, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ type: 'result', ok: true, bytesCopied: 64 * 1024 });
  });

  describe('signals', () => {
    let slow: string;
    beforeAll(() => {
      const pairs = ['s1', 's2'].map((name) => ({
        name,
        source: attachLoop(makeImage(dir, `sig-src-${name}.img`, 64 * MiB, { pattern: 0x5a })),
        target: attachLoop(makeImage(dir, `sig-dst-${name}.img`, 64 * MiB, 'zero')),
        blockSize: 512,
        queueDepth: 1,
      }));
      slow = writeJob('slow.json', { version: 1, pairs });
    });

    async function interrupt(signal: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string }> {
      const child = spawn(process.execPath, [CLI, 'run', slow, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let fired = false;
      child.stdout.on('data', (d: Buffer) => {
        if (!fired && /"type":"progress"[^\n]*"bytesDone":[1-9]/.test(d.toString())) {
          fired = true;
          child.kill(signal);
        }
      });
      return collect(child);
    }

    it('SIGINT cancels every pair: exit 130, one line, the result lists them cancelled', async () => {
      const { code, stdout, stderr } = await interrupt('SIGINT');
      expect(code).toBe(130);
      expect(stderr).toBe('devmove: interrupted by SIGINT; 2 of 2 pairs cancelled, what was written has been flushed\n');
      expect(jsonLines(stdout).at(-1)).toMatchObject({ type: 'result', ok: false, cancelled: true, pairs: [{ status: 'cancelled' }, { status: 'cancelled' }] });
      const failed = jsonLines(stdout).filter((e) => e.type === 'pair-failed');
      expect(failed.map((e) => (e.error as { code: string }).code)).toStrictEqual(['ABORT_ERR', 'ABORT_ERR']);
    });

    it('SIGTERM exits 143', async () => {
      expect((await interrupt('SIGTERM')).code).toBe(143);
    });
  });
});

// jsonc-parser costs a few milliseconds to load: only reading a job file may pay them.
describe('who loads the JSON parser', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
    makeImage(dir, 'src.img', 64 * 1024);
    // Preloaded into the CLI's process: says at exit whether jsonc-parser was ever required.
    fs.writeFileSync(
      path.join(dir, 'report-jsonc.js'),
      "process.on('exit', () => process.stderr.write(`jsonc-parser loaded: ${Object.keys(require.cache).some((f) => f.includes('/node_modules/jsonc-parser/'))}\\n`));\n",
    );
  });
  afterAll(detachAll);

  const cli = (args: string[]): string =>
    spawnSync(process.execPath, ['--require', path.join(dir, 'report-jsonc.js'), CLI, ...args], { encoding: 'utf8', cwd: dir, timeout: 60_000 }).stderr;

  it('a plain copy does not, devmove run does', () => {
    expect(cli(['if=src.img', 'of=copy.img', 'status=none'])).toBe('jsonc-parser loaded: false\n');
    expect(sha256File(path.join(dir, 'copy.img'))).toBe(sha256File(path.join(dir, 'src.img')));
    fs.writeFileSync(path.join(dir, 'job.json'), JSON.stringify({ version: 1, pairs: [{ source: 'src.img', target: 'copy2.img' }] }));
    expect(cli(['run', 'job.json', '--quiet'])).toBe('jsonc-parser loaded: true\n');
    expect(sha256File(path.join(dir, 'copy2.img'))).toBe(sha256File(path.join(dir, 'src.img')));
  });

  it('the library entry does not, until a job file is parsed', () => {
    const index = path.join(__dirname, '..', '..', 'dist', 'index.js');
    const script = `const loaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/jsonc-parser/'));
      const devmove = require(${JSON.stringify(index)});
      const before = loaded();
      devmove.parseJobFile('{"version": 1, "pairs": [{"source": "a", "target": "b"}]}', 'job.json');
      process.stdout.write(JSON.stringify({ before, after: loaded() }));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toStrictEqual({ before: false, after: true });
  });
});
