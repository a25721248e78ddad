// Block-device facts straight from sysfs (/sys/class/block, /sys/dev/block):
// what the kernel says now, with or without a udev daemon. The device manager
// adds udev's properties on top; the copy safety checks need only this.
import fs from 'node:fs';
import path from 'node:path';

const SYS_CLASS_BLOCK = '/sys/class/block';
const SYS_DEV_BLOCK = '/sys/dev/block';
const SECTOR = 512; // sysfs sizes and partition starts are in 512-byte units, whatever the block size

export interface BlockInfo {
  /** Kernel name: 'loop3', 'sda1', 'dm-0'. */
  name: string;
  /** Device node, from the kernel's DEVNAME (e.g. /dev/loop3, /dev/mapper names are links to /dev/dm-N). */
  devnode: string;
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
  /** For a partition: the whole disk's kernel name. */
  disk?: string;
  /** For a partition: its number, first byte and length on the whole disk. */
  partition?: { number: number; startBytes: number; sizeBytes: number };
  /** For a disk: its partitions' kernel names. */
  partitions: string[];
  /** Devices stacked on this one (dm, md, LVM...), from holders/. */
  holders: string[];
  /** Devices this one is stacked on (for dm/md), from slaves/. */
  slaves: string[];
  /** Loop devices: backing file, its offset and size limit. */
  loop?: { backingFile: string; offsetBytes: number; sizeLimitBytes: number };
  /** The /sys/devices/... path. */
  sysPath: string;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readNumber(file: string): number | undefined {
  const text = readText(file);
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function uevent(dir: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of (readText(path.join(dir, 'uevent')) ?? '').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) map.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return map;
}

/** Kernel names of every block device, from /sys/class/block. */
export function listBlockNames(): string[] {
  return listDir(SYS_CLASS_BLOCK);
}

/**
 * Facts about one block device by kernel name, or undefined when there is none, including one
 * that vanishes while it is read (hot-unplug, a loop detach removing its partitions).
 */
export function blockInfoByName(name: string): BlockInfo | undefined {
  if (!/^[A-Za-z0-9!._:+-]+$/.test(name)) return undefined; // kernel names; never a path
  const dir = path.join(SYS_CLASS_BLOCK, name);
  const props = uevent(dir);
  const devno = readText(path.join(dir, 'dev'));
  if (!devno) return undefined;
  const [major, minor] = devno.split(':').map(Number);
  let sysPath: string;
  try {
    sysPath = fs.realpathSync(dir);
  } catch {
    return undefined;
  }
  const isPartition = fs.existsSync(path.join(dir, 'partition'));
  const queueDir = isPartition ? path.join(path.dirname(sysPath), 'queue') : path.join(dir, 'queue');
  const info: BlockInfo = {
    name,
    devnode: `/dev/${props.get('DEVNAME') ?? name}`,
    major,
    minor,
    devno,
    type: isPartition ? 'partition' : 'disk',
    sizeBytes: (readNumber(path.join(dir, 'size')) ?? 0) * SECTOR,
    logicalBlockBytes: readNumber(path.join(queueDir, 'logical_block_size')) ?? SECTOR,
    physicalBlockBytes: readNumber(path.join(queueDir, 'physical_block_size')) ?? SECTOR,
    readOnly: readNumber(path.join(dir, 'ro')) === 1,
    removable: readNumber(path.join(isPartition ? path.dirname(sysPath) : dir, 'removable')) === 1,
    rotational: readNumber(path.join(queueDir, 'rotational')) === 1,
    partitions: [],
    holders: listDir(path.join(dir, 'holders')),
    slaves: listDir(path.join(dir, 'slaves')),
    sysPath,
  };
  if (isPartition) {
    info.disk = path.basename(path.dirname(sysPath));
    info.partition = {
      number: readNumber(path.join(dir, 'partition')) ?? 0,
      startBytes: (readNumber(path.join(dir, 'start')) ?? 0) * SECTOR,
      sizeBytes: info.sizeBytes,
    };
  } else {
    // The kernel names a partition after its disk (sda1, loop0p1, nvme0n1p2): test only those
    // entries, not each of a disk's ~20 attribute files (one access() each, at every copy's start).
    info.partitions = listDir(dir).filter((entry) => entry.startsWith(name) && fs.existsSync(path.join(dir, entry, 'partition')));
  }
  const backingFile = readText(path.join(dir, 'loop', 'backing_file'));
  if (backingFile !== undefined) {
    info.loop = {
      backingFile,
      offsetBytes: readNumber(path.join(dir, 'loop', 'offset')) ?? 0,
      sizeLimitBytes: readNumber(path.join(dir, 'loop', 'sizelimit')) ?? 0,
    };
  }
  return info;
}

/** Facts about the block device with this device number. */
export function blockInfoByDevno(major: number, minor: number): BlockInfo | undefined {
  const link = path.join(SYS_DEV_BLOCK, `${major}:${minor}`);
  try {
    return blockInfoByName(path.basename(fs.realpathSync(link)));
  } catch {
    return undefined;
  }
}

/** Linux dev_t encoding, as stat's rdev gives it. */
export function splitRdev(rdev: number | bigint): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

/** Facts about the block device a path (node or symlink to one) refers to; undefined for anything else. */
export function blockInfoForPath(file: string): BlockInfo | undefined {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(file, { bigint: true });
  } catch {
    return undefined;
  }
  if (!st.isBlockDevice()) return undefined;
  const { major, minor } = splitRdev(st.rdev);
  return blockInfoByDevno(major, minor);
}

