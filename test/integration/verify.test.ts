// Verify with one read (issue 14, item 4): while copying, devmove keeps a
// digest per block of what it read; --verify reads only the targets and
// compares. A target that changes after the copy wrote it is found, with its
// first differing byte, on real loop devices and a real FUSE device; the
// source is read once (counted by the kernel, /sys/block/*/stat); holes, zero
// blocks, fan-out, --only-changed and the digests' spill file are covered.
// --verify=strict still reads the source again (reliability.test.ts: a
// source changed during the copy).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { copy, type CopyJob, type CopyResult } from '../../src/index';
import { attachLoop, detachAll, makeImage, readRange, skipWithoutLoop, tempDir } from '../helpers/devices';
import { CLI } from '../helpers/cli';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';
import { rejection, sectorsRead } from '../helpers/outcome';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Flips one byte of a file in place. */
function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const old = Buffer.alloc(1);
    fs.readSync(fd, old, 0, 1, offset);
    fs.writeSync(fd, Buffer.from([old[0] ^ 0x5a]), 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Resolves once the job has written `bytes` to every target (it goes on, held back by the slow range). */
function written(job: CopyJob, bytes: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const check = (): void => {
      if (job.progress.bytesDone >= bytes) resolve();
      else setTimeout(check, 10);
    };
    check();
  });
}

/** A source that ends in a slow range: the copy is held there while the test changes what it wrote. */
async function slowEndedSource(): Promise<FaultyDevice> {
  return FaultyDevice.create({ sizeBytes: 4 * MiB, slow: [{ offset: 3 * MiB, length: 1 * MiB, delayMs: 150 }] });
}

