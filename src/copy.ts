// The library API: copy(options) validates everything, hands the engine a
// plan of clean primitives and returns a job that is awaitable, emits progress
// and can be cancelled. No byte of the data ever passes through JavaScript.
import { EventEmitter } from 'node:events';

import { CopyAbortError, DevmoveError } from './errors';
import { MapfileError, RescueMap, writeFileAtomic, type Range } from './mapfile';
import { loadNative, type IoCounters, type NativeFileReport, type NativePlan, type NativeReport } from './native';
import { resolveDevicePath } from './devices';
import { checkCopySafety } from './safety';
import { toByteCount } from './size';

export type Size = number | bigint | string;
export type DirectMode = 'auto' | 'always' | 'never';
export type Durability = 'fdatasync' | 'fsync' | 'dsync' | 'sync' | 'none';
/**
 * All-zero source blocks: 'write' them like any other (default, dd); 'skip' them because the target
 * already reads zeros (qemu-img/nbdcopy --target-is-zero); 'discard' them (hole punch on files,
 * write-zeroes with unmap on block devices that guarantee zeroes; written where neither works);
 * 'sparse' = dd conv=sparse (seek over them; a file target is extended to the copy's end).
 */
export type ZeroBlocks = 'write' | 'skip' | 'discard' | 'sparse';
export type TargetErrorPolicy = 'stop' | 'drop';
export type { Range } from './mapfile';

export const DEFAULT_BLOCK_SIZE = 512 * 1024;
/** Chosen by measurement on a loop-device pair over tmpfs (see bench/): 4–8 buffers saturate it. */
export const DEFAULT_QUEUE_DEPTH = 8;
export const BLOCK_SIZE_MIN = 1;
export const BLOCK_SIZE_MAX = 1024 * 1024 * 1024;
export const QUEUE_DEPTH_MAX = 1024;
export const RING_BYTES_MAX = 1024 * 1024 * 1024;
export const TARGETS_MAX = 64;

export interface CopyOptions {
  /** Block device or image file to read: a path, or a node name such as 'sdb', 'loop3' or '7:3'. */
  source: string;
  /** Block device or image file to write (path or node name); a missing regular file is created (see createTarget). */
  target?: string;
  /**
   * Several targets (fan-out): each block is read once and written to every target from the same
   * buffer. Give target or targets, not both. Up to 64.
   */
  targets?: string[];
  /** A target that fails: 'stop' the job (default) or 'drop' it, report it and let the others finish. */
  onTargetError?: TargetErrorPolicy;
  /** Byte offset in the source where the copy starts. Default 0. */
  sourceOffset?: Size;
  /** Byte offset in the target where the copy starts. Default 0. */
  targetOffset?: Size;
  /** Exact number of bytes to copy; fails if the source is shorter. Default: to the end of the source. */
  length?: Size;
  /** Copy at most this many bytes, stopping early at the end of the source (dd's count=). */
  maxLength?: Size;
  /**
   * I/O size and size of each buffer in the ring. Default '512K'; 1 byte to 1 GiB. Sizes that are not a
   * multiple of a side's logical block size go through the page cache on that side (or fail with direct: 'always').
   */
  blockSize?: Size;
  /** Buffers in the ring, i.e. I/O commands in flight at most. Default 8; 1..1024. */
  queueDepth?: number;
  /**
   * O_DIRECT use: 'auto' (default) uses it wherever the file supports it and the I/O is aligned,
   * falling back visibly (see result.source.direct/directNote); 'always' fails instead of falling
   * back; 'never' goes through the page cache. One mode for both sides, or one per side.
   */
  direct?: DirectMode | { source?: DirectMode; target?: DirectMode };
  /**
   * How the copy is made durable before it resolves: 'fdatasync' (default), 'fsync',
   * 'dsync' (every write O_DSYNC/FUA), 'sync' (O_SYNC), or 'none' (not durable on success!).
   */
  durability?: Durability;
  /** Create a missing regular-file target. Default true. Never creates files under /dev. */
  createTarget?: boolean;
  /** Fail if the target already exists (dd conv=excl). Default false. */
  exclusiveCreate?: boolean;
  /**
   * Cut a regular-file target before copying: true cuts it at targetOffset (dd without conv=notrunc),
   * a size cuts it to that size. Block devices are never truncated. Default false.
   */
  truncateTarget?: boolean | Size;
  /** Open the source with O_NOATIME. Default false. */
  noatime?: boolean;
  /**
   * Write to a block device even though it is mounted read-only or held by LVM/md/dm (and without the
   * O_EXCL claim). Never overrides: mounted read-write, same device or overlapping ranges, read-only
   * device, target too small. Default false.
   */
  force?: boolean;
  /** Aborting it cancels the copy: in-flight I/O drains, written data is flushed, the job rejects with an AbortError. */
  signal?: AbortSignal;
  /** Called with progress at most every progressInterval ms. */
  onProgress?: (progress: CopyProgress) => void;
  /** Milliseconds between progress events; at least 100 (≤10 Hz). Default 200. */
  progressInterval?: number;
  /** Engine switches, for benchmarks and ablations. All default to the measured best. */
  engine?: EngineOptions;
  /**
   * Unreadable source blocks: false (default) stops at the first one, after locating it to the logical
   * block and copying everything before it; true (dd conv=noerror,sync) zero-fills them on the target,
   * reports them (result.bad) and goes on.
   */
  noError?: boolean;
  /** Extra reads of an unreadable logical block before it counts as bad. Default 0; up to 1000. */
  retries?: number;
  /**
   * GNU ddrescue mapfile: progress is recorded there (finished, bad and non-tried ranges) and a rerun
   * with the same mapfile copies only what is not finished. Updated atomically every checkpointInterval.
   */
  mapfile?: string;
  /** With noError and a mapfile: read the ranges the map marks bad again. Default false. */
  retryBad?: boolean;
  /** Milliseconds between mapfile checkpoints (fdatasync of the targets, then the map). Default 1000; ≥ 100. */
  checkpointInterval?: number;
  /** After the copy, re-read source and target with O_DIRECT and compare; a difference rejects with EILSEQ. */
  verify?: boolean;
  /** Digest of the bytes read, in source order: 'sha256', 'sha512', 'sha1', 'md5', 'blake2b512', 'sha3-256'. */
  hash?: HashAlgorithm;
  /** Bytes per second at most (e.g. '200M'); 0 or absent = unlimited. job.setRate() changes it live. */
  rate?: Size;
  /**
   * Background mode: small requests (128 KiB) and few in flight (2), so other I/O on the same devices
   * keeps its latency. blockSize/queueDepth given explicitly win.
   */
  background?: boolean;
  /** All-zero source blocks; default 'write'. */
  zeroBlocks?: ZeroBlocks;
}

