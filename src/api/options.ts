// The one table of options. Each row says what the option takes, its default,
// how the command line spells it, whether a job file may set it, and its
// --help line; copy() validation (plan.ts), the dd command line
// (cli/dd-args.ts), job files (jobs/jobfile.ts) and `devmove --help` all read
// it. A new option is a row here plus its use in the engine's plan.
import {
  BLOCK_SIZE_MAX, CHECKPOINT_INTERVAL_MAX, CHECKPOINT_INTERVAL_MIN, NBD_TIMEOUT_MAX, PROGRESS_INTERVAL_MIN, QUEUE_DEPTH_MAX, RECONNECT_MAX, RETRIES_MAX,
} from '../base/limits';
import {
  DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_NBD_TIMEOUT, DIRECT_MODES, DURABILITIES, HASH_ALGORITHMS, HOLE_MODES, IO_ENGINES, TARGET_ERROR_POLICIES, ZERO_MODES,
  type CopyOptions, type EngineOptions,
} from '../base/types';
import { boolean, choice, either, integer, path, rate, size, type Checked, type ValueKind } from './values';

/** verify: true (one read), false, or this word. */
const VERIFY_OPTION_WORDS = ['strict', 'behind'] as const;

export type HelpGroup = 'general' | 'failing' | 'sharing' | 'zero' | 'engine';

export const HELP_GROUPS: Readonly<Record<HelpGroup, string>> = {
  general: 'Options:',
  failing: 'Failing disks and long migrations:',
  sharing: 'Sharing the devices:',
  zero: 'Zero blocks (all-zero source blocks):',
  engine: 'Engine switches, for benchmarks (the defaults are the measured best):',
};

/** How the command line spells an option: `--name=VALUE`, or flags that each set one value. */
export type CliSpelling = { option: string; value?: string } | { flags: ReadonlyArray<{ flag: string; value: unknown; help?: string }> };

/** A copy() option, or an engine switch ('engine.sqpoll'). */
export type OptionKey = keyof CopyOptions | `engine.${keyof EngineOptions}`;

export interface OptionRow {
  key: OptionKey;
  kind: ValueKind<unknown>;
  /** What an absent option means (undefined: absent stays absent). */
  default?: unknown;
  cli?: CliSpelling;
  /** A pair option of job files (in a pair or in defaults). */
  job: boolean;
  group?: HelpGroup;
  /** The --help text, without the option's name; lines wrap at 80 columns. */
  help?: string;
}

/** The command line's own options, which no library call has. */
export interface CliOnlyRow {
  cliKey: 'json' | 'quiet' | 'rateFile' | 'help' | 'version';
  kind: ValueKind<unknown>;
  cli: CliSpelling;
  group: HelpGroup;
  help: string;
}

const engineSwitch = (name: keyof EngineOptions, flag: string, value: boolean, help: string): OptionRow => ({
  key: `engine.${name}`,
  kind: boolean(),
  default: !value,
  cli: { flags: [{ flag, value }] },
  job: false,
  group: 'engine',
  help,
});

