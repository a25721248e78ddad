// Job files: several independent (source, target) pairs in one JSON file, run
// together by `devmove run JOBFILE` (see job.ts). This module only reads and
// validates: every mistake is a JobFileError whose message names the file and
// the field, e.g.
//
//   job.json: pairs[1].blockSize: must be a size such as '512K' or '4M' (got 'lots')
//   job.json:3:15: invalid JSON: expected ',' or '}' after a property value
//
// Schema, version 1:
//
//   { "version": 1,
//     "maxQueueDepth": 16,         total I/Os in flight over all pairs (default 8 × pairs, at most 1024)
//     "maxBufferMemory": "256M",   total buffer memory over all pairs (default maxQueueDepth × 512K)
//     "defaults": { …pair options… },                     merged under every pair
//     "pairs": [ { "name": "db", "source": "/dev/sdb", "target": "/dev/sdc", …pair options… } ] }
//
// Relative paths are resolved against the job file's directory; a bare name
// that is a block device's kernel name ('sdb', 'loop3') or 'MAJ:MIN' stays a
// device name (write './sdb' for a file called sdb next to the job file).
import fs from 'node:fs';
import path from 'node:path';

import {
  BLOCK_SIZE_MAX, DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH, DIRECT_MODES, DURABILITIES, HASH_ALGORITHMS, QUEUE_DEPTH_MAX,
  RING_BYTES_MAX, TARGET_ERROR_POLICIES, ZERO_MODES,
  type DirectMode,
} from '../base/types';
import { formatBytesIEC, parseDdNumber, SizeSyntaxError } from '../base/size';
import { resolveKernelPath } from '../storage/identity';
import { blockInfoByName } from '../storage/sysfs';
import { checkPairConflicts } from './conflicts';
import { fieldPath, JOB_FILE_VERSION, JobFileError, type JobPair, type JobSpec, type PairOptions, type ValidateOptions } from './spec';

export { JOB_FILE_VERSION, fieldPath, JobFileError, type JobPair, type JobSpec, type PairOptions, type ValidateOptions } from './spec';

// ---- JSON with positions ---------------------------------------------------------

/**
 * Strict JSON (RFC 8259), with what JSON.parse does not give: the line and column of a
 * syntax error, messages for the usual slips (comments, trailing commas, single quotes),
 * and duplicate keys refused instead of silently dropped.
 */
