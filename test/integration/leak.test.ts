// A thousand small copies in one process leave nothing behind: no descriptor,
// no io_uring instance, no thread, and no memory beyond allocator noise, when
// the copies succeed, fail (short source, missing directory, refused by the
// safety checks, misaligned direct I/O) or are cancelled (while running, or
// through an AbortSignal that was aborted before they started).
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, CopyAbortError, DevmoveError, type CopyOptions } from '../../src/index';
import { attachLoop, detachAll, makeImage, openFds, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const KiB = 1024;
const MiB = 1024 * KiB;

const COPIES = 1000;
const WARM_UP = 20;
/** RSS may move with allocator and V8 heap noise; a leak of even 64 KiB per copy would exceed this. */
const RSS_NOISE_BYTES = 32 * MiB;

/** A garbage collection, if this process can have one: --expose-gc, or the V8 flag set at run time. */
function collector(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

function statusField(name: string): number {
  const line = fs
    .readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (line === undefined) throw new Error(`/proc/self/status has no ${name}`);
  return Number.parseInt(line.slice(name.length + 1).trim(), 10);
}

interface Sample {
  fds: number;
  ioUring: number;
  threads: number;
  rssBytes: number;
  heapUsedBytes: number;
}

async function sample(gc: (() => void) | undefined): Promise<Sample> {
  // Let finished jobs' callbacks and finalizers run before counting.
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc?.();
  }
  const fds = openFds();
  return {
    fds: fds.count,
    ioUring: fds.ioUring,
    threads: statusField('Threads'),
    rssBytes: statusField('VmRSS') * KiB,
    heapUsedBytes: process.memoryUsage().heapUsed,
  };
}

type Outcome = 'ok' | 'failed' | 'cancelled';

describe.skipIf(skipWithoutLoop)('resource leaks over many copies', () => {
  let dir: string;
  let big: string; // 1 MiB
  let medium: string; // 256 KiB
  let short: string; // 32 KiB: too short for the "exact length" copies
  let fileTargets: string[];
  let sourceLoop: string; // 1 MiB
  let targetLoop: string; // 1 MiB

  beforeAll(() => {
    dir = tempDir();
    big = makeImage(dir, 'big.img', MiB);
    medium = makeImage(dir, 'medium.img', 256 * KiB);
    short = makeImage(dir, 'short.img', 32 * KiB);
    fileTargets = [0, 1, 2, 3].map((i) => makeImage(dir, `target-${i}.img`, MiB, 'zero'));
    sourceLoop = attachLoop(makeImage(dir, 'source-loop.img', MiB, 'random', 'loop-source'));
    targetLoop = attachLoop(makeImage(dir, 'target-loop.img', MiB, 'zero'));
  });
  afterAll(detachAll);

  /**
   * Copy number `i` of the run: mostly successful copies of 64 KiB to 1 MiB
   * between files and loop devices with varied block sizes and queue depths,
   * with a few failures and cancellations mixed in at fixed positions.
   */
  function plan(i: number): { options: CopyOptions; expect: Outcome | 'ok-or-cancelled'; cancel?: 'running' | 'before' } {
    const length = 64 * KiB * (1 + (i % 16)); // 64 KiB .. 1 MiB
    const blockSize = [64 * KiB, 128 * KiB, 512 * KiB, 4 * KiB][i % 4] as number;
    const queueDepth = [1, 2, 4, 8][(i >> 2) % 4] as number;
    const fileTarget = fileTargets[i % fileTargets.length] as string;
    switch (i % 50) {
      case 7: // cancelled while running (or, if it wins the race, finished)
        return { options: { source: big, target: fileTarget, blockSize: 4 * KiB, queueDepth: 1 }, expect: 'ok-or-cancelled', cancel: 'running' };
      case 19: // cancelled before it starts
        return { options: { source: big, target: targetLoop, length }, expect: 'cancelled', cancel: 'before' };
      case 23: // source too short for the exact length asked
        return { options: { source: short, target: fileTarget, length: 64 * KiB }, expect: 'failed' };
      case 31: // target in a directory that does not exist
        return { options: { source: medium, target: path.join(dir, 'no-such-dir', 'x.img') }, expect: 'failed' };
      case 37: // refused by the safety checks: overlapping ranges of one file
        return { options: { source: big, target: big, targetOffset: 4 * KiB, length: 64 * KiB, truncateTarget: false }, expect: 'failed' };
      case 43: // direct I/O required with a block size the device cannot do
        return { options: { source: sourceLoop, target: targetLoop, blockSize: 1000, direct: 'always', length: 64 * KiB }, expect: 'failed' };
      default:
        break;
    }
    switch (i % 4) {
      case 0:
        return { options: { source: big, target: fileTarget, length, blockSize, queueDepth }, expect: 'ok' };
      case 1:
        return { options: { source: big, target: targetLoop, length, blockSize, queueDepth }, expect: 'ok' };
      case 2:
        return { options: { source: sourceLoop, target: fileTarget, length, blockSize, queueDepth, truncateTarget: true }, expect: 'ok' };
      default:
        return { options: { source: sourceLoop, target: targetLoop, maxLength: length, blockSize, queueDepth }, expect: 'ok' };
    }
  }

  async function run(i: number): Promise<Outcome> {
    const p = plan(i);
    const options: CopyOptions = p.cancel === 'before' ? { ...p.options, signal: AbortSignal.abort() } : p.options;
    const job = copy(options);
    if (p.cancel === 'running') job.cancel();
    let outcome: Outcome;
    try {
      const result = await job;
      expect(result.bytesCopied).toBeGreaterThan(0);
      outcome = 'ok';
    } catch (error) {
      if (error instanceof CopyAbortError) outcome = 'cancelled';
      else if (error instanceof DevmoveError) outcome = 'failed';
      else throw error;
    }
    if (p.expect === 'ok-or-cancelled') expect(['ok', 'cancelled'], `copy ${i}`).toContain(outcome);
    else expect(outcome, `copy ${i}: ${JSON.stringify(p.options)}`).toBe(p.expect);
    return outcome;
  }

  it(`${COPIES} copies (with failures and cancellations) leak no fd, io_uring instance, thread or memory`, async () => {
    const gc = collector();
    // Warm-up: every kind of copy at least once, so lazily created state
    // (the addon, libuv's pool, V8's compiled code) exists before measuring.
    const warmUp = [0, 1, 2, 3, 7, 19, 23, 31, 37, 43];
    for (let w = 0; w < WARM_UP; w++) await run(warmUp[w % warmUp.length] as number);

    const before = await sample(gc);
    const started = process.hrtime.bigint();
    const outcomes: Record<Outcome, number> = { ok: 0, failed: 0, cancelled: 0 };
    let peakIoUring = 0;
    let peakThreads = 0;
    for (let i = 0; i < COPIES; i++) {
      outcomes[await run(i)]++;
      if (i % 100 === 99) {
        peakIoUring = Math.max(peakIoUring, openFds().ioUring);
        peakThreads = Math.max(peakThreads, statusField('Threads'));
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const after = await sample(gc);

    const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;
    console.log(
      [
        `leak: ${COPIES} copies in ${seconds.toFixed(2)} s (${((seconds * 1000) / COPIES).toFixed(2)} ms each; ` +
          `${outcomes.ok} ok, ${outcomes.failed} failed, ${outcomes.cancelled} cancelled; gc ${gc ? 'available' : 'NOT available'})`,
        `  fds        ${before.fds} -> ${after.fds}`,
        `  io_uring   ${before.ioUring} -> ${after.ioUring} (sampled peak between copies ${peakIoUring})`,
        `  threads    ${before.threads} -> ${after.threads} (sampled peak between copies ${peakThreads})`,
        `  RSS        ${mib(before.rssBytes)} -> ${mib(after.rssBytes)} (${after.rssBytes >= before.rssBytes ? '+' : ''}${mib(after.rssBytes - before.rssBytes)})`,
        `  heap used  ${mib(before.heapUsedBytes)} -> ${mib(after.heapUsedBytes)}`,
      ].join('\n'),
    );

    // The mix really happened: 20 failures (4 kinds x 1000/50) and at least the
    // 20 cancellations-before-start.
    expect(outcomes.failed).toBe(4 * (COPIES / 50));
    expect(outcomes.cancelled).toBeGreaterThanOrEqual(COPIES / 50);
    expect(outcomes.ok).toBeGreaterThan(COPIES * 0.8);

    // Between copies only the process's own rings are open (none on Node 20; Node >= 22's libuv keeps some).
    expect(peakIoUring).toBe(before.ioUring);
    expect(after.fds, 'open descriptors').toBe(before.fds);
    expect(after.ioUring, 'io_uring instances').toBe(before.ioUring);
    expect(after.threads, 'threads').toBe(before.threads);
    // Under AddressSanitizer (npm run test:sanitize) freed memory is held in
    // ASan's quarantine on purpose, so RSS grows by design there; ASan's own
    // leak and use-after-free checks cover that build instead.
    const underAsan = (process.env.LD_PRELOAD ?? '').includes('libasan');
    if (!underAsan) expect(after.rssBytes - before.rssBytes, 'RSS growth').toBeLessThan(RSS_NOISE_BYTES);

    // The copies did what they said: the last successful loop-to-loop copy is on the target.
    const last = plan(COPIES - 1).options; // i % 4 === 3: sourceLoop -> targetLoop
    expect([last.source, last.target]).toEqual([sourceLoop, targetLoop]);
    const lastLength = Number(last.maxLength);
    expect(sha256Range(targetLoop, 0, lastLength)).toBe(sha256Range(sourceLoop, 0, lastLength));
  });
});
