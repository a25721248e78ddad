// The copy itself on the command line (`devmove if=… of=…`): dd operands to
// copy() options, progress lines, signals, and the final report.
import fs from 'node:fs';
import tty from 'node:tty';

import { copy, type CopyJob } from '../api/copy';
import { COPY_OPTION_KEYS } from '../api/options';
import { rate } from '../api/values';
import { CopyAbortError, DevmoveError, describeErrno, isInvalidOption } from '../base/errors';
import {
  BACKGROUND_BLOCK_SIZE, BACKGROUND_QUEUE_DEPTH, DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH,
  type CopyOptions, type CopyProgress, type CopyResult, type ReconnectEvent,
} from '../base/types';
import { BLOCK_SIZE_MAX, RING_BYTES_MAX } from '../base/limits';
import { resolveDevicePath } from '../devices/manager';
import { UsageError, type DdInvocation } from './dd-args';
import { errorClause, EXIT_FAILURE, EXIT_OK, records, transferLine, type CliIo } from './output';
import { DEFAULT_COLUMNS, figuresOf, progressLine } from './progress-view';
import { onStatusSignal } from './signal-guard';

/** The copy() options a dd invocation's long options set, under the option table's names. */
const PASSED_THROUGH: readonly string[] = COPY_OPTION_KEYS.filter(
  (k) => !['source', 'target', 'targets', 'blockSize', 'queueDepth', 'engine', 'signal', 'onProgress', 'progressInterval'].includes(k),
);

/** Build copy() options from a dd invocation. */
export function optionsFromInvocation(inv: DdInvocation): CopyOptions {
  if (inv.source === undefined || inv.targets.length === 0) throw new UsageError('missing operand: need if=SOURCE and of=TARGET');
  const background = inv.background === true;
  // bs= takes up to 2 GiB as in dd; one I/O stops at 1 GiB.
  const blockSize = Math.min(Number(inv.blockSize ?? (background ? BACKGROUND_BLOCK_SIZE : DEFAULT_BLOCK_SIZE)), BLOCK_SIZE_MAX);
  let queueDepth = inv.queueDepth ?? (background ? BACKGROUND_QUEUE_DEPTH : DEFAULT_QUEUE_DEPTH);
  if (queueDepth * blockSize > RING_BYTES_MAX) {
    if (inv.queueDepth !== undefined) {
      throw new UsageError(`--queue-depth=${inv.queueDepth} with a ${blockSize}-byte block size needs more than 1 GiB of buffers`);
    }
    queueDepth = Math.max(1, Math.floor(RING_BYTES_MAX / blockSize));
  }
  const options: Record<string, unknown> = {};
  for (const key of PASSED_THROUGH) {
    const value = (inv as unknown as Record<string, unknown>)[key];
    if (value !== undefined) options[key] = value;
  }
  if (inv.targets.length === 1) delete options.onTargetError;
  Object.assign(options, {
    source: inv.source,
    ...(inv.targets.length === 1 ? { target: inv.targets[0] } : { targets: [...inv.targets] }),
    blockSize,
    queueDepth,
    direct: { source: inv.directSource, target: inv.directTarget },
    // GNU dd opens the target with O_TRUNC when the seek is less than one
    // output block (seek_records == 0) and ftruncate()s it at the seek offset
    // otherwise; reproduce both.
    truncateTarget: inv.truncate ? (Math.floor(inv.targetOffset / inv.obs) === 0 ? 0 : inv.targetOffset) : false,
    engine: { ...inv.engine },
  });
  return options as unknown as CopyOptions;
}

/** A rate file's content: a rate ('200M', '50MB/s'), or 0 / 'unlimited' for no cap. */
export function parseRateFile(text: string): number {
  const value = text.trim();
  if (value === 'none') return 0;
  const read = rate().fromText?.(value);
  if (read === undefined || !read.ok) throw new UsageError(`'${value}' ${read?.ok === false ? read.rejection.reason : 'is not a rate'}`);
  return read.value;
}

/** The operand's path as copy() opens it (node names resolved); the name itself when that fails. */
function resolvedOrSame(nameOrPath: string | undefined): string | undefined {
  if (nameOrPath === undefined) return undefined;
  try {
    return resolveDevicePath(nameOrPath);
  } catch {
    return nameOrPath;
  }
}

/** System calls that fail only on a target: '-' is then standard output, not standard input. */
const TARGET_SYSCALLS = new Set(['write', 'lseek', 'ftruncate', 'fdatasync', 'fsync', 'fallocate']);