export const OPTION_ROWS: readonly OptionRow[] = [
  { key: 'source', kind: path("'/dev/sdb' or 'disk.img'"), job: false },
  { key: 'target', kind: path("'/dev/sdc' or 'disk.img'"), job: false },
  { key: 'targets', kind: { placeholder: 'FILE', fromValue: (v) => ({ ok: true, value: v }) }, job: false },
  { key: 'sourceOffset', kind: size(), job: true },
  { key: 'targetOffset', kind: size(), job: true },
  { key: 'length', kind: size(), job: true },
  { key: 'maxLength', kind: size(), job: true },
  {
    key: 'blockSize', kind: size(1, BLOCK_SIZE_MAX), job: true, cli: { option: '--block-size' }, group: 'general',
    help: 'I/O size in bytes, like bs= but leaving ibs= and obs= (1 byte to 1 GiB)',
  },
  {
    key: 'queueDepth', kind: integer(1, QUEUE_DEPTH_MAX), job: true, cli: { option: '--queue-depth' }, group: 'general',
    help: `number of I/O requests kept in flight, 1 to ${QUEUE_DEPTH_MAX}`,
  },
  { key: 'direct', kind: choice(DIRECT_MODES), job: true },
  {
    key: 'durability', kind: choice(DURABILITIES), default: 'fdatasync', job: true, group: 'general',
    cli: { flags: [{ flag: '--no-sync', value: 'none' }] },
    help: 'do not flush TARGET before exiting (not with conv=fsync, conv=fdatasync, oflag=dsync or oflag=sync)',
  },
  { key: 'createTarget', kind: boolean(), default: true, job: true },
  { key: 'exclusiveCreate', kind: boolean(), default: false, job: false },
  { key: 'truncateTarget', kind: either(boolean(), size(), 'must be true, false or a size such as \'1G\''), default: false, job: true },
  { key: 'noatime', kind: boolean(), default: false, job: false },
  {
    key: 'force', kind: boolean(), default: false, job: true, group: 'general', cli: { flags: [{ flag: '--force', value: true }] },
    help: 'write to a target mounted read-only or held by LVM/md/dm (never to one mounted read-write, the source itself, an overlapping range, a read-only or a too-small device)',
  },
  { key: 'signal', kind: { placeholder: '', fromValue: (v) => (v instanceof AbortSignal ? { ok: true, value: v } : { ok: false, rejection: { reason: 'must be an AbortSignal', range: false } }) }, job: false },
  { key: 'onProgress', kind: { placeholder: '', fromValue: (v) => (typeof v === 'function' ? { ok: true, value: v } : { ok: false, rejection: { reason: 'must be a function', range: false } }) }, job: false },
  { key: 'progressInterval', kind: integer(PROGRESS_INTERVAL_MIN, 3_600_000), default: 200, job: false },
  { key: 'engine', kind: { placeholder: '', fromValue: (v) => ({ ok: true, value: v }) }, job: false },
  {
    key: 'noError', kind: boolean(), default: false, job: true, group: 'failing', cli: { flags: [{ flag: '--noerror', value: true }] },
    help: 'the same as conv=noerror',
  },
  {
    key: 'retries', kind: integer(0, RETRIES_MAX), default: 0, job: true, group: 'failing', cli: { option: '--retries', value: 'N' },
    help: 'read an unreadable block N more times first (default 0)',
  },
  {
    key: 'mapfile', kind: path("'copy.map'"), job: true, group: 'failing', cli: { option: '--mapfile', value: 'FILE' },
    help: 'record progress in FILE (GNU ddrescue mapfile format) and, when it exists, copy only what it lacks; updated atomically once the data is durable on TARGET',
  },
  {
    key: 'domainMapfile', kind: path("'used.map'"), job: true, group: 'failing', cli: { option: '--domain-mapfile', value: 'FILE' },
    help: "copy only the ranges GNU ddrescue mapfile FILE marks finished ('+'), such as the used blocks `partclone.<fs> -D` lists; the rest of TARGET is left as it is",
  },
  {
    key: 'retryBad', kind: boolean(), default: false, job: true, group: 'failing', cli: { flags: [{ flag: '--retry-bad', value: true }] },
    help: 'with --mapfile: read the ranges marked bad again',
  },
  {
    key: 'checkpointInterval', kind: integer(CHECKPOINT_INTERVAL_MIN, CHECKPOINT_INTERVAL_MAX), job: true, group: 'failing',
    cli: { option: '--checkpoint-interval', value: 'MS' }, help: `mapfile update interval in milliseconds (default ${DEFAULT_CHECKPOINT_INTERVAL})`,
  },
  {
    key: 'verify', kind: either(boolean(), choice(VERIFY_OPTION_WORDS), "must be true, false, 'strict' or 'behind'"), default: false, job: true, group: 'failing',
    cli: { flags: [{ flag: '--verify', value: true }, { flag: '--verify=strict', value: 'strict' }, { flag: '--verify=behind', value: 'behind' }] },
    help: 'after the copy, read TARGET again with O_DIRECT and compare it with per-block digests (XXH3-128, else BLAKE3) of what the copy read, so SOURCE is read once; =strict reads SOURCE again too and compares bytes; =behind reads each block of TARGET back as soon as it is written, while the copy goes on (faster; a change made to TARGET after that is not seen) (exit 1 on a difference)',
  },
  {
    key: 'nbdTimeout', kind: integer(0, NBD_TIMEOUT_MAX), default: DEFAULT_NBD_TIMEOUT, job: true, group: 'failing',
    cli: { option: '--nbd-timeout', value: 'SECONDS' },
    help: `an NBD server that owes answers and sends nothing for SECONDS is given up on: the copy fails with ECONNABORTED naming the export (a mapfile resumes it); 0 waits forever (default ${DEFAULT_NBD_TIMEOUT})`,
  },
  {
    key: 'reconnect', kind: integer(0, RECONNECT_MAX), default: 0, job: true, group: 'failing',
    cli: { option: '--reconnect', value: 'N' },
    help: 'when an NBD server goes away (reset, closed, silent, restarting), start again from the mapfile up to N times, waiting 1, 2, 4 … 30 s; what was not flushed is written again (needs --mapfile)',
  },
  {
    key: 'onlyChanged', kind: boolean(), default: false, job: true, group: 'failing', cli: { flags: [{ flag: '--only-changed', value: true }] },
    help: 'read TARGET back while reading SOURCE and write only the 4 KiB blocks that differ (a second pass of a migration); TARGET must be readable and seekable (not a pipe), and an existing file TARGET is not truncated first (dd: add conv=notrunc)',
  },
  {
    key: 'hash', kind: choice(HASH_ALGORITHMS), job: true, group: 'failing', cli: { option: '--hash', value: 'ALG' },
    help: `digest of the data read: ${HASH_ALGORITHMS.join(', ')}`,
  },
  {
    key: 'onTargetError', kind: choice(TARGET_ERROR_POLICIES), default: 'stop', job: true, group: 'failing', cli: { option: '--on-target-error' },
    help: 'with several of=: a failing TARGET stops the copy (stop, default) or is dropped while the others finish (drop)',
  },
  {
    key: 'rate', kind: rate(), default: 0, job: true, group: 'sharing', cli: { option: '--rate' },
    help: "copy at most RATE bytes per second (200M, 50MB/s; 0 or 'unlimited': no cap)",
  },
  {
    key: 'background', kind: boolean(), default: false, job: true, group: 'sharing', cli: { flags: [{ flag: '--background', value: true }] },
    help: 'small requests (128 KiB), 2 in flight, in the idle I/O class, so other I/O on the same devices keeps its latency',
  },
  {
    key: 'zeroBlocks', kind: choice(ZERO_MODES), default: 'write', job: true, group: 'zero',
    cli: { option: '--zero-blocks', value: 'MODE' },
    help: 'write (default), skip (TARGET already reads zeros), discard (punch holes in files; write-zeroes/unmap on devices that guarantee zeros), sparse (= conv=sparse)',
  },
  {
    key: 'holes', kind: choice(HOLE_MODES), default: 'auto', job: true, group: 'zero',
    cli: { option: '--holes', value: 'MODE' },
    help: "holes of a sparse source file or NBD export are never read: auto (default) keeps them holes on a file target devmove creates or truncates, and hands them to --zero-blocks elsewhere; policy hands them to --zero-blocks everywhere; with write a hole is zeroed in place and stays allocated, dd's allocation (one write-zeroes without unmap per hole where the target takes it, else zeros written); read reads them like data (dd's I/O exactly)",
  },
  {
    // No default here: absent means DEVMOVE_IO_ENGINE, else 'auto' (plan.ts).
    key: 'ioEngine', kind: choice(IO_ENGINES), job: true, group: 'engine', cli: { option: '--io-engine' },
    help: 'who reads and writes: io_uring, or worker threads (pread/pwrite) for where io_uring is forbidden (a seccomp profile in containers, sysctl kernel.io_uring_disabled); auto (default) uses io_uring and falls back to threads, saying why',
  },
  // No command-line spelling: dd's obs= drives it for conv=sparse (cli/copy-command.ts).
  { key: 'zeroBlockSize', kind: size(1, BLOCK_SIZE_MAX), job: true },
  engineSwitch('fixedBuffers', '--no-fixed-buffers', false, 'do not register the buffer ring with io_uring'),
  engineSwitch('fixedFiles', '--no-fixed-files', false, 'do not register the file descriptors with io_uring'),
  engineSwitch('sqpoll', '--sqpoll', true, 'let a kernel thread poll the submission queue'),
  engineSwitch('linkReadWrite', '--no-link', false, "do not chain each buffer's read and write (IOSQE_IO_LINK)"),
  engineSwitch('batchSubmissions', '--no-batch', false, 'one io_uring_enter per request instead of per batch'),
];

