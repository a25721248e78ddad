/**
 * Command-line parsing for devmove's dd-compatible interface:
 * `devmove if=/dev/sdb of=/dev/sdc bs=4M status=progress`.
 *
 * Follows GNU coreutils dd where devmove implements the same feature; anything
 * dd has that devmove does not implement is rejected with a one-line UsageError
 * instead of being silently ignored. devmove's own long options come from the
 * option table (api/options.ts) through long-options.ts.
 */
import type { OptionKey } from '../api/options';
import { parseDdNumber, SizeSyntaxError } from '../base/size';
import { type CopyOptions, DEFAULT_BLOCK_SIZE, type Durability, type EngineOptions } from '../base/types';
import { isNbdUri, NbdUriError, parseNbdUri } from '../storage/nbd-uri';
import { longOption, longOptionsHelp, readLongValue, type LongOption } from './long-options';

/** A command line devmove cannot run. The message is one line naming the offending argument. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type StatusLevel = 'default' | 'none' | 'noxfer' | 'progress';

/** copy() options a long option or dd operand can set; they keep copy()'s names and types. */
type CliCopyOptions = Omit<
  CopyOptions,
  'source' | 'target' | 'targets' | 'engine' | 'signal' | 'onProgress' | 'direct' | 'truncateTarget' | 'durability' |
  'createTarget' | 'exclusiveCreate' | 'noatime' | 'sourceOffset' | 'targetOffset' | 'maxLength' | 'length' | 'progressInterval'
>;

export interface DdInvocation extends CliCopyOptions {
  /** Warnings to print before anything runs, as dd does while parsing (e.g. count=0x1). */
  warnings: string[];
  /** 'demo' when argv[0] === 'demo'. */
  command: 'copy' | 'help' | 'version' | 'demo';
  /** if= (required for 'copy'). */
  source?: string;
  /** of= (required for 'copy'): the first target. */
  target?: string;
  /** Every of=, in order (fan-out when more than one). */
  targets: string[];
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
  durability: Durability;
  /** Truncate a regular-file target at the seek offset (false with conv=notrunc). */
  truncate: boolean;
  /** Create a missing target (false with conv=nocreat). */
  createTarget: boolean;
  /** Fail if the target exists (conv=excl). */
  exclusiveCreate: boolean;
  /** iflag=noatime. */
  noatime: boolean;
  status: StatusLevel;
  json: boolean;
  /** --rate-file FILE: the rate is read from FILE whenever it changes. */
  rateFile?: string;
  /** Engine switches (--no-fixed-buffers, --no-fixed-files, --sqpoll, --no-link, --no-batch). */
  engine: Required<EngineOptions>;
}

const DEFAULT_DD_BLOCK = 512;
/** dd takes block sizes up to 2 GiB; devmove's I/Os stop at 1 GiB (copy-command.ts caps them). */
const DD_BLOCK_SIZE_MAX = 2 * 1024 * 1024 * 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Strength order used when several durability requests are given: the strongest wins. */
const DURABILITY_STRENGTH: Record<Exclude<Durability, 'none'>, number> = { fdatasync: 1, dsync: 2, fsync: 3, sync: 4 };

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

/** What GNU dd prints for an operand such as count=0x10 (coreutils tests/dd/misc.sh). */
export const ZERO_MULTIPLIER_WARNING = "warning: '0x' is a zero multiplier; use '00x' if that is intended";

/**
 * An operand's number in dd's grammar. dd reads '0x1' as 0 × 1 (its 'x' is
 * multiplication), says so in a warning and goes on: so does devmove, while
 * its size grammar (shared with the library) refuses '0x' outright.
 */
function parseSize(operand: string, value: string, warnings: string[]): number {
  const zeroTimes = value.startsWith('0x');
  try {
    const size = parseDdNumber(zeroTimes ? `0${value}` : value);
    if (zeroTimes) warnings.push(ZERO_MULTIPLIER_WARNING);
    return size;
  } catch (err) {
    if (err instanceof SizeSyntaxError) throw new UsageError(`invalid operand ${quote(operand)}: ${err.reason}`);
    throw err;
  }
}