function operandFor(path: string, inv: DdInvocation, syscall: string | undefined): string {
  if (path === '-' && inv.targets.includes('-') && TARGET_SYSCALLS.has(syscall ?? '')) return 'of=-';
  if (path === inv.source || path === resolvedOrSame(inv.source)) return `if=${path}`;
  if (inv.targets.some((t) => path === t || path === resolvedOrSame(t))) return `of=${path}`;
  return path;
}

function describeFailure(error: DevmoveError, inv: DdInvocation, argv: readonly string[] | undefined): string {
  const who = error.path !== undefined ? `${operandFor(error.path, inv, error.syscall)}: ` : '';
  const what = error.detail ?? describeErrno(error.errno)[1];
  let line = `${who}${what} ${errorClause(error)}`;
  const r = error.result;
  if (r && error.offset !== undefined && ['read', 'write', 'fallocate'].includes(error.syscall ?? '')) {
    line += `; ${error.bytesCopied} bytes copied and flushed`;
    const partial = r.target.unfinishedBytes ?? 0;
    if (partial > 0) line += ` (and ${partial} more written by the unfinished write)`;
    if (error.syscall === 'read' && error.offset !== undefined && error.offset > r.range.offset && !r.mapfile?.resumed) {
      line += `, everything before byte ${error.offset} of the source is on the target`;
    }
  }
  if (r?.mapfile) line += `; ${mapfileNote(r.mapfile, argv)}`;
  return line;
}

/**
 * How much of devmove's own report each status= level shows, following what
 * dd does with its own messages: status=none leaves only errors (dd is silent
 * even about unreadable blocks under conv=noerror then), status=noxfer drops
 * the statistics but keeps what explains a failing exit status.
 */
type SummaryKind = 'statistic' | 'warning' | 'error';

export function summaryShown(kind: SummaryKind, status: DdInvocation['status']): boolean {
  if (kind === 'error') return true;
  if (status === 'none') return false;
  return status !== 'noxfer' || kind === 'warning';
}

/** The verify pass in one line: how it compared, and what it read of the source again. */
function verifiedLine(v: NonNullable<CopyResult['verify']>): string {
  const line = `verified: ${v.bytesCompared} bytes identical on source and target`;
  if (v.mode === 'strict') return `${line} (strict: source read again)`;
  const behind = v.behindBytes ? `, ${v.behindBytes} bytes of it behind the copy` : '';
  return `${line} (target read back against the copy's ${v.digest ?? ''} block digests${behind}; source read again: ${v.sourceBytesRead} bytes)`;
}

/** Lines after a successful copy for what dd does not have: bad blocks, dropped targets, zero blocks, verify, the map. */
export function summaryLines(
  result: CopyResult,
  inv: DdInvocation,
  argv?: readonly string[],
): Array<{ kind: SummaryKind; text: string }> {
  const lines: Array<{ kind: SummaryKind; text: string }> = [];
  // The automatic choice fell back: say so, and why (a silent downgrade would hide a slower copy).
  if (result.ioEngineNote) lines.push({ kind: 'warning', text: `I/O engine: threads, because ${result.ioEngineNote}` });
  if (result.bad.bytes > 0) {
    const shown = result.bad.ranges.slice(0, 5).map(([o, l]) => `${o}+${l}`).join(', ');
    const more = result.bad.rangeCount > 5 ? `, … (${result.bad.rangeCount} ranges)` : '';
    lines.push({ kind: 'warning', text: `if=${result.source.path}: ${result.bad.bytes} unreadable bytes zero-filled on the target, at ${shown}${more}` });
  }
  for (const t of result.targets) {
    if (t.dropped) lines.push({ kind: 'error', text: `of=${t.path}: dropped after an error: ${t.error?.message ?? 'unknown error'}` });
  }
  if (inv.zeroBlocks !== 'write' && result.zero.bytes > 0) {
    lines.push({ kind: 'statistic', text: `zero blocks: ${result.zero.bytes} bytes found, ${result.zero.skipped} skipped, ${result.zero.discarded} discarded` });
  }
  if (result.domain) {
    lines.push({ kind: 'statistic', text: `domain mapfile ${result.domain.path}: ${result.domain.bytes} of ${result.range.length} bytes in the domain; the rest of the target was left as it was` });
  }
  if (result.changed) {
    for (const t of result.targets) {
      if (!t.changed) continue;
      const name = result.targets.length > 1 ? `of=${t.path}: ` : '';
      lines.push({ kind: 'statistic', text: `${name}only changed: ${t.changed.bytesCompared} bytes compared, ${t.changed.bytesWritten} differed and were written` });
    }
  }
  if (result.verify) lines.push({ kind: 'statistic', text: verifiedLine(result.verify) });
  if (result.mapfile) {
    const m = result.mapfile;
    const resumed = m.resumed ? ` (resumed; ${m.previouslyFinished} bytes were already done)` : '';
    // Bad ranges in the map make the exit status 1: then the line is the reason.
    lines.push({
      kind: m.bad > 0 ? 'warning' : 'statistic',
      text: `mapfile ${m.path}: ${m.finished} bytes finished, ${m.bad} bad, ${m.nonTried} not tried${resumed}`,
    });
    // A dropped target lacks what the others got after it failed: the map stopped there.
    if (m.nonTried > 0 && result.targets.some((t) => t.dropped)) {
      lines.push({ kind: 'error', text: `to bring the dropped target up to date, run: ${againCommand(argv)}` });
    }
  }
  return lines;
}

