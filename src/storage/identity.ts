// The storage-identity model: where the bytes of a source, target or mapfile
// really live. Every path is resolved as the kernel resolves it (symlinks
// followed, '..' after a symlink taken from the link's target, a dangling
// link followed to the file it would create), and every side is mapped down
// to one storage object and the byte of it where the side's byte 0 is:
//
//   regular file (any hard link)        → file:DEV:INO, base 0
//   partition                          → its disk, base + the partition's start
//   loop device over a file            → that file, base + the loop's offset
//   loop device over a block device    → that device's storage, recursively
//   other block device                 → block:MAJ:MIN, base 0
//   a file that does not exist yet     → new:/resolved/path
//
// Two sides overlap when they have one storage id and their byte ranges on it
// intersect. Every decision about where a write may go (one copy, fan-out,
// job files, mapfiles) is made on this model; the engine's own same-file
// check on the opened descriptors stays as the last line of defence.
import fs from 'node:fs';
import path from 'node:path';

import { loadNative } from '../addon/binding';
import { isNbdUri, nbdStorageId, parseNbdUri } from './nbd-uri';
import { blockInfoByDevno, blockInfoByName, blockInfoForPath, type BlockInfo } from './sysfs';

/** Where a side's byte 0 is: one storage object and a byte offset on it. */
export interface StorageLocation {
  /** 'file:DEV:INO', 'block:MAJ:MIN' or 'new:/path'. */
  id: string;
  /**
   * The id plus the file's birth time where the kernel has one: a file deleted and created again
   * can get the same inode number at once (ext4 does), but not the same birth time. What a
   * mapfile records to recognise its target.
   */
  stamp: string;
  base: number;
  /** The chain from the side down to the storage, for messages: 'loop device /dev/loop4 over /dev/loop3'. */
  what: string;
}

/** What the kernel says about one side of a copy (a source, target or mapfile path). */
export interface SideFacts {
  /** The path the kernel opens: symlinks and '..' resolved, a dangling link followed. */
  path: string;
  /** 'missing' for a path that does not exist yet (a new file). */
  /** 'nbd': an NBD export named by its URI (nothing local to look at; its size is the server's). */
  kind: 'block' | 'file' | 'missing' | 'other' | 'nbd';
  block?: BlockInfo;
  /** For a partition: its whole disk. For a disk: itself. */
  disk?: BlockInfo;
  /** For a disk: its partitions. */
  partitions?: BlockInfo[];
  sizeBytes: number;
  /** Regular files: 'DEV:INO' (any hard link of the file has the same). */
  fileId?: string;
  /** Where the side's bytes live; set by gatherSide (derived from block/disk/fileId for injected facts). */
  location?: StorageLocation;
}

