// What the model expects of a command, from the state at the start of the step:
// the byte range each target is planned to receive and the source bytes that
// belong there, where a regular-file target is cut, whether the command has to
// be refused (and why), may be refused, or has to succeed.
//
// "Has to be refused" is the safety rule of issue 10, on storage objects rather
// than names: the source and a target, two targets, two job pairs, or the
// mapfile and any side, touching overlapping bytes of one storage object through
// any alias (a file's cut counts as touching everything from the cut on); a resume
// onto a target that is not the one the map was made for; and the refusals the
// README promises (skip= past the end, a block device too small, conv=excl/nocreat).
import fs from 'node:fs';

import { finishedRanges, parseMap, type ModelState, type PlannedWrite, type TruncMode } from './model';
import type { Command, CopySpec } from './operations';
import type { Family } from './known-open';
import type { Name, Storage } from './world';

export interface Refusal {
  why: string;
  family?: Family;
  /**
   * 'anywhere': the classes of issue 10 (sides overlapping through aliases, a
   * resume onto another target, a map made for another copy): nothing may be
   * written anywhere, the mapfile included. 'targets': the refusals the README
   * promises before the first write (skip= past the end, too small, excl,
   * nocreat, no source): the targets stay untouched; a mapfile may be written.
   */
  scope: 'anywhere' | 'targets';
}

/** A side as the command sees it: which bytes of which storage, how many there are. */
export interface View {
  storage: Storage;
  /** Storage offset of the view's byte 0. */
  base: number;
  exists: boolean;
  size: number;
  block: boolean;
}

export interface MapUse {
  path: string;
  spec: CopySpec;
  length: number;
  /** The map's text at the start of the step (null: none). */
  before: string | null;
}

export interface PairPlan {
  spec: CopySpec;
  length: number;
  writes: PlannedWrite[];
  reads: Array<{ storage: Storage; start: number; end: number }>;
  must: Refusal[];
  may: string[];
  map?: MapUse;
  resumed: boolean;
}

export interface Plan {
  command: Command;
  pairs: PairPlan[];
  /** Refusals of the job as a whole (pairs that touch each other's bytes). */
  jobMust: Refusal[];
  mustRefuse: boolean;
  /** Some refusal is of scope 'anywhere': not even the mapfile may be written. */
  strict: boolean;
  mustSucceed: boolean;
  sources: Set<Storage>;
  /** Bytes the command copies in all (for --rate). */
  bytes: number;
}

export function view(n: Name, state: ModelState): View {
  if (n.block) return { storage: n.storage, base: n.offset, exists: true, size: n.block.size, block: true };
  const bytes = state.get(n.storage).bytes;
  return { storage: n.storage, base: 0, exists: bytes !== null, size: bytes?.length ?? 0, block: false };
}

/** The bytes a view shows: a loop device reads zeros past its backing file's end. */
function viewBytes(v: View, state: ModelState, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  const bytes = state.get(v.storage).bytes;
  const from = v.base + offset;
  if (bytes && from < bytes.length) bytes.copy(out, 0, from, Math.min(bytes.length, from + length));
  return out;
}

/** What identifies a copy for its mapfile: the sides as named and the offsets. */
export function specKey(spec: CopySpec): string {
  return JSON.stringify([spec.source.spelling, spec.targets.map((t) => t.name.spelling), spec.skip, spec.seek]);
}

export function storageKey(spec: CopySpec): string {
  return JSON.stringify([spec.source.storage.path, spec.source.offset, spec.targets.map((t) => [t.name.storage.path, t.name.offset]), spec.skip, spec.seek]);
}

interface Footprint {
  storage: Storage;
  start: number;
  end: number;
  role: 'source' | 'target' | 'mapfile';
  name: Name | undefined;
  label: string;
  /** Which side of the pair (a target's range and its own cut are one side). */
  owner: number;
  /** A regular file's cut: from the cut to the end of the file. */
  cut?: boolean;
}

