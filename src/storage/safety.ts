// The checks copy() makes before the first write, so that a copy never
// destroys the wrong disk: a target that is mounted or held by LVM/md/dm, the
// same device as the source or overlapping it (partition and whole disk, two
// partitions, two loop devices over one image file, ranges of one file), or
// read-only is refused with one line naming the device and the reason.
//
// gatherSide() reads the kernel's facts (stat, sysfs, mountinfo); assessCopy()
// is a pure function of those facts, so unit tests can drive cases a kernel
// cannot be made to show on demand (holders need dm/md).
import fs from 'node:fs';

import { DevmoveError } from '../base/errors';
import { readMountInfo, type MountEntry } from './mountinfo';
import type { NativePlan } from '../addon/binding';
import { blockInfoByName, blockInfoForPath, type BlockInfo } from './sysfs';

const EINVAL = 22;
const EBUSY = 16;
const EROFS = 30;

export interface SideFacts {
  path: string;
  /** 'missing' for a target that does not exist yet (it will be a new file). */
  kind: 'block' | 'file' | 'missing' | 'other';
  block?: BlockInfo;
  /** For a partition: its whole disk. For a disk: itself. */
  disk?: BlockInfo;
  /** For a disk: its partitions. */
  partitions?: BlockInfo[];
  /** Regular files: 'dev:ino'. */
  fileId?: string;
  /** Loop devices (or partitions of one): the backing file's 'dev:ino', when it still exists. */
  loopBackingId?: string;
  sizeBytes: number;
}

export interface Refusal {
  errno: number;
  path: string;
  detail: string;
}

function fileId(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

/** What the kernel says about one side of a copy. */
export function gatherSide(path: string): SideFacts {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(path, { bigint: true });
  } catch {
    return { path, kind: 'missing', sizeBytes: 0 };
  }
  if (st.isFile()) return { path, kind: 'file', fileId: fileId(st), sizeBytes: Number(st.size) };
  if (!st.isBlockDevice()) return { path, kind: 'other', sizeBytes: 0 };
  const block = blockInfoForPath(path);
  if (!block) return { path, kind: 'other', sizeBytes: 0 };
  const disk = block.type === 'partition' && block.disk ? blockInfoByName(block.disk) : block;
  const facts: SideFacts = { path, kind: 'block', block, sizeBytes: block.sizeBytes };
  if (disk) {
    facts.disk = disk;
    if (block.type === 'disk') {
      facts.partitions = block.partitions.map((p) => blockInfoByName(p)).filter((p): p is BlockInfo => p !== undefined);
    }
    if (disk.loop) {
      try {
        facts.loopBackingId = fileId(fs.statSync(disk.loop.backingFile, { bigint: true }));
      } catch {
        // backing file deleted or not reachable from here: fall back to the device's identity
      }
    }
  }
  return facts;
}

/**
 * Where a side's bytes live: one storage object (a file, or a whole disk), the byte offset of the
 * side's byte 0 on it, and what it is. A partition whose disk has vanished counts as itself.
 */
export function storageOf(side: SideFacts): { identity: string; base: number; what: string } | undefined {
  if (side.kind === 'file' && side.fileId) return { identity: `file:${side.fileId}`, base: 0, what: 'file' };
  if (side.kind !== 'block' || !side.block) return undefined;
  const base = side.block.type === 'partition' ? (side.block.partition?.startBytes ?? 0) : 0;
  if (side.disk?.loop && side.loopBackingId) {
    return { identity: `file:${side.loopBackingId}`, base: side.disk.loop.offsetBytes + base, what: `loop device over ${side.disk.loop.backingFile}` };
  }
  return { identity: `block:${(side.disk ?? side.block).devno}`, base, what: 'device' };
}

function extent(side: SideFacts, offset: number): { identity: string; start: number; what: string } | undefined {
  if (side.kind === 'block' && !side.disk) return undefined; // its disk vanished: nothing to compare against
  const where = storageOf(side);
  return where && { identity: where.identity, start: where.base + offset, what: where.what };
}

function describeMount(m: MountEntry): string {
  return `${m.mountPoint} (${m.fsType}, ${m.readOnly ? 'read-only' : 'read-write'})`;
}

/**
 * Decides whether a copy may write to `target`. Returns the first refusal, or
 * undefined. `force` overrides only "mounted read-only" and "has holders".
 */
