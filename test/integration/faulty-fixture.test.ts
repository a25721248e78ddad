// The faulty-device fixture itself, proven with plain kernel I/O (GNU dd with
// O_DIRECT on the loop device) and no devmove code: bad ranges fail with EIO,
// good ranges read and write the image's bytes exactly, slow ranges sleep,
// faults change live, and destroy() leaves nothing behind.
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readRange } from '../helpers/devices';
import { dd, FaultyDevice, fuseAvailable, loopBackingFile, MAX_REQUEST_BYTES, mountPoints, processAlive, readDirect, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const EIO = /Input\/output error/;

it('the fixture is available where CI runs', () => {
  // CI installs fuse3 and python3-fusepy: the suite below must not be skipped there.
  if (process.env.CI) expect(fuseAvailable()).toBe(true);
});

describe.skipIf(skipWithoutFuse)('faulty device fixture', () => {
  afterAll(() => FaultyDevice.destroyAll());

  /** dd arguments reading `count` blocks of `bs` bytes at block `skip` of `dev`. */
  const readArgs = (dev: string, bs: number, skip: number, count = 1): string[] => [`if=${dev}`, 'of=/dev/null', 'iflag=direct', `bs=${bs}`, `skip=${skip}`, `count=${count}`];

  it('reads: bad ranges fail whole with EIO, good ranges return the image bytes exactly', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 8 * MiB, readErrors: [[1 * MiB, 4096], [2 * MiB + 4096 - 512, 512]] });
    try {
      expect(dev.device).toMatch(/^\/dev\/loop\d+$/);
      expect(dev.directIo).toBe(true);
      expect(loopBackingFile(dev.device)).toBe(dev.fusePath);

      // The bad block, a 64 KiB read that covers it, and a read that only
      // touches its last 512 bytes: all fail, moving nothing.
      for (const args of [readArgs(dev.device, 4096, 256), readArgs(dev.device, 64 * KiB, 16), readArgs(dev.device, 4096, 512)]) {
        const run = await dd(args);
        expect(run.status).not.toBe(0);
        expect(run.stderr).toMatch(EIO);
      }
      // Good ranges, right up to the bad ones, and the whole device around them.
      for (const [offset, length] of [
        [0, 1 * MiB],
        [1 * MiB + 4096, 1 * MiB - 4096],
        [2 * MiB - 4096, 4096],
        [2 * MiB + 4096, 6 * MiB - 4096],
      ] as const) {
        expect(readDirect(dev.device, offset, length).equals(readRange(dev.imagePath, offset, length))).toBe(true);
      }
      const stats = dev.stats();
      expect(stats.readErrors).toBe(3);
      expect(stats.writes).toBe(0);
    } finally {
      await dev.destroy();
    }
  });

  it('writes: bad ranges fail with EIO and change nothing; others land in the image', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, fill: 'zero', writeErrors: [[1 * MiB, 4096]] });
    try {
      const dir = fs.mkdtempSync(path.join('/dev/shm', 'devmove-faulty-src-'));
      try {
        const data = path.join(dir, 'data');
        fs.writeFileSync(data, Buffer.alloc(64 * KiB, 0xa5));
        const write = (seek: number, bs: number): Promise<{ status: number; stderr: string }> =>
          dd([`if=${data}`, `of=${dev.device}`, 'oflag=direct', `bs=${bs}`, `seek=${seek}`, 'count=1']);

        // Into the bad block, and 64 KiB that begin with it: EIO, no byte lands.
        for (const [seek, bs] of [[256, 4096], [16, 64 * KiB]] as const) {
          const run = await write(seek, bs);
          expect(run.status).not.toBe(0);
          expect(run.stderr).toMatch(EIO);
        }
        expect(readRange(dev.imagePath, 15 * 64 * KiB, 128 * KiB).every((b) => b === 0)).toBe(true);
        // Next to it, and elsewhere: in the image byte for byte.
        expect((await write(257, 4096)).status).toBe(0);
        expect((await write(3, 64 * KiB)).status).toBe(0);
        expect(readRange(dev.imagePath, 257 * 4096, 4096).equals(Buffer.alloc(4096, 0xa5))).toBe(true);
        expect(readRange(dev.imagePath, 3 * 64 * KiB, 64 * KiB).equals(Buffer.alloc(64 * KiB, 0xa5))).toBe(true);
        expect(readRange(dev.imagePath, 256 * 4096, 4096).every((b) => b === 0)).toBe(true);
        expect(dev.stats()).toMatchObject({ writeErrors: 2, bytesWritten: 4096 + 64 * KiB });
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      await dev.destroy();
    }
  });

  it('slow ranges delay the requests that touch them; the control file answers and takes faults while one sleeps', async () => {
    const slowRange = { offset: 2 * MiB, length: 4096, delayMs: 400 };
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, slow: [slowRange] });
    try {
      // A read of the slow range sleeps in the daemon, and the control file,
      // read meanwhile, says so. Shown by order, not by time: a daemon that
      // cannot answer while a request sleeps only answers once the sleep is
      // over (delaying 0), and a delay that never sleeps is never seen.
      let settled = false;
      const slow = dd(readArgs(dev.device, 4096, 512)).finally(() => {
        settled = true;
      });
      let seenSleeping = false;
      while (!settled && !seenSleeping) {
        seenSleeping = dev.stats().delaying === 1;
        if (!seenSleeping) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(seenSleeping).toBe(true);
      // Faults change while it sleeps; the request keeps the set it started under.
      const next = { slow: [slowRange], readErrors: [[0, 4096]] as [number, number][] };
      await dev.setFaults(next);
      expect(dev.faults()).toEqual(next);
      expect((await slow).status).toBe(0);
      expect((await dd(readArgs(dev.device, 4096, 100))).status).toBe(0);
      // Only the read that touched the slow range slept, and nothing sleeps now.
      expect(dev.stats()).toMatchObject({ delayed: 1, delaying: 0, readErrors: 0 });
    } finally {
      await dev.destroy();
    }
  });

  it('faults change live, while the device stays attached', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB });
    try {
      expect((await dd(readArgs(dev.device, 4096, 10))).status).toBe(0);
      await dev.setFaults({ readErrors: [[10 * 4096, 4096]] });
      expect(dev.faults()).toEqual({ readErrors: [[10 * 4096, 4096]] });
      expect((await dd(readArgs(dev.device, 4096, 10))).stderr).toMatch(EIO);
      expect((await dd(readArgs(dev.device, 4096, 11))).status).toBe(0);
      await dev.setFaults({});
      expect((await dd(readArgs(dev.device, 4096, 10))).status).toBe(0);
      // A malformed fault set is refused (close() fails) and the old one stays.
      await expect(dev.setFaults({ readErrors: [[-1, 5]] })).rejects.toMatchObject({ code: 'EINVAL' });
      expect(dev.faults()).toEqual({});
      await dev.resetStats();
      expect(dev.stats()).toMatchObject({ reads: 0, readErrors: 0 });
    } finally {
      await dev.destroy();
    }
  });

  it('failWritesAfterBytes: the first N bytes land, then every write fails', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, fill: 'zero', failWritesAfterBytes: 64 * KiB });
    try {
      const run = await dd(['if=/dev/urandom', `of=${dev.device}`, 'oflag=direct', 'bs=4096', 'count=32', 'iflag=fullblock']);
      expect(run.status).not.toBe(0);
      expect(run.stderr).toMatch(EIO);
      // 16 blocks written, nothing after them.
      expect(readRange(dev.imagePath, 0, 64 * KiB).some((b) => b !== 0)).toBe(true);
      expect(readRange(dev.imagePath, 64 * KiB, 4 * MiB - 64 * KiB).every((b) => b === 0)).toBe(true);
      // Sticky: even a write far away fails now; reads still work.
      expect((await dd(['if=/dev/zero', `of=${dev.device}`, 'oflag=direct', 'bs=4096', 'seek=900', 'count=1'])).stderr).toMatch(EIO);
      expect((await dd(readArgs(dev.device, 4096, 0))).status).toBe(0);
      expect(dev.stats()).toMatchObject({ bytesWritten: 64 * KiB, writeErrors: 2 });
      // A new fault set starts a new count.
      await dev.setFaults({ failWritesAfterBytes: 8192 });
      expect((await dd(['if=/dev/zero', `of=${dev.device}`, 'oflag=direct', 'bs=8192', 'seek=450', 'count=1'])).status).toBe(0);
    } finally {
      await dev.destroy();
    }
  });

  it('every request reaches the daemon, in pieces of at most MAX_REQUEST_BYTES', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB });
    try {
      await dev.resetStats(); // forget anything the kernel read while attaching
      expect((await dd(readArgs(dev.device, 512 * KiB, 2))).status).toBe(0);
      expect((await dd(readArgs(dev.device, 512 * KiB, 2))).status).toBe(0);
      const stats = dev.stats();
      // Both reads were served by the daemon, none from a cache...
      expect(stats.bytesRead).toBe(2 * 512 * KiB);
      // ...in FUSE requests no larger than the loop device's block requests
      // (each 512 KiB read: 4 x 124 KiB + 16 KiB on this kernel).
      const sizes = Object.keys(stats.readSizes).map(Number);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    } finally {
      await dev.destroy();
    }
  });

  it('an I/O of several requests with a bad range in a later one fails with EIO, writes included', async () => {
    // Without the request cap, FUSE would turn these into short transfers:
    // the loop driver retries a short read, and completes a short write as a
    // success, losing the error.
    const bad = 2 * MiB + 384 * KiB;
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, fill: 'zero', readErrors: [[bad, 4096]], writeErrors: [[bad, 4096]] });
    try {
      const read = await dd(readArgs(dev.device, 512 * KiB, 4));
      expect(read.stderr).toMatch(EIO);
      const write = await dd(['if=/dev/zero', `of=${dev.device}`, 'oflag=direct', 'bs=512K', 'seek=4', 'count=1']);
      expect(write.status).not.toBe(0);
      expect(write.stderr).toMatch(EIO);
      // Each failed once: no retry reached the daemon.
      expect(dev.stats()).toMatchObject({ readErrors: 1, writeErrors: 1 });
    } finally {
      await dev.destroy();
    }
  });

  it('a loop device without direct I/O still cannot hide faults (its backing file is direct_io)', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, directIo: false, readErrors: [[40 * 4096, 4096]] });
    try {
      expect(dev.directIo).toBe(false);
      await dev.resetStats();
      for (let i = 0; i < 2; i++) {
        expect((await dd(readArgs(dev.device, 4096, 10))).status).toBe(0);
        expect((await dd(readArgs(dev.device, 4096, 40))).stderr).toMatch(EIO);
      }
      expect(dev.stats()).toMatchObject({ reads: 4, readErrors: 2, bytesRead: 2 * 4096 });
    } finally {
      await dev.destroy();
    }
  });

  it('4096-byte logical blocks: 4 KiB reads work, 512-byte ones are refused by the block layer', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, logicalBlockSize: 4096 });
    try {
      expect(fs.readFileSync(`/sys/block/${path.basename(dev.device)}/queue/logical_block_size`, 'utf8').trim()).toBe('4096');
      expect(readDirect(dev.device, 8192, 4096).equals(readRange(dev.imagePath, 8192, 4096))).toBe(true);
      expect((await dd(readArgs(dev.device, 512, 1))).stderr).toMatch(/Invalid argument/);
    } finally {
      await dev.destroy();
    }
  });

  it('destroy() leaves no loop device, mount, daemon or file behind, even with I/O stuck in a slow range', async () => {
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, slow: [{ offset: 0, length: 4096, delayMs: 2000 }] });
    const { device, mountPoint, dir, pid, fusePath } = dev;
    expect(processAlive(pid)).toBe(true);
    expect(mountPoints()).toContain(mountPoint);
    // A reader holds the device with a request the daemon is sitting on.
    const stuck = dd(readArgs(device, 4096, 0));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    await dev.destroy();
    expect(Date.now() - started).toBeLessThan(15_000);
    await stuck; // finished one way or the other
    expect(loopBackingFile(device)).not.toBe(fusePath);
    expect(mountPoints()).not.toContain(mountPoint);
    expect(processAlive(pid)).toBe(false);
    expect(fs.existsSync(dir)).toBe(false);
    await dev.destroy(); // idempotent
  });
});