function withEnv(vars: Record<string, string>, body: () => Promise<void>): Promise<void> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return body().finally(() => {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe.skipIf(skipWithoutFuse || skipWithoutLoop)('verify with one read: a target changed after the copy', () => {
  afterAll(() => {
    FaultyDevice.destroyAll();
    detachAll();
  });

  it('is found with its first differing byte, and only that buffer of the source is read again', async () => {
    const src = await slowEndedSource();
    const dir = tempDir();
    const dstImage = makeImage(dir, 'dst.img', 4 * MiB, 'zero');
    const dst = attachLoop(dstImage);
    const job = copy({ source: src.device, target: dst, verify: true, queueDepth: 2, blockSize: '256K' });
    await written(job, 1 * MiB);
    const changed = 12345;
    flipByte(dstImage, changed);  // the loop device reads its backing file: the copy's write is there already
    const error = await rejection(job);
    expect(error.code).toBe('EILSEQ');
    expect(error.syscall).toBe('verify');
    expect(error.path).toBe(dst);
    expect(error.offset).toBe(changed);
    expect(error.message).toMatch(/the target differs from the source: first at byte 12345 of the target, 1 block\(s\) of 512 bytes differ/);
    expect(error.result?.verify).toMatchObject({
      mode: 'digest', digest: 'xxh3-128', digestBlockBytes: 64 * KiB, mismatchedBlocks: 1, firstMismatchOffset: changed,
      bytesCompared: 4 * MiB, sourceBytesRead: 256 * KiB,
    });
  });

  it('fan-out: the target that changed is named, the others pass', async () => {
    const src = await slowEndedSource();
    const dir = tempDir();
    const images = ['a.img', 'b.img', 'c.img'].map((n) => makeImage(dir, n, 4 * MiB, 'zero'));
    const targets = images.map((i) => attachLoop(i));
    const job = copy({ source: src.device, targets, verify: true, queueDepth: 2, blockSize: '256K' });
    await written(job, 2 * MiB);
    const changed = 1 * MiB + 777;
    flipByte(images[1], changed);
    const error = await rejection(job);
    expect(error.code).toBe('EILSEQ');
    expect(error.path).toBe(targets[1]);
    expect(error.offset).toBe(changed);
    expect(error.result?.verify).toMatchObject({ mode: 'digest', mismatchedBlocks: 1, firstMismatchOffset: changed, bytesCompared: 3 * 4 * MiB });
  });
});

describe.skipIf(skipWithoutLoop)('verify with one read: what is read, and what is compared', () => {
  afterAll(() => detachAll());

  it('reads the source once (strict mode twice), counted by the kernel', async () => {
    const dir = tempDir();
    const size = 32 * MiB;
    const src = attachLoop(makeImage(dir, 'src.img', size));
    const dst = attachLoop(makeImage(dir, 'dst.img', size, 'zero'));
    const reads: Record<string, number> = {};
    for (const verify of [true, 'strict'] as const) {
      const before = sectorsRead(src);
      const result: CopyResult = await copy({ source: src, target: dst, verify });
      reads[String(verify)] = (sectorsRead(src) - before) * 512;
      expect(result.verify).toMatchObject({ bytesCompared: size, mismatchedBlocks: 0, mode: verify === true ? 'digest' : 'strict' });
      expect(result.verify?.sourceBytesRead).toBe(verify === true ? 0 : size);
    }
    expect(reads.true).toBeGreaterThanOrEqual(size);
    expect(reads.true).toBeLessThan(size + MiB);
    expect(reads.strict).toBeGreaterThanOrEqual(2 * size);
  });

  it.each(['write', 'skip'] as const)('a sparse source: holes are verified as zeros without reading them (zero blocks %s)', async (zeroBlocks) => {
    const dir = tempDir();
    const size = 16 * MiB;
    // Data at 1-3 MiB and 9-10 MiB; holes elsewhere. The target holds other bytes everywhere.
    const source = path.join(dir, 'sparse.img');
    const fd = fs.openSync(source, 'w');
    fs.ftruncateSync(fd, size);
    const data = fs.readFileSync(makeImage(dir, 'data.img', 3 * MiB));
    fs.writeSync(fd, data, 0, 2 * MiB, 1 * MiB);
    fs.writeSync(fd, data, 2 * MiB, 1 * MiB, 9 * MiB);
    fs.closeSync(fd);
    const dst = attachLoop(makeImage(dir, 'dst.img', size));
    const job = copy({ source, target: dst, verify: true, zeroBlocks });
    if (zeroBlocks === 'write') {
      const result = await job;
      expect(result.holes?.bytes).toBe(13 * MiB);
      expect(result.verify).toMatchObject({ mode: 'digest', bytesCompared: size, mismatchedBlocks: 0, sourceBytesRead: 0 });
      expect(readRange(dst, 0, size).equals(fs.readFileSync(source))).toBe(true);
      return;
    }
    // skip: the holes were never written, so the target's old bytes are still there, and verify says so
    // at the first byte of the first hole that differs from zero.
    const error = await rejection(job);
    expect(error.code).toBe('EILSEQ');
    const old = readRange(dst, 0, MiB);
    expect(error.offset).toBe(old.findIndex((b) => b !== 0));
    expect(error.result?.verify).toMatchObject({ mode: 'digest', mismatchedBlocks: expect.any(Number) });
  });

  it('--only-changed then verify: the second pass writes the changed block and verifies the whole range with one read', async () => {
    const dir = tempDir();
    const size = 8 * MiB;
    const srcImage = makeImage(dir, 'src.img', size);
    const src = attachLoop(srcImage);
    const dst = attachLoop(makeImage(dir, 'dst.img', size, 'zero'));
    await copy({ source: src, target: dst });
    flipByte(srcImage, 5 * MiB + 100);
    const before = sectorsRead(src);
    const result = await copy({ source: src, target: dst, onlyChanged: true, verify: true });
    expect(sectorsRead(src) - before).toBeLessThan((size + MiB) / 512);
    expect(result.changed).toEqual({ bytesCompared: size, bytesWritten: 4096 });
    expect(result.verify).toMatchObject({ mode: 'digest', bytesCompared: size, mismatchedBlocks: 0, sourceBytesRead: 0 });
    expect(readRange(dst, 0, size).equals(fs.readFileSync(srcImage))).toBe(true);
  });

  it('an offset and a short last block: digest blocks count from the copy\'s start, nothing is read again', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 4 * MiB);
    const result = await copy({ source: src, target: path.join(dir, 'dst.img'), sourceOffset: 4096, length: 3 * MiB, verify: true, blockSize: '256K' });
    // Positions count from the copy's start, so the digest blocks line up with its buffers: nothing read again.
    expect(result.verify).toMatchObject({ mode: 'digest', bytesCompared: 3 * MiB, sourceBytesRead: 0 });
    const odd = await copy({ source: src, target: path.join(dir, 'dst2.img'), length: 3 * MiB + 1000, verify: true, blockSize: '256K' });
    // The last block is short and ends the copy: it has a digest too.
    expect(odd.verify).toMatchObject({ mode: 'digest', bytesCompared: 3 * MiB + 1000, sourceBytesRead: 0 });
  });

  it('a domain whose ranges start and end inside digest blocks: only those blocks are compared with the source', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 4 * MiB);
    const domain = path.join(dir, 'domain.map');
    const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
    const start = 300 * KiB;
    const length = 2 * MiB;
    fs.writeFileSync(domain, `# Mapfile\n${hex(0)}  ?  1\n${hex(0)}  ${hex(start)}  ?\n${hex(start)}  ${hex(length)}  +\n${hex(start + length)}  ${hex(4 * MiB - start - length)}  ?\n`);
    const dst = path.join(dir, 'dst.img');
    const result = await copy({ source: src, target: dst, domainMapfile: domain, verify: true, blockSize: '256K' });
    expect(result.verify).toMatchObject({ mode: 'digest', bytesCompared: length, mismatchedBlocks: 0 });
    // The copy cuts the range into 256 KiB buffers from its start (300 KiB, off the 64 KiB digest grid):
    // the digest block at each of the 9 buffer edges is split between two buffers and has no digest, so
    // the verify pass reads the source for those (at most 64 KiB each) and for nothing else.
    expect(result.verify?.digestBlockBytes).toBe(64 * KiB);
    expect(result.verify?.sourceBytesRead).toBeGreaterThan(0);
    expect(result.verify?.sourceBytesRead).toBeLessThanOrEqual(9 * 64 * KiB);
    expect(readRange(dst, start, length).equals(readRange(src, start, length))).toBe(true);
  });

  it('an I/O size below 4 KiB: verify is strict, and says so', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 1 * MiB);
    const result = await copy({ source: src, target: path.join(dir, 'dst.img'), verify: true, blockSize: 1000 });
    expect(result.verify).toMatchObject({ mode: 'strict', bytesCompared: 1 * MiB, sourceBytesRead: 1 * MiB });
  });
});

