// copy()'s options, validated against the option table (options.ts), turned
// into the engine's plan of clean primitives.
import type { NativePlan } from '../addon/binding';
import { invalidOption } from '../base/errors';
import { RING_BYTES_MAX, TARGETS_MAX } from '../base/limits';
import {
  BACKGROUND_BLOCK_SIZE, BACKGROUND_QUEUE_DEPTH, DEFAULT_BLOCK_SIZE, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_QUEUE_DEPTH, DIRECT_MODES,
  IO_ENGINES, type CopyOptions, type DirectMode, type Durability, type HashAlgorithm, type IoEngine, type TargetErrorPolicy,
  type Holes, type ZeroBlocks,
} from '../base/types';
import { isNbdUri, nbdPlanSide, NbdUriError } from '../storage/nbd-uri';
import { COPY_OPTION_KEYS, ENGINE_SWITCH_KEYS, optionRow, type OptionKey } from './options';
import { choice, describeValue, explain, path, type Checked } from './values';

/** copy()'s options after validation, every default filled in. */
interface ValidOptions {
  source: string;
  targets: string[];
  sourceOffset: number;
  targetOffset: number;
  length: number | undefined;
  maxLength: number | undefined;
  blockSize: number;
  queueDepth: number;
  direct: { source: DirectMode; target: DirectMode };
  durability: Durability;
  createTarget: boolean;
  exclusiveCreate: boolean;
  truncateTo: number | undefined;
  noatime: boolean;
  force: boolean;
  progressInterval: number;
  engine: Record<string, boolean>;
  noError: boolean;
  retries: number;
  mapfile: string | undefined;
  domainMapfile: string | undefined;
  retryBad: boolean;
  checkpointInterval: number;
  nbdTimeout: number;
  reconnect: number;
  verify: boolean | 'strict' | 'behind';
  onlyChanged: boolean;
  hash: HashAlgorithm | undefined;
  rate: number;
  background: boolean;
  zeroBlocks: ZeroBlocks;
  holes: Holes;
  zeroBlockSize: number | undefined;
  onTargetError: TargetErrorPolicy;
  ioEngine: IoEngine;
}

function fail(name: string, value: unknown, c: Checked<unknown>): never {
  if (c.ok) throw new Error('fail() on an accepted value');
  throw invalidOption(`options.${name} ${explain(c.rejection, value)}`, c.rejection.range);
}

/** Reads one option through its row: the checked value, or the row's default when absent. */
function read<T>(options: CopyOptions, key: OptionKey): T {
  const raw: unknown = key.startsWith('engine.') ? (options.engine as Record<string, unknown> | undefined)?.[key.slice(7)] : options[key as keyof CopyOptions];
  const row = optionRow(key);
  if (raw === undefined) return row.default as T;
  const c = row.kind.fromValue(raw);
  if (!c.ok) fail(key, raw, c);
  return c.value as T;
}

function readTargets(options: CopyOptions): string[] {
  if (options.target !== undefined && options.targets !== undefined) {
    throw invalidOption('options.target and options.targets exclude each other: give one target or a list', false);
  }
  if (options.targets === undefined) return [read<string | undefined>(options, 'target') ?? fail('target', undefined, path("'/dev/sdc' or 'disk.img'").fromValue(undefined))];
  if (!Array.isArray(options.targets)) throw invalidOption(`options.targets must be an array of paths (got ${describeValue(options.targets)})`, false);
  if (options.targets.length < 1 || options.targets.length > TARGETS_MAX) {
    throw invalidOption(`options.targets must list 1 to ${TARGETS_MAX} targets (got ${options.targets.length})`, true);
  }
  const kind = optionRow('target').kind;
  return options.targets.map((t: unknown, i) => {
    const c = kind.fromValue(t);
    return c.ok ? (c.value as string) : fail(`targets[${i}]`, t, c);
  });
}

function readDirect(options: CopyOptions): { source: DirectMode; target: DirectMode } {
  const direct: unknown = options.direct;
  const mode = (value: unknown, name: string): DirectMode => {
    if (value === undefined) return 'auto';
    const c = choice(DIRECT_MODES).fromValue(value);
    return c.ok ? c.value : fail(name, value, c);
  };
  if (typeof direct !== 'object' || direct === null) {
    const both = mode(direct, 'direct');
    return { source: both, target: both };
  }
  for (const key of Object.keys(direct)) {
    if (key !== 'source' && key !== 'target') throw invalidOption(`options.direct.${key} is not a side: use source or target`, false);
  }
  const sides = direct as { source?: unknown; target?: unknown };
  return { source: mode(sides.source, 'direct.source'), target: mode(sides.target, 'direct.target') };
}

function readEngine(options: CopyOptions): Record<string, boolean> {
  const engine: unknown = options.engine ?? {};
  if (typeof engine !== 'object' || engine === null) throw invalidOption(`options.engine must be an object (got ${describeValue(engine)})`, false);
  for (const key of Object.keys(engine)) {
    if (!ENGINE_SWITCH_KEYS.includes(key)) {
      throw invalidOption(`options.engine.${key} is not an engine option: use ${ENGINE_SWITCH_KEYS.slice(0, -1).join(', ')} or ${ENGINE_SWITCH_KEYS.at(-1)}`, false);
    }
  }
  return Object.fromEntries(ENGINE_SWITCH_KEYS.map((k) => [k, read<boolean>(options, `engine.${k}` as OptionKey)]));
}

