// A domain mapfile (GNU ddrescue's --domain-mapfile): a mapfile whose
// finished ('+') ranges are the only part of the source a copy reads and
// writes; everything else on the targets is left as it is. `partclone.<fs> -D`
// (Debian partclone) writes one for the used blocks of ext2/3/4, xfs, btrfs,
// ntfs, fat…, so a disk whose filesystems hold 10 % of it is moved in the time
// of that 10 %. Positions are absolute source offsets, as in every mapfile.
import type { NativePlan } from '../addon/binding';
import type { Range } from '../base/types';
import { MapfileError, RescueMap } from './mapfile';
import type { MapfileSession } from './session';

export interface Domain {
  /** The path as given. */
  path: string;
  /** The finished ranges, sorted, disjoint and merged. */
  ranges: Range[];
  bytes: number;
}

export function loadDomain(file: string): Domain {
  const map = RescueMap.load(file);
  if (map === undefined) {
    throw new MapfileError(`domain mapfile ${file} does not exist or is empty: it must list the ranges to copy as finished ('+'), as partclone -D or ddrescue write them`);
  }
  const ranges = map.ranges(['+']);
  return { path: file, ranges, bytes: ranges.reduce((n, [, length]) => n + length, 0) };
}

/** The ranges in both lists (each sorted and disjoint). */
export function intersectRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let i = 0;
  let j = 0;
  // Each step retires one range of a or b: at most a.length + b.length steps.
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i][0], b[j][0]);
    const aEnd = a[i][0] + a[i][1];
    const bEnd = b[j][0] + b[j][1];
    const hi = Math.min(aEnd, bEnd);
    if (hi > lo) out.push([lo, hi - lo]);
    if (aEnd <= bEnd) i++;
    else j++;
  }
  return out;
}

/** [from, to) minus the ranges (sorted and disjoint). */
export function complementRanges(ranges: readonly Range[], from: number, to: number): Range[] {
  const out: Range[] = [];
  let at = from;
  for (const [offset, length] of ranges) {
    const end = offset + length;
    if (end <= at) continue;
    if (offset >= to) break;
    if (offset > at) out.push([at, offset - at]);
    at = Math.max(at, end);
  }
  if (to > at) out.push([at, to - at]);
  return out;
}

/** Bytes of the ranges within [from, to). */
export function bytesWithin(ranges: readonly Range[], from: number, to: number): number {
  let n = 0;
  for (const [offset, length] of ranges) n += Math.max(0, Math.min(offset + length, to) - Math.max(offset, from));
  return n;
}

/** Sorted, overlapping and touching ranges joined. */
function mergeRanges(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [offset, length] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1);
    if (last !== undefined && offset <= last[0] + last[1]) last[1] = Math.max(last[1], offset + length - last[0]);
    else out.push([offset, length]);
  }
  return out;
}

/**
 * The copy reads and writes only the domain: what is left to copy (all, or what a resumed map
 * lacks) within it; verify compares only the domain (what lies outside was never copied).
 */
export function restrictToDomain(plan: NativePlan, domain: Domain, session: MapfileSession | undefined): void {
  plan.extents = plan.extents === undefined ? domain.ranges.map(([o, l]): Range => [o, l]) : intersectRanges(plan.extents, domain.ranges);
  plan.verifySkip = mergeRanges([...(plan.verifySkip ?? []), ...complementRanges(domain.ranges, 0, Number.MAX_SAFE_INTEGER)]);
  session?.restrictTo(domain.ranges);
}