export const HASH_ALGORITHMS = ['sha256', 'sha512', 'sha1', 'md5', 'blake2b512', 'sha3-256'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];
export const BACKGROUND_BLOCK_SIZE = 128 * 1024;
export const BACKGROUND_QUEUE_DEPTH = 2;
export const DEFAULT_CHECKPOINT_INTERVAL = 1000;

export interface EngineOptions {
  /** Register the buffer ring with io_uring (READ_FIXED/WRITE_FIXED). Default true. */
  fixedBuffers?: boolean;
  /** Register the file descriptors with io_uring. Default true. */
  fixedFiles?: boolean;
  /** Let a kernel thread poll the submission queue. Default false. */
  sqpoll?: boolean;
  /**
   * Submit each buffer's read and write as one linked chain (IOSQE_IO_LINK), so the write starts in the
   * kernel as soon as its read completes. Default true (measured: +40 % on a tmpfs loop pair, neutral on
   * a disk pair); single-target copies only.
   */
  linkReadWrite?: boolean;
  /** One io_uring_enter per loop turn for everything prepared (true) or one per request. Default true. */
  batchSubmissions?: boolean;
}

export interface CopyProgress {
  bytesDone: number;
  bytesTotal: number;
  /** 0..100 */
  percent: number;
  /** Recent rate, bytes per second. */
  bytesPerSecond: number;
  /** Seconds left at the recent rate; undefined until a rate is known. */
  etaSeconds: number | undefined;
  elapsedSeconds: number;
  /** Unreadable bytes zero-filled so far (noError). */
  badBytes: number;
  /** All-zero bytes found so far (zeroBlocks other than 'write'). */
  zeroBytes: number;
  paused: boolean;
  /** 'copy', then 'verify' while comparing (verifyDone of verifyTotal bytes). */
  phase: 'copy' | 'verify';
  verifyDone: number;
  verifyTotal: number;
}

export interface FileInfo {
  path: string;
  kind: 'block' | 'file';
  sizeBytes: number;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  /** Whether O_DIRECT was used for the aligned I/O on this side. */
  direct: boolean;
  /** Why not, when direct is false. */
  directNote?: string;
  /** The target file did not exist and was created. */
  created: boolean;
  /** Targets: failed and dropped (onTargetError 'drop'); error says why. */
  dropped?: boolean;
  error?: DevmoveError;
  /** Targets: how zero blocks were handled when not as asked. */
  zeroNote?: string;
}