function parseBlockSize(operand: string, value: string, what: string, warnings: string[]): number {
  const size = parseSize(operand, value, warnings);
  if (size < 1 && value.startsWith('0x')) {
    throw new UsageError(
      `invalid operand ${quote(operand)}: hexadecimal is not accepted (dd reads '0x' as zero times what follows, so this is 0); ${what} must be at least 1 byte`,
    );
  }
  if (size < 1) throw new UsageError(`invalid operand ${quote(operand)}: ${what} must be at least 1 byte`);
  if (size > DD_BLOCK_SIZE_MAX) {
    throw new UsageError(`invalid operand ${quote(operand)}: ${what} must be at most 2 GiB (2147483648 bytes)`);
  }
  return size;
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

/** Everything read from the command line so far. */
interface ParseState {
  command: DdInvocation['command'];
  warnings: string[];
  source?: string;
  targets: string[];
  /** Values of long options (and of operands that set the same copy() option), by key. */
  values: Map<OptionKey | 'json' | 'quiet' | 'rateFile', { value: unknown; spelling: string }>;
  bs?: { value: number; operand: string };
  ibs?: number;
  obs?: number;
  skip?: BlockCount;
  seek?: BlockCount;
  count?: BlockCount;
  status: StatusLevel;
  inputFlags: Set<InputFlag>;
  outputFlags: Set<OutputFlag>;
  conversions: Set<Conversion>;
}

/**
 * Sets a value: repeating one spelling keeps the last; two spellings that set the same option
 * to different values contradict each other.
 */
function assign(state: ParseState, key: OptionKey | 'json' | 'quiet' | 'rateFile', value: unknown, spelling: string): void {
  const before = state.values.get(key);
  if (before !== undefined && before.spelling !== spelling && before.spelling.split('=')[0] !== spelling.split('=')[0] && before.value !== value) {
    throw new UsageError(`${spelling} contradicts ${quote(before.spelling)}; give one`);
  }
  state.values.set(key, { value, spelling });
}

/** `--name`, `--name=VALUE` or `--name VALUE`; returns how many arguments it used. */
function parseLong(state: ParseState, argv: readonly string[], i: number): number {
  const arg = argv[i];
  const whole = longOption(arg);  // a flag spelled with its value: --verify=strict
  if (whole !== undefined && !whole.takesValue && 'key' in whole.target) {
    assign(state, whole.target.key, whole.flagValue, arg);
    return 1;
  }
  const eq = arg.indexOf('=');
  const name = eq === -1 ? arg : arg.slice(0, eq);
  const option: LongOption | undefined = longOption(name);
  if (option === undefined) throw new UsageError(`unknown option ${quote(name)}`);
  const key = 'key' in option.target ? option.target.key : option.target.cliKey;
  if (!option.takesValue) {
    if (eq !== -1) throw new UsageError(`option '${name}' takes no value (got ${quote(arg)})`);
    if (key !== 'help' && key !== 'version') assign(state, key, option.flagValue, name);
    return 1;
  }
  const value = eq !== -1 ? arg.slice(eq + 1) : argv[i + 1];
  if (value === undefined || value === '') throw new UsageError(`option '${name}' needs a value`);
  const shown = `${name}=${value}`;
  if (value.includes('\0')) throw new UsageError(`invalid option ${quote(shown)}: a value cannot contain a NUL byte`);
  const read = readLongValue(option, value);
  if (!read.ok) throw new UsageError(`invalid option ${quote(shown)}: ${read.reason}`);
  assign(state, key as OptionKey, read.value, shown);
  return eq !== -1 ? 1 : 2;
}

const OPERANDS = ['if', 'of', 'bs', 'ibs', 'obs', 'skip', 'iseek', 'seek', 'oseek', 'count', 'conv', 'iflag', 'oflag', 'status', 'cbs'];

/** One dd operand, `key=value`. */
function parseOperand(state: ParseState, arg: string): void {
  const eq = arg.indexOf('=');
  if (eq === -1) {
    const why = arg === 'demo' ? "'demo' must be the first argument" : 'operands look like if=/dev/sdb';
    throw new UsageError(`unexpected argument ${quote(arg)} (${why})`);
  }
  const key = arg.slice(0, eq);
  const value = arg.slice(eq + 1);
  if (!OPERANDS.includes(key)) throw new UsageError(`unknown operand ${quote(arg)}`);
  if (key === 'cbs') throw new UsageError('cbs= is not supported by devmove (it only applies to conv=block and conv=unblock)');
  if (value === '') throw new UsageError(`'${key}=' needs a value`);
  if ((key === 'if' || key === 'of') && value.includes('\0')) {
    throw new UsageError(`invalid operand ${quote(arg)}: a path cannot contain a NUL byte`);
  }
  if ((key === 'if' || key === 'of') && isNbdUri(value)) checkNbdUri(arg, value);
  if (key === 'if') state.source = value;
  else if (key === 'of') addTarget(state, value, arg);
  else if (key === 'bs') state.bs = { value: parseBlockSize(arg, value, 'the block size', state.warnings), operand: arg };
  else if (key === 'ibs') state.ibs = parseBlockSize(arg, value, 'the input block size', state.warnings);
  else if (key === 'obs') state.obs = parseBlockSize(arg, value, 'the output block size', state.warnings);
  else if (key === 'skip' || key === 'iseek') state.skip = { value: parseSize(arg, value, state.warnings), hasB: value.includes('B'), operand: arg };
  else if (key === 'seek' || key === 'oseek') state.seek = { value: parseSize(arg, value, state.warnings), hasB: value.includes('B'), operand: arg };
  else if (key === 'count') state.count = { value: parseSize(arg, value, state.warnings), hasB: value.includes('B'), operand: arg };
  else if (key === 'status') state.status = statusLevel(arg, value);
  else parseSymbols(state, key, value, arg);
}

/** An NBD URI operand that cannot be used: a usage error naming the operand and the reason. */
function checkNbdUri(arg: string, value: string): void {
  try {
    parseNbdUri(value);
  } catch (error) {
    if (error instanceof NbdUriError) throw new UsageError(`invalid operand ${quote(arg)}: ${error.message}`);
    throw error;
  }
}

function addTarget(state: ParseState, value: string, arg: string): void {
  if (state.targets.includes(value)) throw new UsageError(`${quote(arg)} is given twice`);
  if (state.targets.length >= 64) throw new UsageError('at most 64 targets (of=) per copy');
  state.targets.push(value);
}

function statusLevel(arg: string, value: string): StatusLevel {
  if (value !== 'none' && value !== 'noxfer' && value !== 'progress') {
    throw new UsageError(`invalid operand ${quote(arg)}: the status level must be none, noxfer or progress`);
  }
  return value;
}

/** conv=, iflag=, oflag=: comma lists of symbols. */
function parseSymbols(state: ParseState, key: string, value: string, arg: string): void {
  for (const symbol of value.split(',')) {
    if (key === 'iflag') {
      if (!isOneOf(INPUT_FLAGS, symbol)) throw flagError('iflag', symbol, arg);
      state.inputFlags.add(symbol);
    } else if (key === 'oflag') {
      if (!isOneOf(OUTPUT_FLAGS, symbol)) throw flagError('oflag', symbol, arg);
      state.outputFlags.add(symbol);
    } else {
      if (!isOneOf(CONVERSIONS, symbol)) throw conversionError(symbol, arg);
      state.conversions.add(symbol);
    }
  }
}

/** Combinations GNU dd rejects too, and devmove's own. */
function checkCombinations(state: ParseState): void {
  const { conversions: conv, inputFlags: iflag, outputFlags: oflag } = state;
  if (conv.has('excl') && conv.has('nocreat')) {
    throw new UsageError('conv=excl and conv=nocreat cannot be combined (excl must create the target, nocreat must not)');
  }
  if (iflag.has('direct') && iflag.has('nocache')) throw new UsageError('iflag=direct and iflag=nocache cannot be combined (as in GNU dd)');
  if (oflag.has('direct') && oflag.has('nocache')) throw new UsageError('oflag=direct and oflag=nocache cannot be combined (as in GNU dd)');
  if (conv.has('sync') && !conv.has('noerror')) {
    throw new UsageError('conv=sync is supported only as conv=noerror,sync (unreadable blocks become zeros); devmove never pads short reads');
  }
  if (conv.has('noerror')) assign(state, 'noError', true, state.values.get('noError')?.spelling ?? 'conv=noerror');
  if (conv.has('sparse')) assign(state, 'zeroBlocks', 'sparse', 'conv=sparse');
  const has = (key: OptionKey): boolean => state.values.has(key);
  if (has('retryBad') && !has('mapfile')) throw new UsageError('--retry-bad needs --mapfile (the map names the bad ranges)');
  if (has('checkpointInterval') && !has('mapfile')) throw new UsageError('--checkpoint-interval needs --mapfile');
  if (has('mapfile') && state.values.get('durability')?.value === 'none') {
    throw new UsageError('--mapfile needs durable writes: it records only what is on stable storage (--no-sync conflicts)');
  }
  if (state.values.get('onTargetError')?.value === 'drop' && state.targets.length < 2) {
    throw new UsageError('--on-target-error=drop needs two or more targets (of= more than once)');
  }
}

/** The strongest durability conv=/oflag= ask for; --no-sync contradicts any explicit request. */
function durabilityOf(state: ParseState): Durability {
  const requested: Array<Exclude<Durability, 'none'>> = [];
  if (state.conversions.has('fdatasync')) requested.push('fdatasync');
  if (state.outputFlags.has('dsync')) requested.push('dsync');
  if (state.conversions.has('fsync')) requested.push('fsync');
  if (state.outputFlags.has('sync')) requested.push('sync');
  const noSync = state.values.get('durability')?.value === 'none';
  const first = requested[0];
  if (noSync && first !== undefined) {
    const spelled = first === 'dsync' || first === 'sync' ? `oflag=${first}` : `conv=${first}`;
    throw new UsageError(`--no-sync contradicts ${spelled}; give one or the other`);
  }
  if (noSync) return 'none';
  return requested.reduce<Exclude<Durability, 'none'>>((a, b) => (DURABILITY_STRENGTH[b] > DURABILITY_STRENGTH[a] ? b : a), 'fdatasync');
}

/** As in dd: no if= reads standard input, no of= writes standard output ('-' names them too). */
function defaultOperands(state: ParseState): void {
  if (state.command !== 'copy') return;
  if (state.source === undefined) state.source = '-';
  if (state.targets.length === 0) state.targets.push('-');
}

/** The long options' values with the option table's defaults, as DdInvocation fields. */
function optionFields(state: ParseState): Pick<DdInvocation, 'engine'> & Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const engine: Record<string, unknown> = {};
  for (const [key, { value }] of state.values) {
    if (key === 'durability' || key === 'json' || key === 'quiet') continue;
    if (key.startsWith('engine.')) engine[key.slice(7)] = value;
    else out[key] = value;
  }
  return { ...LONG_OPTION_DEFAULTS, ...out, engine: { ...ENGINE_DEFAULTS, ...engine } as Required<EngineOptions> };
}

