// Cancellation mid-copy drains in-flight I/O, flushes what was written and
// leaves no descriptor, io_uring instance or loop-device reference behind;
// a process or worker that goes away during a copy exits cleanly.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, CopyAbortError, type CopyJob } from '../../src/index';
import { attachLoop, detachAll, detachLoop, loopIsAttached, makeImage, openFds, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const DIST = path.join(__dirname, '..', '..', 'dist', 'index.js');

function firstProgress(job: CopyJob): Promise<void> {
  return new Promise((resolve) => {
    const onProgress = (p: { bytesDone: number }): void => {
      if (p.bytesDone > 0) {
        job.off('progress', onProgress);
        resolve();
      }
    };
    job.on('progress', onProgress);
  });
}

describe.skipIf(skipWithoutLoop)('cancellation', () => {
  let dir: string;
  let sourceImage: string;
  let targetImage: string;
  const BYTES = 128 * MiB;

  beforeAll(() => {
    dir = tempDir();
    sourceImage = makeImage(dir, 'source.img', BYTES);
    targetImage = makeImage(dir, 'target.img', BYTES, 'zero');
  });
  afterAll(detachAll);

  // Small I/Os, one in flight: slow enough to be cancelled in the middle.
  const slow = { blockSize: 4096, queueDepth: 1, progressInterval: 100 } as const;

  it('cancel() mid-copy rejects with AbortError, keeps the copied prefix and leaks nothing', async () => {
    const source = attachLoop(sourceImage);
    const target = attachLoop(targetImage);
    const before = openFds();
    const job = copy({ source, target, ...slow });
    await firstProgress(job);
    job.cancel();
    const error = await job.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CopyAbortError);
    const abort = error as CopyAbortError;
    expect(abort).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect(abort.bytesCopied).toBeGreaterThan(0);
    expect(abort.bytesCopied).toBeLessThan(BYTES);
    // What it says it copied is there.
    expect(sha256Range(target, 0, abort.bytesCopied)).toBe(sha256Range(source, 0, abort.bytesCopied));

    const after = openFds();
    // Node >= 22's libuv keeps io_uring instances of its own: compare with before, not with 0.
    expect(after.ioUring).toBe(before.ioUring);
    expect(after.count).toBe(before.count);
    // No reference keeps the devices: they detach at once.
    detachLoop(source);
    detachLoop(target);
    expect(loopIsAttached(source)).toBe(false);
    expect(loopIsAttached(target)).toBe(false);
  });

  it('an AbortSignal cancels a running copy; an aborted one never starts', async () => {
    const source = attachLoop(sourceImage);
    const target = attachLoop(targetImage);
    const ringsBefore = openFds().ioUring; // libuv's own, on Node >= 22
    const controller = new AbortController();
    const job = copy({ source, target, ...slow, signal: controller.signal });
    await firstProgress(job);
    controller.abort(new Error('operator said stop'));
    const error = (await job.catch((e: unknown) => e)) as CopyAbortError;
    expect(error).toBeInstanceOf(CopyAbortError);
    expect((error.cause as Error).message).toBe('operator said stop');

    const already = copy({ source, target, signal: AbortSignal.abort() });
    await expect(already).rejects.toMatchObject({ name: 'AbortError', bytesCopied: 0 });
    expect(openFds().ioUring).toBe(ringsBefore);
  });

  it('emits progress with total, percent, rate and ETA', async () => {
    const source = attachLoop(sourceImage);
    const target = attachLoop(targetImage);
    const seen: number[] = [];
    const job = copy({ source, target, length: 16 * MiB, blockSize: 4096, queueDepth: 2, progressInterval: 100 });
    job.on('progress', (p) => {
      expect(p.bytesTotal).toBe(16 * MiB);
      expect(p.percent).toBeGreaterThanOrEqual(0);
      expect(p.percent).toBeLessThanOrEqual(100);
      seen.push(p.bytesDone);
    });
    const result = await job;
    expect(result.bytesCopied).toBe(16 * MiB);
    expect(job.progress.bytesDone).toBe(16 * MiB);
    expect(job.progress.percent).toBe(100);
    expect(seen.length).toBeGreaterThan(0);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen); // monotonic
  });

  it('process.exit() during a copy: exits 0 without a crash and the devices are released', () => {
    const source = attachLoop(sourceImage);
    const target = attachLoop(targetImage);
    const script = `
      const { copy } = require(${JSON.stringify(DIST)});
      const job = copy({ source: ${JSON.stringify(source)}, target: ${JSON.stringify(target)}, blockSize: 4096, queueDepth: 1 });
      job.on('progress', (p) => { if (p.bytesDone > 0) process.exit(0); });
      job.catch(() => {});
    `;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(run.signal).toBeNull();
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // process.exit() skips env cleanup hooks; the kernel closes the dead
    // process's ring and releases the devices asynchronously, so wait (bounded).
    detachLoop(source);
    detachLoop(target);
    const deadline = Date.now() + 10_000;
    while ((loopIsAttached(source) || loopIsAttached(target)) && Date.now() < deadline) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
    expect(loopIsAttached(source)).toBe(false);
    expect(loopIsAttached(target)).toBe(false);
  });

  it('worker.terminate() during a copy in a worker thread: no crash, the main thread goes on', () => {
    const source = attachLoop(sourceImage);
    const target = attachLoop(targetImage);
    const script = `
      const { Worker } = require('node:worker_threads');
      const worker = new Worker(\`
        const { parentPort } = require('node:worker_threads');
        const { copy } = require(${JSON.stringify(DIST)});
        const job = copy({ source: ${JSON.stringify(source)}, target: ${JSON.stringify(target)}, blockSize: 4096, queueDepth: 1 });
        job.on('progress', (p) => { if (p.bytesDone > 0) parentPort.postMessage('running'); });
        job.catch(() => {});
      \`, { eval: true });
      worker.once('message', async () => {
        await worker.terminate();
        // A second copy in the main thread still works after the worker's env is gone.
        const { copy } = require(${JSON.stringify(DIST)});
        const r = await copy({ source: ${JSON.stringify(source)}, target: ${JSON.stringify(target)}, length: 1048576 });
        console.log('ok ' + r.bytesCopied);
      });
    `;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('ok 1048576\n');
    expect(run.status).toBe(0);
  });

  it('an idle process with finished jobs exits by itself (nothing keeps the event loop alive)', () => {
    const dir2 = tempDir();
    const src = makeImage(dir2, 'a.img', MiB);
    const script = `
      const { copy } = require(${JSON.stringify(DIST)});
      copy({ source: ${JSON.stringify(src)}, target: ${JSON.stringify(path.join(dir2, 'b.img'))} }).then((r) => console.log(r.bytesCopied));
    `;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stdout).toBe(`${MiB}\n`);
    expect(run.status).toBe(0);
  });
});
