// Holes of a sparse source file are never read (issue 14, item 1): the
// engine asks the source endpoint where its data is (SEEK_DATA/SEEK_HOLE on a
// regular file) and hands each hole to the zero-block policy without I/O.
// Invariants over seeded random layouts (data extents anywhere, at the start
// and at the end or not): only the data is read; the target holds the
// source's bytes; a file target the copy created keeps the holes (allocated
// bytes = the source's data), any other target gets zeros there — written,
// skipped or punched as --zero-blocks says — and a digest sees zeros.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/index';
import { attachLoop, detachAll, makeImage, sha256File, skipWithoutLoop, tempDir } from '../helpers/devices';
import { random } from '../helpers/random';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const haveB3sum = spawnSync('b3sum', ['--version']).status === 0;

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 1_000_000);

interface Layout {
  file: string;
  size: number;
  /** Bytes in data extents (page-aligned writes of random bytes: tmpfs allocates exactly those pages). */
  dataBytes: number;
}

/** A sparse file on tmpfs with seeded random data extents; extents may touch the start and the end. */
function sparseFile(dir: string, name: string, seed: number): Layout {
  const rnd = random(seed);
  const pages = (16 + Math.floor(rnd() * 48)) * (MiB / PAGE);
  const size = pages * PAGE;
  const used = new Uint8Array(pages);
  const extents: Array<[number, number]> = [];
  if (rnd() < 0.5) extents.push([0, 1 + Math.floor(rnd() * 64)]);
  if (rnd() < 0.5) extents.push([pages - 1 - Math.floor(rnd() * 64), pages]);
  for (let n = 1 + Math.floor(rnd() * 10); n > 0; n--) {
    const start = Math.floor(rnd() * pages);
    extents.push([start, Math.min(pages, start + 1 + Math.floor(rnd() * 800))]);
  }
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    const key = crypto.createHash('sha256').update(`${seed}:${name}`).digest().subarray(0, 16);
    for (const [first, end] of extents) {
      const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16, first & 0xff));
      fs.writeSync(fd, cipher.update(Buffer.alloc((end - first) * PAGE)), 0, (end - first) * PAGE, first * PAGE);
      used.fill(1, first, end);
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, size, dataBytes: used.reduce((s, u) => s + u, 0) * PAGE };
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** Sectors written to a block device so far (/sys/block/NAME/stat, field 7). */
function sectorsWritten(device: string): number {
  return Number(fs.readFileSync(`/sys/block/${path.basename(device)}/stat`, 'utf8').trim().split(/\s+/)[6]);
}

const seeds = [SEED, SEED + 1, SEED + 2, SEED + 3];
console.log(`holes.test seed ${SEED} (DEVMOVE_TEST_SEED replays it)`);