/**
 * status=progress as dd prints it: nothing in the first second, then one line
 * a second with whole seconds, each over the last ('\r', padded with spaces
 * where it got shorter); a newline before anything else is printed.
 */
class DdProgressLine {
  private width = 0;
  private nextSecond = 1;
  constructor(private readonly stderr: CliIo['stderr']) {}

  update(bytes: number, seconds: number): void {
    if (seconds < this.nextSecond) return;
    this.nextSecond = Math.floor(seconds) + 1;
    const line = transferLine(bytes, seconds, true);
    this.stderr.write(`\r${line}${' '.repeat(Math.max(0, this.width - line.length))}`);
    this.width = line.length;
  }

  end(): void {
    if (this.width > 0) this.stderr.write('\n');
    this.width = 0;
  }
}

/**
 * The bytes dd would count as output: the finished ones, and what a write cut
 * short left on the (first) target, which dd shows as a partial record
 * (coreutils tests/dd/partial-write.sh: `ulimit -f`).
 */
function bytesOut(bytesCopied: number, result: CopyResult | undefined): number {
  return bytesCopied + (result?.target.unfinishedBytes ?? 0);
}

export interface RunContext {
  io: CliIo;
  /** Signals the CLI handles while a copy runs; false in library-hosted runs (the demo passes true). */
  handleSignals: boolean;
  /** The command's arguments, for the line that says how to resume. */
  argv?: readonly string[];
}

/** A word as a POSIX shell reads it back: bare when safe, else single-quoted. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command that continues this copy from its mapfile. */
function againCommand(argv: readonly string[] | undefined): string {
  return argv === undefined ? 'the same command again' : `devmove ${argv.map(shellQuote).join(' ')}`;
}

/** What the mapfile holds after a copy that did not finish, and the exact command that continues it. */
function mapfileNote(m: NonNullable<CopyResult['mapfile']>, argv: readonly string[] | undefined): string {
  const done = m.finished + m.bad;
  if (done === 0) return `mapfile ${m.path} records nothing finished yet`;
  return `mapfile ${m.path} records ${m.finished} bytes finished${m.bad > 0 ? ` and ${m.bad} bad` : ''}; resume with: ${againCommand(argv)}`;
}

/** Where the report goes: standard output, or standard error when the data goes to standard output (of=-). */
function reportStream(inv: DdInvocation, io: CliIo): CliIo['stdout'] {
  return inv.targets.includes('-') ? io.stderr : io.stdout;
}

/**
 * Standard input or output as data must not be a terminal: typed keys are no
 * disk image, and a disk image on a terminal is garbage (zstd refuses the same).
 */
function refuseTerminals(inv: DdInvocation): void {
  if (inv.source === '-' && tty.isatty(0)) {
    throw new UsageError('standard input is a terminal: give if=SOURCE, or pipe the data in (… | devmove of=TARGET)');
  }
  if (inv.targets.includes('-') && tty.isatty(1)) {
    throw new UsageError('standard output is a terminal: give of=TARGET, or pipe the data on (devmove if=SOURCE | …)');
  }
}

/**
 * The reader of standard output went away (EPIPE): end as GNU dd does under the
 * default disposition, killed by SIGPIPE, silently (exit status 141 in a shell).
 * Node ignores SIGPIPE; a listener added and removed leaves libuv's default
 * action (terminate) in place. If the process is still alive, it exits 141.
 */
function dieOfSigpipe(): number {
  const nothing = (): void => undefined;
  process.on('SIGPIPE', nothing);
  process.off('SIGPIPE', nothing);
  process.kill(process.pid, 'SIGPIPE');
  return 128 + 13;
}

/** What is on stderr while a copy runs: the terminal's live line, or dd's status=progress lines. */
class ProgressView {
  private liveShown = false;
  private readonly ddLine: DdProgressLine | undefined;
  private readonly live: boolean;

