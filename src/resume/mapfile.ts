// GNU ddrescue's mapfile: which ranges of the source are finished, bad or not
// tried yet. devmove reads and writes the same format (ddrescue and
// ddrescueview can open devmove's maps and vice versa) and replaces the file
// atomically: write a temporary file, fsync it, rename it over the old one,
// fsync the directory. A range is marked finished only after the engine
// reports it durable on the target, so after a crash at any moment the map
// never claims more than the target holds.
import fs from 'node:fs';
import path from 'node:path';

import { CopyFailure } from '../base/errors';
import type { Range } from '../base/types';

export type { Range } from '../base/types';

/** '?' non-tried, '*' non-trimmed, '/' non-scraped, '-' bad sector(s), '+' finished. */
export type BlockStatus = '?' | '*' | '/' | '-' | '+';

export interface MapBlock {
  pos: number;
  size: number;
  status: BlockStatus;
}

const BLOCK_STATUSES = new Set<string>(['?', '*', '/', '-', '+']);
const CURRENT_STATUSES = new Set<string>(['?', '*', '/', '-', 'F', 'G', '+']);

/** A mapfile that cannot be read, kept or applied; like every copy failure it keeps bytesCopied and result. */
export class MapfileError extends CopyFailure {
  readonly code = 'EMAPFILE';
  /** The system error behind it ('EISDIR', 'ENOSPC', …), when there is one. */
  readonly errnoCode: string | undefined;
  constructor(message: string, options: { cause?: unknown; code?: string | undefined } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MapfileError';
    this.errnoCode = options.code;
  }
}

/** The copy a map belongs to, recorded in a comment line so a resume cannot silently change it. */
export interface MapIdentity {
  source: string;
  /** Every target's path, joined with ','. */
  target: string;
  sourceOffset: number;
  targetOffset: number;
  /**
   * Where the source's and each target's bytes lived when the map was made (storage ids, see
   * storage/identity.ts): a resume onto a target that was since replaced, recreated or renamed
   * is refused. Absent in maps from devmove before 0.2.
   */
  sourceId?: string;
  targetIds?: string[];
}

