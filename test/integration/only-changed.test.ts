// --only-changed (issue 14, item 3): each buffer's range is read back from
// the targets in the same pipeline as the source's read, compared in 4 KiB
// blocks, and only the blocks that differ are written. The second pass of a
// migration on real loop devices: after a seeded change of ~1 % of the
// source's blocks, what reached each device (its own /sys/block/NAME/stat
// sectors written, not devmove's counters) is exactly the changed blocks,
// and the device holds the source's bytes. Also with fan-out (each target
// gets what differs on it), a holey source, a rate cap, a mapfile resumed
// after a cancel, and the refusals (a pipe target, a file to be truncated).
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/index';
import { attachLoop, detachAll, makeImage, readRange, sha256File, skipWithoutLoop, tempDir } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';
import { skipWithoutNbd, startNbdkit, stopAllNbd } from '../helpers/nbd';
import { random } from '../helpers/random';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 1_000_000);
console.log(`only-changed.test seed ${SEED} (DEVMOVE_TEST_SEED replays it)`);

/** Sectors written to a block device so far (/sys/block/NAME/stat, field 7). */
function sectorsWritten(device: string): number {
  return Number(fs.readFileSync(`/sys/block/${path.basename(device)}/stat`, 'utf8').trim().split(/\s+/)[6]);
}

/**
 * Changes `fraction` of the file's 4 KiB blocks (seeded positions): each gets a few random bytes
 * somewhere inside, or — one in eight — becomes all zeros. Returns the changed block numbers.
 */
function changeBlocks(file: string, fraction: number, seed: number): Set<number> {
  const rnd = random(seed);
  const blocks = Math.floor(fs.statSync(file).size / BLOCK);
  const changed = new Set<number>();
  const want = Math.max(1, Math.round(blocks * fraction));
  const fd = fs.openSync(file, 'r+');
  try {
    while (changed.size < want) {
      const b = Math.floor(rnd() * blocks);
      if (changed.has(b)) continue;
      const old = Buffer.alloc(BLOCK);
      fs.readSync(fd, old, 0, BLOCK, b * BLOCK);
      const next = Buffer.from(old);
      if (rnd() < 0.125) {
        next.fill(0);
      } else {
        const at = Math.floor(rnd() * (BLOCK - 16));
        crypto.randomFillSync(next, at, 1 + Math.floor(rnd() * 15));
      }
      if (next.equals(old)) continue; // zeros over zeros, or the same random byte: not a change
      fs.writeSync(fd, next, 0, BLOCK, b * BLOCK);
      changed.add(b);
    }
  } finally {
    fs.closeSync(fd);
  }
  return changed;
}

/** A file of `size` bytes: seeded random data with a few holes (never written: tmpfs keeps them). */
function holeySource(dir: string, name: string, size: number, seed: number): string {
  const file = path.join(dir, name);
  const rnd = random(seed);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    const chunk = 256 * KiB;
    const key = crypto.createHash('sha256').update(`${seed}:${name}`).digest().subarray(0, 16);
    for (let at = 0; at < size; at += chunk) {
      if (rnd() < 0.3) continue; // a hole
      const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16, (at / chunk) & 0xff));
      fs.writeSync(fd, cipher.update(Buffer.alloc(chunk)), 0, chunk, at);
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

