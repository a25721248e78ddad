// The device manager: block devices keyed by kernel name, from libudev
// (enumeration, properties, hot-plug events) merged with sysfs facts
// (sysfs.ts), mounts (mountinfo.ts), what is on each device (content.ts:
// the udev database or a read-only libblkid probe) and its node's owner and
// mode and mounted filesystem's usage (facts.ts).
//
//   devices.list()          every block device
//   devices.lookup(name)    one device by kernel name, path, symlink or MAJ:MIN
//   devices.watch()         add / remove / change events, as an EventEmitter and an async iterable
//
// libudev is loaded at run time on the first device-manager call; without it
// these calls fail with ELIBACC (copies never need it). Without a udev daemon
// (no /run/udev: containers, minimal VMs) the udev database is absent: model,
// vendor, serial and WWN then come from the kernel's sysfs attributes when it
// has them, /dev/disk/by-* links are empty, filesystem types and labels come
// from libblkid, and nothing is invented. libblkid is loaded on the first
// content probe; without it the content fields are unknown (each device says
// why, ELIBACC) and everything else works.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DevmoveError } from '../base/errors';
import { mountsOf, readMountInfo, type MountEntry } from '../storage/mountinfo';
import { ContentProber, decodeUdevEnc, type DeviceContent, type DeviceContentProbe } from './content';
import { filesystemUsage, nodeAccess, type FilesystemUsage, type NodeAccess } from './facts';
import {
  loadNative,
  type NativeBinding,
  type NativeUdevDevice,
  type NativeUdevError,
  type NativeUdevMessage,
  type NativeUdevMonitor,
} from '../addon/binding';
import { blockInfoByDevno, blockInfoByName, readQueueFacts, splitRdev, type BlockInfo, type QueueFacts } from '../storage/sysfs';

export type { DeviceContent, DeviceContentProbe, DeviceProbeError } from './content';
export type { FilesystemUsage, NodeAccess } from './facts';
export type { QueueFacts } from '../storage/sysfs';

export interface DeviceMount {
  mountPoint: string;
  fsType: string;
  readOnly: boolean;
}

/**
 * One block device. Beyond the fields below it carries lsblk's columns, under lsblk's meanings:
 * DeviceContent (fsType, fsVersion, label, uuid, ptType, ptUuid, partType, partLabel, partUuid,
 * partFlags: from the udev database or libblkid; see contentProbe), QueueFacts (alignment, I/O
 * sizes, discard limits, scheduler, read-ahead, zoned: sysfs), NodeAccess (owner, group, mode of
 * the node) and FilesystemUsage (fsSizeBytes, fsAvailableBytes, fsUsedBytes while mounted).
 */
export interface Device extends DeviceContent, QueueFacts, NodeAccess, FilesystemUsage {
  /** Kernel name: 'sdb', 'loop3', 'nvme0n1p2', 'dm-0'. */
  name: string;
  /** Device node: '/dev/sdb'. */
  path: string;
  major: number;
  minor: number;
  /** 'MAJ:MIN' */
  devno: string;
  type: 'disk' | 'partition';
  sizeBytes: number;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  readOnly: boolean;
  removable: boolean;
  rotational: boolean;
  /** udev's ID_MODEL, else the kernel's device/model (SCSI, ATA, USB storage); absent when neither says. */
  model?: string;
  /** udev's ID_VENDOR, else the kernel's device/vendor for devices that also publish device/model. */
  vendor?: string;
  /** udev's ID_SERIAL_SHORT (or ID_SERIAL), else the kernel's serial or device/serial (virtio, NVMe). */
  serial?: string;
  /** udev's ID_WWN(_WITH_EXTENSION) ('0x5000c500…'), else the kernel's wwid ('naa.…', 'eui.…'). */
  wwn?: string;
  /** Where fsType, label, uuid and the partition fields came from, or why they are unknown. */
  contentProbe: DeviceContentProbe;
  /** Symlinks to the node from the udev database (/dev/disk/by-id/…, by-path, by-uuid…); empty without a udev daemon. */
  links: string[];
  /** Partitions: the whole disk's kernel name. */
  disk?: string;
  /** Disks: kernel names of their partitions. */
  partitions: string[];
  /** Partitions: number, first byte on the disk and length. */
  partition?: { number: number; startBytes: number; sizeBytes: number };
  /** Devices stacked on this one (dm, md, LVM), from sysfs holders/. */
  holders: string[];
  /** Devices this one is stacked on (dm, md), from sysfs slaves/. */
  slaves: string[];
  /** Loop devices with a backing file. */
  loop?: { backingFile: string; offsetBytes: number; sizeLimitBytes: number };
  /** Where the filesystem on this device is mounted (/proc/self/mountinfo: this process's mount namespace). */
  mounts: DeviceMount[];
  /** The /sys/devices/… directory. */
  sysPath: string;
  /** What udev says: whether its database has the device (a udev daemon processed it), and its properties (the database's, else the kernel's uevent). */
  udev: { initialized: boolean; properties: Record<string, string> };
}