export interface CopyResult {
  bytesCopied: number;
  seconds: number;
  bytesPerSecond: number;
  /** What made the target durable: 'fdatasync', 'fsync', 'O_DSYNC writes', 'O_SYNC writes' or 'none'. */
  durability: string;
  source: FileInfo;
  /** The first target (the only one without fan-out). */
  target: FileInfo;
  /** Every target, in the order given. */
  targets: FileInfo[];
  /** The copy's range in the source: [sourceOffset, sourceOffset + length). */
  range: { offset: number; length: number };
  /** Unreadable source bytes (zero-filled on the targets with noError): absolute source ranges, first 1000. */
  bad: { bytes: number; rangeCount: number; ranges: Range[] };
  /** All-zero source bytes found, and how many were not written (skipped) or discarded. */
  zero: { bytes: number; skipped: number; discarded: number };
  hash?: { algorithm: string; hex: string };
  verify?: { bytesCompared: number; mismatchedBlocks: number; blockBytes: number; firstMismatchOffset?: number };
  mapfile?: {
    path: string;
    /** A previous run's map was found and only what it lacked was copied. */
    resumed: boolean;
    /** Bytes the map already had as finished before this run. */
    previouslyFinished: number;
    finished: number;
    bad: number;
    nonTried: number;
  };
  /** The rate cap at the end, bytes per second (0 = none). */
  rate: number;
  blockSize: number;
  queueDepth: number;
  engine: {
    fixedBuffers: boolean;
    fixedBuffersNote?: string;
    fixedFiles: boolean;
    fixedFilesNote?: string;
    sqpoll: boolean;
    linkReadWrite: boolean;
    batchSubmissions: boolean;
    ringSetupFlags: number;
  };
  io: IoCounters;
}

export interface CopyJobEvents {
  progress: [CopyProgress];
}

export const DIRECT_MODES: readonly DirectMode[] = ['auto', 'always', 'never'];
const ENGINE_OPTIONS: readonly string[] = ['fixedBuffers', 'fixedFiles', 'sqpoll', 'linkReadWrite', 'batchSubmissions'] satisfies ReadonlyArray<keyof EngineOptions>;
export const DURABILITIES: readonly Durability[] = ['fdatasync', 'fsync', 'dsync', 'sync', 'none'];
export const ZERO_MODES: readonly ZeroBlocks[] = ['write', 'skip', 'discard', 'sparse'];
export const TARGET_ERROR_POLICIES: readonly TargetErrorPolicy[] = ['stop', 'drop'];
const KNOWN_OPTIONS = new Set<string>([
  'source', 'target', 'targets', 'onTargetError', 'sourceOffset', 'targetOffset', 'length', 'maxLength', 'blockSize', 'queueDepth',
  'direct', 'durability', 'createTarget', 'exclusiveCreate', 'truncateTarget', 'noatime', 'signal',
  'onProgress', 'progressInterval', 'engine', 'force', 'noError', 'retries', 'mapfile', 'retryBad',
  'checkpointInterval', 'verify', 'hash', 'rate', 'background', 'zeroBlocks',
]);

function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new (typeof value === 'string' ? RangeError : TypeError)(
      `options.${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')} (got ${describe(value)})`,
    );
  }
  return value as T;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function requirePath(value: unknown, name: string): string {
  if (typeof value !== 'string') {
    throw new TypeError(`options.${name} must be a path string such as '/dev/sdb' or 'disk.img' (got ${describe(value)})`);
  }
  if (value.length === 0) throw new RangeError(`options.${name} must not be empty`);
  if (value.includes('\0')) throw new RangeError(`options.${name} must not contain NUL bytes`);
  return value;
}