describe('holes of a sparse source file are never read', () => {
  afterAll(detachAll);

  it.each(seeds)('seed %i: a created file target reads only the data, keeps the holes and holds the same bytes', async (seed) => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', seed);
    const dst = path.join(dir, 'dst.img');
    const result = await copy({ source: src.file, target: dst });
    expect(result.bytesCopied).toBe(src.size);
    expect(result.bytesRead).toBe(src.dataBytes);
    expect(result.holes).toEqual({ bytes: src.size - src.dataBytes, note: 'SEEK_DATA/SEEK_HOLE' });
    expect(result.target.holesKept).toBe(true);
    expect(fs.statSync(dst).size).toBe(src.size);
    expect(sha256File(dst)).toBe(sha256File(src.file));
    expect(allocatedBytes(dst)).toBe(src.dataBytes);
  });

  it('an existing target the copy does not cut: holes become zeros over its old bytes, still unread', async () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 10);
    const dst = makeImage(dir, 'old.img', src.size, { pattern: 0xa5 });
    const result = await copy({ source: src.file, target: dst });
    expect(result.bytesRead).toBe(src.dataBytes);
    expect(result.target.holesKept).toBeUndefined();
    expect(sha256File(dst)).toBe(sha256File(src.file));
  });

  it("holes 'policy' with zero blocks 'write' allocates the whole target (dd's result) without reading holes; 'read' reads them", async () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 20);
    const policy = await copy({ source: src.file, target: path.join(dir, 'policy.img'), holes: 'policy' });
    expect(policy.bytesRead).toBe(src.dataBytes);
    expect(allocatedBytes(path.join(dir, 'policy.img'))).toBe(src.size);
    const read = await copy({ source: src.file, target: path.join(dir, 'read.img'), holes: 'read' });
    expect(read.bytesRead).toBe(src.size);
    expect(read.holes.bytes).toBe(0);
    for (const name of ['policy.img', 'read.img']) expect(sha256File(path.join(dir, name))).toBe(sha256File(src.file));
  });

  it('zero blocks skip/sparse/discard on an existing file: the holes are left, skipped or punched, never read', async () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 30);
    for (const zeroBlocks of ['skip', 'sparse', 'discard'] as const) {
      // skip and sparse trust the target to read zeros: give them an empty file of the size.
      const dst = makeImage(dir, `${zeroBlocks}.img`, src.size, zeroBlocks === 'discard' ? { pattern: 0xa5 } : 'zero');
      const result = await copy({ source: src.file, target: dst, zeroBlocks, holes: 'policy' });
      expect(result.bytesRead, zeroBlocks).toBe(src.dataBytes);
      expect(sha256File(dst), zeroBlocks).toBe(sha256File(src.file));
      expect(allocatedBytes(dst), zeroBlocks).toBe(src.dataBytes);
    }
  });

  it('a digest sees the holes as zeros (sha256; blake3 against b3sum)', async (ctx) => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 40);
    const sha = await copy({ source: src.file, target: path.join(dir, 'a.img'), hash: 'sha256' });
    expect(sha.bytesRead).toBe(src.dataBytes);
    expect(sha.hash?.hex).toBe(sha256File(src.file));
    if (!haveB3sum) ctx.skip();
    const b3 = await copy({ source: src.file, target: path.join(dir, 'b.img'), hash: 'blake3' });
    expect(b3.bytesRead).toBe(src.dataBytes);
    const oracle = spawnSync('b3sum', ['--no-names', src.file], { encoding: 'utf8' }).stdout.trim();
    expect(b3.hash?.hex).toBe(oracle);
  });

  it('a stream target (standard output) gets the holes as zeros', () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 50);
    const run = spawnSync('node', [CLI, `if=${src.file}`, 'status=none'], { maxBuffer: 128 * MiB });
    expect(run.status, run.stderr.toString()).toBe(0);
    expect(crypto.createHash('sha256').update(run.stdout).digest('hex')).toBe(sha256File(src.file));
  });

  it('the dd command line (which truncates its of=) keeps holes; conv=notrunc writes zeros', () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 60);
    const dst = makeImage(dir, 'dst.img', src.size, { pattern: 0xa5 });
    const cut = spawnSync('node', [CLI, `if=${src.file}`, `of=${dst}`, 'status=none']);
    expect(cut.status, cut.stderr.toString()).toBe(0);
    expect(allocatedBytes(dst)).toBe(src.dataBytes);
    expect(sha256File(dst)).toBe(sha256File(src.file));
    const other = makeImage(dir, 'other.img', src.size, { pattern: 0xa5 });
    const kept = spawnSync('node', [CLI, `if=${src.file}`, `of=${other}`, 'conv=notrunc', 'status=none']);
    expect(kept.status, kept.stderr.toString()).toBe(0);
    expect(sha256File(other)).toBe(sha256File(src.file));
  });

  it.skipIf(skipWithoutLoop)('onto a zeroed block device with --zero-blocks=skip: only the data is read and written', async () => {
    const dir = tempDir();
    const src = sparseFile(dir, 'src.img', SEED + 70);
    const device = attachLoop(makeImage(dir, 'dev.img', src.size, 'zero'));
    const before = sectorsWritten(device);
    const result = await copy({ source: src.file, target: device, zeroBlocks: 'skip', durability: 'none' });
    expect(result.bytesRead).toBe(src.dataBytes);
    expect(result.target.holesKept).toBeUndefined();
    // What reached the device: the data extents only (its own counters, not ours).
    expect((sectorsWritten(device) - before) * 512).toBe(src.dataBytes);
    expect(sha256File(device)).toBe(sha256File(src.file));
  });
});