describe.skipIf(skipWithoutLoop)('verify with one read: digests beyond the memory limit spill to a file', () => {
  afterAll(() => detachAll());
  afterEach(() => {
    delete process.env.DEVMOVE_VERIFY_DIGEST_MEMORY;
  });

  // 48 MiB in 4 KiB digest blocks: 12288 digests, 3 pages of 64 KiB; the limit keeps 2 in memory.
  it.each(['xxh3-128', 'blake3-128'] as const)('%s: a good copy passes and a block in a spilled page that differs is found', async (digest) => {
    const dir = tempDir();
    const size = 48 * MiB;
    const srcImage = makeImage(dir, 'src.img', size);
    // Zeros in the source at a block of the first page (spilled first); the target holds other bytes
    // there and zeroBlocks 'skip' leaves them: the target differs from what the copy read.
    const zeroAt = 100 * 4096;
    const fd = fs.openSync(srcImage, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, zeroAt);
    fs.closeSync(fd);
    const src = attachLoop(srcImage);
    const dst = attachLoop(makeImage(dir, 'dst.img', size, { pattern: 0xee }));
    await withEnv({ DEVMOVE_VERIFY_DIGEST_MEMORY: '1', DEVMOVE_VERIFY_DIGEST: digest === 'blake3-128' ? 'blake3' : 'xxh3' }, async () => {
      const good: CopyResult = await copy({ source: src, target: dst, verify: true, blockSize: '4K' });
      expect(good.verify).toMatchObject({ mode: 'digest', digest, digestBlockBytes: 4096, mismatchedBlocks: 0, sourceBytesRead: 0 });
      expect(good.verify?.digestPagesSpilled).toBeGreaterThanOrEqual(2);
      const refill = attachLoop(makeImage(dir, 'dst2.img', size, { pattern: 0xee }));
      const error = await rejection(copy({ source: src, target: refill, verify: true, blockSize: '4K', zeroBlocks: 'skip' }));
      expect(error.code).toBe('EILSEQ');
      expect(error.offset).toBe(zeroAt);
      expect(error.result?.verify).toMatchObject({ mode: 'digest', digest, mismatchedBlocks: 8, firstMismatchOffset: zeroAt, sourceBytesRead: 4096 });
      expect(error.result?.verify?.digestPagesSpilled).toBeGreaterThanOrEqual(2);
    });
  });
});