/** Symbolic links followed at most, as the kernel's MAXSYMLINKS. */
const SYMLINK_HOPS_MAX = 40;
/** Loop devices stacked on loop devices, followed at most. */
const LOOP_DEPTH_MAX = 16;

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * The absolute path the kernel would open (or create) for `file`, relative to `base`: realpath(3)
 * of what exists, a dangling symlink followed to its target (unless followDanglingLink is false:
 * then the link's own resolved path), and for a name that does not exist yet its resolved
 * directory plus the name. Never normalizes '..' as text where a symlink could stand before it.
 */
export function resolveKernelPath(file: string, base = process.cwd(), options: { followDanglingLink?: boolean } = {}): string {
  return resolveFrom(file, base, options.followDanglingLink ?? true, 0);
}

function resolveFrom(file: string, base: string, followLink: boolean, hops: number): string {
  if (hops > SYMLINK_HOPS_MAX) return path.resolve(base, file);
  const absolute = file.startsWith('/') ? file : `${base}/${file}`;
  try {
    return fs.realpathSync.native(absolute);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') return path.resolve(absolute);
  }
  let link: string | undefined;
  try {
    if (fs.lstatSync(absolute).isSymbolicLink()) link = fs.readlinkSync(absolute);
  } catch {
    // the last component does not exist: below
  }
  const slash = absolute.lastIndexOf('/');
  const name = absolute.slice(slash + 1);
  const dir = resolveFrom(absolute.slice(0, slash) || '/', base, true, hops + 1);
  if (link !== undefined && followLink) return resolveFrom(link, dir, true, hops + 1);
  // Only names without a symlink in them are left: '.', '..' and '' are text here.
  if (name === '' || name === '.' || name === '..') return path.resolve(dir, name);
  return path.join(dir, name);
}

function fileId(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

function fileStamp(st: fs.BigIntStats): string {
  return st.birthtimeNs > 0n ? `file:${fileId(st)}@${st.birthtimeNs}` : `file:${fileId(st)}`;
}

/** The stamp of a loop device's backing file, when its path still leads to the file the driver holds. */
function backingStamp(id: string, backingFile: string): string {
  try {
    const st = fs.statSync(backingFile, { bigint: true });
    if (`file:${fileId(st)}` === id) return fileStamp(st);
  } catch {
    // renamed or deleted since it was attached
  }
  return id;
}

function devOf(text: string): { major: number; minor: number } {
  const [major, minor] = text.split(':').map(Number);
  return { major, minor };
}

/** Linux dev_t of MAJ:MIN as stat reports it (new encoding), for comparing with st_dev. */
function encodeDev(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return (m & 0xffn) | ((M & 0xfffn) << 8n) | ((m & ~0xffn) << 12n) | ((M & ~0xfffn) << 32n);
}

/** The storage a whole disk's bytes live on: itself, or what a loop device is attached to. */
function diskLocation(disk: BlockInfo, depth: number): StorageLocation {
  const own: StorageLocation = { id: `block:${disk.devno}`, stamp: `block:${disk.devno}`, base: 0, what: `device ${disk.devnode}` };
  if (disk.loop === undefined || depth >= LOOP_DEPTH_MAX) return own;
  let status;
  try {
    status = loadNative().loopStatus(disk.devnode);
  } catch {
    return own; // detached meanwhile, or not a loop device after all: the device itself
  }
  const over = `loop device ${disk.devnode}`;
  if (status.backingRdev !== undefined) {
    const { major, minor } = devOf(status.backingRdev);
    const inner = blockInfoByDevno(major, minor);
    if (inner !== undefined) {
      const below = blockLocation(inner, depth + 1);
      return { id: below.id, stamp: below.stamp, base: below.base + status.offsetBytes, what: `${over} over ${below.what}` };
    }
  }
  const { major, minor } = devOf(status.backingDevice);
  const id = `file:${encodeDev(major, minor)}:${status.backingInode}`;
  return { id, stamp: backingStamp(id, disk.loop.backingFile), base: status.offsetBytes, what: `${over} over ${disk.loop.backingFile}` };
}

/** Where a block device's byte 0 lives (partitions, loop devices and loops over loops followed). */
export function blockLocation(info: BlockInfo, depth = 0): StorageLocation {
  if (info.type === 'partition') {
    const disk = info.disk === undefined ? undefined : blockInfoByName(info.disk);
    if (disk === undefined) return { id: `block:${info.devno}`, stamp: `block:${info.devno}`, base: 0, what: `device ${info.devnode}` };
    const below = diskLocation(disk, depth);
    return { ...below, base: below.base + (info.partition?.startBytes ?? 0), what: `partition ${info.devnode} of ${below.what}` };
  }
  return diskLocation(info, depth);
}

/** An NBD export: its storage is the server's export (nbd-uri.ts), whatever URI names it. */
function nbdSide(uri: string): SideFacts {
  let id: string;
  try {
    id = nbdStorageId(parseNbdUri(uri));
  } catch {
    id = `nbd:${uri}`;  // not usable: copy() refuses it with the reason
  }
  return { path: uri, kind: 'nbd', sizeBytes: 0, location: { id, stamp: id, base: 0, what: `NBD export ${id}` } };
}

/** What the kernel says about `file` (already a path: node names are resolved before). */
export function gatherSide(file: string): SideFacts {
  if (isNbdUri(file)) return nbdSide(file);
  const resolved = resolveKernelPath(file);
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(resolved, { bigint: true });
  } catch {
    return { path: resolved, kind: 'missing', sizeBytes: 0, location: { id: `new:${resolved}`, stamp: `new:${resolved}`, base: 0, what: `new file ${resolved}` } };
  }
  if (st.isFile()) return { path: resolved, kind: 'file', sizeBytes: Number(st.size), fileId: fileId(st), location: { id: `file:${fileId(st)}`, stamp: fileStamp(st), base: 0, what: `file ${resolved}` } };
  const block = st.isBlockDevice() ? blockInfoForPath(resolved) : undefined;
  if (block === undefined) return { path: resolved, kind: 'other', sizeBytes: 0, location: { id: `inode:${fileId(st)}`, stamp: `inode:${fileId(st)}`, base: 0, what: resolved } };
  const disk = block.type === 'partition' && block.disk ? blockInfoByName(block.disk) : block;
  const facts: SideFacts = { path: resolved, kind: 'block', block, sizeBytes: block.sizeBytes, location: blockLocation(block) };
  if (disk) {
    facts.disk = disk;
    if (block.type === 'disk') {
      facts.partitions = block.partitions.map((p) => blockInfoByName(p)).filter((p): p is BlockInfo => p !== undefined);
    }
  }
  return facts;
}

/**
 * Where a side's bytes live. Facts gathered from the kernel carry it; injected facts (unit tests)
 * derive it from their block and disk without asking the kernel.
 */
export function storageOf(side: SideFacts): StorageLocation | undefined {
  if (side.location !== undefined) return side.location;
  if (side.kind === 'file' && side.fileId !== undefined) return { id: `file:${side.fileId}`, stamp: `file:${side.fileId}`, base: 0, what: `file ${side.path}` };
  if (side.kind !== 'block' || side.block === undefined) return undefined;
  const base = side.block.type === 'partition' ? (side.block.partition?.startBytes ?? 0) : 0;
  const disk = side.disk ?? side.block;
  return { id: `block:${disk.devno}`, stamp: `block:${disk.devno}`, base, what: `device ${side.block.devnode}` };
}