function parseJson(text: string, fileName: string | undefined): unknown {
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;

  const fail = (reason: string, at = pos): never => {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < text.length; i++) {
      if (text[i] === '\n') {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JobFileError({ fileName, reason: `invalid JSON: ${reason}`, line, column: at - lineStart + 1 });
  };
  const describeChar = (ch: string | undefined): string => {
    if (ch === undefined) return 'the end of the file';
    if (ch === "'") return `"'" (strings and keys take double quotes)`;
    if (ch === '/') return `'/' (JSON has no comments)`;
    const code = ch.charCodeAt(0);
    return code < 0x20 || code === 0x7f ? `control character U+${code.toString(16).padStart(4, '0')}` : `'${ch}'`;
  };
  const skipWhitespace = (): void => {
    while (pos < text.length) {
      const ch = text[pos];
      if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') pos++;
      else break;
    }
  };

  const parseString = (): string => {
    const start = pos;
    pos++; // the opening quote
    let out = '';
    for (;;) {
      if (pos >= text.length) fail('unterminated string', start);
      const ch = text[pos];
      if (ch === '"') {
        pos++;
        return out;
      }
      if (ch === '\\') {
        const esc = text[pos + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (esc !== undefined && esc in simple) {
          out += simple[esc];
          pos += 2;
        } else if (esc === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) {
          out += String.fromCharCode(parseInt(text.slice(pos + 2, pos + 6), 16));
          pos += 6;
        } else {
          fail(`invalid escape sequence '\\${esc ?? ''}' in a string`);
        }
        continue;
      }
      if (ch.charCodeAt(0) < 0x20) fail(`${describeChar(ch)} in a string; write it as an escape such as \\n`);
      out += ch;
      pos++;
    }
  };

  const parseNumber = (): number => {
    const re = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) fail(`invalid number starting with ${describeChar(text[pos])}`);
    const literal = (m as RegExpExecArray)[0];
    if (/^-?0[0-9]/.test(text.slice(pos, pos + literal.length + 1))) fail('numbers must not have leading zeros');
    pos += literal.length;
    return Number(literal);
  };

  const parseValue = (field: string, depth: number): unknown => {
    if (depth > 64) fail('nested too deeply');
    skipWhitespace();
    const ch = text[pos];
    if (ch === '{') return parseObject(field, depth);
    if (ch === '[') return parseArray(field, depth);
    if (ch === '"') return parseString();
    if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) return parseNumber();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    if (ch === undefined) return fail('unexpected end of the file: a value is missing');
    return fail(`unexpected ${describeChar(ch)}: expected a value (an object, array, string, number, true, false or null)`);
  };

  const parseObject = (field: string, depth: number): Record<string, unknown> => {
    pos++; // {
    const object: Record<string, unknown> = {};
    skipWhitespace();
    if (text[pos] === '}') {
      pos++;
      return object;
    }
    for (;;) {
      skipWhitespace();
      if (text[pos] !== '"') {
        if (text[pos] === '}') fail('trailing comma before }');
        fail(`unexpected ${describeChar(text[pos])}: expected a property name in double quotes`);
      }
      const keyAt = pos;
      const key = parseString();
      if (Object.prototype.hasOwnProperty.call(object, key)) {
        throw new JobFileError({ fileName, field: fieldPath(field, key), reason: `given twice in one object (the second time at line ${lineOf(keyAt)})` });
      }
      skipWhitespace();
      if (text[pos] !== ':') fail(`unexpected ${describeChar(text[pos])}: expected ':' after the property name "${key}"`);
      pos++;
      const value = parseValue(fieldPath(field, key), depth + 1);
      // defineProperty: a key named __proto__ is data, not the object's prototype.
      Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      skipWhitespace();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === '}') {
        pos++;
        return object;
      }
      fail(`unexpected ${describeChar(text[pos])}: expected ',' or '}' after a property value`);
    }
  };

  const parseArray = (field: string, depth: number): unknown[] => {
    pos++; // [
    const array: unknown[] = [];
    skipWhitespace();
    if (text[pos] === ']') {
      pos++;
      return array;
    }
    for (;;) {
      skipWhitespace();
      if (text[pos] === ']') fail('trailing comma before ]');
      array.push(parseValue(fieldPath(field, array.length), depth + 1));
      skipWhitespace();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === ']') {
        pos++;
        return array;
      }
      fail(`unexpected ${describeChar(text[pos])}: expected ',' or ']' after an array element`);
    }
  };

  const lineOf = (at: number): number => {
    let line = 1;
    for (let i = 0; i < at; i++) if (text[i] === '\n') line++;
    return line;
  };

  skipWhitespace();
  if (pos >= text.length) {
    throw new JobFileError({ fileName, reason: 'the file is empty; a job file is a JSON object such as {"version": 1, "pairs": [{"source": "/dev/sdb", "target": "/dev/sdc"}]}' });
  }
  const value = parseValue('', 0);
  skipWhitespace();
  if (pos < text.length) fail(`unexpected ${describeChar(text[pos])} after the end of the JSON value`);
  return value;
}

// ---- field validators --------------------------------------------------------------

