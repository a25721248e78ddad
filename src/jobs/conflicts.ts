// Pairs of a job against each other on the storage model (storage/identity.ts):
// no pair may write (target or mapfile) to bytes another pair reads or writes,
// whatever names they use — the same path, a symlink (dangling ones included),
// a hard link, a node name, a partition and its disk, loop devices over one
// file or over each other. Run when a job file is validated and again when
// the job starts (devices come and go in between). A pair's own source and
// targets are left to copy(), which knows the exact length; its mapfile is not.
import { resolveDevicePath } from '../devices/manager';
import { conflictReason, findConflict, type StorageUse } from '../storage/conflicts';
import { gatherSide } from '../storage/identity';
import { fieldPath, JobFileError, type JobPair, type JobSpec } from './spec';

function sideOf(nameOrPath: string): StorageUse['side'] {
  let file = nameOrPath;
  try {
    file = resolveDevicePath(nameOrPath);
  } catch {
    // not a device name, or no such device: the path as written (copy() reports it when it runs)
  }
  return gatherSide(file);
}

function pairUses(pair: JobPair): StorageUse[] {
  const o = pair.options;
  const base = fieldPath('pairs', pair.index);
  const source = sideOf(o.source);
  const sourceOffset = o.sourceOffset ?? 0;
  const known = source.kind === 'block' || source.kind === 'file';
  let length = o.length ?? (known ? Math.max(0, source.sizeBytes - sourceOffset) : Infinity);
  if (o.maxLength !== undefined) length = Math.min(length, o.maxLength);
  const uses: StorageUse[] = [{ role: 'source', side: source, shown: o.source, offset: sourceOffset, length, pair: pair.name, field: fieldPath(base, 'source') }];
  // dd's truncation touches every byte of a file target from the cut on.
  const cut = o.truncateTarget === true ? (o.targetOffset ?? 0) : typeof o.truncateTarget === 'number' ? o.truncateTarget : undefined;
  const addTarget = (t: string, field: string): void => {
    const side = sideOf(t);
    const span = cut !== undefined && side.kind !== 'block' ? { offset: Math.min(cut, o.targetOffset ?? 0), length: Infinity } : { offset: o.targetOffset ?? 0, length };
    uses.push({ role: 'target', side, shown: t, ...span, pair: pair.name, field });
  };
  if (o.target !== undefined) addTarget(o.target, fieldPath(base, 'target'));
  o.targets?.forEach((t, i) => addTarget(t, fieldPath(fieldPath(base, 'targets'), i)));
  if (o.mapfile !== undefined) {
    uses.push({ role: 'mapfile', side: gatherSide(o.mapfile), shown: o.mapfile, offset: 0, length: Infinity, pair: pair.name, field: fieldPath(base, 'mapfile') });
  }
  return uses;
}

function quoted(text: string): string {
  return JSON.stringify(text).replace(/^"|"$/g, "'");
}

/**
 * Throws a JobFileError naming the field of the pair that would write over another use. `paths`
 * only (when a job file is validated): the same path after the kernel's resolution; otherwise
 * (when the job starts) any alias of the same storage with overlapping bytes too.
 */
export function checkPairConflicts(spec: JobSpec, scope: 'paths' | 'storage'): void {
  const uses = spec.pairs.flatMap(pairUses);
  const ownedByCopy = (a: StorageUse, b: StorageUse): boolean => a.pair === b.pair && a.role !== 'mapfile' && b.role !== 'mapfile';
  const conflict = findConflict(uses, (a, b) => ownedByCopy(a, b) || (scope === 'paths' && a.side.path !== b.side.path));
  if (conflict === undefined) return;
  const { writer, other } = conflict;
  const samePair = writer.pair === other.pair;
  const whose = samePair ? `this pair's ${other.role}` : `the ${other.role} of pair '${other.pair}'`;
  const subject = samePair ? quoted(writer.shown) : `${quoted(writer.shown)} of pair '${writer.pair}'`;
  const why = conflictReason(writer.role, other.role, !samePair);
  const reason = conflict.samePath
    ? `${subject} is also ${whose} (${other.field}); ${why}`
    : `${subject} is the same storage as ${quoted(other.shown)}, ${whose} (${other.field}), and the byte ranges overlap; ${why}`;
  throw new JobFileError({ fileName: spec.fileName, field: writer.field ?? '', reason });
}
