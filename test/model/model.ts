// The model: what every storage object holds (the bytes last observed and
// checked), and for one step, what each of its sectors may hold afterwards.
//
// A step plans writes (a target's range, the source bytes that belong there,
// whether the file is cut first). Once the step has run, each write has an
// outcome: 'done' (exit 0, or the target reported complete), 'unknown' (the run
// failed or was interrupted: per 512-byte sector the old bytes, the cut file's
// zeros or the source's bytes) or 'none' (the command had to be refused: nothing
// may change). Every sector no write covers must keep its old bytes. After the
// check the model adopts what it observed, so "unknown" never outlives a step.
import { SECTOR, type Name, type Storage } from './world';

export type Outcome = 'done' | 'unknown' | 'none';
export type TruncMode = 'yes' | 'no' | 'optional';

export interface PlannedWrite {
  /** 'of=b.img', "pairs[1].targets[0] 'x.img'": how the command names this target. */
  label: string;
  name: Name;
  storage: Storage;
  /** Storage offset of the first byte of the planned range. */
  start: number;
  /** What belongs in [start, start + data.length): the source's bytes. */
  data: Buffer;
  /** conv=sparse: an all-zero block may be skipped (the target keeps what it had there). */
  sparse: boolean;
  /** Through a regular-file name: the file may be cut, created, and its size is planned. */
  file: boolean;
  trunc: TruncMode;
  /** Storage offset the file is cut at (when trunc is not 'no'). */
  truncAt: number;
  outcome: Outcome;
}

export interface StorageState {
  bytes: Buffer | null;
  ino: bigint | null;
}

export type InvariantId = 'a' | 'b' | 'c' | 'd' | 'e' | 'leftovers' | 'liveness';

export interface Violation {
  invariant: InvariantId;
  message: string;
}

const OLD = 1;
const TRUNC = 2;
const NEW_ON_OLD = 4;
const NEW_ON_TRUNC = 8;

function zeroPadded(b: Buffer | null, size: number): Buffer {
  const out = Buffer.alloc(size);
  b?.copy(out, 0, 0, Math.min(b.length, size));
  return out;
}

function sectorsOf(start: number, end: number): [number, number] {
  return [Math.floor(start / SECTOR), Math.ceil(end / SECTOR)];
}

/** Allowed final sizes of a file: [lo, hi]. */
function sizeBounds(old: Buffer | null, writes: readonly PlannedWrite[]): [number, number] {
  const oldSize = old?.length ?? 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const w of writes) {
    const end = w.start + w.data.length;
    let wl: number;
    let wh: number;
    if (!w.file) {
      [wl, wh] = [oldSize, Math.max(oldSize, end)];
    } else if (w.outcome === 'done') {
      const cut = w.data.length === 0 ? w.truncAt : end;
      if (w.trunc === 'yes') [wl, wh] = w.data.length === 0 ? [w.truncAt, Math.max(w.truncAt, w.start)] : [end, end];
      else if (w.trunc === 'no') [wl, wh] = w.data.length === 0 ? [oldSize, Math.max(oldSize, w.start)] : [Math.max(oldSize, end), Math.max(oldSize, end)];
      else [wl, wh] = [Math.min(cut, oldSize), Math.max(oldSize, end, w.start)];
    } else {
      [wl, wh] = [w.trunc === 'no' ? oldSize : Math.min(oldSize, w.truncAt), Math.max(oldSize, end, w.start)];
    }
    lo = Math.min(lo, wl);
    hi = Math.max(hi, wh);
  }
  return [lo, hi];
}

export interface CheckContext {
  /** Storage objects the step reads from. */
  sources: ReadonlySet<Storage>;
}

/**
 * Compares what a storage object holds after a step with what the step's
 * writes allow. Returns the first violation, naming the offset.
 */
