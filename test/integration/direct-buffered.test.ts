// A copy whose last write is a partial sector: everything else goes through
// O_DIRECT, that tail through the page cache. Run at the same moment as an
// O_DIRECT write over the same page, the kernel cannot drop the page ("Page
// cache invalidation failure on direct I/O"), fdatasync fails with EIO and the
// page's writeback may put old bytes back (the model test's
// dio-buffered-collision and threads-tail-collision: 9 in 10 runs failed on an
// ext4 file with io_uring, 8 in 10 on a loop device with threads). The engine
// keeps the two kinds of write on a target apart in time
// (native/write_mode_gate.h). On ext4, tmpfs and a loop device, once per I/O
// driver, several runs each (the race is likely, not certain, per run).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { attachLoop, detachAll, makeImage, readRange, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const DRIVERS = ['io_uring', 'threads'] as const;
const RUNS = 4;
const LENGTH = 1_000_001; // 1953 sectors of 512 and a 65-byte tail

interface Case {
  name: string;
  target: () => string;
  operands: string[];
  offset: number; // where the copy lands on the target
  fresh?: boolean; // the target is created by the copy
}

/** The old bytes, on the medium before the copy opens the target. */
function writeDurably(target: string, data: Buffer): void {
  const fd = fs.openSync(target, fs.existsSync(target) ? 'r+' : 'w');
  try {
    fs.writeSync(fd, data, 0, data.length, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function devmove(args: string[], engine: string): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args, `--io-engine=${engine}`, 'status=none'], { encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, stderr: run.stderr };
}

describe.skipIf(skipWithoutLoop)('a partial last sector next to O_DIRECT writes', () => {
  let source: string;
  let ext4: string;
  let tmpfs: string;
  let loop: string;
  let scratch: string;
  const TARGET_BYTES = 3 * MiB;
  beforeAll(() => {
    source = makeImage(tempDir(), 'source.img', TARGET_BYTES);
    ext4 = tempDir('/var/tmp');
    tmpfs = tempDir('/dev/shm');
    scratch = tempDir('/dev/shm');
    loop = attachLoop(makeImage(tempDir('/var/tmp'), 'device.img', TARGET_BYTES, 'zero'));
  });
  afterAll(detachAll);

  const cases: Case[] = [
    { name: 'a file on ext4, conv=notrunc', target: () => path.join(ext4, 't.img'), operands: ['bs=512', `count=${LENGTH}B`, 'conv=notrunc'], offset: 0 },
    { name: 'a new file on ext4', target: () => path.join(ext4, 'new.img'), operands: ['bs=512', `count=${LENGTH}B`], offset: 0, fresh: true },
    { name: 'a file on tmpfs, conv=notrunc', target: () => path.join(tmpfs, 't.img'), operands: ['bs=512', `count=${LENGTH}B`, 'conv=notrunc'], offset: 0 },
    { name: 'a loop device, seek=512B', target: () => loop, operands: ['bs=4096', 'seek=512B', `count=${LENGTH}B`], offset: 512 },
  ];

  describe.each(DRIVERS)('%s driver', (engine) => {
    it.each(cases)('$name: exit 0, the range identical, nothing around it changed', (c) => {
      const target = c.target();
      for (let run = 0; run < RUNS; run++) {
        // Old bytes everywhere first, so a stale page written back would show.
        const old = fs.readFileSync(makeImage(scratch, 'old.img', TARGET_BYTES, 'random', `old-${run}`));
        if (c.fresh) fs.rmSync(target, { force: true });
        else writeDurably(target, old);
        const result = devmove([`if=${source}`, `of=${target}`, ...c.operands], engine);
        expect(result.stderr, `run ${run}`).toBe('');
        expect(result.status, `run ${run}`).toBe(0);
        // Read back past the page cache's copy: what the medium holds.
        spawnSync('sh', ['-c', `sync; echo 1 > /proc/sys/vm/drop_caches; blockdev --flushbufs '${loop}'`]);
        const copied = readRange(target, c.offset, LENGTH);
        expect(copied.equals(readRange(source, 0, LENGTH)), `run ${run}: copied range`).toBe(true);
        if (c.fresh) {
          expect(fs.statSync(target).size).toBe(LENGTH);
          continue;
        }
        const end = c.offset + LENGTH;
        expect(readRange(target, 0, c.offset).equals(old.subarray(0, c.offset)), `run ${run}: before the range`).toBe(true);
        expect(readRange(target, end, TARGET_BYTES - end).equals(old.subarray(end)), `run ${run}: after the range`).toBe(true);
      }
    }, 240_000);
  });
});