  constructor(private readonly inv: DdInvocation, private readonly io: CliIo) {
    this.live = inv.status === 'default' && !inv.json && io.stderr.isTTY === true;
    this.ddLine = inv.status === 'progress' && !inv.json ? new DdProgressLine(io.stderr) : undefined;
  }

  show(p: CopyProgress): void {
    if (this.inv.json) {
      reportStream(this.inv, this.io).write(`${JSON.stringify({ type: 'progress', ...p })}\n`);
    } else if (this.live) {
      this.io.stderr.write(`\r\x1b[K${progressLine(figuresOf(p), (this.io.stderr as { columns?: number }).columns || DEFAULT_COLUMNS)}`);
      this.liveShown = true;
    } else {
      this.ddLine?.update(p.bytesDone, p.elapsedSeconds);
    }
  }

  /** A lost NBD server, and the copy about to start again from the mapfile (--reconnect). */
  reconnecting(e: ReconnectEvent): void {
    const line = `${e.error.message}; starting again from the mapfile in ${e.delaySeconds} s (reconnect ${e.attempt} of ${e.of})`;
    if (this.inv.json) {
      const code = (e.error as { code?: string }).code;
      reportStream(this.inv, this.io).write(`${JSON.stringify({ type: 'reconnect', attempt: e.attempt, of: e.of, delaySeconds: e.delaySeconds, code, message: e.error.message })}\n`);
    }
    this.clear();
    this.io.stderr.write(`devmove: ${line}\n`);
  }

  /** Before any other line on stderr. */
  clear(): void {
    if (this.liveShown) this.io.stderr.write('\r\x1b[K');
    this.liveShown = false;
    this.ddLine?.end();
  }
}

/** --rate-file: the cap follows the file's content. Returns the function that stops watching. */
function watchRateFile(job: CopyJob, file: string, io: CliIo, view: ProgressView): () => void {
  let lastText: string | undefined;
  const apply = (): void => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return; // not there (yet): keep the current rate
    }
    if (text === lastText) return;
    lastText = text;
    try {
      job.setRate(parseRateFile(text));
    } catch (error) {
      view.clear();
      io.stderr.write(`devmove: --rate-file ${file}: ${error instanceof Error ? error.message : String(error)}; keeping ${job.rate || 'no'} cap\n`);
    }
  };
  apply();
  // Polled by content, not fs.watchFile: watchFile takes its first stat as the baseline some time
  // after it is called, so a change between the first read and that stat was never seen (the copy
  // kept the old cap to the end). Reading a few bytes four times a second costs nothing.
  const timer = setInterval(apply, 250);
  timer.unref();
  return () => clearInterval(timer);
}

/** dd's statistics: records in and out, then (unless status=noxfer) the transfer line. */
function printStats(inv: DdInvocation, io: CliIo, view: ProgressView, bytes: number, seconds: number, read = bytes): void {
  view.clear();
  if (inv.status === 'none' || inv.json) return;
  io.stderr.write(`${records(read, inv.ibs)} in\n${records(bytes, inv.obs)} out\n`);
  if (inv.status !== 'noxfer') io.stderr.write(`${transferLine(bytes, seconds)}\n`);
}

function reportSuccess(inv: DdInvocation, io: CliIo, result: CopyResult, argv: readonly string[] | undefined): number {
  const out = reportStream(inv, io);
  if (inv.json) {
    out.write(`${JSON.stringify({ type: 'result', ...result })}\n`);
  } else {
    if (result.hash) out.write(`${result.hash.algorithm.toUpperCase()} (${result.source.path}) = ${result.hash.hex}\n`);
    for (const line of summaryLines(result, inv, argv)) {
      if (summaryShown(line.kind, inv.status)) io.stderr.write(`devmove: ${line.text}\n`);
    }
  }
  // Unlike dd (which exits 0 after conv=noerror skipped unreadable blocks):
  // bad blocks or a dropped target make the exit status 1.
  const degraded = result.bad.bytes > 0 || (result.mapfile?.bad ?? 0) > 0 || result.targets.some((t) => t.dropped);
  return degraded ? EXIT_FAILURE : EXIT_OK;
}

function reportFailure(inv: DdInvocation, io: CliIo, error: DevmoveError, argv: readonly string[] | undefined): number {
  const line = describeFailure(error, inv, argv);
  if (inv.json) {
    const { code, errno, syscall, operation, path, offset, bytesCopied } = error;
    reportStream(inv, io).write(`${JSON.stringify({ type: 'error', code, errno, syscall, operation, path, offset, message: line, bytesCopied })}\n`);
  }
  io.stderr.write(`devmove: ${line}\n`);
  return EXIT_FAILURE;
}