// --verify=behind: each range is read back from the targets as soon as every target has it, while the
// copy goes on; the pass after the copy reads only what that could not confirm. What must never happen:
// a range confirmed behind whose read-back differs from what the copy read or could not be read (the
// verdict and its first differing byte or read error are the after-copy pass's, exactly as without
// behind), and a target read twice where everything matched.
describe.skipIf(skipWithoutLoop)('verify behind the copy', () => {
  afterAll(() => {
    if (!skipWithoutFuse) FaultyDevice.destroyAll();
    detachAll();
  });

  it('confirms every range while copying: source and target each read once, counted by the kernel', async () => {
    const dir = tempDir();
    const size = 32 * MiB;
    const src = attachLoop(makeImage(dir, 'src.img', size));
    const targets = [attachLoop(makeImage(dir, 'a.img', size, 'zero')), attachLoop(makeImage(dir, 'b.img', size, 'zero'))];
    const before = [src, ...targets].map(sectorsRead);
    const result = await copy({ source: src, targets, verify: 'behind' });
    const read = [src, ...targets].map((d, i) => (sectorsRead(d) - before[i]) * 512);
    expect(result.verify).toMatchObject({
      mode: 'digest', bytesCompared: 2 * size, behindBytes: 2 * size, mismatchedBlocks: 0, sourceBytesRead: 0,
    });
    for (const bytes of read) {
      expect(bytes).toBeGreaterThanOrEqual(size);
      expect(bytes).toBeLessThan(size + MiB);
    }
    for (const t of targets) expect(readRange(t, 0, size).equals(readRange(src, 0, size))).toBe(true);
  });

  it.skipIf(skipWithoutFuse)('a target that returns other bytes than were written: named at its first differing byte, that buffer left to the pass after the copy', async () => {
    const size = 4 * MiB;
    const dir = tempDir();
    const src = attachLoop(makeImage(dir, 'src.img', size));
    const good = attachLoop(makeImage(dir, 'good.img', size, 'zero'));
    const corrupt = 1 * MiB + 777;
    const bad = await FaultyDevice.create({ sizeBytes: size, fill: 'zero', corruptReads: [[corrupt, 3]] });
    const outcomes = [];
    for (const verify of ['behind', true] as const) {
      const error = await rejection(copy({ source: src, targets: [good, bad.device], verify, blockSize: '256K' }));
      outcomes.push(error);
      expect(error.code).toBe('EILSEQ');
      expect(error.path).toBe(bad.device);
      expect(error.offset).toBe(corrupt);
      expect(error.result?.verify).toMatchObject({ mode: 'digest', mismatchedBlocks: 1, firstMismatchOffset: corrupt, bytesCompared: 2 * size });
    }
    // Behind the copy: everything but the 256 KiB read back from the bad target with the bad bytes,
    // which the pass after the copy compares again on every target.
    expect(outcomes[0].result?.verify?.behindBytes).toBe(2 * size - 2 * 256 * KiB);
    expect(outcomes[1].result?.verify?.behindBytes).toBeUndefined();
    expect(bad.stats().corruptReads).toBeGreaterThanOrEqual(3);  // behind, the pass after it, and its twin without behind
  });

  it.skipIf(skipWithoutFuse)('a target read error: behind the copy it is passed over, and the pass after the copy reports it as before', async () => {
    const size = 4 * MiB;
    const dir = tempDir();
    const src = attachLoop(makeImage(dir, 'src.img', size));
    const unreadable = 2 * MiB;
    const bad = await FaultyDevice.create({ sizeBytes: size, fill: 'zero', readErrors: [[unreadable, 4096]] });
    const errors = [];
    for (const verify of ['behind', true] as const) errors.push(await rejection(copy({ source: src, target: bad.device, verify, blockSize: '256K' })));
    for (const error of errors) {
      expect(error).toMatchObject({ code: 'EIO', syscall: 'read', path: bad.device });
      expect(error.offset).toBeGreaterThanOrEqual(unreadable - 256 * KiB);
      expect(error.offset).toBeLessThanOrEqual(unreadable);
      expect(error.message).toMatch(/while verifying/);
    }
    expect(errors[0].offset).toBe(errors[1].offset);
    expect(bad.stats().readErrors).toBeGreaterThanOrEqual(3);
  });

  it('a sparse source onto a target with other bytes, zero blocks skip: the holes left unwritten differ, found at the first such byte', async () => {
    const dir = tempDir();
    const size = 16 * MiB;
    const source = path.join(dir, 'sparse.img');
    const fd = fs.openSync(source, 'w');
    fs.ftruncateSync(fd, size);
    fs.writeSync(fd, fs.readFileSync(makeImage(dir, 'data.img', 2 * MiB)), 0, 2 * MiB, 4 * MiB);
    fs.closeSync(fd);
    const dst = attachLoop(makeImage(dir, 'dst.img', size));
    const error = await rejection(copy({ source, target: dst, verify: 'behind', zeroBlocks: 'skip' }));
    expect(error.code).toBe('EILSEQ');
    const old = readRange(dst, 0, MiB);
    expect(error.offset).toBe(old.findIndex((b) => b !== 0));
    // The data range was written and matched behind the copy; the holes were not.
    expect(error.result?.verify?.behindBytes).toBe(2 * MiB);
  });
});

