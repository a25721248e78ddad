// Job files: several independent (source, target) pairs in one JSON file, run
// together by `devmove run JOBFILE` (see job.ts). This module validates (the
// strict JSON reading is json.ts): every mistake is a JobFileError whose message
// names the file and the field, or the line:column of a JSON syntax error, e.g.
//
//   job.json: pairs[1].blockSize: must be a size such as '512K' or '4M' (got 'lots')
//   job.json:3:3: invalid JSON: unexpected '"': expected ',' or '}' after a property value
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
  DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH, DIRECT_MODES,
  type DirectMode,
} from '../base/types';
import { JOB_OPTION_KEYS, optionRow, type OptionKey } from '../api/options';
import { closest, describeValue, explain, integer, listChoices, size, type ValueKind } from '../api/values';
import { QUEUE_DEPTH_MAX, RING_BYTES_MAX } from '../base/limits';
import { formatBytesIEC } from '../base/size';
import { resolveKernelPath } from '../storage/identity';
import { isNbdUri, NbdUriError, parseNbdUri } from '../storage/nbd-uri';
import { blockInfoByName } from '../storage/sysfs';
import { checkPairConflicts } from './conflicts';
import { JsonDuplicateKeyError, JsonSyntaxError, parseStrictJson } from './json';
import { fieldPath, JOB_FILE_VERSION, JobFileError, type JobPair, type JobSpec, type PairOptions, type ValidateOptions } from './spec';

export { JOB_FILE_VERSION, fieldPath, JobFileError, type JobPair, type JobSpec, type PairOptions, type ValidateOptions } from './spec';

// ---- the document -----------------------------------------------------------------

/** The file's JSON value, or a JobFileError naming the line:column of a syntax error or the field of a duplicate key. */
function readJson(text: string, fileName: string | undefined): unknown {
  if (/^\ufeff?[ \t\r\n]*$/.test(text)) {
    throw new JobFileError({ fileName, reason: 'the file is empty; a job file is a JSON object such as {"version": 1, "pairs": [{"source": "/dev/sdb", "target": "/dev/sdc"}]}' });
  }
  try {
    return parseStrictJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new JobFileError({ fileName, reason: `invalid JSON: ${error.reason}`, line: error.line, column: error.column });
    }
    if (error instanceof JsonDuplicateKeyError) {
      const field = fieldPath(error.path.reduce<string>((parent, key) => fieldPath(parent, key), ''), error.key);
      throw new JobFileError({ fileName, field, reason: `given twice in one object (the second time at line ${error.line})` });
    }
    throw error;
  }
}

// ---- field validators --------------------------------------------------------------

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
  return closest(key.replace(/[-_ ]/g, ''), known);
}

const describe = describeValue;

class Checker {
  constructor(private readonly fileName: string | undefined) {}

  fail(field: string, reason: string): never {
    throw new JobFileError({ fileName: this.fileName, field, reason });
  }

  object(value: unknown, field: string, what: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, `must be ${what} (got ${describe(value)})`);
    return value as Record<string, unknown>;
  }

  /** A value through one of the option table's kinds (api/values.ts). */
  kind<T>(kind: ValueKind<T>, value: unknown, field: string): T {
    const c = kind.fromValue(value);
    return c.ok ? c.value : this.fail(field, explain(c.rejection, value));
  }

  pathString(value: unknown, field: string, what: string): string {
    if (typeof value !== 'string') this.fail(field, `must be ${what} (got ${describe(value)})`);
    const text = value as string;
    if (text === '') this.fail(field, `must not be empty; it is ${what}`);
    if (text.includes('\0')) this.fail(field, 'must not contain NUL characters');
    return text;
  }
}


