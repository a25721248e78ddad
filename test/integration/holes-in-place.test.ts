// A source's hole costs a target one request, not one per buffer (issue 13's
// sparse-source target): where the target can zero a range in place
// (fallocate ZERO_RANGE / PUNCH_HOLE on a file or block device, which the
// kernel turns into REQ_OP_WRITE_ZEROES; NBD_CMD_WRITE_ZEROES), a hole is one
// such request, cut only at the server's advertised maximum block size; a
// target that refuses still ends with zeros, written from a buffer of zeros.
// Requests are counted by the target itself (the block device's
// /sys/block/NAME/stat, nbdkit's log filter), never by devmove's own report
// alone. Layouts are seeded (the seed is printed).
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/index';
import { attachLoop, detachAll, makeImage, sha256File, skipWithoutLoop, tempDir } from '../helpers/devices';
import { skipWithoutNbd, startNbdkit, stopAllNbd } from '../helpers/nbd';
import { random } from '../helpers/random';

const MiB = 1024 * 1024;
const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 1_000_000);
const haveNbdcopy = spawnSync('nbdcopy', ['--version'], { stdio: 'ignore' }).status === 0;
console.log(`holes-in-place.test seed ${SEED} (DEVMOVE_TEST_SEED replays it)`);

interface Sparse {
  file: string;
  size: number;
  /** [offset, length) of each hole, in order. */
  holes: Array<[number, number]>;
}