function overlaps(a: Footprint, b: Footprint): boolean {
  return a.storage === b.storage && a.start < b.end && b.start < a.end;
}

function familyOf(a: Footprint, b: Footprint, job: boolean): Family | undefined {
  const flags = (f: Footprint): ReadonlySet<string> => f.name?.flags ?? new Set();
  const either = (flag: string): boolean => flags(a).has(flag) || flags(b).has(flag);
  if (a.role === 'mapfile' || b.role === 'mapfile') return 'mapfile-alias';
  // Only the cut reaches the other side: the written ranges themselves do not overlap.
  if ((a.cut || b.cut) && !(a.cut && b.cut)) return 'truncate-overlap';
  if (either('loop-over-loop')) return 'loop-over-loop-alias';
  if (job && either('dangling')) return 'job-alias-dangling';
  if (job && either('dotdot')) return 'job-dotdot';
  return undefined;
}

function describe(f: Footprint): string {
  const end = f.end === Infinity ? 'its end' : `byte ${f.end}`;
  return `${f.label} (${f.name ? `${f.name.spelling}: ` : ''}${f.storage.label} bytes ${f.start} to ${end})`;
}

/** Resuming from an existing map: does it belong to this copy and target, and may the target be cut? */
function resumption(spec: CopySpec, length: number, state: ModelState, pair: PairPlan): TruncMode | undefined {
  const map = pair.map;
  if (!map || map.before === null) return undefined;
  let parsed;
  try {
    parsed = parseMap(map.before);
  } catch {
    pair.may.push('the existing mapfile cannot be read');
    return 'optional';
  }
  pair.resumed = true;
  const domainEnd = spec.skip + length;
  const finished = finishedRanges(parsed)
    .map(([o, l]) => [Math.max(o, spec.skip), Math.min(o + l, domainEnd)] as const)
    .filter(([lo, hi]) => hi > lo);
  const finishedBytes = finished.reduce((n, [lo, hi]) => n + hi - lo, 0);
  const finishedEnd = Math.max(0, ...finished.map(([, hi]) => hi)) - spec.skip + spec.seek;
  const record = state.maps.get(map.path);
  if (record === undefined || record.commandKey !== specKey(spec)) {
    const sameStorage = record !== undefined && record.storageKey === storageKey(spec);
    if (parsed.identity && !sameStorage) pair.must.push({ why: `mapfile ${map.path} was made for another copy`, family: 'foreign-map', scope: 'anywhere' });
    else pair.may.push('the mapfile was made by another command (same storage, other names) or by another program');
    return finishedBytes > 0 ? 'no' : 'optional';
  }
  for (const t of spec.targets) {
    if (t.name.block) continue;
    const was = record.targets.find((r) => r.storage === t.name.storage);
    const now = state.get(t.name.storage);
    const recreated = was !== undefined && was.ino !== now.ino;
    const short = (now.bytes?.length ?? 0) < finishedEnd;
    if (finishedBytes > 0 && ((parsed.identity && recreated) || (!parsed.identity && (now.bytes === null || short)))) {
      pair.must.push({
        why: `${t.label} is not the target mapfile ${map.path} was made for (${recreated ? 'deleted and made again' : 'shorter than the finished ranges'}) but the map calls ${finishedBytes} bytes finished`,
        family: 'resume-truncate',
        scope: 'anywhere',
      });
    } else if (recreated) {
      pair.may.push(`${t.label} was made again since the map was written`);
    }
  }
  return finishedBytes > 0 ? 'no' : 'optional';
}

