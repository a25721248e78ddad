// A real block device that fails on demand: a loop device over the one data
// file of a FUSE file system (test/fixtures/faultyfs.py, python3-fusepy) that
// passes I/O through to an image in /dev/shm, except that it returns EIO for
// reads or writes touching given byte ranges, is slow in given ranges, or
// starts failing writes after the first N bytes. Faults are set at create()
// and can be changed while the device is in use.
//
// Every request reaches the daemon: the FUSE mount is direct_io (no page cache
// for its files), and the loop device uses direct I/O on it. Only the loop
// device's own page cache (buffered access to /dev/loopN) can serve a read
// from memory or delay a write's error to fsync: use O_DIRECT on the device,
// as devmove does.
//
// What the kernel makes of it (6.18, libfuse 2): block requests are capped at
// MAX_REQUEST_BYTES so that each is exactly one FUSE request and fails or
// succeeds whole (see create()); the loop device serves one request at a time
// (libfuse 2 has no async direct I/O), so a slow request delays those queued
// behind it; and a delay applies per request, so an I/O larger than
// MAX_REQUEST_BYTES over a slow range is delayed once per piece.
//
// Each device is torn down by destroy(), and at process exit if a test never
// got that far; the daemon also exits (and unmounts) when its parent dies.
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { attachLoop, canUseLoop, detachLoop, type Fill, isRoot, makeImage } from './devices';

export const FAULTYFS = path.join(__dirname, '..', 'fixtures', 'faultyfs.py');

/** Byte range [offset, offset + length) on the device. */
export type Range = readonly [offset: number, length: number];

export interface SlowRange {
  offset: number;
  length: number;
  /** Delay of every request (at most MAX_REQUEST_BYTES) that touches the range. */
  delayMs: number;
}

/** A complete fault set: setFaults() replaces the one in force, it does not merge. */
export interface FaultSet {
  /** Reads touching any of these ranges fail whole with EIO. */
  readErrors?: readonly Range[];
  /**
   * Reads touching these ranges succeed, but return every byte of the ranges XOR 0x5a: a disk that
   * silently returns other bytes than were written (what verify is for).
   */
  corruptReads?: readonly Range[];
  /** Writes touching any of these ranges fail whole with EIO and write nothing. */
  writeErrors?: readonly Range[];
  /** Requests touching these ranges are delayed (by the largest delay they touch). */
  slow?: readonly SlowRange[];
  /**
   * Writes succeed until this many bytes have been written under this fault
   * set; the first write that would pass it fails with EIO, and so does every
   * write after it (a target that dies mid-copy).
   */
  failWritesAfterBytes?: number;
}

export interface FaultyDeviceOptions extends FaultSet {
  sizeBytes: number;
  /** The image's initial content (as makeImage()); 'random' by default. */
  fill?: Fill;
  /** Seed of the 'random' fill; the same seed gives the same bytes. */
  seed?: string;
  /** The loop device's logical block size; 512 by default. */
  logicalBlockSize?: 512 | 4096;
  /** Attach the loop device with direct I/O (the default; it works over FUSE). */
  directIo?: boolean;
  /** Log every request the daemon serves to `logPath` (offset, length, thread). */
  log?: boolean;
}

/** What the daemon has served since the start or the last resetStats. */
export interface FaultyStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  readErrors: number;
  writeErrors: number;
  /** Reads that returned corrupted bytes (corruptReads). */
  corruptReads: number;
  /** Requests that were delayed by a slow range. */
  delayed: number;
  /** Requests sleeping in a slow range at this moment (a gauge: resetStats leaves it). */
  delaying: number;
  /** Request sizes seen at the FUSE layer: size in bytes -> count. */
  readSizes: Record<string, number>;
  writeSizes: Record<string, number>;
  /** Most data requests the daemon was serving at once. */
  maxInFlight: number;
}

// Debian's python3 first: python3-fusepy is installed for it, and a python3
// earlier in PATH (pyenv, a venv) may not see it.
const PYTHONS = ['/usr/bin/python3', 'python3'];

/**
 * The daemon is a tool, not code under test: no sanitizer runtime from
 * `npm run test:sanitize`'s LD_PRELOAD in it.
 */
function daemonEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  return env;
}

let python: string | null | undefined;

/** A python3 that can import fusepy (with its libfuse), or null. */
function findPython(): string | null {
  if (python === undefined) {
    const probe = 'try:\n from fusepy import FUSE\nexcept ImportError:\n from fuse import FUSE';
    python = PYTHONS.find((p) => spawnSync(p, ['-c', probe], { stdio: 'ignore', env: daemonEnv() }).status === 0) ?? null;
  }
  return python;
}

/** Can this machine run the fixture: root, loop devices, /dev/fuse, python3-fusepy? */
export function fuseAvailable(): boolean {
  return isRoot && canUseLoop && fs.existsSync('/dev/fuse') && findPython() !== null;
}
export const skipWithoutFuse = !fuseAvailable();