export function assessCopy(
  source: SideFacts,
  sourceOffset: number,
  target: SideFacts,
  targetOffset: number,
  length: number,
  mounts: readonly MountEntry[],
  force: boolean,
): Refusal | undefined {
  const refuse = (errno: number, detail: string): Refusal => ({ errno, path: target.path, detail });

  // Same object or overlapping bytes: never overridable.
  if (source.block && target.block && source.block.devno === target.block.devno) {
    return refuse(EINVAL, `target is the same device as the source (${source.path}, ${source.block.devno})`);
  }
  const s = extent(source, sourceOffset);
  const t = extent(target, targetOffset);
  if (s && t && s.identity === t.identity && length > 0 && s.start < t.start + length && t.start < s.start + length) {
    let how: string;
    if (source.block && target.block && source.disk && target.disk && source.disk.devno === target.disk.devno) {
      if (target.block.type === 'partition' && source.block.type === 'disk') how = `target is a partition of the source disk ${source.path}`;
      else if (source.block.type === 'partition' && target.block.type === 'disk') how = `target is the whole disk holding the source partition ${source.path}`;
      else how = `target and source ${source.path} are partitions of one disk`;
    } else if (source.kind === 'file' && target.kind === 'file') {
      how = `target is the same file as the source ${source.path}`;
    } else if (s.what.startsWith('loop') || t.what.startsWith('loop')) {
      how = `target and source ${source.path} are the same image file`;
    } else {
      how = `target and source ${source.path} are the same storage`;
    }
    return refuse(
      EINVAL,
      `${how}, and the byte ranges overlap (source bytes ${s.start}–${s.start + length}, target bytes ${t.start}–${t.start + length} of the same storage)`,
    );
  }

  if (target.kind !== 'block' || !target.block) return undefined;
  const block = target.block;
  if (block.readOnly) return refuse(EROFS, 'the device is read-only (blockdev --setrw clears the flag, if that is intended)');

  // The target, its partitions, and (for a partition) its whole disk.
  const related: BlockInfo[] = [block, ...(target.partitions ?? [])];
  if (block.type === 'partition' && target.disk) related.push(target.disk);
  const relatedMounts = mounts.filter((m) => related.some((b) => b.major === m.major && b.minor === m.minor));
  const writable = relatedMounts.find((m) => !m.readOnly);
  if (writable) {
    return refuse(EBUSY, `${deviceOf(writable, related)} is mounted at ${describeMount(writable)}; unmount it first`);
  }
  if (relatedMounts.length > 0 && !force) {
    const m = relatedMounts[0];
    return refuse(EBUSY, `${deviceOf(m, related)} is mounted read-only at ${m.mountPoint} (${m.fsType}); unmount it, or use --force to write under the mounted filesystem`);
  }
  const holders = [block, ...(target.partitions ?? [])].flatMap((b) => b.holders.map((h) => `${h} (on ${b.name})`));
  if (holders.length > 0 && !force) {
    return refuse(EBUSY, `the device is in use by ${holders.join(', ')}: LVM, md or device-mapper hold it; stop them, or use --force`);
  }
  return undefined;
}

function deviceOf(m: MountEntry, related: readonly BlockInfo[]): string {
  const b = related.find((r) => r.major === m.major && r.minor === m.minor);
  return b ? b.devnode : `device ${m.major}:${m.minor}`;
}

/**
 * Runs the checks for a plan; throws a DevmoveError (EBUSY, EINVAL, EROFS)
 * naming the target and the reason. The engine then opens block targets with
 * O_EXCL (unless forced), which also closes the window between check and open
 * for mounts and device-mapper claims.
 */
export function checkCopySafety(plan: NativePlan): void {
  const source = gatherSide(plan.source.path);
  if (source.kind === 'missing' || source.kind === 'other') return; // the engine reports those precisely
  const available = Math.max(0, source.sizeBytes - plan.source.offset);
  const length = plan.length === undefined ? available : Math.min(plan.length, plan.lengthIsMax ? available : plan.length);
  const mounts = readMountInfo();
  for (const t of plan.targets) {
    // A target opened without the O_EXCL claim is a forced one.
    const refusal = assessCopy(source, plan.source.offset, gatherSide(t.path), t.offset, length, mounts, !t.exclusive);
    if (refusal) throw new DevmoveError({ errno: refusal.errno, syscall: 'open', path: refusal.path, detail: refusal.detail });
  }
}