export function checkStorage(storage: Storage, before: StorageState, after: StorageState, writes: readonly PlannedWrite[], ctx: CheckContext): Violation | undefined {
  const active = writes.filter((w) => w.outcome !== 'none');
  const old = before.bytes;
  const now = after.bytes;
  const who = `${storage.label} (${storage.path})`;
  if (active.length === 0) {
    if (old === null && now === null) return undefined;
    const refused = writes.length > 0;
    const inv = refused ? 'd' : 'b';
    const role = ctx.sources.has(storage) ? 'a source' : refused ? 'a target of a command that had to be refused' : 'a storage object no write was planned for';
    if (old === null) return { invariant: inv, message: `${who}, ${role}, did not exist and now has ${now?.length} bytes` };
    if (now === null) return { invariant: inv, message: `${who}, ${role}, was removed` };
    if (!old.equals(now)) return { invariant: inv, message: `${who}, ${role}, changed: ${firstDifference(old, now)}` };
    if (before.ino !== null && after.ino !== null && before.ino !== after.ino) return { invariant: inv, message: `${who}, ${role}, was replaced by a new file (inode ${before.ino} → ${after.ino})` };
    return undefined;
  }
  if (old !== null && now === null) return { invariant: 'b', message: `${who} was removed by the step` };
  if (old !== null && before.ino !== null && after.ino !== null && before.ino !== after.ino) {
    return { invariant: 'b', message: `${who} was replaced by a new file (inode ${before.ino} → ${after.ino}); devmove writes into a target, it never replaces one` };
  }
  if (now === null) {
    const done = active.find((w) => w.outcome === 'done');
    return done ? { invariant: 'c', message: `${who}: ${done.label} reported done, but the file does not exist` } : undefined;
  }
  const [lo, hi] = sizeBounds(old, active);
  if (now.length < lo || now.length > hi) {
    const done = active.some((w) => w.outcome === 'done');
    return { invariant: done ? 'c' : 'b', message: `${who} is ${now.length} bytes long; the step allows ${lo === hi ? lo : `${lo}–${hi}`} (${active.map((w) => `${w.label}: ${w.outcome}`).join(', ')})` };
  }
  return checkSectors(storage, old, now, active, ctx);
}

function checkSectors(storage: Storage, old: Buffer | null, now: Buffer, writes: readonly PlannedWrite[], ctx: CheckContext): Violation | undefined {
  const end = Math.max(now.length, old?.length ?? 0, ...writes.map((w) => w.start + w.data.length));
  const oldImg = zeroPadded(old, end);
  const truncAt = Math.min(...writes.filter((w) => w.file && w.trunc !== 'no').map((w) => w.truncAt), Infinity);
  const truncImg = Buffer.from(oldImg);
  if (truncAt < end) truncImg.fill(0, truncAt);
  const newOnOld = Buffer.from(oldImg);
  const newOnTrunc = Buffer.from(truncImg);
  for (const w of writes) {
    w.data.copy(newOnOld, w.start);
    w.data.copy(newOnTrunc, w.start);
  }
  const sectors = Math.ceil(end / SECTOR);
  const mask = new Uint8Array(sectors).fill(OLD);
  const owner: Array<PlannedWrite | undefined> = new Array(sectors);
  for (const w of writes) {
    if (!w.file || w.trunc === 'no') continue;
    const [s0] = sectorsOf(w.truncAt, w.truncAt);
    for (let s = s0; s < sectors; s++) mask[s] = w.outcome === 'done' && w.trunc === 'yes' ? TRUNC : mask[s] | OLD | TRUNC;
  }
  for (const w of writes) {
    const [s0, s1] = sectorsOf(w.start, w.start + w.data.length);
    const bases = !w.file || w.trunc === 'no' ? OLD : w.trunc === 'yes' ? TRUNC : OLD | TRUNC;
    const news = (bases & OLD ? NEW_ON_OLD : 0) | (bases & TRUNC ? NEW_ON_TRUNC : 0);
    for (let s = s0; s < s1; s++) {
      owner[s] = w;
      if (w.outcome === 'done') {
        const lo = Math.max(s * SECTOR, w.start) - w.start;
        const hi = Math.min((s + 1) * SECTOR, w.start + w.data.length) - w.start;
        const zero = w.sparse && w.data.subarray(lo, hi).every((b) => b === 0);
        mask[s] = news | (zero ? bases : 0);
      } else {
        mask[s] = mask[s] | bases | news;
      }
    }
  }
  const images: Array<[number, Buffer]> = [[OLD, oldImg], [TRUNC, truncImg], [NEW_ON_OLD, newOnOld], [NEW_ON_TRUNC, newOnTrunc]];
  for (let s = 0; s * SECTOR < now.length; s++) {
    const a = s * SECTOR;
    const b = Math.min(a + SECTOR, now.length);
    const actual = now.subarray(a, b);
    const m = mask[s] ?? OLD;
    const allowed = images.filter(([bit]) => m & bit).map(([, img]) => img.subarray(a, b));
    if (allowed.some((img) => img.equals(actual))) continue;
    const w = owner[s];
    if (w?.outcome === 'unknown' && everyByteAllowed(actual, allowed)) continue;
    if (w?.outcome === 'done' && w.sparse && sparseMix(actual, a, w, images, m)) continue;
    return describeSector(storage, s, now, m, images, w, writes, ctx);
  }
  return undefined;
}