/** Mount points in this mount namespace (octal escapes such as \040 decoded). */
export function mountPoints(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** The file a loop device is bound to, or null when it is detached. */
export function loopBackingFile(device: string): string | null {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(device)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Is the process alive (a zombie not yet reaped counts as gone)? */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls `done` every 20 ms for up to `ms`; returns its last answer. */
function waitSync(done: () => boolean, ms: number): boolean {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    sleepSync(20);
  }
  return true;
}

function faultJson(faults: FaultSet & { resetStats?: boolean }): string {
  const { readErrors, writeErrors, corruptReads, slow, failWritesAfterBytes, resetStats } = faults;
  return JSON.stringify({ readErrors, writeErrors, corruptReads, slow, failWritesAfterBytes, resetStats });
}

/** The loop device's largest block request: what one FUSE request can carry. */
export const MAX_REQUEST_BYTES = 124 * 1024;

const live = new Set<FaultyDevice>();

export class FaultyDevice {
  /** The loop device over the FUSE file, e.g. '/dev/loop7'. */
  device = '';
  /** Did the kernel accept direct I/O for the loop device (sysfs loop/dio)? */
  directIo = false;
  private destroyed = false;
  /** queue/max_sectors_kb before create() lowered it; restored by teardown. */
  private maxSectorsKb = '';
  private daemon: ChildProcess | null = null;

  private constructor(
    /** Holds everything below; removed by destroy(). */
    readonly dir: string,
    /** The real bytes behind the device: read it to check what landed. */
    readonly imagePath: string,
    /** Where faultyfs is mounted. */
    readonly mountPoint: string,
    /** Where the daemon logs (its stderr and, with `log`, every request). */
    readonly logPath: string,
  ) {}

  /** The FUSE file the loop device is attached to. */
  get fusePath(): string {
    return path.join(this.mountPoint, 'disk.img');
  }

  private get ctlPath(): string {
    return path.join(this.mountPoint, 'ctl');
  }

  /** The daemon's pid (0 before it started). */
  get pid(): number {
    return this.daemon?.pid ?? 0;
  }

  static async create(options: FaultyDeviceOptions): Promise<FaultyDevice> {
    const py = findPython();
    if (!fuseAvailable() || py === null) throw new Error('faulty device: needs root, /dev/fuse, loop devices and python3-fusepy');
    // Its own directory, not devices.ts's tempDir(): detachAll() must never
    // recurse into a live mount point.
    // Real paths: the loop device's backing_file (how teardown recognises it)
    // is the kernel's.
    const root = fs.realpathSync(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
    const dir = fs.mkdtempSync(path.join(root, 'devmove-faulty-'));
    const dev = new FaultyDevice(
      dir,
      makeImage(dir, 'backing.img', options.sizeBytes, options.fill ?? 'random', options.seed ?? 'faulty'),
      path.join(dir, 'mnt'),
      path.join(dir, 'faultyfs.log'),
    );
    live.add(dev);
    try {
      fs.mkdirSync(dev.mountPoint);
      await dev.start(py, options);
      dev.device = attachLoop(dev.fusePath, {
        directIo: options.directIo ?? true,
        ...(options.logicalBlockSize ? { sectorSize: options.logicalBlockSize } : {}),
      });
      const sys = `/sys/block/${path.basename(dev.device)}`;
      dev.directIo = fs.readFileSync(`${sys}/loop/dio`, 'utf8').trim() === '1';
      // One block request must be one FUSE request. FUSE splits bigger ones
      // (libfuse 2: at most 32 pages each) and, when a later piece fails,
      // reports the bytes before it as a short transfer; the loop driver
      // retries a short read (so the failed piece is asked twice) but completes
      // a short write as a success: the error would be lost, and so would the
      // data. 124 KiB leaves a page for a buffer that does not start on one.
      // The setting outlives the detach (the next user of this loop number
      // would get 124 KiB requests): teardown puts the original back.
      dev.maxSectorsKb = fs.readFileSync(`${sys}/queue/max_sectors_kb`, 'utf8').trim();
      fs.writeFileSync(`${sys}/queue/max_sectors_kb`, String(MAX_REQUEST_BYTES / 1024));
      return dev;
    } catch (e) {
      dev.teardown();
      throw e;
    }
  }

  /** Starts the daemon and waits (bounded) until the mount serves the image. */
  private async start(py: string, options: FaultyDeviceOptions): Promise<void> {
    const log = fs.openSync(this.logPath, 'a');
    const args = [FAULTYFS, '--image', this.imagePath, '--mount', this.mountPoint, '--faults', faultJson(options), '--parent', String(process.pid)];
    if (options.log) args.push('--log', this.logPath);
    try {
      this.daemon = spawn(py, args, { stdio: ['ignore', log, log], env: daemonEnv() });
    } finally {
      fs.closeSync(log);
    }
    // Never keep the test process alive for it: teardown (or exit) ends it.
    this.daemon.unref();
    const exited = new Promise<never>((_, reject) => {
      this.daemon?.once('exit', (code, signal) => reject(new Error(`faultyfs exited (${code ?? signal}) before mounting:\n${this.daemonLog()}`)));
      this.daemon?.once('error', reject);
    });
    exited.catch(() => undefined); // only observed while waiting below
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (this.mounted()) {
        try {
          if (fs.statSync(this.fusePath).size === options.sizeBytes) return;
        } catch {
          // not answering yet
        }
      }
      if (Date.now() > deadline) throw new Error(`faultyfs did not mount within 10 s:\n${this.daemonLog()}`);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20))]);
    }
  }

  private mounted(): boolean {
    return mountPoints().includes(this.mountPoint);
  }

  /** The daemon's log (stderr, plus every request with `log`). */
  daemonLog(): string {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * Replaces the fault set; in force when this resolves. Writes to the device
   * already under way finish under the set they started with.
   */
  async setFaults(faults: FaultSet & { resetStats?: boolean }): Promise<void> {
    const handle = await fs.promises.open(this.ctlPath, 'w');
    try {
      await handle.writeFile(faultJson(faults));
    } finally {
      // The daemon applies the set on flush: a bad one fails close() (EINVAL).
      await handle.close();
    }
  }

  /** The daemon's counters since start or the last resetStats(). */
  stats(): FaultyStats {
    return (JSON.parse(fs.readFileSync(this.ctlPath, 'utf8')) as { stats: FaultyStats }).stats;
  }

  /** The fault set in force, as the daemon holds it. */
  faults(): FaultSet {
    return (JSON.parse(fs.readFileSync(this.ctlPath, 'utf8')) as { faults: FaultSet }).faults;
  }

  /** Zeroes the counters, keeping the faults. */
  async resetStats(): Promise<void> {
    await this.setFaults({ ...this.faults(), resetStats: true });
  }

  /** Detaches the loop device, unmounts, ends the daemon and removes the files. */
  async destroy(): Promise<void> {
    this.teardown();
  }

  /** Tears down every device not yet destroyed (for afterAll; also runs at exit). */
  static destroyAll(): void {
    for (const dev of [...live]) {
      try {
        dev.teardown();
      } catch {
        // keep going: the others still need it
      }
    }
  }

  /**
   * Synchronous so that it can run at process exit. Bounded even when I/O is
   * stuck in the daemon: ending the daemon aborts the FUSE connection, which
   * fails whatever is in flight.
   */
  private teardown(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    // 1. The loop device, only while it is still ours (devices.ts's
    //    detachAll() may have detached it and someone reused the number).
    const ours = (): boolean => this.device !== '' && loopBackingFile(this.device) === this.fusePath;
    if (ours() && this.maxSectorsKb !== '') {
      try {
        fs.writeFileSync(`/sys/block/${path.basename(this.device)}/queue/max_sectors_kb`, this.maxSectorsKb);
      } catch {
        // best effort: the device may be going away
      }
    }
    if (ours()) detachLoop(this.device);
    // Detaching is deferred while someone holds the device open (it happens
    // at the last close); give a holder with I/O in flight a moment.
    waitSync(() => !ours(), 1000);
    // 2. The mount: a busy one (the loop still holds the file) lazily.
    if (this.mounted()) {
      if (spawnSync('umount', [this.mountPoint], { stdio: 'ignore' }).status !== 0) {
        spawnSync('umount', ['--lazy', this.mountPoint], { stdio: 'ignore' });
      }
    }
    // 3. The daemon: it exits by itself once unmounted; make sure. A thread
    //    sleeping in a slow range can hold up its SIGTERM exit: then SIGKILL,
    //    which closes /dev/fuse and so aborts the connection.
    const pid = this.pid;
    const daemon = this.daemon;
    if (daemon && daemon.exitCode === null && daemon.signalCode === null && processAlive(pid)) {
      if (!waitSync(() => !processAlive(pid), 200)) daemon.kill('SIGTERM');
      if (!waitSync(() => !processAlive(pid), 1000)) {
        daemon.kill('SIGKILL');
        waitSync(() => !processAlive(pid), 3000);
      }
    }
    // 4. Whatever was waiting on the dead daemon has failed by now.
    if (ours()) waitSync(() => !ours(), 3000);
    if (this.mounted()) spawnSync('umount', ['--lazy', this.mountPoint], { stdio: 'ignore' });
    if (!this.mounted()) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

process.on('exit', () => FaultyDevice.destroyAll());

export interface DdResult {
  /** dd's exit status (0: every block copied). */
  status: number;
  stderr: string;
  /** Wall-clock time, ms. */
  ms: number;
}

/** Runs GNU dd (status=none) without blocking the event loop, so that a test can do other things while it runs. */
export function dd(args: readonly string[]): Promise<DdResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile('dd', ['status=none', ...args], { encoding: 'utf8' }, (error, _stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ status, stderr, ms: performance.now() - started });
    });
  });
}

/** `length` bytes at `offset` of a device, read with O_DIRECT (both aligned to its logical block size); throws on a failed read. */
export function readDirect(file: string, offset: number, length: number): Buffer {
  return execFileSync('dd', [`if=${file}`, 'iflag=direct,skip_bytes,count_bytes', `skip=${offset}`, `count=${length}`, `bs=${Math.min(length, 1 << 20)}`, 'status=none'], {
    maxBuffer: length + 1,
  });
}
