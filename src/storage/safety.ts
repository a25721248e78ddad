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
import { STANDARD_STREAM } from '../base/types';
import { readMountInfo, type MountEntry } from './mountinfo';
import type { NativePlan } from '../addon/binding';
import { conflictReason, findConflict, type StorageUse } from './conflicts';
import { gatherSide, storageOf, type SideFacts } from './identity';
import type { BlockInfo } from './sysfs';

export { gatherSide, storageOf, type SideFacts } from './identity';

const EINVAL = 22;
const EBUSY = 16;
const EROFS = 30;

export interface Refusal {
  errno: number;
  path: string;
  detail: string;
}

function extent(side: SideFacts, offset: number): { identity: string; start: number; what: string } | undefined {
  if (side.kind === 'block' && !side.disk) return undefined; // its disk vanished: nothing to compare against
  const where = storageOf(side);
  return where && { identity: where.id, start: where.base + offset, what: where.what };
}

/**
 * Same object or overlapping bytes: never overridable. A regular-file target cut at `cutAt` (dd's
 * truncation) also touches every byte from the cut on.
 */
function overlapRefusal(source: SideFacts, sourceOffset: number, target: SideFacts, targetOffset: number, length: number, cutAt: number | undefined): string | undefined {
  if (source.block && target.block && source.block.devno === target.block.devno) {
    return `target is the same device as the source (${source.path}, ${source.block.devno})`;
  }
  // As one block device node: the export's size and layout are the server's, so no range of it is
  // known to be apart from another (README: Between hosts).
  if (source.kind === 'nbd' && target.kind === 'nbd' && source.location?.id === target.location?.id) {
    return `target is the source's own export (${source.location?.what ?? source.path})`;
  }
  const s = extent(source, sourceOffset);
  const cut = cutAt !== undefined && target.kind === 'file' ? cutAt : undefined;
  const t = extent(target, cut === undefined ? targetOffset : Math.min(targetOffset, cut));
  const tEnd = t === undefined ? 0 : cut === undefined ? t.start + length : Infinity;
  if (!(s && t && s.identity === t.identity && length > 0 && s.start < tEnd && t.start < s.start + length)) return undefined;
  let how: string;
  if (source.block && target.block && source.disk && target.disk && source.disk.devno === target.disk.devno) {
    if (target.block.type === 'partition' && source.block.type === 'disk') how = `target is a partition of the source disk ${source.path}`;
    else if (source.block.type === 'partition' && target.block.type === 'disk') how = `target is the whole disk holding the source partition ${source.path}`;
    else how = `target and source ${source.path} are partitions of one disk`;
  } else if (source.kind === 'file' && target.kind === 'file') {
    how = `target is the same file as the source ${source.path}`;
  } else if (s.what.includes('loop device') || t.what.includes('loop device')) {
    how = `target and source ${source.path} are the same ${s.identity.startsWith('file:') ? 'image file' : 'device'}`;
  } else {
    how = `target and source ${source.path} are the same storage`;
  }
  const written = { start: t.start + (cut === undefined ? 0 : targetOffset - Math.min(targetOffset, cut)) };
  const rangesOverlap = s.start < written.start + length && written.start < s.start + length;
  if (cut !== undefined && !rangesOverlap) {
    return `${how}: truncating it at byte ${cut} would destroy source data (source bytes ${s.start}–${s.start + length} of the same storage; use conv=notrunc)`;
  }
  return `${how}, and the byte ranges overlap (source bytes ${s.start}–${s.start + length}, target bytes ${written.start}–${written.start + length} of the same storage)`;
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
  cutAt?: number,
): Refusal | undefined {
  const refuse = (errno: number, detail: string): Refusal => ({ errno, path: target.path, detail });
  const overlapping = overlapRefusal(source, sourceOffset, target, targetOffset, length, cutAt);
  if (overlapping !== undefined) return refuse(EINVAL, overlapping);

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

/** A side's facts; standard input/output has none a path could give ('./-' is never looked at). */
function sideOf(path: string): SideFacts {
  return path === STANDARD_STREAM ? { path, kind: 'other', sizeBytes: 0 } : gatherSide(path);
}

/**
 * Standard input or output redirected from or to storage (`< disk.img`, `> /dev/loop3`): the file or
 * device behind the descriptor, as /proc/self/fd names it, so that `devmove of=disk.img < disk.img`
 * is refused like `if=disk.img of=disk.img`. The descriptor's position is not known here, so the use
 * is the whole file. A pipe, terminal or socket is no storage: undefined.
 */
function standardStreamUse(role: 'source' | 'target'): StorageUse | undefined {
  const fd = role === 'source' ? 0 : 1;
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch {
    return undefined;
  }
  if (!st.isFile() && !st.isBlockDevice()) return undefined;
  const side = gatherSide(`/proc/self/fd/${fd}`);
  if (side.kind !== 'file' && side.kind !== 'block') return undefined;
  const shown = role === 'source' ? `standard input (${side.path})` : `standard output (${side.path})`;
  return { role, side, shown, offset: 0, length: Infinity };
}

/** The bytes of a target a plan may change: its range, and with truncation everything from the cut on. */
function targetSpan(t: NativePlan['targets'][number], length: number): { offset: number; length: number } {
  if (t.truncateTo === undefined) return { offset: t.offset, length };
  return { offset: Math.min(t.offset, t.truncateTo), length: Infinity };
}

/**
 * Runs the checks for a plan; throws a DevmoveError (EBUSY, EINVAL, EROFS)
 * naming the side and the reason. Every side, the mapfile included, is mapped
 * to its storage (identity.ts) and no write may share a byte with another use.
 * The engine then opens block targets with O_EXCL (unless forced), which also
 * closes the window between check and open for mounts and device-mapper claims.
 */
export function checkCopySafety(plan: NativePlan, mapfile?: string): void {
  const source = sideOf(plan.source.path);
  // An NBD export's size is known only once connected: all of it from the offset on, for the checks.
  const available = source.kind === 'nbd' ? Infinity : Math.max(0, source.sizeBytes - plan.source.offset);
  const length = plan.length === undefined ? available : Math.min(plan.length, plan.lengthIsMax ? available : plan.length);
  const targets = plan.targets.map((t) => sideOf(t.path));
  // A pipe as the source still gets every target checked (mounted, held, read-only).
  if (source.kind !== 'missing') {
    const mounts = readMountInfo();
    plan.targets.forEach((t, i) => {
      // A target opened without the O_EXCL claim is a forced one.
      const refusal = assessCopy(source, plan.source.offset, targets[i], t.offset, length, mounts, !t.exclusive, t.truncateTo);
      if (refusal) throw new DevmoveError({ errno: refusal.errno, operation: 'copy', path: refusal.path, detail: refusal.detail });
    });
  }
  const uses: StorageUse[] = [{ role: 'source', side: source, shown: plan.source.path, offset: plan.source.offset, length }];
  plan.targets.forEach((t, i) => uses.push({ role: 'target', side: targets[i], shown: t.path, ...targetSpan(t, length) }));
  // Standard input and output are descriptors, not paths: the storage behind them, if any, takes part.
  const streams = new Set<StorageUse>();
  for (const u of uses.filter((use) => use.shown === STANDARD_STREAM)) {
    const behind = standardStreamUse(u.role === 'source' ? 'source' : 'target');
    if (behind !== undefined) streams.add(behind);
  }
  uses.splice(0, uses.length, ...uses.filter((u) => u.shown !== STANDARD_STREAM), ...streams);
  if (mapfile !== undefined) uses.push({ role: 'mapfile', side: gatherSide(mapfile), shown: mapfile, offset: 0, length: Infinity });
  // Source against target was assessed above with its own messages (not for standard input/output).
  const assessed = (u: StorageUse): boolean => u.role !== 'mapfile' && !streams.has(u);
  const conflict = findConflict(uses, (a, b) => (a.role === 'source') !== (b.role === 'source') && assessed(a) && assessed(b));
  if (conflict === undefined) return;
  const { writer, other } = conflict;
  const how = conflict.samePath
    ? `is also the ${other.role} ${other.shown}`
    : `is the same storage as the ${other.role} ${other.shown} (${conflict.writerWhat}; ${conflict.otherWhat})`;
  throw new DevmoveError({
    errno: EINVAL,
    operation: 'copy',
    path: writer.shown,
    detail: `the ${writer.role} ${how}; ${conflictReason(writer.role, other.role, false)}`,
  });
}