/** A sparse file of 48–96 MiB: seeded MiB-aligned data extents of random bytes, holes of at least 1 MiB between them. */
function sparseSource(dir: string, seed: number): Sparse {
  const rnd = random(seed);
  const mibs = 48 + Math.floor(rnd() * 49);
  const data = new Uint8Array(mibs);
  // Each extent starts at a drawn MiB and is 1-3 MiB long. (Its end was once drawn apart from its
  // start, so most fills were empty and some sources had no data at all: a test then passed on holes alone.)
  for (let n = 2 + Math.floor(rnd() * 6); n > 0; n--) {
    const start = Math.floor(rnd() * mibs);
    data.fill(1, start, start + 1 + Math.floor(rnd() * 3));
  }
  const file = path.join(dir, `src-${seed}.img`);
  const fd = fs.openSync(file, 'w');
  const holes: Array<[number, number]> = [];
  try {
    fs.ftruncateSync(fd, mibs * MiB);
    for (let m = 0; m < mibs; m++) {
      if (data[m]) {
        fs.writeSync(fd, crypto.randomBytes(MiB), 0, MiB, m * MiB);
      } else if (m > 0 && !data[m - 1] && holes.length > 0) {
        holes[holes.length - 1][1] += MiB;
      } else {
        holes.push([m * MiB, MiB]);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, size: mibs * MiB, holes };
}

/** Write requests the block device completed so far (/sys/block/NAME/stat field 5; write-zeroes count here, discards not). */
function writeRequests(device: string): number {
  return Number(fs.readFileSync(`/sys/block/${path.basename(device)}/stat`, 'utf8').trim().split(/\s+/)[4]);
}

function writeZeroesMaxBytes(device: string): number {
  return Number(fs.readFileSync(`/sys/block/${path.basename(device)}/queue/write_zeroes_max_bytes`, 'utf8'));
}

/** A loop device over an image of old bytes (tempDir's tmpfs takes PUNCH_HOLE only; ext4 under /var/tmp ZERO_RANGE too). */
function oldDevice(dir: string, name: string, size: number): string {
  return attachLoop(makeImage(dir, name, size, { pattern: 0xa5 }));
}

/** The requests a copy cost the device beyond those of the same copy skipping every zero (its data writes). */
async function extraRequests(src: Sparse, device: string, zeroBlocks: 'write' | 'discard'): Promise<{ extra: number; discards: number }> {
  const skipBefore = writeRequests(device);
  await copy({ source: src.file, target: device, zeroBlocks: 'skip', durability: 'none' });
  const dataOnly = writeRequests(device) - skipBefore;
  const before = writeRequests(device);
  const result = await copy({ source: src.file, target: device, zeroBlocks, durability: 'none' });
  expect(result.bytesRead).toBe(src.size - src.holes.reduce((s, [, l]) => s + l, 0));
  return { extra: writeRequests(device) - before - dataOnly, discards: result.io.discards };
}

describe.skipIf(skipWithoutLoop)('a hole is one request on a block device', () => {
  afterAll(detachAll);

  it.each([SEED, SEED + 1])("seed %i: --zero-blocks=discard punches each hole once (loop device over tmpfs)", async (seed) => {
    const dir = tempDir();
    const src = sparseSource(dir, seed);
    const device = oldDevice(dir, 'dev.img', src.size);
    expect(writeZeroesMaxBytes(device)).toBeGreaterThanOrEqual(src.size);
    const { extra, discards } = await extraRequests(src, device, 'discard');
    expect(discards).toBe(src.holes.length);
    // The device's own count: one write-zeroes per hole (each below write_zeroes_max_bytes), ±1 for noise.
    expect(extra).toBeLessThanOrEqual(src.holes.length + 1);
    expect(sha256File(device)).toBe(sha256File(src.file));
  });

  it.each([SEED + 2, SEED + 3])('seed %i: the default policy zeroes each hole in place, once, and leaves it allocated (loop over ext4)', async (seed) => {
    const dir = tempDir('/var/tmp');
    const src = sparseSource(dir, seed);
    const image = makeImage(dir, 'dev.img', src.size, { pattern: 0xa5 });
    const device = attachLoop(image);
    if (writeZeroesMaxBytes(device) < src.size) throw new Error(`${device} over ext4 offers no write-zeroes`);
    const { extra, discards } = await extraRequests(src, device, 'write');
    expect(discards).toBe(src.holes.length);
    expect(extra).toBeLessThanOrEqual(src.holes.length + 1);
    expect(sha256File(device)).toBe(sha256File(src.file));
    // ZERO_RANGE without unmap: the image behind the device stays fully allocated, as the write policy promises.
    expect(fs.statSync(image).blocks * 512).toBeGreaterThanOrEqual(src.size);
  });

  it('fan-out: a file that refuses ZERO_RANGE (tmpfs) gets its holes written as zeros; the device beside it, one request per hole', async () => {
    const dir = tempDir();
    const src = sparseSource(dir, SEED + 4);
    const file = makeImage(dir, 'old.img', src.size, { pattern: 0xa5 });
    const device = attachLoop(makeImage(tempDir('/var/tmp'), 'dev.img', src.size, { pattern: 0xa5 }));
    // The device's data writes alone, as the block layer splits them (its max_sectors_kb), are the baseline.
    const skipBefore = writeRequests(device);
    await copy({ source: src.file, target: device, zeroBlocks: 'skip', durability: 'none' });
    const dataOnly = writeRequests(device) - skipBefore;
    const before = writeRequests(device);
    const result = await copy({ source: src.file, targets: [file, device], durability: 'none' });
    // Beyond its data writes, one write-zeroes per hole (±1 for noise), whatever the file beside it does.
    expect(writeRequests(device) - before - dataOnly).toBeLessThanOrEqual(src.holes.length + 1);
    expect(result.bytesRead).toBeGreaterThan(0);
    expect(result.targets[0].zeroNote).toMatch(/^fallocate\(ZERO_RANGE\) failed: .*the source's holes are written as zeros/);
    expect(result.targets[1].zeroNote).toBeUndefined();
    expect(sha256File(file)).toBe(sha256File(src.file));
    expect(sha256File(device)).toBe(sha256File(src.file));
    expect(result.holes.bytes).toBe(src.holes.reduce((s, [, l]) => s + l, 0));
  });
});

/** nbdkit's log filter: the NBD_CMD_WRITE_ZEROES requests it received (one line each when sent, one when answered). */
function zeroRequests(log: string): Array<{ count: number; trim: boolean }> {
  return fs.readFileSync(log, 'utf8').split('\n')
    .map((line) => /Zero id=\d+ offset=0x[0-9a-f]+ count=(0x[0-9a-f]+) trim=(\d)/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ count: Number(m[1]), trim: m[2] === '1' }));
}

describe.skipIf(skipWithoutNbd || !haveNbdcopy)('a hole is one NBD_CMD_WRITE_ZEROES on an NBD target', () => {
  afterAll(stopAllNbd);

  function readBack(uri: string, out: string): string {
    const run = spawnSync('nbdcopy', [uri, out], { encoding: 'utf8', timeout: 60_000 });
    if (run.status !== 0) throw new Error(`nbdcopy ${uri}: ${run.stderr}`);
    return out;
  }

  it.each([
    ['write', false],
    ['discard', true],
  ] as const)('--zero-blocks=%s: one request per hole (trim %s), the export holds the source', async (zeroBlocks, trim) => {
    const dir = tempDir();
    const src = sparseSource(dir, SEED + 5);
    const log = path.join(dir, 'nbdkit.log');
    const server = await startNbdkit({ plugin: 'memory', params: [`size=${src.size}`, `logfile=${log}`], filters: ['log'] });
    const seed = path.join(dir, 'old.img');
    fs.writeFileSync(seed, Buffer.alloc(src.size, 0xa5));
    spawnSync('nbdcopy', [seed, server.uri]);
    const result = await copy({ source: src.file, target: server.uri, zeroBlocks });
    const zeros = zeroRequests(log);
    expect(zeros.map((z) => z.count).sort((a, b) => a - b)).toEqual(src.holes.map(([, l]) => l).sort((a, b) => a - b));
    expect(zeros.every((z) => z.trim === trim)).toBe(true);
    expect(result.io.discards).toBe(src.holes.length);
    expect(sha256File(readBack(server.uri, path.join(dir, 'back.img')))).toBe(sha256File(src.file));
    await server.stop();
  });

  it("a server's advertised maximum block size cuts a hole's request there, and only there", async () => {
    const dir = tempDir();
    const src = sparseSource(dir, SEED + 6);
    const log = path.join(dir, 'nbdkit.log');
    const server = await startNbdkit({
      plugin: 'memory', filters: ['log', 'blocksize-policy'],
      params: [`size=${src.size}`, `logfile=${log}`, 'blocksize-minimum=512', 'blocksize-preferred=4096', 'blocksize-maximum=1M'],
    });
    await copy({ source: src.file, target: server.uri });
    const zeros = zeroRequests(log);
    expect(zeros.every((z) => z.count === MiB)).toBe(true);
    expect(zeros.length).toBe(src.holes.reduce((s, [, l]) => s + l, 0) / MiB);
    expect(sha256File(readBack(server.uri, path.join(dir, 'back.img')))).toBe(sha256File(src.file));
    await server.stop();
  });

  it('a server without NBD_CMD_WRITE_ZEROES (nozero filter) gets the zeros written', async () => {
    const dir = tempDir();
    const src = sparseSource(dir, SEED + 7);
    const server = await startNbdkit({ plugin: 'memory', params: [`size=${src.size}`], filters: ['nozero'] });
    const seed = path.join(dir, 'old.img');
    fs.writeFileSync(seed, Buffer.alloc(src.size, 0xa5));
    spawnSync('nbdcopy', [seed, server.uri]);
    const result = await copy({ source: src.file, target: server.uri });
    expect(result.io.discards).toBe(0);
    expect(sha256File(readBack(server.uri, path.join(dir, 'back.img')))).toBe(sha256File(src.file));
    await server.stop();
  });
});
