// Data identity on real loop devices and image files across block sizes,
// queue depths, lengths that are not a multiple of the block size, offsets,
// and every source/target kind combination — once per I/O driver (io_uring,
// and the worker threads used where io_uring is forbidden).
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, type CopyOptions } from '../../src/index';
import { attachLoop, detachAll, makeImage, readRange, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const KiB = 1024;

const DRIVERS = ['io_uring', 'threads'] as const;

describe.skipIf(skipWithoutLoop).each(DRIVERS)('copy() between loop devices (%s driver)', (ioEngine) => {
  const copyWith = (options: CopyOptions): ReturnType<typeof copy> => copy({ ioEngine, ...options });
  const uring = ioEngine === 'io_uring';
  let dir: string;
  let sourceDevice: string;
  let sourceImage: string;
  let targetDevice: string;
  let targetImage: string;
  const SOURCE_BYTES = 24 * MiB;

  beforeAll(() => {
    dir = tempDir();
    sourceImage = makeImage(dir, 'source.img', SOURCE_BYTES);
    targetImage = makeImage(dir, 'target.img', SOURCE_BYTES, 'zero');
    sourceDevice = attachLoop(sourceImage);
    targetDevice = attachLoop(targetImage);
  });
  afterAll(detachAll);

  const blockSizes = [4 * KiB, 64 * KiB, 512 * KiB, 8 * MiB];
  const queueDepths = [1, 3, 8, 64];
  // 9 MiB + 12 KiB: a whole number of 512-byte sectors, not of any block size above 4 KiB.
  const LENGTH = 9 * MiB + 12 * KiB;
  const cases = blockSizes.flatMap((bs) => queueDepths.map((qd) => [bs, qd] as const));

  it.each(cases)(`bs=%i qd=%i copies ${LENGTH} bytes identically`, async (blockSize, queueDepth) => {
    // Different source and target offsets per case so stale data cannot pass for a copy.
    const sourceOffset = (blockSize % (7 * 4096)) + 4096;
    const targetOffset = queueDepth * 4096;
    fs.writeFileSync(targetImage, Buffer.alloc(0)); // keep size, clear content below
    fs.truncateSync(targetImage, SOURCE_BYTES);
    const result = await copyWith({
      source: sourceDevice,
      target: targetDevice,
      sourceOffset,
      targetOffset,
      length: LENGTH,
      blockSize,
      queueDepth,
    });
    expect(result.bytesCopied).toBe(LENGTH);
    expect(result.source.kind).toBe('block');
    expect(result.target.kind).toBe('block');
    expect(result.source.direct).toBe(true);
    expect(result.target.direct).toBe(true);
    expect(result.io.bufferedIos).toBe(0);
    expect(result.durability).toBe('fdatasync');
    expect(result.ioEngine).toBe(ioEngine);
    expect(sha256Range(targetDevice, targetOffset, LENGTH)).toBe(sha256Range(sourceDevice, sourceOffset, LENGTH));
    // Nothing outside the range was touched.
    expect(readRange(targetDevice, 0, targetOffset).every((b) => b === 0)).toBe(true);
    expect(readRange(targetDevice, targetOffset + LENGTH, 64 * KiB).every((b) => b === 0)).toBe(true);
  });

  it('copies a whole device by default and reports the ring it used', async () => {
    const result = await copyWith({ source: sourceDevice, target: targetDevice });
    expect(result.bytesCopied).toBe(SOURCE_BYTES);
    expect(result.blockSize).toBe(512 * KiB);
    expect(result.io.reads).toBe(SOURCE_BYTES / (512 * KiB));
    expect(result.io.writes).toBe(SOURCE_BYTES / (512 * KiB));
    // Registered buffers and files are io_uring's; the threads driver says it does not use them.
    expect(result.engine.fixedBuffers).toBe(uring);
    expect(result.engine.fixedFiles).toBe(uring);
    if (!uring) expect(result.engine.fixedBuffersNote).toBe('not used by the threads I/O driver');
    expect(sha256Range(targetDevice, 0, SOURCE_BYTES)).toBe(sha256Range(sourceDevice, 0, SOURCE_BYTES));
  });

  it('copies with fixed buffers and fixed files switched off (plain READ/WRITE)', async () => {
    fs.truncateSync(targetImage, 0);
    fs.truncateSync(targetImage, SOURCE_BYTES);
    const result = await copyWith({
      source: sourceDevice,
      target: targetDevice,
      length: 5 * MiB,
      engine: { fixedBuffers: false, fixedFiles: false },
    });
    expect(result.engine.fixedBuffers).toBe(false);
    expect(result.engine.fixedBuffersNote).toBe('disabled by option');
    expect(sha256Range(targetDevice, 0, 5 * MiB)).toBe(sha256Range(sourceDevice, 0, 5 * MiB));
  });

  it.each([
    ['unlinked reads and writes', { linkReadWrite: false }],
    ['one io_uring_enter per request', { batchSubmissions: false }],
    ['SQPOLL', { sqpoll: true }],
    ['everything off', { fixedBuffers: false, fixedFiles: false, linkReadWrite: false, batchSubmissions: false }],
  ] as const)('engine ablation mode: %s copies identically', async (_name, engine) => {
    fs.truncateSync(targetImage, 0);
    fs.truncateSync(targetImage, SOURCE_BYTES);
    const length = 7 * MiB + 4096;
    const result = await copyWith({ source: sourceDevice, target: targetDevice, length, sourceOffset: 8192, blockSize: 256 * KiB, engine });
    expect(result.bytesCopied).toBe(length);
    if (uring) {
      for (const [key, value] of Object.entries(engine)) expect(result.engine[key as keyof typeof engine]).toBe(value);
      // Unbatched: every write goes in by its own io_uring_enter (a linked read travels with its write).
      if ('batchSubmissions' in engine) expect(result.io.submitCalls).toBeGreaterThanOrEqual(result.io.writes);
    } else {
      expect(result.io.submitCalls).toBe(0);
    }
    expect(sha256Range(targetDevice, 0, length)).toBe(sha256Range(sourceDevice, 8192, length));
  });

  it('copies a length that is not a whole sector through the buffered descriptor for the tail', async () => {
    fs.truncateSync(targetImage, 0);
    fs.truncateSync(targetImage, SOURCE_BYTES);
    const length = 3 * MiB + 1000;
    const result = await copyWith({ source: sourceDevice, target: targetDevice, length, sourceOffset: 512 });
    expect(result.bytesCopied).toBe(length);
    expect(result.io.bufferedIos).toBeGreaterThan(0);
    expect(sha256Range(targetDevice, 0, length)).toBe(sha256Range(sourceDevice, 512, length));
    expect(readRange(targetDevice, length, 24).every((b) => b === 0)).toBe(true);
  });

  it('uses the page cache on one side only when its offset is unaligned (direct: auto)', async () => {
    const result = await copyWith({ source: sourceDevice, target: targetDevice, sourceOffset: 3, length: MiB });
    expect(result.io.bufferedIos).toBe(result.io.reads); // every read unaligned, every write aligned
    expect(sha256Range(targetDevice, 0, MiB)).toBe(sha256Range(sourceDevice, 3, MiB));
  });

  it('stops at the end of the source with maxLength (dd count=) and fails with an exact length', async () => {
    const result = await copyWith({ source: sourceDevice, target: targetDevice, sourceOffset: SOURCE_BYTES - MiB, maxLength: 4 * MiB });
    expect(result.bytesCopied).toBe(MiB);
    await expect(copyWith({ source: sourceDevice, target: targetDevice, sourceOffset: SOURCE_BYTES - MiB, length: 4 * MiB })).rejects.toMatchObject({
      code: 'EINVAL',
      syscall: 'read',
      path: sourceDevice,
    });
  });
});

describe.skipIf(skipWithoutLoop).each(DRIVERS)('copy() between image files and devices (%s driver)', (ioEngine) => {
  const copyWith = (options: CopyOptions): ReturnType<typeof copy> => copy({ ioEngine, ...options });
  afterAll(detachAll);

  it.each([
    ['tmpfs', '/dev/shm'],
    ['ext4 root disk', '/var/tmp'],
  ])('file → device → file on %s, with a length that is not block-aligned', async (_name, base) => {
    const dir = tempDir(base);
    const bytes = 3 * MiB + 777;
    const sourceFile = makeImage(dir, 'odd.img', bytes);
    const deviceImage = makeImage(dir, 'dev.img', 4 * MiB, 'zero');
    const device = attachLoop(deviceImage);

    const toDevice = await copyWith({ source: sourceFile, target: device });
    expect(toDevice.bytesCopied).toBe(bytes);
    expect(toDevice.source.kind).toBe('file');
    expect(toDevice.target.kind).toBe('block');
    expect(sha256Range(device, 0, bytes)).toBe(sha256Range(sourceFile, 0, bytes));

    const back = path.join(dir, 'back.img');
    const toFile = await copyWith({ source: device, target: back, length: bytes });
    expect(toFile.target.created).toBe(true);
    expect(fs.statSync(back).size).toBe(bytes);
    expect(sha256Range(back, 0, bytes)).toBe(sha256Range(sourceFile, 0, bytes));
  });

  it('file → file creates the target, extends it at an offset and truncates only when asked', async () => {
    const dir = tempDir('/var/tmp');
    const sourceFile = makeImage(dir, 's.img', 2 * MiB + 5);
    const target = path.join(dir, 't.img');
    fs.writeFileSync(target, Buffer.alloc(8 * MiB, 0xaa));

    await copyWith({ source: sourceFile, target, targetOffset: MiB });
    expect(fs.statSync(target).size).toBe(8 * MiB); // not truncated by default
    expect(readRange(target, 0, MiB).every((b) => b === 0xaa)).toBe(true);
    expect(sha256Range(target, MiB, 2 * MiB + 5)).toBe(sha256Range(sourceFile, 0, 2 * MiB + 5));
    expect(readRange(target, 3 * MiB + 5, 100).every((b) => b === 0xaa)).toBe(true);

    await copyWith({ source: sourceFile, target, targetOffset: 4096, truncateTarget: true });
    expect(fs.statSync(target).size).toBe(4096 + 2 * MiB + 5);
    expect(sha256Range(target, 4096, 2 * MiB + 5)).toBe(sha256Range(sourceFile, 0, 2 * MiB + 5));
  });

  it('linked chains survive short reads: an unaligned file tail breaks the link and the write is resubmitted', async () => {
    const dir = tempDir('/var/tmp');
    // One buffer: its write is the only one. (Behind O_DIRECT writes still in
    // flight, a tail written through the page cache waits for them and is not
    // linked to its read: native/write_mode_gate.h.)
    const bytes = 256 * 1024 + 333;
    const sourceFile = makeImage(dir, 'linked.img', bytes);
    const target = path.join(dir, 'linked-out.img');
    const result = await copyWith({ source: sourceFile, target, blockSize: MiB, engine: { linkReadWrite: true } });
    expect(result.engine.linkReadWrite).toBe(true);
    expect(result.io.brokenLinks).toBe(1); // the O_DIRECT tail read is short at EOF
    expect(fs.statSync(target).size).toBe(bytes);
    expect(sha256Range(target, 0, bytes)).toBe(sha256Range(sourceFile, 0, bytes));
  });

  it('copies an empty range and an empty file', async () => {
    const dir = tempDir();
    const empty = makeImage(dir, 'empty.img', 0);
    const target = path.join(dir, 'out.img');
    const result = await copyWith({ source: empty, target });
    expect(result.bytesCopied).toBe(0);
    expect(fs.statSync(target).size).toBe(0);
  });

  it('reports direct I/O per side and honours direct: never', async () => {
    const dir = tempDir('/var/tmp');
    const sourceFile = makeImage(dir, 's.img', MiB);
    const result = await copyWith({ source: sourceFile, target: path.join(dir, 'a.img'), direct: 'never' });
    expect(result.source.direct).toBe(false);
    expect(result.source.directNote).toBe('direct I/O not requested');
    expect(result.io.bufferedIos).toBe(result.io.reads + result.io.writes);
    expect(sha256Range(path.join(dir, 'a.img'), 0, MiB)).toBe(sha256Range(sourceFile, 0, MiB));
  });
});