/**
 * An interrupted copy can leave a sector part old, part new: its I/O need not be
 * sector aligned (seek=314207 obs=1 goes through the page cache), buffers
 * complete out of order, and conv=sparse skips some of them. So for a failed or
 * interrupted write each byte must be one an allowed image has there — never a
 * byte that is in none (garbage, or another offset's data).
 */
function everyByteAllowed(actual: Buffer, allowed: readonly Buffer[]): boolean {
  for (let j = 0; j < actual.length; j++) {
    if (!allowed.some((img) => img[j] === actual[j])) return false;
  }
  return true;
}

/** conv=sparse skips all-zero blocks (of the I/O size, at any alignment): where the source is zero, the target may keep its base bytes. */
function sparseMix(actual: Buffer, at: number, w: PlannedWrite, images: Array<[number, Buffer]>, mask: number): boolean {
  const news = images.filter(([bit]) => mask & bit && bit & (NEW_ON_OLD | NEW_ON_TRUNC)).map(([, img]) => img);
  // What a skipped block leaves: the old bytes, or the cut file's zeros.
  const baseBits = !w.file || w.trunc === 'no' ? OLD : w.trunc === 'yes' ? TRUNC : OLD | TRUNC;
  const bases = images.filter(([bit]) => baseBits & bit).map(([, img]) => img);
  for (let j = 0; j < actual.length; j++) {
    const off = at + j;
    const inData = off >= w.start && off < w.start + w.data.length;
    const zero = inData && w.data[off - w.start] === 0;
    const ok = news.some((img) => img[off] === actual[j]) || ((zero || !inData) && bases.some((img) => img[off] === actual[j]));
    if (!ok) return false;
  }
  return true;
}