function hex(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(8, '0')}`;
}

/**
 * A number as ddrescue reads it (C's %lli, then >= 0): decimal, 0x/0X
 * hexadecimal or 0-prefixed octal.
 */
function parseNumber(text: string, where: string): number {
  const hex = /^0[xX]([0-9a-fA-F]+)$/.exec(text);
  if (!hex && !/^(0[0-7]*|[1-9][0-9]*)$/.test(text)) throw new MapfileError(`${where}: '${text}' is not a number`);
  const n = hex ? parseInt(hex[1], 16) : text.length > 1 && text.startsWith('0') ? parseInt(text, 8) : parseInt(text, 10);
  if (!Number.isSafeInteger(n)) throw new MapfileError(`${where}: ${text} is too large`);
  return n;
}

/**
 * A line without its comment, as ddrescue reads it: '#' starts a comment at
 * the start of a line or after whitespace (`ddrescuelog -A` appends
 * '\t#  1048 kB' to each line), not inside a word.
 */
function withoutComment(line: string): string {
  const at = line.search(/(^|\s)#/);
  return (at === -1 ? line : line.slice(0, at)).trim();
}

export class RescueMap {
  /** Sorted, contiguous from blocks[0].pos, adjacent blocks of equal status merged. */
  private blocks: MapBlock[] = [];
  currentPos = 0;
  currentStatus = '?';
  currentPass = 1;
  identity: MapIdentity | undefined;

  /** Parses a mapfile's text; errors name the file and line. */
  static parse(text: string, name: string): RescueMap {
    const map = new RescueMap();
    let sawCurrent = false;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const where = `${name}:${i + 1}`;
      const identity = /^\s*# devmove: (.*?)\s*$/.exec(lines[i]);
      if (identity) map.identity = parseIdentity(identity[1], where);
      const line = withoutComment(lines[i]);
      if (line === '') continue;
      const fields = line.split(/\s+/);
      if (!sawCurrent) {
        map.parseCurrent(fields, line, where);
        sawCurrent = true;
        continue;
      }
      if (fields.length !== 3 || !BLOCK_STATUSES.has(fields[2])) {
        throw new MapfileError(`${where}: expected 'pos size status' with status one of ? * / - +, got '${line}'`);
      }
      const pos = parseNumber(fields[0], where);
      const size = parseNumber(fields[1], where);
      // ddrescue writes one empty block for an empty domain.
      if (size === 0 && pos === 0) continue;
      if (size <= 0) throw new MapfileError(`${where}: block size must be positive`);
      const last = map.blocks.at(-1);
      if (last && last.pos + last.size !== pos) {
        throw new MapfileError(`${where}: block at ${hex(pos)} does not follow the previous one (ends at ${hex(last.pos + last.size)})`);
      }
      map.push({ pos, size, status: fields[2] as BlockStatus });
    }
    if (!sawCurrent) throw new MapfileError(`${name}: not a ddrescue mapfile (no 'current_pos current_status' line)`);
    return map;
  }

  /** The status line: current_pos current_status [current_pass], the pass 1 when absent, as ddrescue reads it. */
  private parseCurrent(fields: string[], line: string, where: string): void {
    if (fields.length < 2 || fields.length > 3 || !CURRENT_STATUSES.has(fields[1])) {
      throw new MapfileError(`${where}: expected 'current_pos current_status [current_pass]', got '${line}'`);
    }
    this.currentPos = parseNumber(fields[0], where);
    this.currentStatus = fields[1];
    if (fields[2] !== undefined) this.currentPass = parseNumber(fields[2], where);
    if (this.currentPass < 1) throw new MapfileError(`${where}: current_pass must be at least 1`);
  }

  /** Reads `file`; undefined when it does not exist or is empty (a new copy). */
  static load(file: string): RescueMap | undefined {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (cause) {
      const e = cause as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return undefined;
      throw new MapfileError(`cannot read mapfile ${file}: ${e.code ?? 'error'}: ${describeCause(e)}`, { cause, code: e.code });
    }
    if (text.trim() === '') return undefined;
    return RescueMap.parse(text, file);
  }

  /** The blocks, in order. */
  list(): readonly MapBlock[] {
    return this.blocks;
  }

  /** Makes the map cover [0, end): what is not in it yet is non-tried. */
  cover(end: number): void {
    const first = this.blocks[0];
    if (first === undefined) {
      if (end > 0) this.blocks.push({ pos: 0, size: end, status: '?' });
      return;
    }
    if (first.pos > 0) this.blocks.unshift({ pos: 0, size: first.pos, status: '?' });
    const last = this.blocks[this.blocks.length - 1];
    if (last.pos + last.size < end) this.push({ pos: last.pos + last.size, size: end - last.pos - last.size, status: '?' });
  }

  /** Sets [offset, offset+length) to `status`, splitting and merging blocks. */
  set(offset: number, length: number, status: BlockStatus): void {
    if (length <= 0) return;
    const end = offset + length;
    this.cover(end);
    const out: MapBlock[] = [];
    let inserted = false;
    for (const b of this.blocks) {
      const bEnd = b.pos + b.size;
      if (bEnd <= offset || b.pos >= end) {
        if (!inserted && b.pos >= end) {
          out.push({ pos: offset, size: length, status });
          inserted = true;
        }
        out.push(b);
        continue;
      }
      if (b.pos < offset) out.push({ pos: b.pos, size: offset - b.pos, status: b.status });
      if (!inserted) {
        out.push({ pos: offset, size: length, status });
        inserted = true;
      }
      if (bEnd > end) out.push({ pos: end, size: bEnd - end, status: b.status });
    }
    if (!inserted) out.push({ pos: offset, size: length, status });
    this.blocks = [];
    for (const b of out) this.push(b);
  }

  /** Ranges with one of `statuses`, clipped to [from, to). */
  ranges(statuses: readonly BlockStatus[], from = 0, to = Number.MAX_SAFE_INTEGER): Range[] {
    const out: Range[] = [];
    for (const b of this.blocks) {
      if (!statuses.includes(b.status)) continue;
      const lo = Math.max(b.pos, from);
      const hi = Math.min(b.pos + b.size, to);
      if (hi > lo) out.push([lo, hi - lo]);
    }
    return out;
  }

  /** Bytes with `status` within [from, to). */
  bytes(status: BlockStatus, from = 0, to = Number.MAX_SAFE_INTEGER): number {
    return this.ranges([status], from, to).reduce((n, [, len]) => n + len, 0);
  }

  /** [from, to) minus the ranges with one of `statuses`: what is left to do. */
  gaps(statuses: readonly BlockStatus[], from: number, to: number): Range[] {
    const out: Range[] = [];
    let at = from;
    for (const [offset, length] of this.ranges(statuses, from, to)) {
      if (offset > at) out.push([at, offset - at]);
      at = Math.max(at, offset + length);
    }
    if (to > at) out.push([at, to - at]);
    return out;
  }

  format(commandLine: string, startTime: Date, finished: boolean): string {
    const lines = [
      '# Mapfile. Created by devmove (GNU ddrescue mapfile format)',
      `# Command line: ${commandLine.replace(/\n/g, ' ')}`,
      `# Start time:   ${formatTime(startTime)}`,
      `# Current time: ${formatTime(new Date())}`,
    ];
    if (this.identity) lines.push(`# devmove: ${formatIdentity(this.identity)}`);
    if (finished) lines.push('# Finished');
    lines.push('# current_pos  current_status  current_pass');
    lines.push(`${hex(this.currentPos)}     ${this.currentStatus}               ${this.currentPass}`);
    lines.push('#      pos        size  status');
    for (const b of this.blocks) lines.push(`${hex(b.pos)}  ${hex(b.size)}  ${b.status}`);
    return `${lines.join('\n')}\n`;
  }

  private push(b: MapBlock): void {
    const last = this.blocks.at(-1);
    if (last && last.status === b.status && last.pos + last.size === b.pos) {
      last.size += b.size;
    } else {
      this.blocks.push({ ...b });
    }
  }
}