/** Starts the copy job; only the option checks' own errors become usage errors (exit 2). */
function startCopy(inv: DdInvocation): CopyJob {
  const options = optionsFromInvocation(inv);
  // dd's status=progress prints on whole seconds: sample often enough to hit them.
  options.progressInterval = inv.json ? 1000 : 200;
  try {
    return copy(options);
  } catch (error) {
    // A TypeError from a bug is not a usage error.
    if (isInvalidOption(error)) throw new UsageError(error.message);
    throw error;
  }
}

/**
 * SIGINT/SIGTERM cancel the job (a second one exits without waiting for the drain); SIGUSR1 prints
 * dd's statistics so far. Installed only when the CLI owns the process (ctx.handleSignals).
 */
class CopySignals {
  interruptedBy: NodeJS.Signals | undefined;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.interruptedBy !== undefined) {
      this.view.clear();
      this.io.stderr.write(`devmove: ${signal} again: exiting without waiting for in-flight I/O\n`);
      process.exit(signal === 'SIGTERM' ? 143 : 130);
    }
    this.interruptedBy = signal;
    this.job.cancel();
  };
  private readonly onUsr1 = (): void => {
    const p = this.job.progress;
    this.view.clear();
    this.io.stderr.write(`${records(p.bytesDone, this.inv.ibs)} in\n${records(p.bytesDone, this.inv.obs)} out\n${transferLine(p.bytesDone, p.elapsedSeconds)}\n`);
  };

  constructor(private readonly job: CopyJob, private readonly inv: DdInvocation, private readonly io: CliIo,
    private readonly view: ProgressView, private readonly installed: boolean) {
    if (!installed) return;
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    onStatusSignal(this.onUsr1);
  }

  remove(): void {
    if (!this.installed) return;
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    onStatusSignal(undefined);
  }
}

/** A cancelled copy: dd's statistics, what was flushed, and the signal's exit code (130 or 143). */
function reportAbort(inv: DdInvocation, ctx: RunContext, view: ProgressView, error: CopyAbortError, seconds: number, signal: NodeJS.Signals): number {
  const { io } = ctx;
  printStats(inv, io, view, bytesOut(error.bytesCopied, error.result), seconds);
  const mapNote = error.result?.mapfile ? `; ${mapfileNote(error.result.mapfile, ctx.argv)}` : '';
  const line = `interrupted by ${signal} after ${error.bytesCopied} bytes; what was written has been flushed${mapNote}`;
  if (inv.json) reportStream(inv, io).write(`${JSON.stringify({ type: 'error', code: 'ABORT_ERR', message: line, bytesCopied: error.bytesCopied })}\n`);
  io.stderr.write(`devmove: ${line}\n`);
  return signal === 'SIGTERM' ? 143 : 130;
}

/** Runs one copy as the CLI does and returns the exit code. */
export async function runCopy(inv: DdInvocation, ctx: RunContext): Promise<number> {
  const { io } = ctx;
  refuseTerminals(inv);
  const job = startCopy(inv);
  const view = new ProgressView(inv, io);
  job.on('progress', (p) => view.show(p));
  job.on('reconnect', (e) => view.reconnecting(e));
  const stopWatching = inv.rateFile === undefined ? undefined : watchRateFile(job, inv.rateFile, io, view);
  const signals = new CopySignals(job, inv, io, view, ctx.handleSignals);
  try {
    const result: CopyResult = await job;
    // The engine's own seconds start later than the job's clock that the
    // progress lines show: the final time is never the smaller one.
    printStats(inv, io, view, result.bytesCopied, Math.max(result.seconds, job.progress.elapsedSeconds));
    return reportSuccess(inv, io, result, ctx.argv);
  } catch (error) {
    const seconds = job.progress.elapsedSeconds;
    if (error instanceof CopyAbortError) return reportAbort(inv, ctx, view, error, seconds, signals.interruptedBy ?? 'SIGINT');
    view.clear();
    if (!(error instanceof DevmoveError)) throw error;
    if (error.code === 'EPIPE' && error.path === '-' && ctx.handleSignals) return dieOfSigpipe();
    const bytes = bytesOut(error.bytesCopied, error.result);
    // Records in: what was read, which a failed write may leave ahead of what was written.
    if (bytes > 0) printStats(inv, io, view, bytes, seconds, Math.max(bytes, error.result?.bytesRead ?? 0));
    return reportFailure(inv, io, error, ctx.argv);
  } finally {
    stopWatching?.();
    signals.remove();
  }
}