/** `--target-is-zero` is another spelling of `--zero-blocks=skip`. */
export const CLI_ALIASES: ReadonlyArray<{ flag: string; key: OptionKey; value: unknown; group: HelpGroup; help: string }> = [
  { flag: '--target-is-zero', key: 'zeroBlocks', value: 'skip', group: 'zero', help: 'the same as --zero-blocks=skip' },
];

export const CLI_ONLY_ROWS: readonly CliOnlyRow[] = [
  { cliKey: 'json', kind: boolean(), cli: { flags: [{ flag: '--json', value: true }] }, group: 'general', help: 'print progress and the final report as JSON lines on standard output' },
  { cliKey: 'quiet', kind: boolean(), cli: { flags: [{ flag: '--quiet', value: true }] }, group: 'general', help: 'the same as status=none' },
  {
    cliKey: 'rateFile', kind: path("'/run/devmove.rate'"), cli: { option: '--rate-file', value: 'FILE' }, group: 'sharing',
    help: "read the rate from FILE, and again whenever FILE changes (echo 50M > FILE; 0 or 'unlimited' lifts the cap)",
  },
  { cliKey: 'help', kind: boolean(), cli: { flags: [{ flag: '--help', value: true }, { flag: '-h', value: true }] }, group: 'general', help: 'print this help and exit' },
  { cliKey: 'version', kind: boolean(), cli: { flags: [{ flag: '--version', value: true }, { flag: '-V', value: true }] }, group: 'general', help: 'print the version and exit' },
];

const BY_KEY = new Map<string, OptionRow>(OPTION_ROWS.map((r) => [r.key, r]));

export function optionRow(key: OptionKey): OptionRow {
  const row = BY_KEY.get(key);
  if (row === undefined) throw new Error(`no option row for ${key}`);
  return row;
}

/** The copy() option names (top level, without the engine's switches). */
export const COPY_OPTION_KEYS: readonly string[] = OPTION_ROWS.map((r) => r.key).filter((k) => !k.startsWith('engine.'));
export const ENGINE_SWITCH_KEYS: readonly string[] = OPTION_ROWS.map((r) => r.key).filter((k) => k.startsWith('engine.')).map((k) => k.slice(7));
/** The options a job file's pair (or its defaults) may set. */
export const JOB_OPTION_KEYS: readonly string[] = OPTION_ROWS.filter((r) => r.job).map((r) => r.key);

/** Checks one value against its row. */
export function checkOption(key: OptionKey, value: unknown): Checked<unknown> {
  return optionRow(key).kind.fromValue(value);
}