function finish(state: ParseState): DdInvocation {
  checkCombinations(state);
  const durability = durabilityOf(state);
  const blockOption = state.values.get('blockSize');
  if (state.bs !== undefined && blockOption !== undefined && state.bs.value !== blockOption.value) {
    throw new UsageError(`${quote(state.bs.operand)} and ${quote(blockOption.spelling)} disagree; give only one`);
  }
  defaultOperands(state);
  // bs= overrides ibs= and obs= wherever it appears, as in dd.
  const ibs = state.bs?.value ?? state.ibs ?? DEFAULT_DD_BLOCK;
  const obs = state.bs?.value ?? state.obs ?? DEFAULT_DD_BLOCK;
  const { inputFlags: iflag, outputFlags: oflag, conversions: conv } = state;
  const maxLength = state.count === undefined ? undefined : toBytes(state.count, iflag.has('count_bytes'), ibs, 'ibs');
  // dd's conv=sparse looks for all-zero *output* blocks (coreutils
  // tests/dd/sparse.sh: ibs=1M obs=2M leaves a 1 MiB run of zeros written):
  // an explicit obs= is the zero check's block, in I/Os of the largest
  // multiple of it up to the default I/O size, unless bs= or --block-size
  // sets the I/O size. (obs= as the I/O size made obs=1 read and write a byte
  // at a time: from an NBD export, one NBD_CMD_READ per byte, ~10x a file.)
  const sparseObs = state.values.get('zeroBlocks')?.value === 'sparse' ? state.obs : undefined;
  const sparseBlock = sparseObs === undefined ? undefined : sparseObs * Math.max(1, Math.floor(DEFAULT_BLOCK_SIZE / sparseObs));
  const chosen = state.bs?.value ?? (blockOption?.value as number | undefined);
  const blockSize = chosen ?? sparseBlock;
  const zeroBlockSize = chosen === undefined && sparseBlock !== sparseObs ? sparseObs : undefined;
  const quiet = state.values.has('quiet');
  return {
    warnings: state.warnings,
    command: state.command,
    ...(state.source === undefined ? {} : { source: state.source }),
    ...(state.targets.length === 0 ? {} : { target: state.targets[0] }),
    targets: state.targets,
    ...optionFields(state),
    ...(blockSize === undefined ? {} : { blockSize }),
    ...(zeroBlockSize === undefined ? {} : { zeroBlockSize }),
    ibs,
    obs,
    sourceOffset: state.skip === undefined ? 0 : toBytes(state.skip, iflag.has('skip_bytes'), ibs, 'ibs'),
    targetOffset: state.seek === undefined ? 0 : toBytes(state.seek, oflag.has('seek_bytes'), obs, 'obs'),
    ...(maxLength === undefined ? {} : { maxLength }),
    directSource: iflag.has('direct') ? 'always' : 'auto',
    directTarget: oflag.has('direct') ? 'always' : 'auto',
    durability,
    truncate: !conv.has('notrunc'),
    createTarget: !conv.has('nocreat'),
    exclusiveCreate: conv.has('excl'),
    status: quiet ? 'none' : state.status,
    json: state.values.has('json'),
    noatime: iflag.has('noatime'),
  } as DdInvocation;
}

