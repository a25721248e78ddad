// Real kernel objects for tests: image files and loop devices the test made
// itself. Every loop device attached here is detached by detachAll(), which
// each suite calls in afterAll (and which also runs at process exit).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const isRoot = process.getuid?.() === 0;
export const canUseLoop = isRoot && fs.existsSync('/dev/loop-control');
export const skipWithoutLoop = !canUseLoop;

const attached = new Set<string>();
const dirs = new Set<string>();

export function tempDir(base = '/dev/shm'): string {
  const root = fs.existsSync(base) ? base : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(root, 'devmove-test-'));
  dirs.add(dir);
  return dir;
}

export type Fill = 'random' | 'zero' | { pattern: number };

/** A regular file of `bytes` bytes; random content is deterministic per seed. */
export function makeImage(dir: string, name: string, bytes: number, fill: Fill = 'random', seed = name): string {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'w');
  try {
    if (fill === 'zero') {
      fs.ftruncateSync(fd, bytes);
    } else {
      const chunk = Buffer.alloc(Math.min(bytes, 4 * 1024 * 1024) || 1);
      let counter = 0;
      for (let done = 0; done < bytes; done += chunk.length) {
        if (fill === 'random') {
          // Deterministic pseudo-random stream: SHA-256 in counter mode.
          for (let o = 0; o < chunk.length; o += 32) {
            crypto.createHash('sha256').update(`${seed}:${counter++}`).digest().copy(chunk, o);
          }
        } else {
          chunk.fill(fill.pattern);
        }
        fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

export interface LoopOptions {
  directIo?: boolean;
  readOnly?: boolean;
  sectorSize?: 512 | 1024 | 2048 | 4096;
  partscan?: boolean;
}

export function attachLoop(image: string, options: LoopOptions = {}): string {
  const args = ['--find', '--show'];
  if (options.directIo ?? true) args.push('--direct-io=on');
  if (options.readOnly) args.push('--read-only');
  if (options.sectorSize) args.push('--sector-size', String(options.sectorSize));
  if (options.partscan) args.push('--partscan');
  args.push(image);
  const device = execFileSync('losetup', args, { encoding: 'utf8' }).trim();
  attached.add(device);
  if (options.partscan) addPartitions(device);
  return device;
}

/**
 * Makes the kernel create the partitions of a loop device's table. Kernels
 * built without the MSDOS/EFI parsers (this CI's has neither) find none on
 * their own; partx adds them through the BLKPG ioctl, as real partitions.
 * devtmpfs then creates the nodes asynchronously: wait for them (bounded).
 */
function addPartitions(device: string): void {
  const name = path.basename(device);
  const listed = (): boolean => fs.readdirSync(`/sys/block/${name}`).some((e) => e.startsWith(`${name}p`));
  if (!listed()) execFileSync('partx', ['--add', device], { stdio: 'ignore' });
  const expected = fs.readdirSync(`/sys/block/${name}`).filter((e) => e.startsWith(`${name}p`));
  const deadline = Date.now() + 5000;
  while (!expected.every((p) => fs.existsSync(`/dev/${p}`)) && Date.now() < deadline) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

export function detachLoop(device: string): void {
  try {
    execFileSync('losetup', ['--detach', device], { stdio: 'ignore' });
  } catch {
    // already gone
  }
  attached.delete(device);
}

/** Detach every loop device this process attached and remove its temp dirs (unmounting first). */
export function detachAll(): void {
  unmountAll();
  for (const device of [...attached]) detachLoop(device);
  for (const dir of [...dirs]) {
    fs.rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  }
}
process.on('exit', detachAll);

/** Is the loop device still bound to a backing file? */
export function loopIsAttached(device: string): boolean {
  return fs.existsSync(`/sys/block/${path.basename(device)}/loop/backing_file`);
}

export function readRange(file: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

export function sha256Range(file: string, offset: number, length: number): string {
  const hash = crypto.createHash('sha256');
  const step = 4 * 1024 * 1024;
  for (let done = 0; done < length; done += step) {
    hash.update(readRange(file, offset + done, Math.min(step, length - done)));
  }
  return hash.digest('hex');
}

export function sha256File(file: string): string {
  return sha256Range(file, 0, fs.statSync(file).size || deviceSize(file));
}

export function deviceSize(device: string): number {
  return Number(execFileSync('blockdev', ['--getsize64', device], { encoding: 'utf8' }).trim());
}

/** Open descriptors of this process, and how many of them are io_uring instances. */
export function openFds(): { count: number; ioUring: number; paths: string[] } {
  const paths: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      paths.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the fd used by readdir itself
    }
  }
  return { count: paths.length, ioUring: paths.filter((p) => p.includes('io_uring')).length, paths };
}

/** Writes a DOS (MBR) partition table with Linux partitions at the given 512-byte sectors. */
export function writeMbr(image: string, partitions: ReadonlyArray<{ startSector: number; sectors: number }>): void {
  const mbr = Buffer.alloc(512);
  partitions.forEach((p, i) => {
    const entry = 446 + i * 16;
    mbr[entry + 4] = 0x83; // Linux
    mbr.writeUInt32LE(p.startSector, entry + 8);
    mbr.writeUInt32LE(p.sectors, entry + 12);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, mbr, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Mounts a device on a fresh directory; returns the directory. Pair with unmount(). */
export function mount(device: string, options: string[] = []): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-mnt-'));
  execFileSync('mount', [...(options.length ? ['-o', options.join(',')] : []), device, dir]);
  mounted.add(dir);
  return dir;
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    // not mounted
  }
  mounted.delete(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

const mounted = new Set<string>();
/** Unmount everything mount() mounted; runs before detachAll() at exit. */
export function unmountAll(): void {
  for (const dir of [...mounted]) unmount(dir);
}
process.on('exit', unmountAll);