function formatTime(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function formatIdentity(id: MapIdentity): string {
  const base = `source=${JSON.stringify(id.source)} target=${JSON.stringify(id.target)} source_offset=${id.sourceOffset} target_offset=${id.targetOffset}`;
  if (id.sourceId === undefined || id.targetIds === undefined) return base;
  return `${base} source_id=${JSON.stringify(id.sourceId)} target_ids=${JSON.stringify(id.targetIds)}`;
}

function parseIdentity(text: string, where: string): MapIdentity {
  const m =
    /^source=("(?:[^"\\]|\\.)*") target=("(?:[^"\\]|\\.)*") source_offset=(\d+) target_offset=(\d+)(?: source_id=("(?:[^"\\]|\\.)*") target_ids=(\[.*\]))?$/.exec(text);
  if (!m) throw new MapfileError(`${where}: malformed '# devmove:' line`);
  const identity: MapIdentity = {
    source: JSON.parse(m[1]) as string,
    target: JSON.parse(m[2]) as string,
    sourceOffset: Number(m[3]),
    targetOffset: Number(m[4]),
  };
  if (m[5] !== undefined && m[6] !== undefined) {
    const ids: unknown = JSON.parse(m[6]);
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new MapfileError(`${where}: malformed target_ids`);
    identity.sourceId = JSON.parse(m[5]) as string;
    identity.targetIds = ids as string[];
  }
  return identity;
}

/**
 * Replaces `file` atomically and durably with `text`: a temporary file next to it (created
 * exclusively), fsync, rename over the old one, fsync of the directory. Throws a MapfileError
 * that names `file` and says what failed, never a raw message about the temporary file.
 */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.devmove-tmp`;
  const step = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (cause) {
      const e = cause as NodeJS.ErrnoException;
      throw new MapfileError(`cannot ${what} mapfile ${file}: ${e.code ?? 'error'}: ${describeCause(e)}`, { cause, code: e.code });
    }
  };
  let fd = -1;
  step('write', () => {
    fs.rmSync(tmp, { force: true }); // a stale one from a crash
    fd = fs.openSync(tmp, 'wx', 0o644);
  });
  try {
    step('write', () => fs.writeSync(fd, text));
    step('flush', () => fs.fsyncSync(fd));
  } finally {
    fs.closeSync(fd);
  }
  step('replace', () => {
    try {
      fs.renameSync(tmp, file);
    } catch (error) {
      fs.rmSync(tmp, { force: true });
      throw error;
    }
  });
  step('flush the directory of', () => {
    const dir = fs.openSync(path.dirname(path.resolve(file)), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
  });
}

function describeCause(e: NodeJS.ErrnoException): string {
  const what = e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
  return what;
}