/** The option table's defaults for the long options a copy always has. */
const LONG_OPTION_DEFAULTS: Readonly<Record<string, unknown>> = { onTargetError: 'stop', noError: false, retries: 0, retryBad: false, verify: false, background: false, zeroBlocks: 'write', force: false, rate: 0 };
const ENGINE_DEFAULTS: Readonly<Required<EngineOptions>> = { fixedBuffers: true, fixedFiles: true, sqpoll: false, linkReadWrite: true, batchSubmissions: true };

/**
 * Parse devmove's command line (argv without the node and script paths).
 * Throws UsageError for anything devmove cannot run.
 */
export function parseDdArgs(argv: readonly string[]): DdInvocation {
  // --help and --version win over everything else, even over bad operands.
  const dashDash = argv.indexOf('--');
  const options = dashDash === -1 ? argv : argv.slice(0, dashDash);
  const state: ParseState = {
    command: 'copy', warnings: [], targets: [], values: new Map(), status: 'default', inputFlags: new Set(), outputFlags: new Set(), conversions: new Set(),
  };
  const json = options.includes('--json');
  if (options.includes('--help') || options.includes('-h')) return { ...finishEmpty(state, 'help'), json };
  if (options.includes('--version') || options.includes('-V')) return { ...finishEmpty(state, 'version'), json };
  let onlyOperands = false;
  for (let i = 0; i < argv.length; ) {
    const arg = argv[i];
    if (i === 0 && arg === 'demo') {
      state.command = 'demo';
      i++;
    } else if (!onlyOperands && arg === '--') {
      onlyOperands = true;
      i++;
    } else if (!onlyOperands && arg.startsWith('--')) {
      i += parseLong(state, argv, i);
    } else if (!onlyOperands && arg.startsWith('-') && arg.length > 1) {
      throw new UsageError(`unknown option ${quote(arg)}`);
    } else {
      parseOperand(state, arg);
      i++;
    }
  }
  return finish(state);
}

