// The model test's world: a fresh set of small real kernel objects per run —
// image files in /dev/shm and /var/tmp, loop devices over them (some with an
// offset and a size limit), loop devices over loop devices, symlinks (to files,
// to devices, dangling, through a symlinked directory with `..`), hard links, a
// tiny tmpfs that fills up, the faulty FUSE device and an NBD export (nbdkit's
// file plugin over an image no local name reaches) — and the ground truth of
// every name: which storage object (a backing file) its bytes live in, from
// which byte offset, how large the view is.
//
// Every object is made here, recorded in the replay script, checked against the
// kernel's own account (so the tester's truth is the kernel's), and removed by
// teardown(), which detaches only the loop devices this world attached.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { FAULTYFS, FaultyDevice, fuseAvailable, type FaultSet } from '../helpers/faulty';
import { haveNbdkit, startNbdkit, type NbdServer } from '../helpers/nbd';
import type { Rng } from './rng';
import { buildFeatures, type BuildFeatures } from './process';
import { REPO, Script, sh } from './script';

export const SECTOR = 512;
const MiB = 1024 * 1024;

export type Where = 'shm' | 'var' | 'tmpfs' | 'faulty';

/** A file that holds bytes: everything any name shows lives in one of these. */
export interface Storage {
  /** Short, stable label for messages ('a.img', 'V/v1.img', 'faulty'). */
  label: string;
  /** The file's kernel-resolved path. */
  path: string;
  where: Where;
  /** Loop devices hold it open: it must never be replaced (the loop device keeps the old inode). */
  pinned: boolean;
}

export type NameFlag =
  | 'symlink' | 'hardlink' | 'dotdot' | 'dangling' | 'loop' | 'loop-offset' | 'loop-over-loop' | 'faulty' | 'tmpfs'
  | 'dev-symlink' | 'absolute' | 'var' | 'nbd';

/** One way to name (a part of) a storage object. */
export interface Name {
  /** As written on the command line; relative spellings are relative to the world directory (the CLI's cwd). */
  spelling: string;
  storage: Storage;
  /** Where the name's byte 0 lies in the storage. */
  offset: number;
  /** Set for block devices and NBD exports: the device (or the export's id) and its fixed size. */
  block?: { device: string; size: number; logical: number };
  /** An NBD export's URI: the unix socket as spelled (relative to the world directory, or absolute). */
  nbd?: { socket: string };
  flags: ReadonlySet<NameFlag>;
  /** What the name is, for messages: 'loop device (-o 1048576 --sizelimit 2097152) over a.img'. */
  what: string;
}

export interface LoopDevice {
  device: string;
  variable: string;
  /** What it was attached over: a file path or another loop device. */
  over: string;
  /** Attached over another loop device. */
  stacked: boolean;
  offset: number;
  sizelimit: number;
  directIo: boolean;
  sectorSize: number;
  size: number;
  rdev: { major: number; minor: number };
  /** Where its bytes live. */
  storage: Storage;
  base: number;
}

export interface MapSlot {
  /** Kernel-resolved path of the map file. */
  path: string;
  /** Ways to spell it. */
  spellings: string[];
}

export interface WorldFeatures {
  faulty: boolean;
  tmpfs: boolean;
  /** An nbdkit file export (when nbdkit is installed and the build takes NBD URIs). */
  nbd: boolean;
}

/** nbdkit is installed: worlds may have an NBD export. */
export const nbdAvailable = haveNbdkit;