/** What an event says about a device that is not (or no longer) in sysfs: a 'remove', or a device gone again before it could be read. */
export type DeviceIdentity = Pick<Device, 'name' | 'path' | 'major' | 'minor' | 'devno' | 'type' | 'sysPath' | 'disk'> & {
  partition?: { number: number };
};

/** The kernel's uevent actions (kobject_action). */
export type DeviceAction = 'add' | 'remove' | 'change' | 'move' | 'online' | 'offline' | 'bind' | 'unbind';

interface DeviceEventBase {
  action: DeviceAction;
  /** The kernel's uevent sequence number. */
  seqnum?: number;
  /** 'kernel': the raw uevent; 'udev': after the udev daemon processed it (links and database ready). */
  source: 'kernel' | 'udev';
  /** The event's properties as sent (e.g. DISK_MEDIA_CHANGE=1 on a loop detach). */
  properties: Record<string, string>;
}

/** `present`: the device was found in sysfs when the event was handled (never for 'remove'). */
export type DeviceEvent =
  | (DeviceEventBase & { present: true; device: Device })
  | (DeviceEventBase & { present: false; device: DeviceIdentity });

export interface WatchOptions {
  /**
   * Keep the process alive while the watcher is open (default true, like fs.watch); false or
   * `unref()` lets the process exit with the watcher open. Whatever this says, a pending
   * `for await` / `next()` on the watcher keeps the process alive until it gets its event.
   */
  persistent?: boolean;
  /**
   * 'auto' (default): both netlink sources are opened; udev's events are delivered, and the
   * kernel's only while no udev daemon runs (no /run/udev/control), so each uevent is seen once.
   * 'kernel' or 'udev': that source only.
   */
  source?: 'auto' | 'kernel' | 'udev';
  /** Closes the watcher when aborted. */
  signal?: AbortSignal;
}

// ---- errors -------------------------------------------------------------------

const ENOTBLK = 15;
const ELIBACC = 79;

function notFound(name: string): DevmoveError {
  return new DevmoveError({ errno: os.constants.errno.ENODEV, operation: 'lookup', path: name });
}

/** Runs a device-manager native call, turning its errors into DevmoveErrors. */
function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    const info = (error as NativeUdevError | undefined)?.sysError;
    if (info !== undefined) throw new DevmoveError(info);
    throw error;
  }
}

/** The addon, with libudev loaded: ELIBACC when libudev is missing. */
function udevNative(): NativeBinding {
  const native = loadNative();
  if (typeof native.udevStatus !== 'function' || typeof native.blkidProbe !== 'function') {
    throw new Error('devmove\'s native addon predates this device manager: rebuild it with `npm rebuild devmove`');
  }
  const status = native.udevStatus();
  if (!status.available) {
    throw new DevmoveError(
      status.error ?? { errno: ELIBACC, syscall: 'dlopen', path: status.library, detail: `${status.library} is not available: install the libudev1 package` },
    );
  }
  return native;
}