function readSizes(options: CopyOptions, background: boolean): Pick<ValidOptions, 'length' | 'maxLength' | 'blockSize' | 'queueDepth'> {
  if (options.length !== undefined && options.maxLength !== undefined) {
    throw invalidOption('options.length and options.maxLength exclude each other: give an exact length or a maximum', false);
  }
  const blockSize = read<number | undefined>(options, 'blockSize') ?? (background ? BACKGROUND_BLOCK_SIZE : DEFAULT_BLOCK_SIZE);
  const queueDepth = read<number | undefined>(options, 'queueDepth') ?? (background ? BACKGROUND_QUEUE_DEPTH : DEFAULT_QUEUE_DEPTH);
  if (queueDepth * blockSize > RING_BYTES_MAX) {
    throw invalidOption(`options.queueDepth × options.blockSize must stay within 1 GiB of buffers (got ${queueDepth} × ${blockSize} bytes)`, true);
  }
  return { length: read(options, 'length'), maxLength: read(options, 'maxLength'), blockSize, queueDepth };
}

/** Options that only mean something together. */
function checkCombinations(o: ValidOptions, options: CopyOptions): void {
  if (o.exclusiveCreate && !o.createTarget) {
    throw invalidOption('options.exclusiveCreate needs options.createTarget: a target that must be new has to be created', false);
  }
  if (o.mapfile !== undefined && o.durability === 'none') {
    throw invalidOption("options.mapfile needs durable writes: it records only what is on stable storage (durability 'none' conflicts)", false);
  }
  if (o.mapfile === undefined && options.checkpointInterval !== undefined) throw invalidOption('options.checkpointInterval needs options.mapfile', false);
  // The mapfile is what says what the server had flushed: without it a restart could not know.
  if (o.mapfile === undefined && o.reconnect > 0) throw invalidOption('options.reconnect needs options.mapfile (it starts again from what the mapfile says was flushed)', false);
  if (o.zeroBlockSize !== undefined && o.blockSize % o.zeroBlockSize !== 0) {
    throw invalidOption(`options.zeroBlockSize must divide options.blockSize (got ${o.zeroBlockSize} and ${o.blockSize} bytes)`, true);
  }
  if (o.mapfile === undefined && o.retryBad) throw invalidOption('options.retryBad needs options.mapfile (it names the bad ranges to read again)', false);
  if (o.domainMapfile !== undefined && o.hash !== undefined) {
    throw invalidOption('options.hash needs every byte of the range read, but options.domainMapfile reads only the ranges it marks finished', false);
  }
}

/** options.ioEngine, else DEVMOVE_IO_ENGINE (a whole process, or test suite, on one driver), else 'auto'. */
function readIoEngine(options: CopyOptions): IoEngine {
  const fromEnv = process.env.DEVMOVE_IO_ENGINE;
  if (options.ioEngine !== undefined || fromEnv === undefined || fromEnv === '') return read<IoEngine | undefined>(options, 'ioEngine') ?? 'auto';
  if (!IO_ENGINES.includes(fromEnv as IoEngine)) {
    throw invalidOption(`DEVMOVE_IO_ENGINE must be one of ${IO_ENGINES.map((e) => `'${e}'`).join(', ')} (got '${fromEnv}')`, true);
  }
  return fromEnv as IoEngine;
}

function readAll(options: CopyOptions): ValidOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption(`copy() needs an options object such as { source: '/dev/sdb', target: '/dev/sdc' } (got ${describeValue(options)})`, false);
  }
  for (const key of Object.keys(options)) {
    if (!COPY_OPTION_KEYS.includes(key)) throw invalidOption(`options.${key} is not a copy() option`, false);
  }
  const source = read<string | undefined>(options, 'source') ?? fail('source', undefined, path("'/dev/sdb' or 'disk.img'").fromValue(undefined));
  const background = read<boolean>(options, 'background');
  const targetOffset = read<number | undefined>(options, 'targetOffset') ?? 0;
  const truncate = read<boolean | number>(options, 'truncateTarget');
  read(options, 'signal');
  read(options, 'onProgress');
  const o: ValidOptions = {
    source,
    targets: readTargets(options),
    sourceOffset: read<number | undefined>(options, 'sourceOffset') ?? 0,
    targetOffset,
    ...readSizes(options, background),
    direct: readDirect(options),
    durability: read(options, 'durability'),
    createTarget: read(options, 'createTarget'),
    exclusiveCreate: read(options, 'exclusiveCreate'),
    truncateTo: truncate === true ? targetOffset : truncate === false ? undefined : truncate,
    noatime: read(options, 'noatime'),
    force: read(options, 'force'),
    progressInterval: read(options, 'progressInterval'),
    engine: readEngine(options),
    noError: read(options, 'noError'),
    retries: read(options, 'retries'),
    mapfile: read(options, 'mapfile'),
    domainMapfile: read(options, 'domainMapfile'),
    retryBad: read(options, 'retryBad'),
    checkpointInterval: read<number | undefined>(options, 'checkpointInterval') ?? DEFAULT_CHECKPOINT_INTERVAL,
    verify: read(options, 'verify'),
    nbdTimeout: read(options, 'nbdTimeout'),
    reconnect: read(options, 'reconnect'),
    onlyChanged: read(options, 'onlyChanged'),
    hash: read(options, 'hash'),
    rate: read(options, 'rate'),
    background,
    zeroBlocks: read(options, 'zeroBlocks'),
    holes: read(options, 'holes'),
    zeroBlockSize: read(options, 'zeroBlockSize'),
    onTargetError: read(options, 'onTargetError'),
    ioEngine: readIoEngine(options),
  };
  checkCombinations(o, options);
  return o;
}