/** File content for a key: AES-128-CTR over zeros, which `openssl enc` reproduces in the replay script. */
export function content(key: Buffer, size: number): Buffer {
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Nothing in a world is near this size (images are 1–8 MiB, devices as large as their files). */
export const MAX_STORAGE_BYTES = 256 * MiB;

/** A storage object that grew far past anything a step plans (it cannot be read into memory to compare). */
export class HugeFile extends Error {
  constructor(
    readonly storage: Storage,
    readonly size: number,
  ) {
    super(`${storage.label} (${storage.path}) is now ${size} bytes long`);
  }
}

/** Worlds alive in this process: torn down at exit if a run never got that far. */
const live = new Set<World>();
process.on('exit', () => {
  for (const w of [...live]) w.teardown();
});

export class World {
  readonly storages: Storage[] = [];
  readonly names: Name[] = [];
  readonly loops: LoopDevice[] = [];
  readonly symlinks: Array<{ path: string; target: string }> = [];
  readonly hardlinks: Array<{ path: string; storage: Storage }> = [];
  readonly dirs: string[] = [];
  readonly mapSlots: MapSlot[] = [];
  /** A named FIFO in the world directory and its spellings (if= of a pipe copy). */
  readonly fifo = { path: '', spellings: [] as string[] };
  /** Files the world itself writes (job files, maps it authors): expected to exist. */
  readonly ownFiles = new Set<string>();
  /** Sizes of the storage objects that exist when the world is built (the generator draws numbers from them). */
  readonly initialSize = new Map<Storage, number>();
  faulty: FaultyDevice | undefined;
  faultyStorage: Storage | undefined;
  /** nbdkit serving nbdStorage's file, with the log filter (connections opened and closed). */
  nbdServer: NbdServer | undefined;
  nbdStorage: Storage | undefined;
  tmpfs: { mount: string; sizeBytes: number } | undefined;
  readonly script = new Script();
  /** What the devmove under test can do (pipes, the threads driver): operations it lacks are not drawn. */
  readonly build: BuildFeatures = buildFeatures();
  private torn = false;
  private loopCount = 0;

  private constructor(
    /** The world directory in /dev/shm (cwd of every devmove run). */
    readonly W: string,
    /** The world directory on a disk file system. */
    readonly V: string,
    readonly seed: number,
  ) {
    live.add(this);
  }

  static async build(rng: Rng, features: WorldFeatures): Promise<World> {
    const W = fs.realpathSync(fs.mkdtempSync('/dev/shm/devmove-model-'));
    const V = fs.realpathSync(fs.mkdtempSync('/var/tmp/devmove-model-'));
    const world = new World(W, V, rng.seed);
    try {
      world.header();
      world.buildFiles(rng);
      world.buildLoops(rng);
      if (features.tmpfs) world.buildTmpfs(rng);
      if (features.faulty) await world.buildFaulty(rng);
      if (features.nbd && world.build.nbd) await world.buildNbd(rng);
      world.buildMapSlots();
      world.verifyTruth();
    } catch (error) {
      world.teardown();
      throw error;
    }
    return world;
  }

  private header(): void {
    const s = this.script;
    s.variable(this.W, 'W');
    s.variable(this.V, 'V');
    s.variable(REPO, 'REPO');
    s.line('set -u   # run as root from anywhere; REPO is the devmove checkout');
    s.raw(`REPO=${sh(REPO)}`);
    s.line(fs.existsSync(path.join(REPO, 'bin', 'devmove')) ? 'DM="$REPO/bin/devmove"' : 'DM="node $REPO/dist/cli/main.js"');
    s.line('W=$(realpath "$(mktemp -d /dev/shm/devmove-model-XXXXXX)"); V=$(realpath "$(mktemp -d /var/tmp/devmove-model-XXXXXX)"); cd "$W"');
    s.line('gen() { openssl enc -aes-128-ctr -nosalt -K "$1" -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null | head -c "$2"; }');
  }

  // ---- files, links, directories --------------------------------------------------

  private mkdir(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    this.dirs.push(dir);
    this.script.line(`mkdir -p ${sh(dir)}`);
  }

  private addStorage(label: string, file: string, where: Where): Storage {
    const s: Storage = { label, path: file, where, pinned: false };
    this.storages.push(s);
    return s;
  }

  /** An image file with random content and a few zero runs (for conv=sparse). */
  private image(rng: Rng, label: string, file: string, where: Where): Storage {
    const size = rng.weighted<number>([[1 * MiB, 3], [2 * MiB, 3], [3 * MiB, 2], [4 * MiB, 2], [8 * MiB, 1]]) + (rng.chance(0.15) ? rng.int(1, 4095) : 0);
    const key = rng.bytes16();
    const bytes = content(key, size);
    this.script.line(`gen ${key.toString('hex')} ${size} > ${sh(file)}`);
    const zeroRuns = rng.int(0, 3);
    for (let i = 0; i < zeroRuns; i++) {
      const sectors = rng.int(1, 512);
      const at = rng.int(0, Math.max(0, Math.floor(size / SECTOR) - sectors));
      bytes.fill(0, at * SECTOR, Math.min(size, (at + sectors) * SECTOR));
      this.script.line(`dd if=/dev/zero of=${sh(file)} bs=512 seek=${at} count=${sectors} conv=notrunc status=none`);
    }
    fs.writeFileSync(file, bytes.subarray(0, size));
    const s = this.addStorage(label, file, where);
    this.initialSize.set(s, size);
    return s;
  }

  private name(spelling: string, storage: Storage, what: string, flags: NameFlag[] = [], offset = 0, block?: Name['block']): Name {
    const n: Name = { spelling, storage, offset, flags: new Set(flags), what, ...(block ? { block } : {}) };
    this.names.push(n);
    return n;
  }

  private symlink(target: string, at: string): void {
    fs.symlinkSync(target, at);
    this.symlinks.push({ path: at, target });
    this.script.line(`ln -s ${sh(target)} ${sh(at)}`);
  }

  /** Plain spellings of a file: relative, ./relative, absolute. */
  private fileNames(s: Storage, extra: NameFlag[] = []): void {
    const rel = path.relative(this.W, s.path);
    const inside = !rel.startsWith('..');
    if (inside) {
      this.name(rel, s, `file ${rel}`, extra);
      this.name(`./${rel}`, s, `file ./${rel}`, extra);
    }
    this.name(s.path, s, `file ${s.path}`, [...extra, 'absolute']);
  }

  private buildFiles(rng: Rng): void {
    const { W, V } = this;
    this.mkdir(path.join(W, 'real', 'deep'));
    this.mkdir(path.join(W, 'maps'));
    this.mkdir(path.join(W, 'jobs'));
    this.mkdir(path.join(V, 'real'));
    const images = ['a.img', 'b.img', ...(rng.chance(0.5) ? ['c.img'] : [])].map((f) => this.image(rng, f, path.join(W, f), 'shm'));
    for (const s of images) this.fileNames(s);
    const v1 = this.image(rng, 'V/v1.img', path.join(V, 'v1.img'), 'var');
    this.fileNames(v1, ['var']);

    // A symlinked directory with '..': the kernel resolves lnkdir/../x.img to
    // real/x.img (lnkdir -> real/deep), text-level normalisation to ./x.img —
    // a decoy with other bytes, so a wrong resolution cannot go unnoticed.
    const decoy = this.image(rng, 'x.img', path.join(W, 'x.img'), 'shm');
    this.fileNames(decoy);
    const realX = this.image(rng, 'real/x.img', path.join(W, 'real', 'x.img'), 'shm');
    this.symlink('real/deep', path.join(W, 'lnkdir'));
    this.name('lnkdir/../x.img', realX, 'lnkdir/../x.img (lnkdir -> real/deep: the kernel opens real/x.img)', ['dotdot']);
    this.name(path.join(W, 'lnkdir') + '/../x.img', realX, '$W/lnkdir/../x.img (the kernel opens real/x.img)', ['dotdot', 'absolute']);
    this.name('real/x.img', realX, 'file real/x.img');
    this.name('real/deep/../x.img', realX, 'real/deep/../x.img');
    // The same on the disk file system, reached through a symlink in $W.
    const v2 = this.image(rng, 'V/real/v2.img', path.join(V, 'real', 'v2.img'), 'var');
    this.fileNames(v2, ['var']);
    this.symlink(path.join(V, 'real'), path.join(W, 'vlnk'));
    this.name('vlnk/v2.img', v2, 'vlnk/v2.img (vlnk -> $V/real)', ['symlink', 'var']);

    // Hard link and symlinks to files.
    const a = images[0];
    fs.linkSync(a.path, path.join(W, 'h-a.img'));
    this.hardlinks.push({ path: path.join(W, 'h-a.img'), storage: a });
    this.script.line(`ln ${sh(a.path)} ${sh(path.join(W, 'h-a.img'))}`);
    this.name('h-a.img', a, 'h-a.img (a hard link to a.img)', ['hardlink']);
    const b = images[1];
    this.symlink('b.img', path.join(W, 's-b.img'));
    this.name('s-b.img', b, 's-b.img (a symlink to b.img)', ['symlink']);
    this.symlink(v1.path, path.join(W, 's-v1.img'));
    this.name('s-v1.img', v1, 's-v1.img (a symlink to $V/v1.img)', ['symlink', 'var']);

    // Files that do not exist yet (targets devmove creates), and a dangling
    // symlink to one of them.
    for (const [label, file, where] of [
      ['new1.img', path.join(W, 'new1.img'), 'shm'],
      ['new2.img', path.join(W, 'new2.img'), 'shm'],
      ['V/new3.img', path.join(V, 'new3.img'), 'var'],
      ['future.img', path.join(W, 'future.img'), 'shm'],
    ] as const) {
      this.fileNames(this.addStorage(label, file, where), where === 'var' ? ['var'] : []);
    }
    const future = this.storages.find((s) => s.label === 'future.img') as Storage;
    this.symlink('future.img', path.join(W, 'dang.img'));
    this.name('dang.img', future, 'dang.img (a symlink to future.img, which does not exist yet)', ['symlink', 'dangling']);

    // A named FIFO (a pipe source: `cat NAME > pipe.fifo &`), and a symlink to it.
    this.fifo.path = path.join(W, 'pipe.fifo');
    execFileSync('mkfifo', [this.fifo.path]);
    this.script.line(`mkfifo ${sh(this.fifo.path)}`);
    this.symlink('pipe.fifo', path.join(W, 's-fifo'));
    this.fifo.spellings.push('pipe.fifo', './pipe.fifo', this.fifo.path, 's-fifo');
  }

  // ---- loop devices -----------------------------------------------------------------

  private attach(rng: Rng, over: string, storage: Storage, base: number, overSize: number, stacked = false, lowerSector = 512): LoopDevice {
    // Over a 4096-byte-sector loop device, 512-byte requests fail (EIO from the lower device): not devmove's business.
    const sectorSize = rng.chance(0.1) || lowerSector === 4096 ? 4096 : 512;
    const unit = sectorSize === 4096 || rng.chance(0.5) ? 4096 : SECTOR;
    const offset = rng.chance(0.5) ? 0 : rng.aligned(unit, Math.max(unit, overSize / 2), unit);
    const room = overSize - offset;
    let sizelimit = rng.chance(0.5) || room < 2 * 4096 ? 0 : rng.aligned(4096, room, unit);
    // A 4096-byte-sector loop device over a file whose size is not a multiple of 4096 reports a
    // size it cannot read to the end (the last partial block fails): not what this test is about.
    if (sectorSize === 4096 && sizelimit === 0 && room % 4096 !== 0) sizelimit = Math.floor(room / 4096) * 4096;
    const directIo = rng.chance(0.7);
    const args = ['--find', '--show', `--direct-io=${directIo ? 'on' : 'off'}`];
    if (offset > 0) args.push('--offset', String(offset));
    if (sizelimit > 0) args.push('--sizelimit', String(sizelimit));
    if (sectorSize !== 512) args.push('--sector-size', String(sectorSize));
    args.push(over);
    const device = run('losetup', args);
    const variable = `L${++this.loopCount}`;
    const [major, minor] = fs.readFileSync(`/sys/block/${path.basename(device)}/dev`, 'utf8').trim().split(':').map(Number);
    const loop: LoopDevice = {
      device,
      variable,
      over,
      stacked,
      offset,
      sizelimit,
      directIo,
      sectorSize,
      size: Number(run('blockdev', ['--getsize64', device])),
      rdev: { major, minor },
      storage,
      base: base + offset,
    };
    this.loops.push(loop);
    storage.pinned = true;
    this.script.line(`${variable}=$(losetup ${args.map(sh).join(' ')})`);
    this.script.variable(device, variable);
    return loop;
  }

  private loopName(loop: LoopDevice, what: string, flags: NameFlag[]): void {
    const block = { device: loop.device, size: loop.size, logical: loop.sectorSize };
    const geometry = [loop.offset ? `-o ${loop.offset}` : '', loop.sizelimit ? `--sizelimit ${loop.sizelimit}` : '', loop.sectorSize !== 512 ? `--sector-size ${loop.sectorSize}` : '']
      .filter(Boolean)
      .join(' ');
    const desc = `${loop.device} (${what}${geometry ? ` ${geometry}` : ''})`;
    const all: NameFlag[] = [...flags, 'loop', ...(loop.offset ? ['loop-offset' as const] : [])];
    this.name(loop.device, loop.storage, desc, all, loop.base, block);
  }

  private buildLoops(rng: Rng): void {
    const images = this.storages.filter((s) => s.where !== 'tmpfs' && fs.existsSync(s.path) && s.label !== 'x.img');
    const count = rng.int(2, 4);
    const made: LoopDevice[] = [];
    for (let i = 0; i < count; i++) {
      const s = rng.pick(images);
      const loop = this.attach(rng, s.path, s, 0, fs.statSync(s.path).size);
      made.push(loop);
      this.loopName(loop, `loop over ${s.label}`, s.where === 'var' ? ['var'] : []);
    }
    // Loop devices over loop devices: another name for (part of) the same bytes.
    const overLoops = rng.int(1, 2);
    for (let i = 0; i < overLoops; i++) {
      const lower = rng.pick(made);
      const loop = this.attach(rng, lower.device, lower.storage, lower.base, lower.size, true, lower.sectorSize);
      this.loopName(loop, `loop over ${lower.device}, over ${lower.storage.label}`, ['loop-over-loop']);
    }
    // A symlink to a device.
    const target = rng.pick(this.loops);
    const link = path.join(this.W, 'dev-link');
    this.symlink(target.device, link);
    const block = { device: target.device, size: target.size, logical: target.sectorSize };
    this.name('dev-link', target.storage, `dev-link (a symlink to ${target.device})`, ['dev-symlink', 'loop', ...(target.stacked ? (['loop-over-loop'] as const) : [])], target.base, block);
  }

  // ---- tmpfs that fills up ------------------------------------------------------------

  private buildTmpfs(rng: Rng): void {
    const mount = path.join(this.W, 'full');
    const sizeBytes = rng.pick([512 * 1024, 1 * MiB, 2 * MiB]);
    this.mkdir(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'devmove-model', mount]);
    this.tmpfs = { mount, sizeBytes };
    this.script.line(`mount -t tmpfs -o size=${sizeBytes} devmove-model ${sh(mount)}`);
    for (const f of ['t1.img', 't2.img']) {
      this.fileNames(this.addStorage(`full/${f}`, path.join(mount, f), 'tmpfs'), ['tmpfs']);
    }
  }

  // ---- the faulty device ------------------------------------------------------------------

  private async buildFaulty(rng: Rng): Promise<void> {
    if (!fuseAvailable()) return;
    const sizeBytes = rng.pick([1, 2, 4]) * MiB;
    const key = rng.bytes16();
    const dev = await FaultyDevice.create({ sizeBytes, fill: 'zero' });
    this.faulty = dev;
    // Our content, written to the image the daemon passes through to; the loop
    // device reads it with direct I/O, so nothing stale is cached above it.
    fs.writeFileSync(dev.imagePath, content(key, sizeBytes));
    spawnSync('blockdev', ['--flushbufs', dev.device]);
    const s = this.addStorage('faulty', dev.imagePath, 'faulty');
    s.pinned = true;
    this.faultyStorage = s;
    this.initialSize.set(s, sizeBytes);
    this.script.variable(dev.dir, 'F');
    this.script.variable(dev.device, 'LF');
    const py = '/usr/bin/python3';
    this.script.line(`F=$(realpath "$(mktemp -d /dev/shm/devmove-faulty-XXXXXX)"); mkdir "$F/mnt"; gen ${key.toString('hex')} ${sizeBytes} > "$F/backing.img"`);
    this.script.line(`${py} ${sh(FAULTYFS)} --image "$F/backing.img" --mount "$F/mnt" --faults '{}' --parent $$ > "$F/faultyfs.log" 2>&1 &`);
    this.script.line('until [ -f "$F/mnt/disk.img" ]; do sleep 0.05; done');
    this.script.line('LF=$(losetup --find --show --direct-io=on "$F/mnt/disk.img"); echo 124 > /sys/block/${LF#/dev/}/queue/max_sectors_kb');
    const block = { device: dev.device, size: sizeBytes, logical: 512 };
    this.name(dev.device, s, `${dev.device} (the faulty FUSE device)`, ['faulty', 'loop'], 0, block);
    this.symlink(dev.device, path.join(this.W, 'faulty-link'));
    this.name('faulty-link', s, `faulty-link (a symlink to the faulty device ${dev.device})`, ['faulty', 'loop', 'dev-symlink'], 0, block);
  }

  // ---- the NBD export ------------------------------------------------------------------------

  /**
   * `nbdkit file` over an image of its own, reached only through NBD URIs: devmove
   * knows an export by its server and name, so a local name of the same file would
   * be an alias no tool can see (not what this world tests). Two spellings of one
   * socket: absolute, and relative to the world directory (the CLI's cwd).
   */
  private async buildNbd(rng: Rng): Promise<void> {
    const s = this.image(rng, 'n.img', path.join(this.W, 'n.img'), 'shm');
    s.pinned = true;
    this.nbdStorage = s;
    const log = path.join(this.W, 'nbd.log');
    this.ownFiles.add(log);
    const server = await startNbdkit({ plugin: 'file', filters: ['log'], params: [s.path, `logfile=${log}`] });
    this.nbdServer = server;
    const socket = server.socket as string;
    this.script.variable(server.dir, 'S');
    this.script.line('S=$(realpath "$(mktemp -d /dev/shm/devmove-test-XXXXXX)")');
    this.script.line(`nbdkit --unix "$S/nbd.sock" --pidfile "$S/nbdkit.pid" --filter=log file ${sh(s.path)} logfile=${sh(log)}`);
    const block = { device: `nbd:unix:${socket}/`, size: fs.statSync(s.path).size, logical: 512 };
    for (const spelled of [socket, path.relative(this.W, socket)]) {
      const n = this.name(`nbd+unix:///?socket=${spelled}`, s, `NBD export of nbdkit file over n.img (socket ${spelled})`, ['nbd'], 0, block);
      n.nbd = { socket: spelled };
    }
  }

  /**
   * Waits until nbdkit has closed every connection (its log filter writes
   * Disconnect once a connection's requests are done): a killed devmove leaves
   * requests the server may still carry out, and the step's check must see them.
   */
  quiesceNbd(): void {
    if (!this.nbdServer) return;
    const log = path.join(this.W, 'nbd.log');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const text = fs.readFileSync(log, 'utf8');
      const opened = (text.match(/ Connect /g) ?? []).length;
      const closed = (text.match(/ Disconnect /g) ?? []).length;
      if (opened === closed) return;
      if (Date.now() > deadline) throw new Error(`world: nbdkit still has ${opened - closed} connection(s) open 30 s after the step`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }

  /** Replaces the faulty device's fault set (the empty set heals it). */
  async setFaults(faults: FaultSet): Promise<void> {
    if (!this.faulty) return;
    await this.faulty.setFaults(faults);
    this.script.line(`printf '%s' ${sh(JSON.stringify(faults))} > "$F/mnt/ctl"`);
  }

  private buildMapSlots(): void {
    const slot = (file: string, spellings: string[]): void => {
      this.mapSlots.push({ path: file, spellings });
    };
    const W = this.W;
    slot(path.join(W, 'maps', 'm1.map'), ['maps/m1.map', './maps/m1.map', path.join(W, 'maps', 'm1.map')]);
    slot(path.join(W, 'maps', 'm2.map'), ['maps/m2.map', 'real/deep/../../maps/m2.map']);
    slot(path.join(W, 'maps', 'm3.map'), ['maps/m3.map']);
    slot(path.join(this.V, 'm4.map'), [path.join(this.V, 'm4.map'), 'vlnk/../m4.map']);
    if (this.tmpfs) slot(path.join(this.tmpfs.mount, 'm5.map'), ['full/m5.map']);
  }

  /** The tester's truth must be the kernel's: every name checked once after set-up. */
  private verifyTruth(): void {
    for (const n of this.names) {
      // Not path.resolve(): that normalises '..' as text, which is what the
      // kernel does not do (and what the world is built to catch).
      if (n.nbd) continue;
      const abs = n.spelling.startsWith('/') ? n.spelling : `${this.W}/${n.spelling}`;
      if (n.block) {
        const real = fs.realpathSync.native(abs);
        if (real !== n.block.device) throw new Error(`world: ${n.spelling} resolves to ${real}, not ${n.block.device}`);
        continue;
      }
      if (!fs.existsSync(n.storage.path)) {
        // Not there yet: the kernel must resolve the name's directory to the storage's.
        const link = fs.lstatSync(abs, { throwIfNoEntry: false })?.isSymbolicLink() === true;
        const dir = fs.realpathSync.native(path.dirname(link ? path.resolve(path.dirname(abs), fs.readlinkSync(abs)) : abs));
        if (path.join(dir, path.basename(n.storage.path)) !== n.storage.path) throw new Error(`world: ${n.spelling} would create ${dir}, not ${n.storage.path}`);
        continue;
      }
      const real = fs.realpathSync.native(abs);
      const same = fs.statSync(real).ino === fs.statSync(n.storage.path).ino;
      if (!same) throw new Error(`world: ${n.spelling} opens ${real}, not ${n.storage.path}`);
    }
    for (const l of this.loops) {
      const sys = `/sys/block/${path.basename(l.device)}/loop`;
      const backing = fs.readFileSync(`${sys}/backing_file`, 'utf8').trim();
      if (backing !== l.over) throw new Error(`world: ${l.device} is over ${backing}, not ${l.over}`);
      if (Number(fs.readFileSync(`${sys}/offset`, 'utf8')) !== l.offset) throw new Error(`world: ${l.device} offset differs`);
    }
  }

  // ---- what every step uses ----------------------------------------------------------------

  /** Block devices, the ones stacked on others first. */
  get blockDevices(): string[] {
    const stacked = this.loops.filter((l) => l.stacked).map((l) => l.device);
    const base = this.loops.filter((l) => !l.stacked).map((l) => l.device);
    return [...stacked, ...base, ...(this.faulty ? [this.faulty.device] : [])];
  }

  /**
   * Writes back and drops what the world's block devices hold in their page
   * caches (BLKFLSBUF), top of the stack first: what devmove wrote through a
   * buffered path reaches the backing files before they are read, and no later
   * buffered read is served stale bytes after a write under another name.
   */
  flushDevices(): void {
    spawnSync('blockdev', ['--flushbufs', ...this.blockDevices], { stdio: 'ignore' });
  }

  /** The bytes of a storage object now, or null when its file does not exist. Throws HugeFile past MAX_STORAGE_BYTES. */
  read(s: Storage): Buffer | null {
    try {
      const size = fs.statSync(s.path).size;
      if (size > MAX_STORAGE_BYTES) throw new HugeFile(s, size);
      return fs.readFileSync(s.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  inode(file: string): bigint | null {
    try {
      return fs.statSync(file, { bigint: true }).ino;
    } catch {
      return null;
    }
  }

  /**
   * Problems with the world's structure: a symlink, hard link, loop device or
   * device node that is no longer what was made. Device nodes replaced by a
   * file are put back (mknod), so teardown and other users of the loop number
   * are not left with a regular file in /dev.
   */
  structureProblems(): string[] {
    const problems: string[] = [];
    for (const l of this.symlinks) {
      try {
        if (fs.readlinkSync(l.path) !== l.target) problems.push(`symlink ${l.path} now points to ${fs.readlinkSync(l.path)}`);
      } catch {
        problems.push(`symlink ${l.path} is gone or no longer a symlink`);
      }
    }
    for (const h of this.hardlinks) {
      const a = this.inode(h.path);
      const b = this.inode(h.storage.path);
      if (a === null || a !== b) problems.push(`hard link ${h.path} no longer shares ${h.storage.path}'s inode`);
    }
    for (const l of this.loops) {
      const st = fs.statSync(l.device, { throwIfNoEntry: false });
      if (!st?.isBlockDevice()) {
        problems.push(`device node ${l.device} is no longer a block device (restored with mknod)`);
        fs.rmSync(l.device, { force: true });
        execFileSync('mknod', [l.device, 'b', String(l.rdev.major), String(l.rdev.minor)]);
      }
      const backing = fs.readFileSync(`/sys/block/${path.basename(l.device)}/loop/backing_file`, 'utf8').trim();
      if (backing !== l.over && !backing.startsWith(`${l.over} (deleted)`)) problems.push(`${l.device} is now over ${backing}`);
    }
    if (this.tmpfs && spawnSync('mountpoint', ['-q', this.tmpfs.mount]).status !== 0) problems.push(`tmpfs ${this.tmpfs.mount} is no longer mounted`);
    if (this.fifo.path && !fs.lstatSync(this.fifo.path, { throwIfNoEntry: false })?.isFIFO()) problems.push(`FIFO ${this.fifo.path} is gone or no longer a FIFO`);
    return problems;
  }

  /** Every regular file under the world's directories (symlinks not followed). */
  files(): string[] {
    const out: string[] = [];
    const walk = (dir: string): void => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile() || e.isBlockDevice() || e.isCharacterDevice() || e.isSocket()) out.push(p);
        else if (e.isFIFO() && p !== this.fifo.path) out.push(p);
      }
    };
    walk(this.W);
    walk(this.V);
    return out;
  }

  /**
   * A copy may cut a file a loop device is attached over. Reading that loop
   * device past the file's new end is undefined (EIO, zeros, or whatever the
   * kernel's partial-sector completion leaves in the buffer), which is the
   * kernel's business, not devmove's. So after each step such a file is
   * extended with zeros (truncate -s) to what its loop devices show; the
   * model's view of it (zeros past the old end) is then exact. Returns the
   * storage objects it extended.
   */
  repairPinned(): Storage[] {
    const out: Storage[] = [];
    for (const s of this.storages) {
      const need = Math.max(0, ...this.loops.filter((l) => l.storage === s && !l.stacked).map((l) => l.base + l.size));
      const size = fs.statSync(s.path, { throwIfNoEntry: false })?.size;
      if (size === undefined || size >= need) continue;
      fs.truncateSync(s.path, need);
      this.script.line(`truncate -s ${need} ${sh(s.path)}   # the tester: loop devices over it must not read past its end`);
      out.push(s);
    }
    if (out.length > 0) this.flushDevices();
    return out;
  }

  /** Shell lines that undo the set-up (for the end of a replay script). */
  teardownScript(): string[] {
    const lines = ['# clean up'];
    for (const l of [...this.loops].reverse()) lines.push(`losetup -d \${${l.variable}}`);
    if (this.faulty) lines.push('losetup -d "$LF"; umount "$F/mnt"; rm -rf "$F"');
    if (this.nbdServer) lines.push('kill "$(cat "$S/nbdkit.pid")"; rm -rf "$S"');
    if (this.tmpfs) lines.push('umount "$W/full"');
    lines.push('cd /; rm -rf "$W" "$V"');
    return lines;
  }

  /** Detaches what this world attached (stacked loops first), unmounts, ends the FUSE daemon, removes the files. */
  teardown(): void {
    if (this.torn) return;
    this.torn = true;
    live.delete(this);
    for (const l of [...this.loops].reverse()) {
      // Only while it is still ours: the backing file is the one we attached.
      try {
        const backing = fs.readFileSync(`/sys/block/${path.basename(l.device)}/loop/backing_file`, 'utf8').trim();
        if (backing === l.over || backing.startsWith(`${l.over} (deleted)`)) spawnSync('losetup', ['--detach', l.device], { stdio: 'ignore' });
      } catch {
        // already detached
      }
    }
    if (this.faulty) {
      try {
        void this.faulty.destroy();
      } catch {
        // keep going
      }
    }
    // SIGTERM now; the helper reaps it and removes its directory (leftovers() waits for the exit).
    if (this.nbdServer) void this.nbdServer.stop();
    if (this.tmpfs) spawnSync('umount', [this.tmpfs.mount], { stdio: 'ignore' });
    if (!this.tmpfs || spawnSync('mountpoint', ['-q', this.tmpfs.mount]).status !== 0) fs.rmSync(this.W, { recursive: true, force: true });
    fs.rmSync(this.V, { recursive: true, force: true });
  }

  /** What teardown left: loop devices over our files, mounts under our directories. */
  leftovers(): string[] {
    const out: string[] = [];
    for (const dev of fs.readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
      let backing = '';
      try {
        backing = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim();
      } catch {
        continue;
      }
      if (backing.startsWith(this.W) || backing.startsWith(this.V) || this.loops.some((l) => l.device === `/dev/${dev}` && backing === l.over)) out.push(`/dev/${dev} over ${backing}`);
      if (this.faulty && backing.startsWith(this.faulty.dir)) out.push(`/dev/${dev} over ${backing}`);
    }
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '');
    for (const m of mounts) {
      if (m.startsWith(this.W) || (this.faulty && m.startsWith(this.faulty.dir))) out.push(`mount ${m}`);
    }
    const nbdkit = this.nbdServer;
    if (nbdkit) {
      // Stopped by teardown(): gone once it has handled SIGTERM.
      for (let i = 0; i < 100 && nbdkit.alive(); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      if (nbdkit.alive()) out.push(`nbdkit ${nbdkit.pid}`);
    }
    if (this.faulty && this.faulty.pid > 0 && fs.existsSync(`/proc/${this.faulty.pid}`)) {
      const stat = fs.readFileSync(`/proc/${this.faulty.pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') out.push(`FUSE daemon ${this.faulty.pid}`);
    }
    return out;
  }
}