/** Threads of process `pid` named as devmove's hash pool names its workers (native/hash_pool.h). */
function hashPoolThreads(pid: number): number {
  let n = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`, { withFileTypes: false }) as string[]) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim() === 'devmove-hash') n++;
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return n;
}

// --hash and verify with one read both hash off the I/O thread, on one pool
// the engine owns (review 22): a 2-CPU machine runs 2 hashing threads, not 4.
// The threads are counted in the CLI's process at each progress line of a
// rate-held copy, while the pool must exist; the digest is sha256sum's and
// the verify pass compares every byte against the copy's block digests.
describe('--hash and --verify: one hash pool, both digests right', () => {
  it.each([{ driver: 'io_uring' }, { driver: 'threads' }])('$driver driver', async ({ driver }) => {
    const dir = tempDir();
    const size = 16 * MiB;
    const srcImage = makeImage(dir, 'src.img', size);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DEVMOVE_HASH_THREADS;
    if (driver === 'threads') env.DEVMOVE_IO_ENGINE = 'threads';
    else delete env.DEVMOVE_IO_ENGINE;
    const args = [CLI, `if=${srcImage}`, `of=${path.join(dir, 'dst.img')}`, '--hash=sha256', '--verify', '--json', 'bs=64K', '--rate=4M'];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const counts: number[] = [];
    const lines: string[] = [];
    let stderr = '';
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const line of complete.filter(Boolean)) {
        lines.push(line);
        const event = JSON.parse(line) as { type: string; phase?: string; bytesDone?: number };
        // The rate holds the copy at least 2 s past this line: the pool is there.
        if (event.type === 'progress' && event.phase === 'copy' && (event.bytesDone ?? size) <= size / 2) counts.push(hashPoolThreads(child.pid!));
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const result = JSON.parse(lines[lines.length - 1]) as CopyResult & { type: string };
    expect(result.type).toBe('result');
    expect(result.ioEngine).toBe(driver);
    const sha256sum = spawnSync('sha256sum', [srcImage]).stdout.toString().split(' ')[0];
    expect(result.hash).toMatchObject({ algorithm: 'sha256', hex: sha256sum, threads: os.availableParallelism() });
    expect(result.verify).toMatchObject({ mode: 'digest', bytesCompared: size, mismatchedBlocks: 0, sourceBytesRead: 0 });
    expect(counts.length).toBeGreaterThan(0);
    expect(Math.max(...counts)).toBe(os.availableParallelism());
  });
});