function describeSector(
  storage: Storage,
  sector: number,
  now: Buffer,
  mask: number,
  images: Array<[number, Buffer]>,
  owner: PlannedWrite | undefined,
  writes: readonly PlannedWrite[],
  ctx: CheckContext,
): Violation {
  const a = sector * SECTOR;
  const b = Math.min(a + SECTOR, now.length);
  const expectBit = mask & NEW_ON_TRUNC ? NEW_ON_TRUNC : mask & NEW_ON_OLD ? NEW_ON_OLD : mask & TRUNC ? TRUNC : OLD;
  const expected = (images.find(([bit]) => bit === expectBit) as [number, Buffer])[1];
  let at = a;
  while (at < b && expected[at] === now[at]) at++;
  const got = `got 0x${now[at]?.toString(16).padStart(2, '0')}, expected 0x${expected[at]?.toString(16).padStart(2, '0')}`;
  const where = `${storage.label} (${storage.path}) byte ${at}`;
  if (owner === undefined) {
    const truncated = writes.find((w) => w.file && w.trunc !== 'no' && at >= w.truncAt);
    if (truncated) return { invariant: truncated.outcome === 'done' ? 'c' : 'b', message: `${where}: ${truncated.label} cuts the file at byte ${truncated.truncAt}; ${got}` };
    const role = ctx.sources.has(storage) ? 'a source byte' : 'a byte outside every planned range';
    return { invariant: 'b', message: `${where}, ${role}, changed: ${got}` };
  }
  const offset = at - owner.start;
  const what = `${where} = ${owner.label} planned-range byte ${offset} (${owner.name.spelling}, ${owner.name.what})`;
  if (owner.outcome === 'done') return { invariant: 'c', message: `${what}: the target was reported complete but differs from the source: ${got}` };
  return { invariant: 'b', message: `${what}: neither the old bytes, the cut file's zeros nor the source's: ${got}` };
}

/** "byte N: 0xAA → 0xBB" for the first difference of two buffers (or the length change). */
export function firstDifference(a: Buffer, b: Buffer): string {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `first difference at byte ${i}: 0x${a[i].toString(16).padStart(2, '0')} → 0x${b[i].toString(16).padStart(2, '0')}`;
  }
  return `length ${a.length} → ${b.length}`;
}

// ---- GNU ddrescue mapfiles, read by the tester itself --------------------------------

export interface ParsedMap {
  /** Has devmove's '# devmove:' identity line. */
  identity: boolean;
  blocks: Array<{ pos: number; size: number; status: string }>;
}

/** Parses a ddrescue mapfile; throws with the line on anything that is not one. */
export function parseMap(text: string): ParsedMap {
  const out: ParsedMap = { identity: false, blocks: [] };
  let sawCurrent = false;
  const num = (t: string): number => (/^0x/i.test(t) ? parseInt(t.slice(2), 16) : /^0[0-7]+$/.test(t) ? parseInt(t, 8) : Number(t));
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      if (line.startsWith('# devmove:')) out.identity = true;
      continue;
    }
    const f = line.split(/\s+/);
    if (!sawCurrent) {
      if (f.length < 2 || f.length > 3) throw new Error(`line ${i + 1}: not 'current_pos current_status [pass]': ${line}`);
      sawCurrent = true;
      continue;
    }
    if (f.length !== 3 || !['?', '*', '/', '-', '+'].includes(f[2])) throw new Error(`line ${i + 1}: not 'pos size status': ${line}`);
    const pos = num(f[0]);
    const size = num(f[1]);
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(size) || size <= 0) throw new Error(`line ${i + 1}: bad numbers: ${line}`);
    out.blocks.push({ pos, size, status: f[2] });
  }
  if (!sawCurrent) throw new Error('no current_pos line');
  return out;
}

/** The ranges a map calls finished, in source-view offsets. */
export function finishedRanges(map: ParsedMap): Array<[number, number]> {
  return map.blocks.filter((b) => b.status === '+').map((b) => [b.pos, b.size]);
}

// ---- what the model holds between steps --------------------------------------------

/** The copy a map belongs to, as the model knows it. */
export interface MapRecord {
  /** The command's sides as named, and offsets (expect.ts specKey). */
  commandKey: string;
  /** The same by storage object (expect.ts storageKey). */
  storageKey: string;
  /** Its regular-file targets' inodes when the map was last written by devmove (or authored). */
  targets: Array<{ storage: Storage; ino: bigint | null }>;
}

export class ModelState {
  readonly storage = new Map<Storage, StorageState>();
  readonly maps = new Map<string, MapRecord>();

  get(s: Storage): StorageState {
    return this.storage.get(s) ?? { bytes: null, ino: null };
  }
}