function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be true or false (got ${describe(value)})`);
  return value;
}

function optionalInteger(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') {
    throw new TypeError(`options.${name} must be an integer from ${min} to ${max} (got ${describe(value)})`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`options.${name} must be an integer from ${min} to ${max} (got ${describe(value)})`);
  }
  return value;
}

function directMode(value: unknown, name: string): DirectMode {
  if (value === undefined) return 'auto';
  if (typeof value !== 'string' || !DIRECT_MODES.includes(value as DirectMode)) {
    throw new (typeof value === 'string' ? RangeError : TypeError)(
      `options.${name} must be 'auto', 'always' or 'never' (got ${describe(value)})`,
    );
  }
  return value as DirectMode;
}

/** Validates options and turns them into the engine's plan. Exported for tests. */
export function planCopy(options: CopyOptions): NativePlan {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`copy() needs an options object such as { source: '/dev/sdb', target: '/dev/sdc' } (got ${describe(options)})`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) throw new TypeError(`options.${key} is not a copy() option`);
  }
  const source = requirePath(options.source, 'source');
  let targets: string[];
  if (options.target !== undefined && options.targets !== undefined) {
    throw new TypeError('options.target and options.targets exclude each other: give one target or a list');
  } else if (options.targets !== undefined) {
    if (!Array.isArray(options.targets)) {
      throw new TypeError(`options.targets must be an array of paths (got ${describe(options.targets)})`);
    }
    if (options.targets.length < 1 || options.targets.length > TARGETS_MAX) {
      throw new RangeError(`options.targets must list 1 to ${TARGETS_MAX} targets (got ${options.targets.length})`);
    }
    targets = options.targets.map((t, i) => requirePath(t, `targets[${i}]`));
  } else {
    targets = [requirePath(options.target, 'target')];
  }
  const background = optionalBoolean(options.background, 'background', false);
  const sourceOffset = options.sourceOffset === undefined ? 0 : toByteCount(options.sourceOffset, 'options.sourceOffset');
  const targetOffset = options.targetOffset === undefined ? 0 : toByteCount(options.targetOffset, 'options.targetOffset');
  if (options.length !== undefined && options.maxLength !== undefined) {
    throw new TypeError('options.length and options.maxLength exclude each other: give an exact length or a maximum');
  }
  const length = options.length !== undefined ? toByteCount(options.length, 'options.length') : undefined;
  const maxLength = options.maxLength !== undefined ? toByteCount(options.maxLength, 'options.maxLength') : undefined;

  const defaultBlock = background ? BACKGROUND_BLOCK_SIZE : DEFAULT_BLOCK_SIZE;
  const blockBytes = options.blockSize === undefined ? defaultBlock : toByteCount(options.blockSize, 'options.blockSize');
  if (blockBytes < BLOCK_SIZE_MIN || blockBytes > BLOCK_SIZE_MAX) {
    throw new RangeError(
      `options.blockSize must be from 1 byte to 1 GiB, such as '512K' or '4M' (got ${describe(options.blockSize)})`,
    );
  }
  const queueDepth = optionalInteger(options.queueDepth, 'queueDepth', 1, QUEUE_DEPTH_MAX, background ? BACKGROUND_QUEUE_DEPTH : DEFAULT_QUEUE_DEPTH);
  if (queueDepth * blockBytes > RING_BYTES_MAX) {
    throw new RangeError(
      `options.queueDepth × options.blockSize must stay within 1 GiB of buffers (got ${queueDepth} × ${blockBytes} bytes)`,
    );
  }

  let sourceDirect: DirectMode;
  let targetDirect: DirectMode;
  if (typeof options.direct === 'object' && options.direct !== null) {
    for (const key of Object.keys(options.direct)) {
      if (key !== 'source' && key !== 'target') throw new TypeError(`options.direct.${key} is not a side: use source or target`);
    }
    sourceDirect = directMode(options.direct.source, 'direct.source');
    targetDirect = directMode(options.direct.target, 'direct.target');
  } else {
    sourceDirect = targetDirect = directMode(options.direct, 'direct');
  }

  const durability = options.durability ?? 'fdatasync';
  if (!DURABILITIES.includes(durability)) {
    throw new (typeof durability === 'string' ? RangeError : TypeError)(
      `options.durability must be one of ${DURABILITIES.map((d) => `'${d}'`).join(', ')} (got ${describe(durability)})`,
    );
  }
  const createTarget = optionalBoolean(options.createTarget, 'createTarget', true);
  const exclusiveCreate = optionalBoolean(options.exclusiveCreate, 'exclusiveCreate', false);
  if (exclusiveCreate && !createTarget) {
    throw new TypeError('options.exclusiveCreate needs options.createTarget: a target that must be new has to be created');
  }
  let truncateTo: number | undefined;
  if (options.truncateTarget === true) truncateTo = targetOffset;
  else if (options.truncateTarget !== undefined && options.truncateTarget !== false) {
    truncateTo = toByteCount(options.truncateTarget, 'options.truncateTarget');
  }
  const noatime = optionalBoolean(options.noatime, 'noatime', false);
  const force = optionalBoolean(options.force, 'force', false);
  const progressIntervalMs = optionalInteger(options.progressInterval, 'progressInterval', 100, 3_600_000, 200);

  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`options.signal must be an AbortSignal (got ${describe(options.signal)})`);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new TypeError(`options.onProgress must be a function (got ${describe(options.onProgress)})`);
  }
  const engine = options.engine ?? {};
  if (typeof engine !== 'object' || engine === null) throw new TypeError(`options.engine must be an object (got ${describe(engine)})`);
  for (const key of Object.keys(engine)) {
    if (!ENGINE_OPTIONS.includes(key)) {
      throw new TypeError(`options.engine.${key} is not an engine option: use ${ENGINE_OPTIONS.slice(0, -1).join(', ')} or ${ENGINE_OPTIONS.at(-1)}`);
    }
  }

  const noError = optionalBoolean(options.noError, 'noError', false);
  const retries = optionalInteger(options.retries, 'retries', 0, 1000, 0);
  const retryBad = optionalBoolean(options.retryBad, 'retryBad', false);
  const verify = optionalBoolean(options.verify, 'verify', false);
  const zeroBlocks = oneOf(options.zeroBlocks, 'zeroBlocks', ZERO_MODES, 'write');
  const onTargetError = oneOf(options.onTargetError, 'onTargetError', TARGET_ERROR_POLICIES, 'stop');
  const hash = options.hash === undefined ? undefined : oneOf(options.hash, 'hash', HASH_ALGORITHMS, 'sha256');
  const rate = options.rate === undefined ? 0 : toByteCount(options.rate, 'options.rate');
  let checkpointIntervalMs = 0;
  if (options.mapfile !== undefined) {
    requirePath(options.mapfile, 'mapfile');
    if (durability === 'none') {
      throw new TypeError("options.mapfile needs durable writes: it records only what is on stable storage (durability 'none' conflicts)");
    }
    checkpointIntervalMs = optionalInteger(options.checkpointInterval, 'checkpointInterval', 100, 3_600_000, DEFAULT_CHECKPOINT_INTERVAL);
  } else if (options.checkpointInterval !== undefined) {
    throw new TypeError('options.checkpointInterval needs options.mapfile');
  }
  if (retryBad && options.mapfile === undefined) throw new TypeError('options.retryBad needs options.mapfile (it names the bad ranges to read again)');

  const plan: NativePlan = {
    source: { path: source, offset: sourceOffset, direct: sourceDirect, noatime },
    targets: targets.map((t) => ({ path: t, offset: targetOffset, direct: targetDirect, create: createTarget, exclusiveCreate, exclusive: !force })),
    lengthIsMax: maxLength !== undefined,
    durability,
    blockBytes,
    queueDepth,
    fixedBuffers: optionalBoolean(engine.fixedBuffers, 'engine.fixedBuffers', true),
    fixedFiles: optionalBoolean(engine.fixedFiles, 'engine.fixedFiles', true),
    sqpoll: optionalBoolean(engine.sqpoll, 'engine.sqpoll', false),
    linkReadWrite: optionalBoolean(engine.linkReadWrite, 'engine.linkReadWrite', true),
    batchSubmissions: optionalBoolean(engine.batchSubmissions, 'engine.batchSubmissions', true),
    progressIntervalMs,
    noError,
    retries,
    verify,
    zeroBlocks,
    onTargetError,
    rate,
    checkpointIntervalMs,
  };
  if (hash !== undefined) plan.hash = hash;
  if (background) plan.idlePriority = true;
  if (truncateTo !== undefined) for (const t of plan.targets) t.truncateTo = truncateTo;
  const lengthValue = length ?? maxLength;
  if (lengthValue !== undefined) plan.length = lengthValue;
  return plan;
}

function fileInfo(f: NativeFileReport | undefined, fallbackPath: string): FileInfo {
  if (!f) {
    return { path: fallbackPath, kind: 'file', sizeBytes: 0, logicalBlockBytes: 0, physicalBlockBytes: 0, direct: false, created: false };
  }
  const info: FileInfo = {
    path: f.path,
    kind: f.kind,
    sizeBytes: f.sizeBytes,
    logicalBlockBytes: f.logicalBlockBytes,
    physicalBlockBytes: f.physicalBlockBytes,
    direct: f.direct,
    created: f.created,
  };
  if (!f.direct && f.directNote) info.directNote = f.directNote;
  if (f.dropped) info.dropped = true;
  if (f.error) info.error = new DevmoveError(f.error);
  if (f.zeroNote) info.zeroNote = f.zeroNote;
  return info;
}

function toResult(report: NativeReport, plan: NativePlan, mapfile: MapfileSession | undefined): CopyResult {
  const targets = plan.targets.map((t, i) => fileInfo(report.targets[i], t.path));
  const result: CopyResult = {
    bytesCopied: report.bytesCopied,
    seconds: report.seconds,
    bytesPerSecond: report.seconds > 0 ? report.bytesCopied / report.seconds : 0,
    durability: report.durability,
    source: fileInfo(report.source, plan.source.path),
    target: targets[0],
    targets,
    range: { offset: report.domainOffset ?? plan.source.offset, length: report.domainLength ?? 0 },
    bad: { bytes: report.bad?.bytes ?? 0, rangeCount: report.bad?.rangeCount ?? 0, ranges: report.bad?.ranges ?? [] },
    zero: { bytes: report.zero?.bytes ?? 0, skipped: report.zero?.skipped ?? 0, discarded: report.zero?.discarded ?? 0 },
    rate: report.rate ?? 0,
    blockSize: report.blockBytes || plan.blockBytes,
    queueDepth: report.queueDepth || plan.queueDepth,
    engine: {
      fixedBuffers: report.ring.fixedBuffers,
      fixedFiles: report.ring.fixedFiles,
      sqpoll: report.ring.sqpoll,
      linkReadWrite: report.ring.linked,
      batchSubmissions: report.ring.batched,
      ringSetupFlags: report.ring.setupFlags,
    },
    io: { ...report.io },
  };
  if (report.hash) result.hash = { ...report.hash };
  if (report.verify) {
    result.verify = {
      bytesCompared: report.verify.bytesCompared,
      mismatchedBlocks: report.verify.mismatchedBlocks,
      blockBytes: report.verify.blockBytes,
    };
    if (report.verify.firstMismatchOffset !== undefined) result.verify.firstMismatchOffset = report.verify.firstMismatchOffset;
  }
  if (mapfile) result.mapfile = mapfile.summary(result.range);
  if (report.ring.fixedBuffersNote) result.engine.fixedBuffersNote = report.ring.fixedBuffersNote;
  if (report.ring.fixedFilesNote) result.engine.fixedFilesNote = report.ring.fixedFilesNote;
  return result;
}

/**
 * The mapfile side of a copy: loads a previous run's map (and turns it into
 * the ranges still to copy), then records every durable checkpoint.
 */
class MapfileSession {
  readonly map: RescueMap;
  readonly resumed: boolean;
  readonly previouslyFinished: number;
  private readonly started = new Date();
  private readonly commandLine = process.argv.slice(1).join(' ');
  private domain: { offset: number; length: number } | undefined;

  constructor(
    readonly path: string,
    plan: NativePlan,
    retryBad: boolean,
  ) {
    const loaded = RescueMap.load(path);
    const identity = {
      source: plan.source.path,
      target: plan.targets.map((t) => t.path).join(','),
      sourceOffset: plan.source.offset,
      targetOffset: plan.targets[0].offset,
    };
    this.map = loaded ?? new RescueMap();
    this.resumed = loaded !== undefined;
    if (loaded?.identity) {
      const was = loaded.identity;
      if (was.source !== identity.source || was.target !== identity.target || was.sourceOffset !== identity.sourceOffset || was.targetOffset !== identity.targetOffset) {
        throw new MapfileError(
          `mapfile ${path} belongs to another copy: ${was.source} (offset ${was.sourceOffset}) to ${was.target} (offset ${was.targetOffset}); ` +
            `this one copies ${identity.source} (offset ${identity.sourceOffset}) to ${identity.target} (offset ${identity.targetOffset})`,
        );
      }
    }
    this.map.identity = identity;
    this.previouslyFinished = this.map.bytes('+');
    if (this.resumed) {
      if (plan.hash !== undefined && this.previouslyFinished > 0) {
        throw new MapfileError(
          `the hash needs every byte read in one pass, but mapfile ${path} already has ${this.previouslyFinished} bytes finished (use a new mapfile, or verify instead)`,
        );
      }
      // Without noError every byte must be copied, so bad ranges are read again too.
      const done: Array<'+' | '-'> = plan.noError && !retryBad ? ['+', '-'] : ['+'];
      plan.extents = this.map.gaps(done, 0, Number.MAX_SAFE_INTEGER);
      if (plan.noError && !retryBad) plan.verifySkip = this.map.ranges(['-']);
    }
    // Written once before the engine starts: a mapfile that cannot be kept
    // stops the copy before anything is written.
    this.write(false);
  }

  /** The engine has opened the source: the copy's range is known. */
  begin(offset: number, length: number): void {
    if (this.domain) return;
    this.domain = { offset, length };
    this.map.cover(offset + length);
    this.write(false);
  }

  checkpoint(finished: Range[], bad: Range[]): void {
    for (const [o, l] of finished) this.map.set(o, l, '+');
    for (const [o, l] of bad) this.map.set(o, l, '-');
    const last = finished.at(-1);
    if (last) this.map.currentPos = last[0] + last[1];
    this.write(false);
  }

  /** The copy stopped: note the unreadable block it stopped at, if any, and whether all is finished. */
  end(stoppedAtBadBlock: Range | undefined): void {
    if (stoppedAtBadBlock) this.map.set(stoppedAtBadBlock[0], stoppedAtBadBlock[1], '-');
    const d = this.domain;
    const complete = d !== undefined && this.map.gaps(['+', '-'], d.offset, d.offset + d.length).length === 0;
    this.map.currentStatus = complete ? '+' : '?';
    this.write(complete);
  }

  summary(range: { offset: number; length: number }): NonNullable<CopyResult['mapfile']> {
    const to = range.offset + range.length;
    return {
      path: this.path,
      resumed: this.resumed,
      previouslyFinished: this.previouslyFinished,
      finished: this.map.bytes('+', range.offset, to),
      bad: this.map.bytes('-', range.offset, to),
      nonTried: range.length - this.map.bytes('+', range.offset, to) - this.map.bytes('-', range.offset, to),
    };
  }

  private write(finished: boolean): void {
    writeFileAtomic(this.path, this.map.format(this.commandLine, this.started, finished));
  }
}

interface JobSetup {
  signal: AbortSignal | undefined;
  onProgress: ((p: CopyProgress) => void) | undefined;
  mapfile: string | undefined;
  retryBad: boolean;
}

/** Rate over a sliding window of recent samples, so ETA follows the current speed. */
class RateMeter {
  private readonly samples: Array<[seconds: number, bytes: number]> = [];
  constructor(private readonly windowSeconds = 3) {}
  add(seconds: number, bytes: number): number {
    this.samples.push([seconds, bytes]);
    while (this.samples.length > 2 && seconds - this.samples[0][0] > this.windowSeconds) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return seconds > t0 ? (bytes - b0) / (seconds - t0) : 0;
  }
}

/** A running copy: await it (or use .promise), listen for 'progress', pause, change its rate, cancel it. */
export class CopyJob extends EventEmitter<CopyJobEvents> implements PromiseLike<CopyResult> {
  /** Settles when the copy is done and durable (or failed, or was cancelled). */
  readonly promise: Promise<CopyResult>;
  private native: { cancel(): void; bytesDone(): number; pause(): void; resume(): void; setRate(n: number): void } | undefined;
  private readonly started = process.hrtime.bigint();
  private readonly rateMeter = new RateMeter();
  private last: CopyProgress;
  private settled = false;
  private pausedNow = false;
  private rateNow: number;

  /** @internal use copy() */
  constructor(plan: NativePlan, setup: JobSetup) {
    super();
    const { signal, onProgress } = setup;
    this.rateNow = plan.rate ?? 0;
    this.last = {
      bytesDone: 0, bytesTotal: plan.length ?? 0, percent: 0, bytesPerSecond: 0, etaSeconds: undefined, elapsedSeconds: 0,
      badBytes: 0, zeroBytes: 0, paused: false, phase: 'copy', verifyDone: 0, verifyTotal: 0,
    };
    if (onProgress) this.on('progress', onProgress);
    this.promise = new Promise<CopyResult>((resolve, reject) => {
      if (signal?.aborted) {
        this.settled = true;
        reject(new CopyAbortError('The copy was aborted before it started', { cause: signal.reason }));
        return;
      }
      const binding = loadNative();
      let mapfile: MapfileSession | undefined;
      try {
        // Node names ('sdb', 'loop3', '7:3') are accepted wherever a path is.
        plan.source.path = resolveDevicePath(plan.source.path);
        for (const t of plan.targets) t.path = resolveDevicePath(t.path);
        checkCopySafety(plan);
        if (setup.mapfile !== undefined) mapfile = new MapfileSession(setup.mapfile, plan, setup.retryBad);
      } catch (error) {
        this.settled = true;
        if (error instanceof Error) Error.captureStackTrace(error, CopyJob);
        reject(error);
        return;
      }
      const onAbort = (): void => this.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      let mapfileError: unknown;
      const job = new binding.CopyJob(plan, (event) => {
        if (event.type === 'progress') {
          if (mapfile && mapfileError === undefined) {
            try {
              mapfile.begin(event.domainOffset, event.domainLength);
            } catch (error) {
              mapfileError = error;
              this.cancel();
            }
          }
          this.updateProgress(event.bytesDone, event.bytesTotal, true, event);
          return;
        }
        if (event.type === 'checkpoint') {
          if (mapfile && mapfileError === undefined) {
            try {
              mapfile.checkpoint(event.finished, event.bad);
            } catch (error) {
              // The map cannot be kept: stop rather than copy without a record.
              mapfileError = error;
              this.cancel();
            }
          }
          return;
        }
        signal?.removeEventListener('abort', onAbort);
        this.settled = true;
        this.native = undefined;
        const report = event.report;
        if (mapfile && mapfileError === undefined) {
          try {
            mapfile.end(report.stoppedAtBadBlock);
          } catch (error) {
            mapfileError = error;
          }
        }
        this.updateProgress(report.bytesCopied, report.bytesTotal, false);
        const result = toResult(report, plan, mapfile);
        if (mapfileError !== undefined) {
          const error = mapfileError instanceof Error ? mapfileError : new Error(String(mapfileError));
          reject(error);
          return;
        }
        if (event.error) {
          if (report.cancelled && event.error.syscall === 'copy') {
            const error = new CopyAbortError('The copy was aborted', signal?.aborted ? { cause: signal.reason } : undefined);
            error.bytesCopied = report.bytesCopied;
            error.result = result;
            reject(error);
          } else {
            const error = new DevmoveError(event.error);
            error.bytesCopied = report.bytesCopied;
            error.result = result;
            Error.captureStackTrace(error, CopyJob);
            reject(error);
          }
          return;
        }
        resolve(result);
      });
      this.native = job;
      job.start();
    });
    // A job nobody awaits must not crash the process with an unhandled rejection;
    // anyone who awaits it still sees the error.
    this.promise.catch(() => undefined);
  }

  /** Progress now: the byte count is read live from the engine while it runs. */
  get progress(): CopyProgress {
    if (this.native && !this.settled) this.updateProgress(this.native.bytesDone(), this.last.bytesTotal, false);
    return this.last;
  }

  /** Stop submitting I/O, drain what is in flight, flush what was written; the job rejects with an AbortError. */
  cancel(): void {
    if (!this.settled) this.native?.cancel();
  }

  /** Hold new I/O; what is in flight completes. Checkpoints go on, so a mapfile stays current. */
  pause(): void {
    if (this.settled) return;
    this.pausedNow = true;
    this.native?.pause();
  }

  resume(): void {
    if (this.settled) return;
    this.pausedNow = false;
    this.native?.resume();
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  /** Changes the rate cap at once: bytes per second ('200M', 50e6), 0 = unlimited. */
  setRate(rate: Size): void {
    const n = toByteCount(rate, 'rate');
    this.rateNow = n;
    if (!this.settled) this.native?.setRate(n);
  }

  /** The rate cap in bytes per second (0 = none). */
  get rate(): number {
    return this.rateNow;
  }

  then<T1 = CopyResult, T2 = never>(
    onFulfilled?: ((value: CopyResult) => T1 | PromiseLike<T1>) | null,
    onRejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null,
  ): Promise<T1 | T2> {
    return this.promise.then(onFulfilled, onRejected);
  }

  catch<T = never>(onRejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<CopyResult | T> {
    return this.promise.catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<CopyResult> {
    return this.promise.finally(onFinally);
  }

  private updateProgress(
    bytesDone: number,
    bytesTotal: number,
    emit = true,
    extra?: { badBytes: number; zeroBytes: number; paused: boolean; verifying: boolean; verifyDone: number; verifyTotal: number },
  ): void {
    const elapsedSeconds = Number(process.hrtime.bigint() - this.started) / 1e9;
    const bytesPerSecond = this.rateMeter.add(elapsedSeconds, bytesDone);
    const remaining = Math.max(0, bytesTotal - bytesDone);
    this.last = {
      bytesDone,
      bytesTotal,
      percent: bytesTotal > 0 ? (bytesDone / bytesTotal) * 100 : 100,
      bytesPerSecond,
      etaSeconds: bytesPerSecond > 0 ? remaining / bytesPerSecond : remaining === 0 ? 0 : undefined,
      elapsedSeconds,
      badBytes: extra?.badBytes ?? this.last.badBytes,
      zeroBytes: extra?.zeroBytes ?? this.last.zeroBytes,
      paused: extra?.paused ?? this.pausedNow,
      phase: extra ? (extra.verifying ? 'verify' : 'copy') : this.last.phase,
      verifyDone: extra?.verifyDone ?? this.last.verifyDone,
      verifyTotal: extra?.verifyTotal ?? this.last.verifyTotal,
    };
    if (emit) this.emit('progress', this.last);
  }
}

/**
 * Copy a byte range from a block device or image file to another, through
 * io_uring and O_DIRECT. Throws TypeError/RangeError at once for bad options;
 * the returned job rejects with a DevmoveError (code, errno, syscall, path,
 * offset) for I/O failures and with an AbortError when cancelled.
 */
export function copy(options: CopyOptions): CopyJob {
  const plan = planCopy(options);
  return new CopyJob(plan, {
    signal: options.signal,
    onProgress: options.onProgress,
    mapfile: options.mapfile,
    retryBad: options.retryBad ?? false,
  });
}
