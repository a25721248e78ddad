/**
 * Command-line parsing for devmove's dd-compatible interface:
 * `devmove if=/dev/sdb of=/dev/sdc bs=4M status=progress`.
 *
 * Follows GNU coreutils dd where devmove implements the same feature; anything
 * dd has that devmove does not implement is rejected with a one-line UsageError
 * instead of being silently ignored.
 */
import { HASH_ALGORITHMS, IO_ENGINES, TARGET_ERROR_POLICIES, ZERO_MODES, type HashAlgorithm, type IoEngine } from '../base/types';
import { parseDdNumber, SizeSyntaxError } from '../base/size';

/** A command line devmove cannot run. The message is one line naming the offending argument. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type StatusLevel = 'default' | 'none' | 'noxfer' | 'progress';

export interface DdInvocation {
  /** 'demo' when argv[0] === 'demo'. */
  command: 'copy' | 'help' | 'version' | 'demo';
  /** if= (required for 'copy'). */
  source?: string;
  /** of= (required for 'copy'): the first target. */
  target?: string;
  /** Every of=, in order (fan-out when more than one). */
  targets: string[];
  /** --on-target-error: a failing target stops the copy ('stop') or is dropped ('drop'). */
  onTargetError: 'stop' | 'drop';
  /** conv=noerror / --noerror: zero-fill unreadable blocks and go on. */
  noError: boolean;
  /** --retries N: extra reads of an unreadable block. */
  retries: number;
  /** --mapfile FILE (GNU ddrescue format): record progress, resume from it. */
  mapfile?: string;
  /** --retry-bad: read the ranges the mapfile marks bad again. */
  retryBad: boolean;
  /** --checkpoint-interval MS. */
  checkpointInterval?: number;
  /** --verify: compare source and target after the copy. */
  verify: boolean;
  /** --hash ALG. */
  hash?: HashAlgorithm;
  /** --rate RATE: bytes per second. */
  rate?: number;
  /** --rate-file FILE: the rate is read from FILE whenever it changes. */
  rateFile?: string;
  /** --background: small requests, few in flight. */
  background: boolean;
  /** conv=sparse, --target-is-zero, --zero-blocks MODE. */
  zeroBlocks: 'write' | 'skip' | 'discard' | 'sparse';
  /** bs= or --block-size: I/O size in bytes; undefined = engine default. */
  blockSize?: number;
  /** Input block size, the unit of skip= and count= (default 512; bs= sets it). */
  ibs: number;
  /** Output block size, the unit of seek= (default 512; bs= sets it). */
  obs: number;
  /** Bytes to skip at the start of the source (skip=/iseek=). */
  sourceOffset: number;
  /** Bytes to skip at the start of the target (seek=/oseek=). */
  targetOffset: number;
  /** Bytes to copy (count=); undefined = to the end of the source. */
  maxLength?: number;
  directSource: 'auto' | 'always';
  directTarget: 'auto' | 'always';
  durability: 'fdatasync' | 'fsync' | 'dsync' | 'sync' | 'none';
  /** Truncate a regular-file target at the seek offset (false with conv=notrunc). */
  truncate: boolean;
  /** Create a missing target (false with conv=nocreat). */
  createTarget: boolean;
  /** Fail if the target exists (conv=excl). */
  exclusiveCreate: boolean;
  status: StatusLevel;
  json: boolean;
  /** --queue-depth, 1..1024; undefined = engine default. */
  queueDepth?: number;
  /** iflag=noatime. */
  noatime: boolean;
  /** --force: write to a block device mounted read-only or held by LVM/md/dm. */
  force: boolean;
  /** Engine switches for benchmarks and ablations (--no-fixed-buffers, --no-fixed-files, --sqpoll, --link, --no-batch). */
  engine: EngineSwitches;
  /** --io-engine: io_uring, threads, or auto (io_uring, threads where it cannot be set up). */
  ioEngine?: IoEngine;
}

export interface EngineSwitches {
  fixedBuffers: boolean;
  fixedFiles: boolean;
  sqpoll: boolean;
  linkReadWrite: boolean;
  batchSubmissions: boolean;
}

const DEFAULT_ENGINE: Readonly<EngineSwitches> = {
  fixedBuffers: true,
  fixedFiles: true,
  sqpoll: false,
  linkReadWrite: true,
  batchSubmissions: true,
};