const TOP_LEVEL_KEYS = ['version', 'maxQueueDepth', 'maxBufferMemory', 'defaults', 'pairs'] as const;
/** Keys only a pair can have (not defaults). */
const PER_PAIR_KEYS = ['name', 'source', 'target', 'targets'] as const;
/** Pair options that may also be in defaults: the option table's job options. */
const SHARED_KEYS: readonly string[] = JOB_OPTION_KEYS;
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
    if (isNbdUri(text)) return this.nbdUri(text, field);
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

  /** An NBD URI, checked; a relative socket path is made absolute against the job file's directory. */
  private nbdUri(text: string, field: string): string {
    try {
      const u = parseNbdUri(text, this.options.baseDir);
      if (u.transport !== 'unix') return text;
      return text.replace(/([?&]socket=)[^&#]*/, (_m, key: string) => key + encodeURIComponent(u.socket!));
    } catch (error) {
      if (error instanceof NbdUriError) this.check.fail(field, `'${text}' is not a usable NBD URI: ${error.message}`);
      throw error;
    }
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

  /** One pair option through its row of the option table (api/options.ts). */
  option(key: OptionKey, value: unknown, field: string): unknown {
    const c = optionRow(key).kind.fromValue(value);
    return c.ok ? c.value : this.check.fail(field, explain(c.rejection, value));
  }

  /** The options shared by defaults and pairs, validated (sizes in bytes, paths resolved). */
  shared(object: Record<string, unknown>, field: string): SharedOptions {
    const out: Record<string, unknown> = {};
    const at = (key: string): string => fieldPath(field, key);
    if (object.length !== undefined && object.maxLength !== undefined) {
      this.option('length', object.length, at('length'));
      this.option('maxLength', object.maxLength, at('maxLength'));
      this.check.fail(at('maxLength'), `excludes ${at('length')}: give an exact length or a maximum, not both`);
    }
    for (const key of SHARED_KEYS) {
      const value = object[key];
      if (value === undefined) continue;
      if (key === 'direct') out.direct = this.direct(value, at('direct'));
      else if (key === 'mapfile' || key === 'domainMapfile') out[key] = this.filePath(value, at(key));
      else out[key] = this.option(key as OptionKey, value, at(key));
    }
    if (out.rate === 0) delete out.rate; // 0 is the default: unlimited
    return out as SharedOptions;
  }

  /** 'auto' | 'always' | 'never', or one per side: { "source": …, "target": … }. */
  direct(value: unknown, field: string): NonNullable<PairOptions['direct']> {
    if (typeof value === 'string') return this.option('direct', value, field) as DirectMode;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return this.check.fail(field, `must be one of ${listChoices(DIRECT_MODES)}, or an object { "source": …, "target": … } (got ${describe(value)})`);
    }
    const sides = value as Record<string, unknown>;
    this.rejectUnknownKeys(sides, field, ['source', 'target'], ['side of direct', 'the sides']);
    const perSide: { source?: DirectMode; target?: DirectMode } = {};
    if (sides.source !== undefined) perSide.source = this.option('direct', sides.source, fieldPath(field, 'source')) as DirectMode;
    if (sides.target !== undefined) perSide.target = this.option('direct', sides.target, fieldPath(field, 'target')) as DirectMode;
    return perSide;
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
      : c.kind(integer(1, QUEUE_DEPTH_MAX), top.maxQueueDepth, 'maxQueueDepth');
    const maxBufferMemoryIsDefault = top.maxBufferMemory === undefined;
    const maxBufferMemory = maxBufferMemoryIsDefault ? maxQueueDepth * DEFAULT_BLOCK_SIZE : c.kind(size(), top.maxBufferMemory, 'maxBufferMemory');

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

/**
 * How deep a pair without a queueDepth of its own may grow on a finished pair's budget. Measured
 * (bench/pairs.js setup, 4 ram pairs, engine seconds, medians of 3): depth 8 and 16 moved the same
 * 2.22 GiB/s, depth 32 1.73; deeper rings cost kernel memory (SQ/CQ entries) per pair for nothing.
 */
const GROWN_QUEUE_DEPTH_MAX = 32;

export interface PairAllocation {
  /** I/Os in flight for this pair: its own queueDepth (default 8) within its share of the job's totals. */
  queueDepth: number;
  blockSize: number;
  /** queueDepth × blockSize */
  bufferBytes: number;
  /**
   * How far the pair may grow when other pairs have finished (JobBudget): its own queueDepth when
   * given (or a background pair, which stays out of the way), else the job's maxQueueDepth (at most
   * 32), within maxBufferMemory.
   */
  queueDepthMax: number;
}

/**
 * Splits the job's totals evenly: each pair gets at most floor(maxQueueDepth / pairs) I/Os and
 * floor(maxBufferMemory / pairs) bytes of buffers, within which it keeps its own queueDepth.
 * That is where pairs start; JobBudget moves a finished pair's share to the pairs still running.
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
    const ringMost = Math.floor(RING_BYTES_MAX / blockSize);
    const queueDepth = Math.max(1, Math.min(wanted, depthShare, buffers, ringMost));
    const fixed = pair.options.queueDepth !== undefined || pair.options.background === true;
    const ceiling = fixed ? wanted : Math.min(spec.maxQueueDepth, GROWN_QUEUE_DEPTH_MAX);
    const queueDepthMax = Math.max(queueDepth, Math.min(ceiling, Math.floor(spec.maxBufferMemory / blockSize), ringMost));
    return { queueDepth, blockSize, bufferBytes: queueDepth * blockSize, queueDepthMax };
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
  const value = readJson(text, fileName);
  return validateJob(value, { fileName, baseDir: options.baseDir ?? path.dirname(resolveKernelPath(fileName)) });
}