describe('--only-changed writes only the blocks that differ', () => {
  afterAll(async () => {
    await stopAllNbd();
    detachAll();
  });

  it.skipIf(skipWithoutLoop)('second pass onto a loop device after changing 1 % of the blocks: the device gets exactly those blocks', async () => {
    const dir = tempDir();
    const size = 64 * MiB;
    const src = holeySource(dir, 'src.img', size, SEED);
    const device = attachLoop(makeImage(dir, 'dev.img', size, { pattern: 0x5a }));
    const first = await copy({ source: src, target: device });
    expect(sha256File(device)).toBe(sha256File(src));
    expect(first.changed).toBeUndefined();

    const changed = changeBlocks(src, 0.01, SEED + 1);
    const before = sectorsWritten(device);
    const second = await copy({ source: src, target: device, onlyChanged: true });
    const written = (sectorsWritten(device) - before) * 512;
    expect(written).toBe(changed.size * BLOCK);
    expect(second.changed).toEqual({ bytesCompared: size, bytesWritten: changed.size * BLOCK });
    expect(second.target.changed).toEqual(second.changed);
    expect(second.bytesCopied).toBe(size);
    expect(second.io.targetReads).toBeGreaterThan(0);
    expect(sha256File(device)).toBe(sha256File(src));

    // A third pass over an identical target writes nothing at all.
    const again = sectorsWritten(device);
    const third = await copy({ source: src, target: device, onlyChanged: true });
    expect(third.changed).toEqual({ bytesCompared: size, bytesWritten: 0 });
    expect(sectorsWritten(device)).toBe(again);
  });

  it.skipIf(skipWithoutLoop)('fan-out: each of two devices gets the blocks that differ on it, with a rate cap', async () => {
    const dir = tempDir();
    const size = 16 * MiB;
    const src = makeImage(dir, 'src.img', size, 'random', `fan-${SEED}`);
    const a = attachLoop(makeImage(dir, 'a.img', size, 'zero'));
    const b = attachLoop(makeImage(dir, 'b.img', size, 'zero'));
    await copy({ source: src, targets: [a, b] });
    // Different damage on each target: b also lost the first MiB.
    const onA = changeBlocks(src, 0.01, SEED + 2);
    const bData = fs.openSync(b, 'r+');
    fs.writeSync(bData, Buffer.alloc(MiB, 0x11), 0, MiB, 0);
    fs.fsyncSync(bData);
    fs.closeSync(bData);
    const firstMiB = new Set(Array.from({ length: MiB / BLOCK }, (_, i) => i));
    const onB = new Set([...onA, ...firstMiB]);
    const [beforeA, beforeB] = [sectorsWritten(a), sectorsWritten(b)];
    const result = await copy({ source: src, targets: [a, b], onlyChanged: true, rate: 64 * MiB });
    expect((sectorsWritten(a) - beforeA) * 512).toBe(onA.size * BLOCK);
    expect((sectorsWritten(b) - beforeB) * 512).toBe(onB.size * BLOCK);
    expect(result.targets[0].changed).toEqual({ bytesCompared: size, bytesWritten: onA.size * BLOCK });
    expect(result.targets[1].changed).toEqual({ bytesCompared: size, bytesWritten: onB.size * BLOCK });
    expect(result.changed).toEqual({ bytesCompared: 2 * size, bytesWritten: (onA.size + onB.size) * BLOCK });
    for (const t of [a, b]) expect(sha256File(t)).toBe(sha256File(src));
  });

  it.skipIf(skipWithoutLoop)('with a mapfile, cancelled part-way and resumed: the two runs together write only the changed blocks', async () => {
    const dir = tempDir();
    const size = 32 * MiB;
    const src = makeImage(dir, 'src.img', size, 'random', `map-${SEED}`);
    const device = attachLoop(makeImage(dir, 'dev.img', size, 'zero'));
    await copy({ source: src, target: device });
    const changed = changeBlocks(src, 0.01, SEED + 3);
    const mapfile = path.join(dir, 'copy.map');
    const before = sectorsWritten(device);
    // Held back by the rate (32 MiB at 24 MiB/s), cancelled once a quarter is done: the map keeps that.
    const controller = new AbortController();
    const onProgress = (p: { bytesDone: number }): void => {
      if (p.bytesDone >= size / 4) controller.abort();
    };
    const job = copy({ source: src, target: device, onlyChanged: true, mapfile, checkpointInterval: 100, rate: 24 * MiB, signal: controller.signal, onProgress });
    await expect(job).rejects.toMatchObject({ code: 'ABORT_ERR' });
    const finishedFirst = fs.readFileSync(mapfile, 'utf8');
    const resumed = await copy({ source: src, target: device, onlyChanged: true, mapfile, checkpointInterval: 100 });
    expect(resumed.mapfile?.resumed).toBe(true);
    expect(resumed.changed?.bytesCompared, `first run's map:\n${finishedFirst}`).toBeLessThan(size);
    expect((sectorsWritten(device) - before) * 512).toBe(changed.size * BLOCK);
    expect(sha256File(device)).toBe(sha256File(src));
  });

  it('a file target shorter than the copy, and blocks that became zeros under --zero-blocks=discard', async () => {
    const dir = tempDir();
    const size = 8 * MiB;
    const src = makeImage(dir, 'src.img', size, 'random', `short-${SEED}`);
    const dst = path.join(dir, 'dst.img');
    fs.writeFileSync(dst, fs.readFileSync(src).subarray(0, 3 * MiB + 100));
    const grown = await copy({ source: src, target: dst, onlyChanged: true });
    // Everything from the 4 KiB block holding the old end on differs (3 MiB + 100 bytes: that block is partly there).
    expect(grown.changed).toEqual({ bytesCompared: size, bytesWritten: size - 3 * MiB });
    expect(sha256File(dst)).toBe(sha256File(src));
    const zeroed = changeBlocks(src, 0.02, SEED + 4);
    const fd = fs.openSync(src, 'r+');
    fs.writeSync(fd, Buffer.alloc(64 * KiB), 0, 64 * KiB, MiB);
    fs.closeSync(fd);
    const result = await copy({ source: src, target: dst, onlyChanged: true, zeroBlocks: 'discard', zeroBlockSize: BLOCK });
    expect(sha256File(dst)).toBe(sha256File(src));
    expect(result.changed?.bytesWritten).toBeLessThanOrEqual((zeroed.size + 16) * BLOCK);
    expect(result.zero.discarded).toBeGreaterThanOrEqual(64 * KiB);
  });

  it('the command line: a JSON result line and a human line; refused on a pipe target and on a file it would truncate', () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 4 * MiB, 'random', `cli-${SEED}`);
    const dst = makeImage(dir, 'dst.img', 4 * MiB, 'zero');
    const json = spawnSync('node', [CLI, `if=${src}`, `of=${dst}`, 'conv=notrunc', '--only-changed', '--json'], { encoding: 'utf8' });
    expect(json.status, json.stderr).toBe(0);
    const line = JSON.parse(json.stdout.trim().split('\n').at(-1) as string);
    expect(line.type).toBe('result');
    expect(line.changed).toEqual({ bytesCompared: 4 * MiB, bytesWritten: 4 * MiB });
    const human = spawnSync('node', [CLI, `if=${src}`, `of=${dst}`, 'conv=notrunc', '--only-changed'], { encoding: 'utf8' });
    expect(human.status, human.stderr).toBe(0);
    expect(human.stderr).toContain(`only changed: ${4 * MiB} bytes compared, 0 differed and were written`);

    const before = sha256File(dst);
    const cut = spawnSync('node', [CLI, `if=${src}`, `of=${dst}`, '--only-changed'], { encoding: 'utf8' });
    expect(cut.status).not.toBe(0);
    expect(cut.stderr).toContain('conv=notrunc');
    expect(sha256File(dst)).toBe(before);

    const piped = spawnSync('node', [CLI, `if=${src}`, '--only-changed'], { encoding: 'utf8' });
    expect(piped.status).toBe(2);
    expect(piped.stderr).toContain('the target is standard output, and only-changed reads the target back');
    expect(piped.stdout).toBe('');

    // Standard output redirected to the file (1<>: neither cut nor appended) is read back like of=.
    const changed = changeBlocks(src, 0.01, SEED + 6);
    const redirected = spawnSync('sh', ['-c', `node "${CLI}" if="${src}" --only-changed 1<> "${dst}"`], { encoding: 'utf8' });
    expect(redirected.status, redirected.stderr).toBe(0);
    expect(redirected.stderr).toContain(`only changed: ${4 * MiB} bytes compared, ${changed.size * BLOCK} differed and were written`);
    expect(sha256File(dst)).toBe(sha256File(src));
  });

  it.skipIf(skipWithoutNbd)('an NBD export as the target: read back through its connections, only the changed blocks written', async () => {
    const dir = tempDir();
    const size = 8 * MiB;
    const src = makeImage(dir, 'src.img', size, 'random', `nbd-${SEED}`);
    const exported = makeImage(dir, 'export.img', size, 'zero');
    const server = await startNbdkit({ plugin: 'file', params: [exported] });
    await copy({ source: src, target: server.uri });
    const changed = changeBlocks(src, 0.01, SEED + 7);
    const result = await copy({ source: src, target: server.uri, onlyChanged: true });
    expect(result.changed).toEqual({ bytesCompared: size, bytesWritten: changed.size * BLOCK });
    expect(sha256File(exported)).toBe(sha256File(src));
  });

  it('a pipe as the source: compared and written in order as it arrives', () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 6 * MiB + 512, 'random', `pipe-${SEED}`);
    const dst = path.join(dir, 'dst.img');
    fs.copyFileSync(src, dst);
    const changed = changeBlocks(src, 0.01, SEED + 5);
    const run = spawnSync('sh', ['-c', `cat "${src}" | node "${CLI}" of="${dst}" conv=notrunc --only-changed --json`], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const line = JSON.parse(run.stdout.trim().split('\n').at(-1) as string);
    expect(line.changed).toEqual({ bytesCompared: 6 * MiB + 512, bytesWritten: changed.size * BLOCK });
    expect(sha256File(dst)).toBe(sha256File(src));
  });
});