function finishEmpty(state: ParseState, command: DdInvocation['command']): DdInvocation {
  state.command = command;
  return finish(state);
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

/** The operands part of `devmove --help` (plain text, lines of at most 80 columns). */
const OPERANDS_HELP = `Operands (as in GNU dd):
  if=SOURCE     read from SOURCE, a block device, file, pipe (FIFO) or NBD
                export (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=
                PATH); without if=, or with if=-, read standard input
  of=TARGET     write to TARGET, a block device, file, pipe (FIFO) or NBD
                export; without of=, or with of=-, write standard output; give
                of= several times to write each block read to every TARGET
                (fan-out)
  bs=BYTES      read and write BYTES at a time; also sets ibs= and obs=
                (default: devmove picks an efficient I/O size)
  ibs=BYTES     input block size, the unit of skip= and count= (default: 512)
  obs=BYTES     output block size, the unit of seek= (default: 512)
  skip=N        skip N ibs-sized blocks at the start of SOURCE (or iseek=N)
  seek=N        skip N obs-sized blocks at the start of TARGET (or oseek=N)
  count=N       copy only N ibs-sized blocks (default: up to the end of SOURCE)
                If N contains 'B' (count=10MB, skip=4KiB, seek=100B),
                skip=, seek= and count= count bytes instead, as in GNU dd 9.
  status=LEVEL  none: print nothing but errors; noxfer: no transfer line
                and no statistics of devmove's own (zero blocks, verify,
                mapfile); progress: also print transfer statistics once a
                second
  conv=CONVS    comma-separated list of:
                  notrunc    do not truncate a regular-file TARGET
                  nocreat    do not create TARGET; it must already exist
                  excl       fail if TARGET already exists
                  fdatasync  flush TARGET's data before exiting (the default)
                  fsync      flush TARGET's data and metadata before exiting
                  noerror    go on after unreadable blocks: they are located
                             to the logical block, zero-filled on TARGET and
                             reported, exit status 1 (sync is implied;
                             conv=noerror,sync ok; a short last block is
                             not padded)
                  sparse     seek over all-zero blocks instead of writing them
                             (blocks of obs= bytes when obs= is given, else
                             of the I/O size)
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
P, E, Z, Y, R, Q. NxM multiplies: 2x512=1024 (and 0x10 is zero times 10, with
dd's warning: not hexadecimal). Byte counts must stay below 2^53 (8 PiB).
`;

const UNSUPPORTED_HELP = `Not supported: cbs=; conv=ascii, ebcdic, ibm, block, unblock, lcase, ucase,
swab, sync without noerror; flags append, nonblock, nofollow, noctty,
directory, nolinks, binary, text, cio.
`;

/** The operand and option section of `devmove --help`: dd's operands, then the option table. */
export const DD_HELP_OPERANDS = `${OPERANDS_HELP}\n${longOptionsHelp()}  demo               as the first argument: run the built-in demonstration
                     (if= and of= are then optional)

${UNSUPPORTED_HELP}`;