/** Flag options that turn an engine switch away from its default. */
const ENGINE_FLAGS: Readonly<Record<string, [keyof EngineSwitches, boolean]>> = {
  'no-fixed-buffers': ['fixedBuffers', false],
  'no-fixed-files': ['fixedFiles', false],
  sqpoll: ['sqpoll', true],
  'no-link': ['linkReadWrite', false],
  'no-batch': ['batchSubmissions', false],
};

const DEFAULT_BLOCK_SIZE = 512;
const MAX_BLOCK_SIZE = 2 * 1024 * 1024 * 1024;
const MAX_QUEUE_DEPTH = 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

type Durability = DdInvocation['durability'];

/** Strength order used when several durability requests are given: the strongest wins. */
const DURABILITY_STRENGTH: Record<Exclude<Durability, 'none'>, number> = {
  fdatasync: 1,
  dsync: 2,
  fsync: 3,
  sync: 4,
};

/** Flags GNU dd has (for iflag= and oflag=) that devmove does not implement. */
const UNSUPPORTED_FLAGS: ReadonlySet<string> = new Set([
  'append', 'binary', 'cio', 'directory', 'noctty', 'nofollow', 'nolinks', 'nonblock', 'text',
]);

/** Conversions GNU dd has that devmove does not implement. */
const UNSUPPORTED_CONVERSIONS: ReadonlySet<string> = new Set([
  'ascii', 'ebcdic', 'ibm', 'block', 'unblock', 'lcase', 'ucase', 'swab',
]);

const INPUT_FLAGS = [
  'direct', 'skip_bytes', 'count_bytes', 'noatime', 'fullblock', 'nocache', 'dsync', 'sync',
] as const;
const OUTPUT_FLAGS = ['direct', 'seek_bytes', 'dsync', 'sync', 'nocache', 'noatime'] as const;
const CONVERSIONS = ['notrunc', 'fsync', 'fdatasync', 'excl', 'nocreat', 'noerror', 'sync', 'sparse'] as const;

type InputFlag = (typeof INPUT_FLAGS)[number];
type OutputFlag = (typeof OUTPUT_FLAGS)[number];
type Conversion = (typeof CONVERSIONS)[number];

/** Quote a user string for a message: 'text', or a JSON string if it holds odd characters. */
function quote(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) && !text.includes("'") ? `'${text}'` : JSON.stringify(text);
}

function isOneOf<T extends string>(list: readonly T[], value: string): value is T {
  return (list as readonly string[]).includes(value);
}

/** A skip=/seek=/count= value as given: a number of blocks, or of bytes if it contained 'B'. */
interface BlockCount {
  value: number;
  hasB: boolean;
  operand: string;
}

function parseSize(operand: string, value: string): number {
  try {
    return parseDdNumber(value);
  } catch (err) {
    if (err instanceof SizeSyntaxError) throw new UsageError(`invalid operand ${quote(operand)}: ${err.reason}`);
    throw err;
  }
}

function parseBlockSize(operand: string, value: string, what: string): number {
  const size = parseSize(operand, value);
  if (size < 1) throw new UsageError(`invalid operand ${quote(operand)}: ${what} must be at least 1 byte`);
  if (size > MAX_BLOCK_SIZE) {
    throw new UsageError(`invalid operand ${quote(operand)}: ${what} must be at most 2 GiB (2147483648 bytes)`);
  }
  return size;
}

/** Split a comma list; empty items are reported by the caller as invalid symbols. */
function symbols(value: string): string[] {
  return value.split(',');
}

/** Base invocation with every default filled in. */
function defaults(command: DdInvocation['command']): DdInvocation {
  return {
    command,
    ibs: DEFAULT_BLOCK_SIZE,
    obs: DEFAULT_BLOCK_SIZE,
    sourceOffset: 0,
    targetOffset: 0,
    directSource: 'auto',
    directTarget: 'auto',
    durability: 'fdatasync',
    truncate: true,
    createTarget: true,
    exclusiveCreate: false,
    status: 'default',
    json: false,
    noatime: false,
    force: false,
    engine: { ...DEFAULT_ENGINE },
    targets: [],
    onTargetError: 'stop',
    noError: false,
    retries: 0,
    retryBad: false,
    verify: false,
    background: false,
    zeroBlocks: 'write',
  };
}

