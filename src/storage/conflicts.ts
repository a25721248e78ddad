// One overlap test for every place a write is decided: a copy's own source,
// targets and mapfile, and a job's pairs against each other. Each use of
// storage is a side (gathered by identity.ts) with a role and a byte range on
// it; a use that writes may not share a byte of storage with any other use.
import { storageOf, type SideFacts } from './identity';

export type StorageRole = 'source' | 'target' | 'mapfile';

export interface StorageUse {
  role: StorageRole;
  side: SideFacts;
  /** The side as the user named it, for messages. */
  shown: string;
  /** Bytes of the side this use touches: [offset, offset + length); length may be Infinity. */
  offset: number;
  length: number;
  /** The job pair it belongs to (undefined for a single copy). */
  pair?: string;
  /** Where it was given (a job file field such as 'pairs[1].target'). */
  field?: string;
}

export interface StorageConflict {
  /** The use that writes. */
  writer: StorageUse;
  /** The use it would write over (reads or writes the same bytes). */
  other: StorageUse;
  /** Both name the same path (after the kernel's resolution), rather than aliases of one storage. */
  samePath: boolean;
  /** The overlapping bytes on the storage: [start, end). */
  overlap: [start: number, end: number];
  /** Where both live, for messages. */
  writerWhat: string;
  otherWhat: string;
}

function span(use: StorageUse): { id: string; start: number; end: number; what: string } | undefined {
  if (use.length <= 0) return undefined;
  // A partition whose disk vanished (or a side the kernel could not place) is compared by path only.
  if (use.side.kind === 'block' && use.side.disk === undefined) return undefined;
  const where = storageOf(use.side);
  if (where === undefined) return undefined;
  const start = where.base + use.offset;
  return { id: where.id, start, end: start + use.length, what: where.what };
}

const WRITE_RANK: Record<StorageRole, number> = { mapfile: 2, target: 1, source: 0 };

/**
 * The first pair of uses where one writes to bytes the other reads or writes, or undefined.
 * `skip(a, b)` leaves pairs out that another check owns (a job leaves a pair's own source and
 * targets to copy(), which knows the exact length).
 */
export function findConflict(uses: readonly StorageUse[], skip?: (a: StorageUse, b: StorageUse) => boolean): StorageConflict | undefined {
  const spans = uses.map(span);
  for (let j = 0; j < uses.length; j++) {
    for (let i = 0; i < j; i++) {
      const a = uses[i];
      const b = uses[j];
      if (a.role === 'source' && b.role === 'source') continue;
      if (skip?.(a, b)) continue;
      const sa = spans[i];
      const sb = spans[j];
      const samePath = a.side.path === b.side.path;
      const sameStorage = sa !== undefined && sb !== undefined && sa.id === sb.id;
      if (!samePath && !sameStorage) continue;
      const intersect = sa !== undefined && sb !== undefined ? sa.start < sb.end && sb.start < sa.end : true;
      // Two pairs never share a path that either writes, whatever the ranges (each pair's copy
      // owns its target); within one copy, disjoint ranges of one file are fine.
      if (!intersect && !(samePath && a.pair !== b.pair)) continue;
      // The message is about the side that writes: a mapfile before a target before a source.
      // Between equals, the later use (the one added to what was already there) is the subject.
      const [writer, other] = WRITE_RANK[a.role] > WRITE_RANK[b.role] ? [a, b] : [b, a];
      const [sw, so] = writer === a ? [sa, sb] : [sb, sa];
      const overlap: [number, number] = sw && so ? [Math.max(sw.start, so.start), Math.min(sw.end, so.end)] : [0, 0];
      return { writer, other, samePath, overlap, writerWhat: sw?.what ?? writer.side.path, otherWhat: so?.what ?? other.side.path };
    }
  }
  return undefined;
}

/** Why two roles may not share bytes, for the end of a message. */
export function conflictReason(writer: StorageRole, other: StorageRole, acrossPairs: boolean): string {
  if (writer === 'mapfile' && other === 'mapfile') return acrossPairs ? 'each pair needs its own mapfile' : 'each copy needs its own mapfile';
  if (writer === 'mapfile' || other === 'mapfile') return 'a mapfile must not be a source or target';
  if (writer === 'target' && other === 'target') return acrossPairs ? 'two pairs must not write to one target' : 'two targets must not share bytes';
  return acrossPairs ? 'a pair must not write to what another pair reads' : 'a copy must not write to what it reads';
}