function toPlan(o: ValidOptions): NativePlan {
  const plan: NativePlan = {
    source: { path: o.source, offset: o.sourceOffset, direct: o.direct.source, noatime: o.noatime },
    targets: o.targets.map((t) => ({
      path: t, offset: o.targetOffset, direct: o.direct.target, create: o.createTarget, exclusiveCreate: o.exclusiveCreate, exclusive: !o.force,
    })),
    lengthIsMax: o.maxLength !== undefined,
    durability: o.durability,
    blockBytes: o.blockSize,
    queueDepth: o.queueDepth,
    fixedBuffers: o.engine.fixedBuffers,
    fixedFiles: o.engine.fixedFiles,
    sqpoll: o.engine.sqpoll,
    linkReadWrite: o.engine.linkReadWrite,
    batchSubmissions: o.engine.batchSubmissions,
    progressIntervalMs: o.progressInterval,
    noError: o.noError,
    retries: o.retries,
    verify: o.verify !== false,
    zeroBlocks: o.zeroBlocks,
    onTargetError: o.onTargetError,
    rate: o.rate,
    checkpointIntervalMs: o.mapfile !== undefined ? o.checkpointInterval : 0,
  };
  if (o.hash !== undefined) plan.hash = o.hash;
  if (o.onlyChanged) plan.onlyChanged = true;
  if (o.verify === 'strict') plan.verifyStrict = true;
  if (o.verify === 'behind') plan.verifyBehind = true;
  // conv=sparse passes over zero blocks and leaves what the target had there, as dd does. A mapfile's
  // finished ranges and verify vouch that the target holds the source, so then the old bytes under a
  // zero block (a target with data, a resume) are punched or overwritten; past its end, passed over.
  if (o.zeroBlocks === 'sparse' && (o.mapfile !== undefined || o.verify !== false)) plan.sparseExact = true;
  if (o.background) plan.idlePriority = true;
  if (o.holes !== 'auto') plan.holes = o.holes;
  if (o.ioEngine !== 'auto') plan.ioEngine = o.ioEngine;
  // A cut to 0 is done as GNU dd does it: the target opened with O_TRUNC (once every check passed).
  if (o.truncateTo !== undefined) for (const t of plan.targets) Object.assign(t, { truncateTo: o.truncateTo }, o.truncateTo === 0 ? { truncateAtOpen: true } : {});
  if (o.zeroBlockSize !== undefined && o.zeroBlockSize !== o.blockSize) plan.zeroBlockBytes = o.zeroBlockSize;
  const length = o.length ?? o.maxLength;
  if (length !== undefined) plan.length = length;
  return plan;
}

/** An NBD URI as a side: the server's address, or a usage error naming the option and the reason. */
function nbdSide(uri: string, name: string): NativePlan['source']['nbd'] {
  if (!isNbdUri(uri)) return undefined;
  try {
    return nbdPlanSide(uri);
  } catch (error) {
    if (error instanceof NbdUriError) throw invalidOption(`options.${name} '${uri}' is not a usable NBD URI: ${error.message}`, false);
    throw error;
  }
}

/** Sides given as NBD URIs (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH) carry the server's address. */
function addNbd(plan: NativePlan, sourceName: string, targetsName: string, timeoutSeconds: number): void {
  const source = nbdSide(plan.source.path, sourceName);
  if (source) plan.source.nbd = { ...source, answerTimeoutMs: timeoutSeconds * 1000 };
  plan.targets.forEach((t, i) => {
    const nbd = nbdSide(t.path, plan.targets.length > 1 ? `${targetsName}[${i}]` : 'target');
    if (nbd) t.nbd = { ...nbd, answerTimeoutMs: timeoutSeconds * 1000 };
  });
}

/** Validates options and turns them into the engine's plan. Exported for tests. */
export function planCopy(options: CopyOptions): NativePlan {
  const o = readAll(options);
  const plan = toPlan(o);
  addNbd(plan, 'source', options.targets !== undefined ? 'targets' : 'target', o.nbdTimeout);
  return plan;
}