/**
 * Queue limits and I/O settings of a block device, as lsblk's topology (-t), discard (-D) and zone
 * (-z) columns read them: a partition's queue is its disk's; alignment offsets are the device's own.
 * A field sysfs does not publish is left undefined.
 */
export interface QueueFacts {
  /** alignment_offset: bytes from the device's start to the first naturally aligned block (lsblk ALIGNMENT). */
  alignmentOffsetBytes?: number;
  /** queue/minimum_io_size (lsblk MIN-IO). */
  minIoBytes?: number;
  /** queue/optimal_io_size, 0 when the device states none (lsblk OPT-IO). */
  optIoBytes?: number;
  /** discard_alignment, 0 for a device that cannot discard (lsblk DISC-ALN). */
  discardAlignmentBytes?: number;
  /** queue/discard_granularity, 0 when the device cannot discard (lsblk DISC-GRAN). */
  discardGranularityBytes?: number;
  /** queue/discard_max_bytes (lsblk DISC-MAX). */
  discardMaxBytes?: number;
  /** The selected I/O scheduler ('mq-deadline', 'none'); absent for devices without one (bio-based: zram, dm) (lsblk SCHED). */
  scheduler?: string;
  /** queue/read_ahead_kb × 1024 (lsblk RA, which it prints in KiB). */
  readAheadBytes?: number;
  /** queue/zoned: 'none', 'host-aware' or 'host-managed' (lsblk ZONED). */
  zoned?: string;
}

/** The selected entry of queue/scheduler ('[none] mq-deadline' → 'none'); undefined without brackets, as lsblk. */
export function parseScheduler(text: string | undefined): string | undefined {
  const selected = /\[([^\]]+)\]/.exec(text ?? '');
  return selected ? selected[1] : undefined;
}

export function readQueueFacts(info: BlockInfo): QueueFacts {
  const own = path.join(SYS_CLASS_BLOCK, info.name);
  const queue = info.type === 'partition' ? path.join(path.dirname(info.sysPath), 'queue') : path.join(own, 'queue');
  const facts: QueueFacts = {};
  const set = <K extends keyof QueueFacts>(key: K, value: QueueFacts[K] | undefined): void => {
    if (value !== undefined) facts[key] = value;
  };
  set('alignmentOffsetBytes', readNumber(path.join(own, 'alignment_offset')));
  set('minIoBytes', readNumber(path.join(queue, 'minimum_io_size')));
  set('optIoBytes', readNumber(path.join(queue, 'optimal_io_size')));
  const granularity = readNumber(path.join(queue, 'discard_granularity'));
  set('discardGranularityBytes', granularity);
  set('discardMaxBytes', readNumber(path.join(queue, 'discard_max_bytes')));
  // The kernel's discard_alignment means nothing for a device that cannot discard: lsblk shows 0.
  set('discardAlignmentBytes', granularity === undefined ? undefined : granularity > 0 ? (readNumber(path.join(own, 'discard_alignment')) ?? 0) : 0);
  set('scheduler', parseScheduler(readText(path.join(queue, 'scheduler'))));
  const readAheadKiB = readNumber(path.join(queue, 'read_ahead_kb'));
  set('readAheadBytes', readAheadKiB === undefined ? undefined : readAheadKiB * 1024);
  set('zoned', readText(path.join(queue, 'zoned')) || undefined);
  return facts;
}