export interface DeviceManagerStatus {
  /** libudev loadable: list, lookup and watch work. */
  libudev: boolean;
  /** The libudev name dlopen()ed ('libudev.so.1', or DEVMOVE_LIBUDEV). */
  library: string;
  error?: DevmoveError;
  /** A udev daemon runs: its database supplies links, model, serial and (when it probed) the content fields. */
  udevDaemon: boolean;
  /** libblkid loadable: devices no udev daemon probed get fsType, label, uuid and the partition fields. */
  libblkid: { available: boolean; library: string; error?: DevmoveError };
}

/** Whether the device manager can run here: libudev and libblkid loadable, and whether a udev daemon runs. */
export function deviceManagerStatus(): DeviceManagerStatus {
  const native = loadNative();
  const status = native.udevStatus();
  const blkid = native.blkidStatus();
  const out: DeviceManagerStatus = {
    libudev: status.available,
    library: status.library,
    udevDaemon: udevDaemonRunning(),
    libblkid: { available: blkid.available, library: blkid.library },
  };
  if (status.error) out.error = new DevmoveError(status.error);
  if (blkid.error) out.libblkid.error = new DevmoveError(blkid.error);
  return out;
}

function udevDaemonRunning(): boolean {
  return fs.existsSync('/run/udev/control');
}

// ---- merging udev, sysfs and mountinfo -------------------------------------------