/** Plans one copy() (the CLI's copy, or one job pair). */
export function planPair(spec: CopySpec, state: ModelState): PairPlan {
  const pair: PairPlan = { spec, length: 0, writes: [], reads: [], must: [], may: [], resumed: false };
  const src = view(spec.source, state);
  if (!src.exists) pair.must.push({ why: `the source ${spec.source.spelling} does not exist`, scope: 'targets' });
  else if (spec.skip > src.size && spec.pipeIn) pair.may.push(`skip=${spec.skip} is past the end of the stream (${src.size} bytes)`);
  else if (spec.skip > src.size) pair.must.push({ why: `the source offset ${spec.skip} is past the end of the source (${src.size} bytes)`, scope: 'targets' });
  // README (Pipes): a mapfile (resume needs positions) and --verify (a second read) are refused before anything is opened.
  if (spec.pipeIn && spec.map) pair.must.push({ why: 'a mapfile with a pipe as the source', scope: 'anywhere' });
  if (spec.pipeIn && spec.verify) pair.must.push({ why: '--verify with a pipe as the source', scope: 'anywhere' });
  // devmove refuses these by the operand (exit 2) even when standard output is a regular file or a device.
  if (spec.stdout && spec.map) pair.must.push({ why: 'a mapfile with standard output as a target', scope: 'anywhere' });
  // Standard output redirected to a file or device (`>`, `1<>`) is opened again with random access and
  // can be read back; appended to (`>>`) it stays a stream.
  if (spec.stdout?.mode === '>>' && spec.verify) pair.must.push({ why: '--verify with standard output (>>) as a target', scope: 'anywhere' });
  // README (Changed blocks only): --only-changed reads the targets back, which appended standard output cannot be.
  if (spec.stdout?.mode === '>>' && spec.onlyChanged) pair.must.push({ why: '--only-changed with standard output (>>) as a target', scope: 'anywhere' });
  const out = spec.stdout ? spec.targets.at(-1) : undefined;
  if (out && out.name.storage === spec.source.storage) pair.may.push('standard output on the source\'s storage object is refused whatever the ranges (a named target is not)');
  const avail = Math.max(0, src.size - spec.skip);
  let length = avail;
  if (spec.length) {
    if (spec.length.exact && spec.length.bytes > avail) pair.must.push({ why: `the length ${spec.length.bytes} runs past the end of the source`, scope: 'targets' });
    length = Math.min(spec.length.bytes, avail);
  }
  if (spec.length?.exact) length = Math.min(spec.length.bytes, avail);
  pair.length = length;
  if (spec.map && !spec.map.aliasOf) pair.map = { path: spec.map.slot.path, spec, length, before: readText(spec.map.slot.path) };
  const resume = resumption(spec, length, state, pair);
  const data = src.exists ? viewBytes(src, state, spec.skip, length) : Buffer.alloc(0);
  // A loop device over a file that a copy has since cut short: the kernel answers reads past
  // the file's end with EIO (direct-I/O loop devices) or zeros, and its writes there extend it.
  const backing = (v: View, from: number, to: number): boolean => v.block && to > from && (state.get(v.storage).bytes?.length ?? 0) < v.base + to;
  if (src.exists && backing(src, spec.skip, spec.skip + length)) pair.may.push(`the source ${spec.source.spelling} reads past the end of its backing file ${src.storage.label}`);
  if (src.exists) pair.reads.push({ storage: src.storage, start: src.base + spec.skip, end: src.base + spec.skip + length });
  for (const [ti, t] of spec.targets.entries()) {
    const tv = view(t.name, state);
    // Standard output (the last target): written from where the shell left the descriptor, never cut by devmove.
    const stdout = spec.stdout && ti === spec.targets.length - 1 ? spec.stdout.mode : undefined;
    if (!t.name.block) {
      if (!tv.exists && !spec.create) pair.must.push({ why: `${t.label} does not exist and conv=nocreat`, scope: 'targets' });
      if (tv.exists && spec.excl) pair.must.push({ why: `${t.label} exists and conv=excl`, scope: 'targets' });
      if (!tv.exists && t.name.flags.has('dangling')) pair.may.push(`${t.label} is a dangling symlink (devmove does not create through one)`);
    } else if (spec.seek + length > tv.size && spec.pipeIn) {
      // A pipe's length is known only at its end: devmove writes until the device ends (ENOSPC), as dd.
      pair.may.push(`${t.label} is smaller than what the pipe brings (${spec.seek + length} bytes, the device has ${tv.size})`);
    } else if (spec.seek + length > tv.size) {
      pair.must.push({ why: `${t.label} is too small: the copy needs ${spec.seek + length} bytes, the device has ${tv.size}`, scope: 'targets' });
    } else if (backing(tv, spec.seek, spec.seek + length)) {
      pair.may.push(`${t.label} writes past the end of its backing file ${tv.storage.label}`);
    }
    // README: one block device node as both source and target is refused, whatever the ranges.
    if (t.name.block && t.name.block.device === spec.source.block?.device && !spec.pipeIn) pair.must.push({ why: `${t.label} is the same block device as the source ${spec.source.spelling} (${t.name.block.device})`, scope: 'anywhere' });
    let trunc: TruncMode = !t.name.block && spec.truncAt !== undefined && !stdout ? 'yes' : 'no';
    if (trunc === 'yes' && resume !== undefined) trunc = resume;
    // README (Changed blocks only): an existing file the copy would cut first leaves nothing to compare.
    if (spec.onlyChanged && !t.name.block && !stdout && tv.exists) {
      if (trunc === 'yes') pair.must.push({ why: `--only-changed onto ${t.label}, an existing file the copy would truncate`, scope: 'targets' });
      if (trunc === 'optional') pair.may.push(`--only-changed onto ${t.label}, which the copy may truncate`);
    }
    pair.writes.push({
      label: t.label,
      name: t.name,
      storage: t.name.storage,
      // `>>`: O_APPEND, every write lands at the file's end (as dd's do).
      start: stdout === '>>' ? tv.size : tv.base + spec.seek,
      // What fits: a block device ends where it ends (only a pipe source gets this far with more).
      data: t.name.block ? data.subarray(0, Math.max(0, tv.size - spec.seek)) : data,
      sparse: spec.sparse,
      file: !t.name.block,
      trunc,
      truncAt: spec.truncAt ?? 0,
      outcome: 'unknown',
    });
  }
  // An NBD source's size is the server's, learnt only once connected: the overlap check takes all of it
  // from the offset on (README: Between hosts), so two targets on one storage object may be refused whatever the ranges.
  const targetStorages = spec.targets.map((t) => t.name.storage);
  if (spec.source.nbd && targetStorages.some((st, i) => targetStorages.indexOf(st) !== i)) pair.may.push('two targets on one storage object with an NBD source (its length is unknown to the overlap check)');
  checkOverlaps(pair);
  // A mapfile that is a side is refused whatever the ranges (a copy of nothing included): the map would replace it.
  const mapSide = spec.map?.aliasOf;
  if (mapSide && !spec.pipeIn && [spec.source, ...spec.targets.map((t) => t.name)].some((n) => n.storage === mapSide.storage)) {
    pair.must.push({ why: `--mapfile ${spec.map?.spelling} is a side of the copy (${mapSide.storage.label})`, family: 'mapfile-alias', scope: 'anywhere' });
  }
  // --verify compares what conv=sparse skipped, too: a target that held other bytes there differs.
  if (spec.sparse && spec.verify) pair.may.push('--verify after conv=sparse onto a target that may hold other bytes where the source is zero');
  if (length === 0) {
    // Nothing to copy: two sides on one storage object share no byte, but naming one file twice may be refused anyway.
    const sides = [spec.source, ...spec.targets.map((t) => t.name)];
    if (sides.some((a, i) => sides.some((b, j) => j > i && a.storage === b.storage))) pair.may.push('a copy of nothing between names of one storage object');
  }
  return pair;
}