describe.skipIf(skipWithoutFuse || skipWithoutLoop)('--only-changed with noError: an unreadable source block is not written', () => {
  afterAll(() => {
    FaultyDevice.destroyAll();
    detachAll();
  });

  it("the target keeps its bytes where the source cannot be read (ddrescue's rule), the block is reported bad, changed blocks are written", async () => {
    const size = 4 * MiB;
    const src = await FaultyDevice.create({ sizeBytes: size });
    const dir = tempDir();
    const dst = attachLoop(makeImage(dir, 'dst.img', size, 'zero'));
    await copy({ source: src.device, target: dst });
    // The second pass: one block changed on the source, and a range that cannot be read any more,
    // within a 4 KiB compare block (so the rest of that block is compared and kept as it is).
    const changed = 3 * MiB + 8192;
    const fd = fs.openSync(src.imagePath, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, 0x77), 0, 4096, changed);
    fs.closeSync(fd);
    const bad: [number, number] = [1 * MiB + 1024, 1024];
    await src.setFaults({ readErrors: [bad] });
    const before = readRange(dst, 0, size);
    const result = await copy({ source: src.device, target: dst, onlyChanged: true, noError: true });
    expect(result.bad.ranges).toEqual([bad]);
    expect(result.changed).toEqual({ bytesCompared: size, bytesWritten: 4096 });
    const after = readRange(dst, 0, size);
    // Unreadable: what the target held (the first pass's copy of it), not zeros.
    expect(after.subarray(bad[0], bad[0] + bad[1]).equals(before.subarray(bad[0], bad[0] + bad[1]))).toBe(true);
    expect(after.subarray(bad[0], bad[0] + bad[1]).every((b) => b === 0)).toBe(false);
    // Everything else is the source.
    const source = fs.readFileSync(src.imagePath);
    source.set(before.subarray(bad[0], bad[0] + bad[1]), bad[0]);
    expect(after.equals(source)).toBe(true);
  });
});