function clean(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

interface Identity {
  model?: string;
  vendor?: string;
  serial?: string;
  wwn?: string;
}

function identityOf(record: NativeUdevDevice | undefined): Identity {
  if (record === undefined) return {};
  const p = record.properties;
  const sys = record.diskSysattrs;
  const out: Identity = {};
  const model = clean(decodeUdevEnc(p.ID_MODEL_ENC)) ?? clean(p.ID_MODEL) ?? clean(sys['device/model']);
  // device/vendor of a virtio disk is a PCI vendor id ('0x1af4'), not a name: only
  // devices that also publish device/model (SCSI, ATA, USB storage) have a vendor name there.
  const vendor =
    clean(decodeUdevEnc(p.ID_VENDOR_ENC)) ??
    clean(p.ID_VENDOR) ??
    (sys['device/model'] !== undefined ? clean(sys['device/vendor']) : undefined);
  const serial = clean(p.ID_SERIAL_SHORT) ?? clean(p.ID_SERIAL) ?? clean(sys.serial) ?? clean(sys['device/serial']);
  const wwn = clean(p.ID_WWN_WITH_EXTENSION) ?? clean(p.ID_WWN) ?? clean(sys.wwid) ?? clean(sys['device/wwid']);
  if (model !== undefined) out.model = model;
  if (vendor !== undefined) out.vendor = vendor;
  if (serial !== undefined) out.serial = serial;
  if (wwn !== undefined) out.wwn = wwn;
  return out;
}

/**
 * What one list(), lookup() or event reads once and shares between its devices: the mount table,
 * the content probes (each disk probed once), and user and group names.
 */
class DeviceReader {
  readonly mounts: readonly MountEntry[] = readMountInfo();
  readonly #native: NativeBinding;
  readonly #prober: ContentProber;
  readonly #names = new Map<string, { user?: string; group?: string }>();

  /**
   * `infos`: the sysfs facts already read, by kernel name (others are read when needed). `read:
   * false`: the content fields only from the udev database, no device opened (watch events).
   */
  constructor(native: NativeBinding, infos: ReadonlyMap<string, BlockInfo> = new Map(), options: { read?: boolean } = {}) {
    this.#native = native;
    this.#prober = new ContentProber(native, (name) => infos.get(name) ?? blockInfoByName(name), options);
  }

  /** Probes the content of all these devices at once (in parallel) before they are built. */
  probeAll(devices: ReadonlyArray<readonly [BlockInfo, NativeUdevDevice | undefined]>): void {
    this.#prober.probeAll(devices);
  }

  build(info: BlockInfo, record: NativeUdevDevice | undefined): Device {
    const mounts = mountsOf(info.major, info.minor, this.mounts);
    const path = record?.devnode ?? info.devnode;
    const device: Device = {
      name: info.name,
      path,
      major: info.major,
      minor: info.minor,
      devno: info.devno,
      type: info.type,
      sizeBytes: info.sizeBytes,
      logicalBlockBytes: info.logicalBlockBytes,
      physicalBlockBytes: info.physicalBlockBytes,
      readOnly: info.readOnly,
      removable: info.removable,
      rotational: info.rotational,
      ...identityOf(record),
      ...this.#prober.content(info, record),
      ...filesystemUsage(mounts, this.mounts),
      ...readQueueFacts(info),
      ...nodeAccess(path, (uid, gid) => this.#namesOf(uid, gid)),
      links: [...(record?.devlinks ?? [])].sort(),
      partitions: [...info.partitions].sort(compareNames),
      holders: info.holders,
      slaves: info.slaves,
      mounts: mounts.map((e) => ({ mountPoint: e.mountPoint, fsType: e.fsType, readOnly: e.readOnly })),
      sysPath: info.sysPath,
      udev: { initialized: record?.initialized ?? false, properties: { ...(record?.properties ?? {}) } },
    };
    if (info.disk !== undefined) device.disk = info.disk;
    if (info.partition !== undefined) device.partition = { ...info.partition };
    if (info.loop !== undefined) device.loop = { ...info.loop };
    return device;
  }

  #namesOf(uid: number, gid: number): { user?: string; group?: string } {
    const key = `${uid}:${gid}`;
    let names = this.#names.get(key);
    if (names === undefined) {
      names = this.#native.accountNames(uid, gid);
      this.#names.set(key, names);
    }
    return names;
  }
}

/** Natural order of kernel names: loop2 < loop10, sda < sda1 < sda2 < sdb. */
export function compareNames(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === y) continue;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d;
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

// ---- list / lookup ---------------------------------------------------------------

/** Every block device, in natural name order (a disk's partitions right after it). */
export function list(): Device[] {
  const native = udevNative();
  const records = callNative(() => native.udevListBlockDevices());
  const found: Array<[BlockInfo, NativeUdevDevice]> = [];
  for (const record of records) {
    const info = blockInfoByName(record.sysname);
    if (info !== undefined) found.push([info, record]); // else: gone since the scan
  }
  const reader = new DeviceReader(native, new Map(found.map(([info]) => [info.name, info])));
  reader.probeAll(found);
  const devices = found.map(([info, record]) => reader.build(info, record));
  return devices.sort((a, b) => compareNames(a.name, b.name));
}

function statOrUndefined(file: string): fs.BigIntStats | undefined {
  try {
    return fs.statSync(file, { bigint: true });
  } catch {
    return undefined;
  }
}

/** sysfs facts for a lookup name; undefined when nothing matches; ENOTBLK for an existing non-block file. */
function findBlockInfo(name: string): BlockInfo | undefined {
  const devno = /^(\d+):(\d+)$/.exec(name);
  if (devno) return blockInfoByDevno(Number(devno[1]), Number(devno[2]));
  if (!name.includes('/')) {
    const byName = blockInfoByName(name);
    if (byName !== undefined) return byName;
    // A node name that is not a kernel name, e.g. /dev/cdrom → sr0.
    const inDev = statOrUndefined(path.join('/dev', name));
    if (inDev?.isBlockDevice()) {
      const { major, minor } = splitRdev(inDev.rdev);
      return blockInfoByDevno(major, minor);
    }
  }
  // A path (a bare name: relative to the current directory), symlinks followed.
  const st = statOrUndefined(name);
  if (st === undefined) return undefined;
  if (!st.isBlockDevice()) {
    throw new DevmoveError({
      errno: ENOTBLK,
      operation: 'lookup',
      path: name,
      detail: `'${name}' is ${st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : 'not a block device node'}`,
    });
  }
  const { major, minor } = splitRdev(st.rdev);
  return blockInfoByDevno(major, minor);
}

/**
 * One block device by kernel name ('sdb', 'loop3', 'nvme0n1p2'), node path ('/dev/sdb'), any
 * path or symlink to a node ('/dev/disk/by-id/…', resolved by its rdev), or 'MAJ:MIN'. A bare
 * name is a kernel name first, then a name under /dev, then a path in the current directory.
 * Throws a DevmoveError: ENODEV (operation 'lookup', path: name) when nothing matches, ENOTBLK
 * for an existing file that is not a block device, ELIBACC without libudev.
 */
export function lookup(name: string): Device {
  if (typeof name !== 'string' || name === '') throw new TypeError('devices.lookup(name): name must be a non-empty string');
  const native = udevNative();
  const info = findBlockInfo(name);
  if (info === undefined) throw notFound(name);
  const record = callNative(() => native.udevBlockDevice({ sysname: info.name }));
  return new DeviceReader(native).build(info, record);
}

/**
 * The device node for a kernel name ('loop3' → '/dev/loop3') or 'MAJ:MIN' ('7:3' →
 * '/dev/loop3'); any other input (paths, image file names) is returned unchanged. sysfs only:
 * needs no libudev. A bare name that is a block device and also a file in the current directory
 * is ambiguous: EINVAL (unless that file is the same device's node).
 */
export function resolveDevicePath(nameOrPath: string): string {
  let info: BlockInfo | undefined;
  const devno = /^(\d+):(\d+)$/.exec(nameOrPath);
  if (devno) info = blockInfoByDevno(Number(devno[1]), Number(devno[2]));
  else if (nameOrPath !== '' && !nameOrPath.includes('/')) info = blockInfoByName(nameOrPath);
  if (info === undefined) return nameOrPath;
  let local: fs.BigIntStats | undefined;
  try {
    local = fs.lstatSync(nameOrPath, { bigint: true });
  } catch {
    local = undefined;
  }
  if (local !== undefined) {
    const target = statOrUndefined(nameOrPath);
    const same = target?.isBlockDevice() === true && splitRdev(target.rdev).major === info.major && splitRdev(target.rdev).minor === info.minor;
    if (!same) {
      throw new DevmoveError({
        errno: os.constants.errno.EINVAL,
        operation: 'lookup',
        path: nameOrPath,
        detail: `'${nameOrPath}' is both a block device and a file in the current directory; write ${info.devnode} or ./${nameOrPath}`,
      });
    }
  }
  return info.devnode;
}

// ---- watch -----------------------------------------------------------------------

const ACTIONS: ReadonlySet<string> = new Set(['add', 'remove', 'change', 'move', 'online', 'offline', 'bind', 'unbind']);

function identityFromEvent(record: NativeUdevDevice): DeviceIdentity {
  const major = record.major ?? Number(record.properties.MAJOR ?? NaN);
  const minor = record.minor ?? Number(record.properties.MINOR ?? NaN);
  const type = record.devtype === 'partition' ? 'partition' : 'disk';
  const identity: DeviceIdentity = {
    name: record.sysname,
    path: record.devnode ?? `/dev/${record.properties.DEVNAME ?? record.sysname}`,
    major,
    minor,
    devno: `${major}:${minor}`,
    type,
    sysPath: record.syspath,
  };
  if (type === 'partition') {
    identity.disk = record.disk ?? path.basename(path.dirname(record.syspath));
    const number = Number(record.properties.PARTN);
    if (Number.isInteger(number)) identity.partition = { number };
  }
  return identity;
}

/** A DeviceEvent from a monitor message: the device as sysfs shows it now, or what the event says. */
function eventFromRecord(message: NativeUdevDevice & { action: string; source: 'kernel' | 'udev' }): DeviceEvent {
  const base: DeviceEventBase = {
    action: message.action as DeviceAction,
    source: message.source,
    properties: { ...message.properties },
  };
  if (message.seqnum !== undefined) base.seqnum = message.seqnum;
  if (message.action !== 'remove') {
    const info = blockInfoByName(message.sysname);
    if (info !== undefined && (message.major === undefined || (info.major === message.major && info.minor === message.minor))) {
      // No content probe here: probing every changed device would hold the event loop on each
      // event of every device (a slow or failing one for seconds) and delay the events behind it.
      return { ...base, present: true, device: new DeviceReader(loadNative(), new Map(), { read: false }).build(info, message) };
    }
  }
  return { ...base, present: false, device: identityFromEvent(message) };
}

export interface DeviceWatcherEvents {
  /** Every event. */
  event: [DeviceEvent];
  add: [DeviceEvent];
  remove: [DeviceEvent];
  change: [DeviceEvent];
  move: [DeviceEvent];
  online: [DeviceEvent];
  offline: [DeviceEvent];
  bind: [DeviceEvent];
  unbind: [DeviceEvent];
  error: [Error];
  close: [];
}

/**
 * Hot-plug events of block devices. Emits 'event' for every event and also the action's name
 * ('add', 'remove', 'change', …); 'error' if a netlink socket fails (the watcher then closes);
 * 'close' once. Also an async iterable of the same events (`for await`), ended by close();
 * leaving the loop early closes the watcher.
 */
export class DeviceWatcher extends EventEmitter<DeviceWatcherEvents> implements AsyncIterable<DeviceEvent> {
  #monitors: NativeUdevMonitor[] = [];
  #closed = false;
  #persistent: boolean;
  #waiting = 0; // pending next() calls of iterators
  #onAbort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  /** Use devices.watch(). */
  constructor(options: WatchOptions = {}) {
    super();
    const source = options.source ?? 'auto';
    if (source !== 'auto' && source !== 'kernel' && source !== 'udev') {
      throw new RangeError(`devices.watch(): source must be 'auto', 'kernel' or 'udev', not ${JSON.stringify(source)}`);
    }
    this.#persistent = options.persistent ?? true;
    const native = udevNative();
    const onMessage = (message: NativeUdevMessage): void => this.#onMessage(message, source);
    const sources: Array<'kernel' | 'udev'> = source === 'auto' ? ['kernel', 'udev'] : [source];
    let firstError: unknown;
    for (const s of sources) {
      try {
        this.#monitors.push(callNative(() => new native.UdevMonitor(s, 'block', onMessage)));
      } catch (error) {
        // 'auto' works with either source (a sandbox may refuse one).
        firstError ??= error;
      }
    }
    if (this.#monitors.length === 0 || (source !== 'auto' && firstError !== undefined)) {
      for (const m of this.#monitors) m.close();
      throw firstError;
    }
    this.#updateRef();
    if (options.signal !== undefined) {
      const signal = options.signal;
      if (signal.aborted) {
        this.close();
      } else {
        this.#signal = signal;
        this.#onAbort = () => this.close();
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Keep the process alive while open (the default). */
  ref(): this {
    this.#persistent = true;
    this.#updateRef();
    return this;
  }

  /** Let the process exit while open (a pending `for await` still holds it). */
  unref(): this {
    this.#persistent = false;
    this.#updateRef();
    return this;
  }

  /** Whether the watcher now keeps the process alive. */
  hasRef(): boolean {
    return this.#monitors.some((m) => m.hasRef());
  }

  /** Stop watching; idempotent. Ends iterators and emits 'close'. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const m of this.#monitors) m.close();
    this.#monitors = [];
    if (this.#signal !== undefined && this.#onAbort !== undefined) this.#signal.removeEventListener('abort', this.#onAbort);
    this.emit('close');
  }

  #updateRef(): void {
    const ref = !this.#closed && (this.#persistent || this.#waiting > 0);
    for (const m of this.#monitors) {
      if (ref) m.ref();
      else m.unref();
    }
  }

  #onMessage(message: NativeUdevMessage, source: 'auto' | 'kernel' | 'udev'): void {
    if (this.#closed) return;
    if (message.error !== undefined) {
      // Iterators take the error from the 'error' event and see the end at 'close'.
      const error = new DevmoveError(message.error);
      try {
        this.emit('error', error); // throws, as EventEmitter does, when nobody listens
      } finally {
        this.close();
      }
      return;
    }
    if (!ACTIONS.has(message.action)) return;
    // 'auto': with a udev daemon its own event follows the kernel's, with links and database.
    if (source === 'auto' && message.source === 'kernel' && udevDaemonRunning()) return;
    const event = eventFromRecord(message);
    this.emit(event.action, event);
    this.emit('event', event);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<DeviceEvent> {
    return new WatchIterator(this, (delta) => {
      this.#waiting += delta;
      this.#updateRef();
    }, () => this.#closed);
  }
}

/**
 * A watcher's events as an async iterator: events queue until next() asks for them; while
 * next() waits, the watcher keeps the process alive (`waiting` counts the waits). An 'error'
 * rejects the next wait; 'close' ends the iteration; return()/throw() close the watcher.
 */
class WatchIterator implements AsyncIterableIterator<DeviceEvent> {
  private readonly queue: DeviceEvent[] = [];
  private readonly waiters: Array<{ resolve: (r: IteratorResult<DeviceEvent>) => void; reject: (e: unknown) => void }> = [];
  private failure: unknown;
  private ended = false;
  private readonly onEvent = (event: DeviceEvent): void => {
    const w = this.waiters.shift();
    if (w === undefined) {
      this.queue.push(event);
      return;
    }
    this.waiting(-1);
    w.resolve({ value: event, done: false });
  };
  private readonly onError = (error: Error): void => {
    this.failure = error;
  };
  private readonly onClose = (): void => {
    this.detach();
    this.settleAll();
  };

  constructor(
    private readonly watcher: DeviceWatcher,
    private readonly waiting: (delta: number) => void,
    closed: () => boolean,
  ) {
    watcher.on('event', this.onEvent);
    watcher.on('error', this.onError);
    watcher.on('close', this.onClose);
    if (closed()) this.onClose();
  }

  next(): Promise<IteratorResult<DeviceEvent>> {
    const event = this.queue.shift();
    if (event !== undefined) return Promise.resolve({ value: event, done: false });
    if (this.failure !== undefined) {
      const error = this.failure;
      this.failure = undefined;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.waiting(1);
    });
  }

  return(): Promise<IteratorResult<DeviceEvent>> {
    this.detach();
    this.queue.length = 0;
    this.watcher.close();
    this.settleAll();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(): Promise<IteratorResult<DeviceEvent>> {
    return this.return();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<DeviceEvent> {
    return this;
  }

  private detach(): void {
    if (this.ended) return;
    this.ended = true;
    this.watcher.off('event', this.onEvent);
    this.watcher.off('error', this.onError);
    this.watcher.off('close', this.onClose);
  }

  private settleAll(): void {
    let settled = 0;
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) {
      settled++;
      if (this.failure !== undefined) {
        w.reject(this.failure);
        this.failure = undefined;
      } else {
        w.resolve({ value: undefined, done: true });
      }
    }
    this.waiting(-settled);
  }
}

/** Watch block devices for add / remove / change events. See WatchOptions for what keeps the process alive. */
export function watch(options: WatchOptions = {}): DeviceWatcher {
  return new DeviceWatcher(options);
}

export const devices = { list, lookup, watch, resolveDevicePath };