function footprints(pair: PairPlan): Footprint[] {
  const out: Footprint[] = [];
  const spec = pair.spec;
  // A pipe's bytes come from nowhere devmove can see: no source footprint (the generator keeps targets elsewhere).
  for (const r of pair.reads) if (r.end > r.start && !spec.pipeIn) out.push({ ...r, role: 'source', name: spec.source, label: `${spec.label}'s source`, owner: -1 });
  pair.writes.forEach((w, owner) => {
    const end = w.start + w.data.length;
    if (end > w.start) out.push({ storage: w.storage, start: w.start, end, role: 'target', name: w.name, label: w.label, owner });
    if (w.file && w.trunc !== 'no') out.push({ storage: w.storage, start: w.truncAt, end: Infinity, role: 'target', name: w.name, label: `${w.label}, cut at byte ${w.truncAt}`, owner, cut: true });
  });
  if (spec.map?.aliasOf) out.push({ storage: spec.map.aliasOf.storage, start: 0, end: Infinity, role: 'mapfile', name: spec.map.aliasOf, label: `--mapfile ${spec.map.spelling}`, owner: -2 });
  return out;
}

function checkOverlaps(pair: PairPlan): void {
  const fps = footprints(pair);
  for (let i = 0; i < fps.length; i++) {
    for (let j = i + 1; j < fps.length; j++) {
      const [a, b] = [fps[i], fps[j]];
      if (a.role === 'source' && b.role === 'source') continue;
      if (a.owner === b.owner) continue; // a target's range and its own cut
      if (!overlaps(a, b)) continue;
      const family = familyOf(a, b, false);
      pair.must.push({ why: `${describe(a)} and ${describe(b)} overlap on one storage object`, scope: 'anywhere', ...(family ? { family } : {}) });
    }
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The whole command: one pair for a copy, every pair plus the cross-pair rule for a job. */
export function planCommand(cmd: Command, state: ModelState, faultsWithErrors: boolean): Plan {
  const pairs = cmd.kind === 'copy' ? [planPair(cmd.spec, state)] : cmd.kind === 'job' ? cmd.pairs.map((p) => planPair(p, state)) : [];
  const jobMust: Refusal[] = [];
  if (cmd.kind === 'job') {
    const fps = pairs.map(footprints);
    for (let i = 0; i < pairs.length; i++) {
      for (let j = 0; j < pairs.length; j++) {
        if (i === j) continue;
        // Two pairs on one storage object, sharing no byte: devmove may refuse that by name.
        const sides = (p: PairPlan): Storage[] => [p.spec.source.storage, ...p.spec.targets.map((t) => t.name.storage)];
        const shared = pairs[i].spec.targets.find((t) => sides(pairs[j]).includes(t.name.storage));
        if (shared) pairs[i].may.push(`${shared.label} and a side of ${pairs[j].spec.label} are one storage object`);
        for (const a of fps[i]) {
          if (a.role === 'source') continue; // a writes
          const hit = fps[j].find((b) => overlaps(a, b) && (j > i || b.role === 'source'));
          if (!hit) continue;
          const family = familyOf(a, hit, true);
          jobMust.push({ why: `${describe(a)} and ${describe(hit)} of another pair overlap on one storage object`, scope: 'anywhere', ...(family ? { family } : {}) });
        }
      }
    }
  }
  const mustRefuse = jobMust.length > 0 || (cmd.kind === 'copy' && pairs[0].must.length > 0);
  const tmpfs = pairs.some((p) => p.writes.some((w) => w.storage.where === 'tmpfs') || (p.map !== undefined && p.map.path.includes('/full/')));
  const mustSucceed = cmd.kind !== 'devices' && !mustRefuse && !tmpfs && !faultsWithErrors && pairs.every((p) => p.must.length === 0 && p.may.length === 0);
  const sources = new Set<Storage>(pairs.flatMap((p) => p.reads.map((r) => r.storage)));
  const strict = jobMust.length > 0 || (cmd.kind === 'copy' && pairs[0].must.some((r) => r.scope === 'anywhere'));
  return { command: cmd, pairs, jobMust, mustRefuse, strict, mustSucceed, sources, bytes: pairs.reduce((n, p) => n + p.length, 0) };
}
