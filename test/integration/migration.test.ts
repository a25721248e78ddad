// Migration-job features on real loop devices: fan-out to several targets
// (with both failure policies), zero-block handling (skip, discard, sparse),
// the live rate cap, pause/resume, and the CLI's clean stop on SIGINT with a
// mapfile.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy, DevmoveError } from '../../src/index';
import { RescueMap } from '../../src/resume/mapfile';
import { attachLoop, detachAll, makeImage, readRange, skipWithoutLoop, tempDir } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

/** A source with large zero regions: [data 1M][zeros 3M][data 512K][zeros 2.5M+4K][data 4K]. */
function zeroHeavyImage(dir: string): { file: string; size: number; zeroBytes: number } {
  const size = 7 * MiB + 8 * KiB;
  const file = makeImage(dir, 'zeroish.img', size, 'zero');
  const fd = fs.openSync(file, 'r+');
  const data = fs.readFileSync(makeImage(dir, 'noise.img', 1 * MiB));
  fs.writeSync(fd, data, 0, 1 * MiB, 0);
  fs.writeSync(fd, data, 0, 512 * KiB, 4 * MiB);
  fs.writeSync(fd, data, 0, 4 * KiB, size - 4 * KiB);
  fs.closeSync(fd);
  return { file, size, zeroBytes: size - 1 * MiB - 512 * KiB - 4 * KiB };
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

describe.skipIf(skipWithoutLoop)('fan-out', () => {
  afterAll(() => detachAll());

  it('one read pass, three identical targets', async () => {
    const dir = tempDir();
    const srcImage = makeImage(dir, 'src.img', 9 * MiB + 4096);
    const src = attachLoop(srcImage);
    const targets = [1, 2, 3].map((i) => attachLoop(makeImage(dir, `t${i}.img`, 10 * MiB, 'zero')));
    const result = await copy({ source: src, targets });
    expect(result.targets.map((t) => t.path)).toEqual(targets);
    expect(result.io.reads).toBe(Math.ceil((9 * MiB + 4096) / (512 * KiB))); // read once
    expect(result.io.writes).toBe(3 * result.io.reads);
    const source = fs.readFileSync(srcImage);
    for (const t of targets) expect(readRange(t, 0, source.length).equals(source)).toBe(true);
  });

  it('the CLI takes of= several times', () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 3 * MiB);
    const a = path.join(dir, 'a.img');
    const b = path.join(dir, 'b.img');
    const run = spawnSync(process.execPath, [CLI, `if=${src}`, `of=${a}`, `of=${b}`, '--verify'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(fs.readFileSync(a).equals(fs.readFileSync(src))).toBe(true);
    expect(fs.readFileSync(b).equals(fs.readFileSync(src))).toBe(true);
    expect(run.stderr).toContain('verified:');
  });

  describe.skipIf(skipWithoutFuse)('a failing target', () => {
    afterAll(() => FaultyDevice.destroyAll());

    it("policy 'stop' (default): the job fails naming the target and offset", async () => {
      const dir = tempDir();
      const src = attachLoop(makeImage(dir, 'src.img', 6 * MiB));
      const good = attachLoop(makeImage(dir, 'good.img', 6 * MiB, 'zero'));
      const bad = await FaultyDevice.create({ sizeBytes: 6 * MiB, fill: 'zero', writeErrors: [[2 * MiB, 4096]] });
      let error: unknown;
      try {
        await copy({ source: src, targets: [good, bad.device] });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(DevmoveError);
      expect(error).toMatchObject({ code: 'EIO', syscall: 'write', path: bad.device, offset: 2 * MiB });
    });

    it("policy 'drop': the failing target is dropped and reported, the others finish identical", async () => {
      const dir = tempDir();
      const srcImage = makeImage(dir, 'src.img', 6 * MiB);
      const src = attachLoop(srcImage);
      const good1 = attachLoop(makeImage(dir, 'good1.img', 6 * MiB, 'zero'));
      const good2 = attachLoop(makeImage(dir, 'good2.img', 6 * MiB, 'zero'));
      const bad = await FaultyDevice.create({ sizeBytes: 6 * MiB, fill: 'zero', failWritesAfterBytes: 1 * MiB });
      const result = await copy({ source: src, targets: [good1, bad.device, good2], onTargetError: 'drop', verify: true });
      expect(result.targets[1]).toMatchObject({ path: bad.device, dropped: true });
      expect(result.targets[1].error).toMatchObject({ code: 'EIO', syscall: 'write' });
      expect(result.targets[0].dropped).toBeUndefined();
      const source = fs.readFileSync(srcImage);
      for (const t of [good1, good2]) expect(readRange(t, 0, source.length).equals(source)).toBe(true);
      expect(result.verify?.bytesCompared).toBe(2 * 6 * MiB);
    });
  });
});

describe.skipIf(skipWithoutLoop)('zero blocks', () => {
  afterAll(() => detachAll());

  it("'skip' (target known to be zero) writes only the data blocks", async () => {
    const dir = tempDir();
    const { file, size, zeroBytes } = zeroHeavyImage(dir);
    const dstImage = makeImage(dir, 'dst.img', size, 'zero');
    const dst = attachLoop(dstImage);
    const result = await copy({ source: file, target: dst, zeroBlocks: 'skip', blockSize: '4K' });
    expect(result.zero).toEqual({ bytes: zeroBytes, skipped: zeroBytes, discarded: 0 });
    expect(result.io.writes).toBe((size - zeroBytes) / 4096);
    expect(readRange(dst, 0, size).equals(fs.readFileSync(file))).toBe(true);
  });

  it("'discard' on a block device with stale data: zero ranges become zeroes (write-zeroes), the result is identical", async () => {
    const dir = tempDir();
    const { file, size, zeroBytes } = zeroHeavyImage(dir);
    const dstImage = makeImage(dir, 'stale.img', size, { pattern: 0xa5 });
    const dst = attachLoop(dstImage);
    const result = await copy({ source: file, target: dst, zeroBlocks: 'discard', blockSize: '64K' });
    expect(result.zero.discarded).toBe(zeroBytes - 4 * KiB); // the zero tail inside the last 64K block is written with its data
    expect(result.io.discards).toBeGreaterThan(0);
    expect(readRange(dst, 0, size).equals(fs.readFileSync(file))).toBe(true);
    // The backing file lost the zero ranges' blocks (the loop device punched them).
    expect(allocatedBytes(dstImage)).toBeLessThan(size - 2 * MiB);
  });

  it("'discard' on a file punches holes; conv=sparse (CLI) seeks over zeros and extends the file to its size", () => {
    const dir = tempDir();
    const { file, size } = zeroHeavyImage(dir);
    const punched = makeImage(dir, 'punched.img', size, { pattern: 0x11 });
    const run1 = spawnSync(process.execPath, [CLI, `if=${file}`, `of=${punched}`, 'conv=notrunc', '--zero-blocks=discard'], { encoding: 'utf8' });
    expect(run1.status).toBe(0);
    expect(fs.readFileSync(punched).equals(fs.readFileSync(file))).toBe(true);
    expect(allocatedBytes(punched)).toBeLessThan(2 * MiB);
    const sparse = path.join(dir, 'sparse.img');
    // A zero block at the very end too: the file must still get its full size.
    const tailZero = makeImage(dir, 'tailzero.img', size + 64 * KiB, 'zero');
    fs.copyFileSync(file, tailZero);
    fs.truncateSync(tailZero, size + 64 * KiB);
    const run2 = spawnSync(process.execPath, [CLI, `if=${tailZero}`, `of=${sparse}`, 'conv=sparse', 'bs=64K'], { encoding: 'utf8' });
    expect(run2.status).toBe(0);
    expect(fs.statSync(sparse).size).toBe(size + 64 * KiB);
    expect(fs.readFileSync(sparse).equals(fs.readFileSync(tailZero))).toBe(true);
    expect(allocatedBytes(sparse)).toBeLessThan(2 * MiB);
    expect(run2.stderr).toMatch(/zero blocks: \d+ bytes found, \d+ skipped/);
  });
});

describe('rate, pause and resume', () => {
  it('the rate cap holds (loosely) and can be lifted while running', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 12 * MiB);
    const started = Date.now();
    const capped = await copy({ source: src, target: path.join(dir, 'a.img'), rate: 8 * MiB, blockSize: '256K' });
    const seconds = (Date.now() - started) / 1000;
    // 12 MiB at 8 MiB/s cannot take much less than 1.5 s (one block of burst).
    expect(seconds).toBeGreaterThan(1.2);
    expect(capped.rate).toBe(8 * MiB);

    const job = copy({ source: src, target: path.join(dir, 'b.img'), rate: 1 * MiB, blockSize: '256K' });
    await new Promise((r) => setTimeout(r, 400));
    const early = job.progress.bytesDone;
    expect(early).toBeLessThan(2 * MiB);
    job.setRate(0);
    const result = await job;
    expect(result.bytesCopied).toBe(12 * MiB);
    expect(result.rate).toBe(0);
  });

  it('pause holds new I/O; resume finishes the copy', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 16 * MiB);
    const dst = path.join(dir, 'dst.img');
    const job = copy({ source: src, target: dst, rate: 4 * MiB, blockSize: '256K' });
    await new Promise((r) => setTimeout(r, 300));
    job.pause();
    expect(job.paused).toBe(true);
    await new Promise((r) => setTimeout(r, 200)); // in-flight I/O drains
    const held = job.progress.bytesDone;
    await new Promise((r) => setTimeout(r, 500));
    expect(job.progress.bytesDone).toBe(held);
    job.setRate(0);
    job.resume();
    const result = await job;
    expect(result.bytesCopied).toBe(16 * MiB);
    expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true);
  });

  it('--rate-file changes the CLI rate while it runs', async () => {
    const dir = tempDir();
    const src = makeImage(dir, 'src.img', 16 * MiB);
    const rateFile = path.join(dir, 'rate');
    fs.writeFileSync(rateFile, '1M\n');
    const child = spawn(process.execPath, [CLI, `if=${src}`, `of=${path.join(dir, 'dst.img')}`, `--rate-file=${rateFile}`, 'bs=256K'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    fs.writeFileSync(rateFile, 'unlimited\n');
    expect(await exited).toBe(0);
    // At 1 MiB/s it would take ~15 s more; lifted, it ends well within that.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe.skipIf(skipWithoutLoop)('SIGINT with a mapfile', () => {
  afterAll(() => detachAll());

  it('drains, flushes, updates the mapfile, prints a summary and exits 130; rerunning finishes the copy', async () => {
    const dir = tempDir();
    const srcImage = makeImage(dir, 'src.img', 32 * MiB);
    const src = attachLoop(srcImage);
    const dst = attachLoop(makeImage(dir, 'dst.img', 32 * MiB, 'zero'));
    const map = path.join(dir, 'copy.map');
    const args = [CLI, `if=${src}`, `of=${dst}`, `--mapfile=${map}`, '--checkpoint-interval=5000'];
    const child = spawn(process.execPath, [...args, '--rate=8M', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Interrupt once at least 2 MiB are done (progress lines come every second).
    let stdout = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const lines = stdout.split('\n').slice(0, -1).filter((l) => l.startsWith('{')); // complete lines only
        const last = lines.length > 0 ? (JSON.parse(lines[lines.length - 1]) as { bytesDone?: number }) : {};
        if ((last.bytesDone ?? 0) >= 2 * MiB) resolve();
      });
    });
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/devmove: interrupted by SIGINT after \d+ bytes; what was written has been flushed; mapfile .* records \d+ bytes finished; resume with: devmove if=\S+ of=\S+ .*--mapfile/);
    // The interval is 5 s, yet the map has what was done at the interrupt.
    const rescue = RescueMap.parse(fs.readFileSync(map, 'utf8'), map);
    const done = rescue.bytes('+');
    expect(done).toBeGreaterThanOrEqual(2 * MiB);
    expect(readRange(dst, 0, done).equals(fs.readFileSync(srcImage).subarray(0, done))).toBe(true);
    const rerun = spawnSync(process.execPath, [...args, '--json'], { encoding: 'utf8' });
    expect(rerun.status).toBe(0);
    const result = JSON.parse(rerun.stdout.trim().split('\n').at(-1) ?? '{}') as { bytesCopied: number };
    expect(result.bytesCopied).toBe(32 * MiB - done);
    expect(readRange(dst, 0, 32 * MiB).equals(fs.readFileSync(srcImage))).toBe(true);
  });
});
