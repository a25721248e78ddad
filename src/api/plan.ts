// copy()'s options, validated, turned into the engine's plan of clean primitives.
import type { NativePlan } from '../addon/binding';
import { toByteCount } from '../base/size';
import {
  BACKGROUND_BLOCK_SIZE, BACKGROUND_QUEUE_DEPTH, BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, DEFAULT_BLOCK_SIZE, DEFAULT_CHECKPOINT_INTERVAL,
  DEFAULT_QUEUE_DEPTH, DIRECT_MODES, DURABILITIES, ENGINE_OPTIONS, HASH_ALGORITHMS, IO_ENGINES, QUEUE_DEPTH_MAX, RING_BYTES_MAX,
  TARGET_ERROR_POLICIES, TARGETS_MAX, ZERO_MODES,
  type CopyOptions, type DirectMode, type IoEngine,
} from '../base/types';

const KNOWN_OPTIONS = new Set<string>([
  'source', 'target', 'targets', 'onTargetError', 'sourceOffset', 'targetOffset', 'length', 'maxLength', 'blockSize', 'queueDepth',
  'direct', 'durability', 'createTarget', 'exclusiveCreate', 'truncateTarget', 'noatime', 'signal',
  'onProgress', 'progressInterval', 'engine', 'force', 'noError', 'retries', 'mapfile', 'retryBad',
  'checkpointInterval', 'verify', 'hash', 'rate', 'background', 'zeroBlocks', 'ioEngine',
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

/** options.ioEngine, else DEVMOVE_IO_ENGINE (a whole process, or test suite, on one driver), else 'auto'. */
function ioEngine(value: unknown): IoEngine {
  const fromEnv = process.env.DEVMOVE_IO_ENGINE;
  if (value === undefined && fromEnv !== undefined && fromEnv !== '') {
    if (!IO_ENGINES.includes(fromEnv as IoEngine)) {
      throw new RangeError(`DEVMOVE_IO_ENGINE must be one of ${IO_ENGINES.map((e) => `'${e}'`).join(', ')} (got '${fromEnv}')`);
    }
    return fromEnv as IoEngine;
  }
  return oneOf(value, 'ioEngine', IO_ENGINES, 'auto');
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
  const engineChoice = ioEngine(options.ioEngine);
  if (engineChoice !== 'auto') plan.ioEngine = engineChoice;
  if (hash !== undefined) plan.hash = hash;
  if (background) plan.idlePriority = true;
  if (truncateTo !== undefined) for (const t of plan.targets) t.truncateTo = truncateTo;
  const lengthValue = length ?? maxLength;
  if (lengthValue !== undefined) plan.length = lengthValue;
  return plan;
}