/** Multiply a block count by its unit, or take it as bytes; reject results beyond 2^53-1. */
function toBytes(count: BlockCount, bytesMode: boolean, unit: number, unitName: 'ibs' | 'obs'): number {
  if (bytesMode || count.hasB) return count.value;
  const bytes = BigInt(count.value) * BigInt(unit);
  if (bytes > MAX_SAFE) {
    throw new UsageError(
      `invalid operand ${quote(count.operand)}: ${count.value} blocks of ${unit} bytes (${unitName}) ` +
        `is ${bytes} bytes, beyond the maximum of ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  return Number(bytes);
}

/** A rate in bytes per second: a size with an optional '/s' ('200M', '50MB/s'). */
export function parseRate(option: string, value: string): number {
  const text = value.endsWith('/s') ? value.slice(0, -2) : value;
  let n: number;
  try {
    n = parseDdNumber(text);
  } catch (err) {
    if (err instanceof SizeSyntaxError) throw new UsageError(`invalid option ${quote(option)}: ${err.reason}`);
    throw err;
  }
  if (n < 1) throw new UsageError(`invalid option ${quote(option)}: the rate must be at least 1 byte per second`);
  return n;
}

function parseQueueDepth(option: string, value: string): number {
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > MAX_QUEUE_DEPTH) {
    throw new UsageError(
      `invalid option ${quote(option)}: the queue depth must be a whole number from 1 to ${MAX_QUEUE_DEPTH}`,
    );
  }
  return Number(value);
}

/** Options that take a value ('--name=value' or '--name value'). */
const VALUE_OPTIONS: ReadonlySet<string> = new Set([
  'queue-depth', 'block-size', 'retries', 'mapfile', 'checkpoint-interval', 'hash', 'rate', 'rate-file', 'zero-blocks',
  'on-target-error', 'io-engine',
]);
/** Options that take no value. */
const FLAG_OPTIONS: ReadonlySet<string> = new Set([
  'help', 'version', 'json', 'quiet', 'no-sync', 'force', 'noerror', 'retry-bad', 'verify', 'background', 'target-is-zero',
  ...Object.keys(ENGINE_FLAGS),
]);

function parseWhole(option: string, value: string, min: number, max: number, what: string): number {
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`invalid option ${quote(option)}: ${what} must be a whole number from ${min} to ${max}`);
  }
  return Number(value);
}

/**
 * Parse devmove's command line (argv without the node and script paths).
 * Throws UsageError for anything devmove cannot run.
 */
export function parseDdArgs(argv: readonly string[]): DdInvocation {
  // --help and --version win over everything else, even over bad operands.
  const dashDash = argv.indexOf('--');
  const options = dashDash === -1 ? argv : argv.slice(0, dashDash);
  const json = options.includes('--json');
  if (options.includes('--help') || options.includes('-h')) return { ...defaults('help'), json };
  if (options.includes('--version') || options.includes('-V')) return { ...defaults('version'), json };

  let command: DdInvocation['command'] = 'copy';
  let source: string | undefined;
  const targets: string[] = [];
  let noErrorFlag = false;
  let retries = 0;
  let mapfile: string | undefined;
  let retryBad = false;
  let checkpointInterval: number | undefined;
  let verify = false;
  let hash: DdInvocation['hash'];
  let rate: number | undefined;
  let rateFile: string | undefined;
  let background = false;
  let zeroOption: DdInvocation['zeroBlocks'] | undefined;
  let zeroOptionText: string | undefined;
  let onTargetError: DdInvocation['onTargetError'] = 'stop';
  let ioEngine: IoEngine | undefined;
  let bs: number | undefined;
  let bsOperand: string | undefined;
  let ibs: number | undefined;
  let obs: number | undefined;
  let skip: BlockCount | undefined;
  let seek: BlockCount | undefined;
  let count: BlockCount | undefined;
  let status: StatusLevel = 'default';
  let quiet = false;
  let noSync = false;
  let force = false;
  const engine: EngineSwitches = { ...DEFAULT_ENGINE };
  let queueDepth: number | undefined;
  let blockSizeOption: number | undefined;
  let blockSizeOptionText: string | undefined;
  const inputFlags = new Set<InputFlag>();
  const outputFlags = new Set<OutputFlag>();
  const conversions = new Set<Conversion>();

  let onlyOperands = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;

    if (i === 0 && arg === 'demo') {
      command = 'demo';
      continue;
    }
    if (!onlyOperands && arg === '--') {
      onlyOperands = true;
      continue;
    }

    if (!onlyOperands && arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq === -1 ? undefined : eq);
      if (FLAG_OPTIONS.has(name)) {
        if (eq !== -1) throw new UsageError(`option '--${name}' takes no value (got ${quote(arg)})`);
        if (name === 'json') continue; // read above
        if (name === 'quiet') quiet = true;
        else if (name === 'no-sync') noSync = true;
        else if (name === 'force') force = true;
        else if (name === 'noerror') noErrorFlag = true;
        else if (name === 'retry-bad') retryBad = true;
        else if (name === 'verify') verify = true;
        else if (name === 'background') background = true;
        else if (name === 'target-is-zero') {
          if (zeroOption !== undefined && zeroOption !== 'skip') {
            throw new UsageError(`--target-is-zero contradicts ${quote(zeroOptionText ?? '')}; give one`);
          }
          zeroOption = 'skip';
          zeroOptionText = '--target-is-zero';
        } else {
          const [key, value] = ENGINE_FLAGS[name];
          engine[key] = value;
        }
        continue;
      }
      if (!VALUE_OPTIONS.has(name)) throw new UsageError(`unknown option ${quote(`--${name}`)}`);
      let value: string;
      if (eq !== -1) {
        value = arg.slice(eq + 1);
      } else {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`option '--${name}' needs a value`);
        value = next;
        i++;
      }
      if (value === '') throw new UsageError(`option '--${name}' needs a value`);
      const shown = `--${name}=${value}`;
      if (value.includes('\0')) throw new UsageError(`invalid option ${quote(shown)}: a value cannot contain a NUL byte`);
      if (name === 'queue-depth') {
        queueDepth = parseQueueDepth(shown, value);
      } else if (name === 'retries') {
        retries = parseWhole(shown, value, 0, 1000, 'the number of retries');
      } else if (name === 'checkpoint-interval') {
        checkpointInterval = parseWhole(shown, value, 100, 3_600_000, 'the checkpoint interval (milliseconds)');
      } else if (name === 'mapfile') {
        mapfile = value;
      } else if (name === 'rate-file') {
        rateFile = value;
      } else if (name === 'hash') {
        if (!isOneOf(HASH_ALGORITHMS, value)) throw new UsageError(`invalid option ${quote(shown)}: the hash must be one of ${HASH_ALGORITHMS.join(', ')}`);
        hash = value;
      } else if (name === 'zero-blocks') {
        if (!isOneOf(ZERO_MODES, value)) {
          throw new UsageError(`invalid option ${quote(shown)}: zero blocks are handled by one of ${ZERO_MODES.join(', ')}`);
        }
        if (zeroOption !== undefined && zeroOption !== value) {
          throw new UsageError(`${quote(shown)} contradicts ${quote(zeroOptionText ?? '')}; give one`);
        }
        zeroOption = value;
        zeroOptionText = shown;
      } else if (name === 'on-target-error') {
        if (!isOneOf(TARGET_ERROR_POLICIES, value)) {
          throw new UsageError(`invalid option ${quote(shown)}: a failing target can 'stop' the copy or be 'drop'ped`);
        }
        onTargetError = value;
      } else if (name === 'io-engine') {
        if (!isOneOf(IO_ENGINES, value)) {
          throw new UsageError(`invalid option ${quote(shown)}: the I/O engine is one of ${IO_ENGINES.join(', ')}`);
        }
        ioEngine = value;
      } else if (name === 'rate') {
        const r = parseRate(shown, value);
        rate = r;
      } else {
        try {
          const size = parseDdNumber(value);
          if (size < 1 || size > MAX_BLOCK_SIZE) {
            throw new UsageError(
              `invalid option ${quote(shown)}: the block size must be from 1 byte to 2 GiB (2147483648 bytes)`,
            );
          }
          blockSizeOption = size;
          blockSizeOptionText = shown;
        } catch (err) {
          if (err instanceof SizeSyntaxError) throw new UsageError(`invalid option ${quote(shown)}: ${err.reason}`);
          throw err;
        }
      }
      continue;
    }

    if (!onlyOperands && arg.startsWith('-') && arg.length > 1) {
      throw new UsageError(`unknown option ${quote(arg)}`);
    }

    const eq = arg.indexOf('=');
    if (eq === -1) {
      const why =
        arg === 'demo' ? "'demo' must be the first argument" : 'operands look like if=/dev/sdb';
      throw new UsageError(`unexpected argument ${quote(arg)} (${why})`);
    }
    const key = arg.slice(0, eq);
    const value = arg.slice(eq + 1);
    const known = [
      'if', 'of', 'bs', 'ibs', 'obs', 'skip', 'iseek', 'seek', 'oseek', 'count',
      'conv', 'iflag', 'oflag', 'status', 'cbs',
    ];
    if (!known.includes(key)) throw new UsageError(`unknown operand ${quote(arg)}`);
    if (key === 'cbs') {
      throw new UsageError("cbs= is not supported by devmove (it only applies to conv=block and conv=unblock)");
    }
    if (value === '') throw new UsageError(`'${key}=' needs a value`);

    if ((key === 'if' || key === 'of') && value.includes('\0')) {
      throw new UsageError(`invalid operand ${quote(arg)}: a path cannot contain a NUL byte`);
    }
    switch (key) {
      case 'if':
        source = value;
        break;
      case 'of':
        if (targets.includes(value)) throw new UsageError(`${quote(arg)} is given twice`);
        if (targets.length >= 64) throw new UsageError('at most 64 targets (of=) per copy');
        targets.push(value);
        break;
      case 'bs':
        bs = parseBlockSize(arg, value, 'the block size');
        bsOperand = arg;
        break;
      case 'ibs':
        ibs = parseBlockSize(arg, value, 'the input block size');
        break;
      case 'obs':
        obs = parseBlockSize(arg, value, 'the output block size');
        break;
      case 'skip':
      case 'iseek':
        skip = { value: parseSize(arg, value), hasB: value.includes('B'), operand: arg };
        break;
      case 'seek':
      case 'oseek':
        seek = { value: parseSize(arg, value), hasB: value.includes('B'), operand: arg };
        break;
      case 'count':
        count = { value: parseSize(arg, value), hasB: value.includes('B'), operand: arg };
        break;
      case 'status':
        if (value !== 'none' && value !== 'noxfer' && value !== 'progress') {
          throw new UsageError(`invalid operand ${quote(arg)}: the status level must be none, noxfer or progress`);
        }
        status = value;
        break;
      case 'iflag':
        for (const flag of symbols(value)) {
          if (isOneOf(INPUT_FLAGS, flag)) inputFlags.add(flag);
          else throw flagError('iflag', flag, arg);
        }
        break;
      case 'oflag':
        for (const flag of symbols(value)) {
          if (isOneOf(OUTPUT_FLAGS, flag)) outputFlags.add(flag);
          else throw flagError('oflag', flag, arg);
        }
        break;
      case 'conv':
        for (const conv of symbols(value)) {
          if (isOneOf(CONVERSIONS, conv)) conversions.add(conv);
          else throw conversionError(conv, arg);
        }
        break;
      default:
        throw new UsageError(`unknown operand ${quote(arg)}`);
    }
  }

  // Combinations GNU dd rejects too.
  if (conversions.has('excl') && conversions.has('nocreat')) {
    throw new UsageError('conv=excl and conv=nocreat cannot be combined (excl must create the target, nocreat must not)');
  }
  if (inputFlags.has('direct') && inputFlags.has('nocache')) {
    throw new UsageError('iflag=direct and iflag=nocache cannot be combined (as in GNU dd)');
  }
  if (outputFlags.has('direct') && outputFlags.has('nocache')) {
    throw new UsageError('oflag=direct and oflag=nocache cannot be combined (as in GNU dd)');
  }
  if (conversions.has('sync') && !conversions.has('noerror')) {
    throw new UsageError('conv=sync is supported only as conv=noerror,sync (unreadable blocks become zeros); devmove never pads short reads');
  }
  const noError = noErrorFlag || conversions.has('noerror');
  let zeroBlocks: DdInvocation['zeroBlocks'] = zeroOption ?? 'write';
  if (conversions.has('sparse')) {
    if (zeroOption !== undefined && zeroOption !== 'sparse') {
      throw new UsageError(`conv=sparse contradicts ${quote(zeroOptionText ?? '')}; give one`);
    }
    zeroBlocks = 'sparse';
  }
  if (retryBad && mapfile === undefined) throw new UsageError('--retry-bad needs --mapfile (the map names the bad ranges)');
  if (checkpointInterval !== undefined && mapfile === undefined) {
    throw new UsageError('--checkpoint-interval needs --mapfile');
  }
  if (mapfile !== undefined && noSync) {
    throw new UsageError('--mapfile needs durable writes: it records only what is on stable storage (--no-sync conflicts)');
  }
  if (onTargetError === 'drop' && targets.length < 2) {
    throw new UsageError('--on-target-error=drop needs two or more targets (of= more than once)');
  }

  // Durability: the strongest request wins; --no-sync contradicts any explicit request.
  const requested: Exclude<Durability, 'none'>[] = [];
  if (conversions.has('fdatasync')) requested.push('fdatasync');
  if (outputFlags.has('dsync')) requested.push('dsync');
  if (conversions.has('fsync')) requested.push('fsync');
  if (outputFlags.has('sync')) requested.push('sync');
  let strongest: Exclude<Durability, 'none'> = 'fdatasync';
  for (const level of requested) {
    if (DURABILITY_STRENGTH[level] > DURABILITY_STRENGTH[strongest]) strongest = level;
  }
  const first = requested[0];
  if (noSync && first !== undefined) {
    const spelled = first === 'dsync' || first === 'sync' ? `oflag=${first}` : `conv=${first}`;
    throw new UsageError(`--no-sync contradicts ${spelled}; give one or the other`);
  }
  const durability: Durability = noSync ? 'none' : strongest;

  if (bs !== undefined && blockSizeOption !== undefined && bs !== blockSizeOption) {
    throw new UsageError(
      `${quote(bsOperand ?? 'bs=')} and ${quote(blockSizeOptionText ?? '--block-size')} disagree; give only one`,
    );
  }

  // bs= overrides ibs= and obs= wherever it appears, as in dd.
  const inputBlock = bs ?? ibs ?? DEFAULT_BLOCK_SIZE;
  const outputBlock = bs ?? obs ?? DEFAULT_BLOCK_SIZE;

  if (command === 'copy') {
    if (source === undefined) {
      throw new UsageError(
        "missing operand 'if=SOURCE': devmove cannot read from standard input; name the source device or file, e.g. if=/dev/sdb",
      );
    }
    if (targets.length === 0) {
      throw new UsageError(
        "missing operand 'of=TARGET': devmove cannot write to standard output; name the target device or file, e.g. of=/dev/sdc",
      );
    }
  }

  const blockSize = bs ?? blockSizeOption;
  const maxLength = count === undefined ? undefined : toBytes(count, inputFlags.has('count_bytes'), inputBlock, 'ibs');
  return {
    command,
    ...(source === undefined ? {} : { source }),
    ...(targets.length === 0 ? {} : { target: targets[0] }),
    targets,
    onTargetError,
    noError,
    retries,
    ...(mapfile === undefined ? {} : { mapfile }),
    retryBad,
    ...(checkpointInterval === undefined ? {} : { checkpointInterval }),
    verify,
    ...(hash === undefined ? {} : { hash }),
    ...(rate === undefined ? {} : { rate }),
    ...(rateFile === undefined ? {} : { rateFile }),
    background,
    zeroBlocks,
    ...(blockSize === undefined ? {} : { blockSize }),
    ibs: inputBlock,
    obs: outputBlock,
    sourceOffset: skip === undefined ? 0 : toBytes(skip, inputFlags.has('skip_bytes'), inputBlock, 'ibs'),
    targetOffset: seek === undefined ? 0 : toBytes(seek, outputFlags.has('seek_bytes'), outputBlock, 'obs'),
    ...(maxLength === undefined ? {} : { maxLength }),
    directSource: inputFlags.has('direct') ? 'always' : 'auto',
    directTarget: outputFlags.has('direct') ? 'always' : 'auto',
    durability,
    truncate: !conversions.has('notrunc'),
    createTarget: !conversions.has('nocreat'),
    exclusiveCreate: conversions.has('excl'),
    status: quiet ? 'none' : status,
    json,
    ...(queueDepth === undefined ? {} : { queueDepth }),
    noatime: inputFlags.has('noatime'),
    force,
    engine,
    ...(ioEngine === undefined ? {} : { ioEngine }),
  };
}

const FLAG_HOME: Record<string, string> = {
  fullblock: 'iflag',
  skip_bytes: 'iflag',
  count_bytes: 'iflag',
  seek_bytes: 'oflag',
  notrunc: 'conv',
  fsync: 'conv',
  fdatasync: 'conv',
  excl: 'conv',
  nocreat: 'conv',
  noerror: 'conv',
  sparse: 'conv',
};

function flagError(kind: 'iflag' | 'oflag', flag: string, operand: string): UsageError {
  if (UNSUPPORTED_FLAGS.has(flag)) return new UsageError(`${kind}=${flag} is not supported by devmove yet`);
  const label = kind === 'iflag' ? 'input flag' : 'output flag';
  const home = FLAG_HOME[flag];
  const hint =
    home !== undefined && home !== kind
      ? `${flag} belongs in ${home}=, e.g. ${home}=${flag}`
      : `accepted: ${(kind === 'iflag' ? INPUT_FLAGS : OUTPUT_FLAGS).join(', ')}`;
  return new UsageError(`invalid ${label}: ${quote(flag)} in ${quote(operand)} (${hint})`);
}

function conversionError(conv: string, operand: string): UsageError {
  if (UNSUPPORTED_CONVERSIONS.has(conv)) return new UsageError(`conv=${conv} is not supported by devmove yet`);
  let hint = `accepted: ${CONVERSIONS.join(', ')}`;
  if (conv === 'fullblock' || conv === 'skip_bytes' || conv === 'count_bytes') {
    hint = `${conv} is an input flag, e.g. iflag=${conv}`;
  } else if (conv === 'seek_bytes' || conv === 'dsync') {
    hint = `${conv} is an output flag, e.g. oflag=${conv}`;
  } else if (conv === 'direct' || conv === 'nocache' || conv === 'noatime') {
    hint = `${conv} is a flag: use iflag=${conv} or oflag=${conv}`;
  }
  return new UsageError(`invalid conversion: ${quote(conv)} in ${quote(operand)} (${hint})`);
}

/** The operand and option section of `devmove --help` (plain text, lines of at most 80 columns). */
export const DD_HELP_OPERANDS = `Operands (as in GNU dd):
  if=SOURCE     read from SOURCE, a block device or file (required: devmove
                cannot read standard input)
  of=TARGET     write to TARGET, a block device or file (required: devmove
                cannot write standard output); give of= several times to
                write each block read to every TARGET (fan-out)
  bs=BYTES      read and write BYTES at a time; also sets ibs= and obs=
                (default: devmove picks an efficient I/O size)
  ibs=BYTES     input block size, the unit of skip= and count= (default: 512)
  obs=BYTES     output block size, the unit of seek= (default: 512)
  skip=N        skip N ibs-sized blocks at the start of SOURCE (or iseek=N)
  seek=N        skip N obs-sized blocks at the start of TARGET (or oseek=N)
  count=N       copy only N ibs-sized blocks (default: up to the end of SOURCE)
                If N contains 'B' (count=10MB, skip=4KiB, seek=100B),
                skip=, seek= and count= count bytes instead, as in GNU dd 9.
  status=LEVEL  none: print nothing but errors; noxfer: no final statistics;
                progress: also print periodic transfer statistics
  conv=CONVS    comma-separated list of:
                  notrunc    do not truncate a regular-file TARGET
                  nocreat    do not create TARGET; it must already exist
                  excl       fail if TARGET already exists
                  fdatasync  flush TARGET's data before exiting (the default)
                  fsync      flush TARGET's data and metadata before exiting
                  noerror    go on after unreadable blocks: they are located
                             to the logical block, zero-filled on TARGET and
                             reported (sync is implied; conv=noerror,sync ok)
                  sparse     seek over all-zero blocks instead of writing them
  iflag=FLAGS   comma-separated list of:
                  direct       require O_DIRECT on SOURCE (default: use it
                               whenever possible)
                  skip_bytes   skip= counts bytes, not blocks
                  count_bytes  count= counts bytes, not blocks
                  noatime      do not update SOURCE's access time
                  fullblock, nocache, dsync, sync: accepted, no effect
                  (devmove always reads full blocks and bypasses the cache)
  oflag=FLAGS   comma-separated list of:
                  direct       require O_DIRECT on TARGET
                  seek_bytes   seek= counts bytes, not blocks
                  dsync        write TARGET with O_DSYNC
                  sync         write TARGET with O_SYNC
                  nocache, noatime: accepted, no effect
                devmove always makes the data durable before it reports
                success; the strongest of oflag=sync, conv=fsync, oflag=dsync
                and conv=fdatasync (the default) is used.

N and BYTES are decimal integers with an optional suffix: c=1, w=2, b=512,
kB=KB=1000, K=k=KiB=1024, MB=1000*1000, M=MiB=1024*1024, and so on for G, T,
P, E, Z, Y, R, Q. NxM multiplies: 2x512=1024. Byte counts must stay below
2^53 (8 PiB).

Options:
  --block-size=SIZE  I/O size in bytes, like bs= but leaving ibs= and obs=
  --queue-depth=N    number of I/O requests kept in flight, 1 to 1024
  --no-sync          do not flush TARGET before exiting (not with conv=fsync,
                     conv=fdatasync, oflag=dsync or oflag=sync)
  --json             print the final report as JSON
  --quiet            the same as status=none
  --force            write to a target mounted read-only or held by LVM/md/dm
                     (never to one mounted read-write, the source itself, an
                     overlapping range, a read-only or a too-small device)
Failing disks and long migrations:
  --noerror          the same as conv=noerror
  --retries=N        read an unreadable block N more times first (default 0)
  --mapfile=FILE     record progress in FILE (GNU ddrescue mapfile format)
                     and, when it exists, copy only what it lacks; updated
                     atomically once the data is durable on TARGET
  --checkpoint-interval=MS  mapfile update interval (default 1000)
  --retry-bad        with --mapfile: read the ranges marked bad again
  --verify           after the copy, re-read SOURCE and TARGET with O_DIRECT
                     and compare (exit 1 on a difference)
  --hash=ALG         digest of the data read: sha256, sha512, sha1, md5,
                     blake2b512, sha3-256
  --on-target-error=stop|drop  with several of=: a failing TARGET stops
                     the copy (stop, default) or is dropped while the others
                     finish (drop)
Sharing the devices:
  --rate=RATE        copy at most RATE bytes per second (200M, 50MB/s)
  --rate-file=FILE   read the rate from FILE, and again whenever FILE changes
                     (echo 50M > FILE; 0 or 'unlimited' lifts the cap)
  --background       small requests (128 KiB), 2 in flight, so other I/O on
                     the same devices keeps its latency
Zero blocks (all-zero source blocks):
  --zero-blocks=MODE write (default), skip (TARGET already reads zeros),
                     discard (punch holes in files; write-zeroes/unmap on
                     devices that guarantee zeros), sparse (= conv=sparse)
  --target-is-zero   the same as --zero-blocks=skip
I/O engine:
  --io-engine=auto|io_uring|threads  who performs the reads and writes:
                     io_uring, or worker threads (pread/pwrite) for where
                     io_uring is forbidden (seccomp in containers,
                     sysctl kernel.io_uring_disabled); auto (default) uses
                     io_uring and falls back to threads, saying why
Engine switches, for benchmarks (the defaults are the measured best):
  --no-fixed-buffers do not register the buffer ring with io_uring
  --no-fixed-files   do not register the file descriptors with io_uring
  --sqpoll           let a kernel thread poll the submission queue
  --no-link          do not chain each buffer's read and write (IOSQE_IO_LINK)
  --no-batch         one io_uring_enter per request instead of per batch
  -h, --help         print this help and exit
  -V, --version      print the version and exit
  demo               as the first argument: run the built-in demonstration
                     (if= and of= are then optional)

Not supported: cbs=; conv=ascii, ebcdic, ibm, block, unblock, lcase, ucase,
swab, sync without noerror; flags append, nonblock, nofollow, noctty,
directory, nolinks, binary, text, cio.
`;