function describe(value: unknown): string {
  if (typeof value === 'string') return /^[\x20-\x7e]*$/.test(value) && !value.includes("'") ? `'${value}'` : JSON.stringify(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function oneOf(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`);
  return quoted.length <= 2 ? quoted.join(' or ') : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

/** Levenshtein distance, for did-you-mean. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length];
}

/** dd operands and other names people reach for. */
const ALIASES: Readonly<Record<string, string>> = {
  if: 'source', of: 'target', from: 'source', to: 'target', src: 'source', dst: 'target', dest: 'target', destination: 'target',
  bs: 'blockSize', ibs: 'blockSize', obs: 'blockSize', skip: 'sourceOffset', seek: 'targetOffset', count: 'length',
  qd: 'queueDepth', iodepth: 'queueDepth', map: 'mapfile', mapFile: 'mapfile', noerror: 'noError', sync: 'durability',
  retry: 'retries', checksum: 'hash', sparse: 'zeroBlocks',
};

export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const alias = ALIASES[key] ?? ALIASES[key.toLowerCase()];
  if (alias !== undefined && known.includes(alias)) return alias;
  const folded = key.toLowerCase().replace(/[-_ ]/g, '');
  const exact = known.find((k) => k.toLowerCase() === folded);
  if (exact !== undefined) return exact;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(folded, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 4)) ? best : undefined;
}

class Checker {
  constructor(private readonly fileName: string | undefined) {}

  fail(field: string, reason: string): never {
    throw new JobFileError({ fileName: this.fileName, field, reason });
  }

  object(value: unknown, field: string, what: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, `must be ${what} (got ${describe(value)})`);
    return value as Record<string, unknown>;
  }

  size(value: unknown, field: string): number {
    const expected = "must be a size such as '512K' or '4M'";
    if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
        this.fail(field, `${expected}, or a whole number of bytes from 0 to ${Number.MAX_SAFE_INTEGER} (got ${describe(value)})`);
      }
      return value;
    }
    if (typeof value !== 'string') this.fail(field, `${expected} (got ${describe(value)})`);
    try {
      return parseDdNumber(value as string);
    } catch (error) {
      if (!(error instanceof SizeSyntaxError)) throw error;
      // "expected a decimal number" only repeats the value; the other reasons say what to fix.
      const hint = /^(expected a decimal number|empty size)/.test(error.reason) ? '' : `: ${error.reason}`;
      return this.fail(field, `${expected} (got ${describe(value)})${hint}`);
    }
  }

  integer(value: unknown, field: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(field, `must be an integer from ${min} to ${max} (got ${describe(value)})`);
    }
    return value as number;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') this.fail(field, `must be true or false (got ${describe(value)})`);
    return value as boolean;
  }

  choice<T extends string>(value: unknown, field: string, values: readonly T[]): T {
    if (typeof value !== 'string' || !values.includes(value as T)) {
      const close = typeof value === 'string' ? suggestKey(value, values) : undefined;
      this.fail(field, `must be one of ${oneOf(values)} (got ${describe(value)})${close !== undefined ? `; did you mean '${close}'?` : ''}`);
    }
    return value as T;
  }

  pathString(value: unknown, field: string, what: string): string {
    if (typeof value !== 'string') this.fail(field, `must be ${what} (got ${describe(value)})`);
    const text = value as string;
    if (text === '') this.fail(field, `must not be empty; it is ${what}`);
    if (text.includes('\0')) this.fail(field, 'must not contain NUL characters');
    return text;
  }
}

export const RETRIES_MAX = 1000;

const TOP_LEVEL_KEYS = ['version', 'maxQueueDepth', 'maxBufferMemory', 'defaults', 'pairs'] as const;
/** Keys only a pair can have (not defaults). */
const PER_PAIR_KEYS = ['name', 'source', 'target', 'targets'] as const;
/** Pair options that may also be in defaults. */
const SHARED_KEYS = [
  'sourceOffset', 'targetOffset', 'length', 'maxLength', 'blockSize', 'queueDepth', 'direct', 'durability', 'createTarget',
  'truncateTarget', 'force', 'rate', 'background', 'noError', 'retries', 'mapfile', 'retryBad', 'verify', 'hash', 'zeroBlocks',
  'onTargetError',
] as const satisfies ReadonlyArray<keyof PairOptions>;
const PAIR_KEYS: readonly string[] = [...PER_PAIR_KEYS, ...SHARED_KEYS];

type SharedOptions = Omit<PairOptions, 'source' | 'target' | 'targets'>;

class JobValidator {
  readonly check: Checker;

  constructor(private readonly options: ValidateOptions) {
    this.check = new Checker(options.fileName);
  }

  /**
   * A source or target: a bare kernel name ('sdb', 'loop3') or 'MAJ:MIN' stays a device name
   * (copy() resolves it); anything else relative is resolved against the job file's directory.
   */
  devicePath(value: unknown, field: string): string {
    const text = this.check.pathString(value, field, "a device or file path such as '/dev/sdb', 'sdb' or 'disk.img'");
    const bare = !text.includes('/');
    const isDeviceName = bare && (/^\d+:\d+$/.test(text) || blockInfoByName(text) !== undefined);
    const { baseDir } = this.options;
    if (isDeviceName) {
      if (baseDir !== undefined && fs.existsSync(path.join(baseDir, text))) {
        this.check.fail(field, `'${text}' is both a block device and a file next to the job file; write '/dev/${text}' or './${text}'`);
      }
      return text;
    }
    return this.resolve(text);
  }

  filePath(value: unknown, field: string): string {
    return this.resolve(this.check.pathString(value, field, "a file path such as 'db.map'"));
  }

  /**
   * A path as the kernel resolves it, relative ones against the job file's directory: '..' after
   * a symlinked directory goes where the kernel goes, not where the text points. A dangling link
   * at the end stays a link (copy() refuses to create a target through one).
   */
  private resolve(text: string): string {
    const { baseDir } = this.options;
    if (!path.isAbsolute(text) && baseDir === undefined) return text;
    return resolveKernelPath(text, baseDir, { followDanglingLink: false });
  }

  /** `kind` names one known key ('pair option'), `kinds` all of them ('the pair options'). */
  rejectUnknownKeys(
    object: Record<string, unknown>,
    field: string,
    known: readonly string[],
    [kind, kinds]: [string, string],
    extra?: (key: string) => string | undefined,
  ): void {
    for (const key of Object.keys(object)) {
      if (known.includes(key)) continue;
      const special = extra?.(key);
      if (special !== undefined) this.check.fail(fieldPath(field, key), special);
      const suggestion = suggestKey(key, known);
      const hint = suggestion !== undefined ? `; did you mean '${suggestion}'?` : `; ${kinds} are ${known.join(', ')}`;
      this.check.fail(fieldPath(field, key), `is not a ${kind}${hint}`);
    }
  }

  /** The options shared by defaults and pairs, validated (sizes in bytes, paths resolved). */
  shared(object: Record<string, unknown>, field: string): SharedOptions {
    const c = this.check;
    const out: SharedOptions = {};
    const at = (key: string): string => fieldPath(field, key);
    const has = (key: string): boolean => object[key] !== undefined;
    for (const key of ['sourceOffset', 'targetOffset', 'length', 'maxLength'] as const) {
      if (has(key)) out[key] = c.size(object[key], at(key));
    }
    if (has('length') && has('maxLength')) {
      c.fail(at('maxLength'), `excludes ${at('length')}: give an exact length or a maximum, not both`);
    }
    if (has('blockSize')) {
      const blockSize = c.size(object.blockSize, at('blockSize'));
      if (blockSize < 1 || blockSize > BLOCK_SIZE_MAX) {
        c.fail(at('blockSize'), `must be from 1 byte to 1G, such as '512K' or '4M' (got ${describe(object.blockSize)})`);
      }
      out.blockSize = blockSize;
    }
    if (has('queueDepth')) out.queueDepth = c.integer(object.queueDepth, at('queueDepth'), 1, QUEUE_DEPTH_MAX);
    if (has('direct')) {
      const direct = object.direct;
      if (typeof direct === 'object' && direct !== null && !Array.isArray(direct)) {
        const sides = direct as Record<string, unknown>;
        this.rejectUnknownKeys(sides, at('direct'), ['source', 'target'], ['side of direct', 'the sides']);
        const perSide: { source?: DirectMode; target?: DirectMode } = {};
        if (sides.source !== undefined) perSide.source = c.choice(sides.source, fieldPath(at('direct'), 'source'), DIRECT_MODES);
        if (sides.target !== undefined) perSide.target = c.choice(sides.target, fieldPath(at('direct'), 'target'), DIRECT_MODES);
        out.direct = perSide;
      } else if (typeof direct === 'string') {
        out.direct = c.choice(direct, at('direct'), DIRECT_MODES);
      } else {
        c.fail(at('direct'), `must be one of ${oneOf(DIRECT_MODES)}, or an object { "source": …, "target": … } (got ${describe(direct)})`);
      }
    }
    if (has('durability')) out.durability = c.choice(object.durability, at('durability'), DURABILITIES);
    for (const key of ['createTarget', 'force', 'background', 'noError', 'retryBad', 'verify'] as const) {
      if (has(key)) out[key] = c.boolean(object[key], at(key));
    }
    if (has('truncateTarget')) {
      const value = object.truncateTarget;
      out.truncateTarget = typeof value === 'boolean' ? value : c.size(value, at('truncateTarget'));
    }
    if (has('rate')) {
      const rate = this.rate(object.rate, at('rate'));
      if (rate > 0) out.rate = rate;
    }
    if (has('retries')) out.retries = c.integer(object.retries, at('retries'), 0, RETRIES_MAX);
    if (has('mapfile')) out.mapfile = this.filePath(object.mapfile, at('mapfile'));
    if (has('hash')) out.hash = c.choice(object.hash, at('hash'), HASH_ALGORITHMS);
    if (has('zeroBlocks')) out.zeroBlocks = c.choice(object.zeroBlocks, at('zeroBlocks'), ZERO_MODES);
    if (has('onTargetError')) out.onTargetError = c.choice(object.onTargetError, at('onTargetError'), TARGET_ERROR_POLICIES);
    return out;
  }

  /** Bytes per second: a size ('50M', 1048576) with an optional '/s'; 0 means unlimited. */
  rate(value: unknown, field: string): number {
    const expected = "must be a rate in bytes per second such as '50M' or '1G/s', or 0 for unlimited";
    if (typeof value === 'string') {
      const text = value.endsWith('/s') ? value.slice(0, -2) : value;
      try {
        return parseDdNumber(text);
      } catch (error) {
        if (!(error instanceof SizeSyntaxError)) throw error;
        return this.check.fail(field, `${expected} (got ${describe(value)})`);
      }
    }
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER) return value;
    return this.check.fail(field, `${expected} (got ${describe(value)})`);
  }

  pair(value: unknown, index: number, defaults: SharedOptions): JobPair {
    const c = this.check;
    const field = fieldPath('pairs', index);
    const object = c.object(value, field, 'an object such as { "source": "/dev/sdb", "target": "/dev/sdc" }');
    this.rejectUnknownKeys(object, field, PAIR_KEYS, ['pair option', 'the pair options'], (key) =>
      (TOP_LEVEL_KEYS as readonly string[]).includes(key) ? `belongs at the top level of the job, not in a pair` : undefined,
    );
    let name = `pair-${index}`;
    if (object.name !== undefined) {
      if (typeof object.name !== 'string' || !/^[^\x00-\x1f\x7f]{1,100}$/.test(object.name)) {
        c.fail(fieldPath(field, 'name'), `must be a name of 1 to 100 printable characters such as 'db' (got ${describe(object.name)})`);
      }
      name = object.name as string;
    }
    if (object.source === undefined) c.fail(fieldPath(field, 'source'), "is missing: every pair needs a source such as '/dev/sdb'");
    const source = this.devicePath(object.source, fieldPath(field, 'source'));
    const options: PairOptions = { source };
    if (object.target !== undefined && object.targets !== undefined) {
      c.fail(fieldPath(field, 'targets'), `excludes ${fieldPath(field, 'target')}: give one target, or a list of targets, not both`);
    }
    if (object.target !== undefined) {
      options.target = this.devicePath(object.target, fieldPath(field, 'target'));
    } else if (object.targets !== undefined) {
      const targetsField = fieldPath(field, 'targets');
      if (!Array.isArray(object.targets)) c.fail(targetsField, `must be a list of paths such as ["/dev/sdc", "/dev/sdd"] (got ${describe(object.targets)})`);
      const list = object.targets as unknown[];
      if (list.length === 0) c.fail(targetsField, 'must list at least one target');
      const targets: string[] = [];
      list.forEach((t, i) => {
        const resolved = this.devicePath(t, fieldPath(targetsField, i));
        const before = targets.indexOf(resolved);
        if (before >= 0) c.fail(fieldPath(targetsField, i), `${describe(resolved)} is already ${fieldPath(targetsField, before)}`);
        targets.push(resolved);
      });
      options.targets = targets;
    } else {
      c.fail(fieldPath(field, 'target'), "is missing: every pair needs a target such as '/dev/sdc' (or a list in targets)");
    }
    const own = this.shared(object, field);
    const merged: SharedOptions = { ...defaults };
    // A pair's own length or maxLength replaces both of the defaults' ones.
    if (own.length !== undefined || own.maxLength !== undefined) {
      delete merged.length;
      delete merged.maxLength;
    }
    Object.assign(options, merged, own);
    return { name, index, options };
  }

  job(value: unknown): JobSpec {
    const c = this.check;
    const top = c.object(value, '', 'a JSON object such as {"version": 1, "pairs": [{"source": "/dev/sdb", "target": "/dev/sdc"}]}');
    this.rejectUnknownKeys(top, '', TOP_LEVEL_KEYS, ['job field', 'the job fields'], (key) =>
      PAIR_KEYS.includes(key) ? `is a pair option: put it in a pair, or in defaults for every pair` : undefined,
    );
    if (top.version === undefined) c.fail('version', `is missing; add "version": ${JOB_FILE_VERSION}`);
    if (top.version !== JOB_FILE_VERSION) {
      c.fail('version', `must be ${JOB_FILE_VERSION}, the job file version this devmove reads (got ${describe(top.version)})`);
    }
    let defaults: SharedOptions = {};
    if (top.defaults !== undefined) {
      const object = c.object(top.defaults, 'defaults', 'an object of pair options such as { "blockSize": "1M" }');
      this.rejectUnknownKeys(object, 'defaults', SHARED_KEYS, ['pair option', 'the options for defaults'], (key) =>
        (PER_PAIR_KEYS as readonly string[]).includes(key) ? 'is set per pair, not in defaults' : undefined,
      );
      defaults = this.shared(object, 'defaults');
    }
    if (top.pairs === undefined) c.fail('pairs', 'is missing: a job needs a list of pairs such as [{"source": "/dev/sdb", "target": "/dev/sdc"}]');
    if (!Array.isArray(top.pairs)) c.fail('pairs', `must be a list of pairs (got ${describe(top.pairs)})`);
    const list = top.pairs as unknown[];
    if (list.length === 0) c.fail('pairs', 'is empty: a job needs at least one pair');
    if (list.length > QUEUE_DEPTH_MAX) c.fail('pairs', `has ${list.length} pairs; a job can have at most ${QUEUE_DEPTH_MAX}`);
    const pairs = list.map((p, i) => this.pair(p, i, defaults));

    const maxQueueDepthIsDefault = top.maxQueueDepth === undefined;
    const maxQueueDepth = maxQueueDepthIsDefault
      ? Math.min(DEFAULT_QUEUE_DEPTH * pairs.length, QUEUE_DEPTH_MAX)
      : c.integer(top.maxQueueDepth, 'maxQueueDepth', 1, QUEUE_DEPTH_MAX);
    const maxBufferMemoryIsDefault = top.maxBufferMemory === undefined;
    const maxBufferMemory = maxBufferMemoryIsDefault ? maxQueueDepth * DEFAULT_BLOCK_SIZE : c.size(top.maxBufferMemory, 'maxBufferMemory');

    const spec: JobSpec = { version: 1, maxQueueDepth, maxBufferMemory, maxQueueDepthIsDefault, maxBufferMemoryIsDefault, pairs };
    if (this.options.fileName !== undefined) spec.fileName = this.options.fileName;
    checkNames(spec, c);
    checkPairConflicts(spec, 'paths');
    allocateBudget(spec);
    return spec;
  }
}

function checkNames(spec: JobSpec, c: Checker): void {
  const seen = new Map<string, number>();
  for (const pair of spec.pairs) {
    const before = seen.get(pair.name);
    if (before !== undefined) {
      c.fail(fieldPath(fieldPath('pairs', pair.index), 'name'), `'${pair.name}' is already the name of pairs[${before}]; names must be unique`);
    }
    seen.set(pair.name, pair.index);
  }
}

// ---- the shared budget -------------------------------------------------------------

export interface PairAllocation {
  /** I/Os in flight for this pair: its own queueDepth (default 8) within its share of the job's totals. */
  queueDepth: number;
  blockSize: number;
  /** queueDepth × blockSize */
  bufferBytes: number;
}

/**
 * Splits the job's totals evenly: each pair gets at most floor(maxQueueDepth / pairs) I/Os and
 * floor(maxBufferMemory / pairs) bytes of buffers, within which it keeps its own queueDepth.
 * Throws a JobFileError when a pair cannot get one I/O or one buffer.
 */
export function allocateBudget(spec: JobSpec): PairAllocation[] {
  const c = new Checker(spec.fileName);
  const n = spec.pairs.length;
  const depthShare = Math.floor(spec.maxQueueDepth / n);
  if (depthShare < 1) {
    c.fail('maxQueueDepth', `must be at least the number of pairs (${n}), so that every pair has an I/O in flight (got ${spec.maxQueueDepth})`);
  }
  const memoryShare = Math.floor(spec.maxBufferMemory / n);
  return spec.pairs.map((pair) => {
    const blockSize = pair.options.blockSize ?? DEFAULT_BLOCK_SIZE;
    const buffers = Math.floor(memoryShare / blockSize);
    if (buffers < 1) {
      const total = spec.maxBufferMemoryIsDefault
        ? `the default of ${formatBytesIEC(spec.maxBufferMemory)} (maxQueueDepth ${spec.maxQueueDepth} × 512 KiB)`
        : formatBytesIEC(spec.maxBufferMemory);
      const share = n > 1 ? `shared by ${n} pairs leaves ${formatBytesIEC(memoryShare)} per pair` : 'is';
      c.fail(
        'maxBufferMemory',
        `${total} ${share}, less than one ${formatBytesIEC(blockSize)} buffer of pair '${pair.name}' (its blockSize); raise maxBufferMemory or lower the blockSize`,
      );
    }
    const wanted = pair.options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    const queueDepth = Math.max(1, Math.min(wanted, depthShare, buffers, Math.floor(RING_BYTES_MAX / blockSize)));
    return { queueDepth, blockSize, bufferBytes: queueDepth * blockSize };
  });
}

// ---- entry points ------------------------------------------------------------------

/** Validates a parsed job (an object as in a job file) and returns the normalized spec. */
export function validateJob(value: unknown, options: ValidateOptions = {}): JobSpec {
  return new JobValidator(options).job(value);
}

/**
 * Parses and validates a job file's text. `fileName` is used in messages and, unless
 * `baseDir` is given, its directory is where relative paths are resolved.
 */
export function parseJobFile(text: string, fileName: string, options: { baseDir?: string } = {}): JobSpec {
  const value = parseJson(text, fileName);
  return validateJob(value, { fileName, baseDir: options.baseDir ?? path.dirname(resolveKernelPath(fileName)) });
}
