// `devmove run JOBFILE [--json] [--quiet]`: runs the pairs of a job file at once (job.ts).
//
// Human output: one line per pair as it finishes, then a summary. --json: one JSON object
// per line on stdout (pair-start, progress, pair-budget, pair-done, pair-failed events, then
// {"type":"result", ...}). Exit status: 0 every pair done, 1 some pair failed, 2 the job
// file is unreadable or invalid (one line naming the field), 130/143 after SIGINT/SIGTERM
// (every pair cancelled; what was written has been flushed).
import fs from 'node:fs';
import path from 'node:path';

import { CopyAbortError, DevmoveError, describeErrno } from '../base/errors';
import { runJob, type JobEvent, type JobResult, type PairOutcome } from '../jobs/job';
import { JobFileError, parseJobFile, type JobSpec } from '../jobs/jobfile';
import { formatBytesIEC, formatBytesSI } from '../base/size';
import type { CopyProgress } from '../base/types';
import { JobDisplay } from './job-display';
import { errorClause } from './output';
import { onStatusSignal } from './signal-guard';

export interface RunIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

export interface RunCommandOptions {
  /** Cancels the job (the CLI cancels it on SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Handle SIGINT/SIGTERM while the job runs (default true). */
  handleSignals?: boolean;
}

export function runHelpText(): string {
  return `Usage: devmove run JOBFILE [--json] [--quiet]
Run the copies of a job file at once, sharing a bounded number of I/Os in
flight and of buffer memory; each pair has its own progress and result, and
one pair failing does not stop the others. JOBFILE '-' reads standard input.

A job file (JSON, version 1):
  { "version": 1,
    "maxQueueDepth": 16,          I/Os in flight over all pairs (default 8 per pair)
    "maxBufferMemory": "256M",    buffers over all pairs (default maxQueueDepth x 512K)
    "defaults": { "blockSize": "1M" },          options for every pair
    "pairs": [
      { "name": "db", "source": "/dev/sdb", "target": "/dev/sdc" },
      { "name": "logs", "source": "sdd", "targets": ["/dev/sde", "logs.img"],
        "sourceOffset": "1M", "length": "4G", "durability": "fsync" } ] }

Pair options: source, target or targets, sourceOffset, targetOffset, length,
maxLength, blockSize, queueDepth, direct, durability, createTarget,
truncateTarget, force, rate, background, noError, retries, mapfile, retryBad,
verify, onlyChanged, hash, zeroBlocks, onTargetError (as in copy()). Relative
paths are resolved against the job file's directory.

  --json   one JSON object per line: pair-start, progress, pair-budget (a
           finished pair's share of the budget went to this one), pair-done
           and pair-failed events, then {"type":"result","pairs":[...]}
  --quiet  print only failures (with --json: no progress events)

On a terminal (standard error), a live line per pair (bar, percent, rate,
ETA) and a total are redrawn in place; each pair's result line is printed as
it finishes.

Exit status: 0 every pair done, 1 a pair failed, 2 bad job file or usage,
130 after SIGINT, 143 after SIGTERM (every pair cancelled and flushed).
`;
}

class RunUsageError extends Error {}

interface ParsedArgs {
  help: boolean;
  json: boolean;
  quiet: boolean;
  file?: string;
}

function parseArgs(args: readonly string[]): ParsedArgs {
  const parsed: ParsedArgs = { help: false, json: false, quiet: false };
  let optionsEnded = false;
  for (const arg of args) {
    if (!optionsEnded && arg === '--') optionsEnded = true;
    else if (!optionsEnded && arg === '--json') parsed.json = true;
    else if (!optionsEnded && (arg === '--quiet' || arg === '-q')) parsed.quiet = true;
    else if (!optionsEnded && (arg === '--help' || arg === '-h')) parsed.help = true;
    else if (!optionsEnded && arg.startsWith('-') && arg !== '-') throw new RunUsageError(`run: unknown option '${arg}'`);
    else if (parsed.file !== undefined) throw new RunUsageError(`run takes one JOBFILE, not also '${arg}'`);
    else parsed.file = arg;
  }
  if (!parsed.help && parsed.file === undefined) throw new RunUsageError("run needs a JOBFILE (usage: devmove run JOBFILE [--json] [--quiet])");
  return parsed;
}

function readJob(file: string): JobSpec {
  let text: string;
  try {
    text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    const errno = (error as NodeJS.ErrnoException).errno;
    const what = errno !== undefined ? describeErrno(errno)[1] : (error as Error).message;
    throw new JobFileError({ fileName: file === '-' ? 'stdin' : file, reason: `cannot read the job file: ${what} (${code})` });
  }
  if (file === '-') return parseJobFile(text, 'stdin', { baseDir: process.cwd() });
  return parseJobFile(text, file, { baseDir: path.dirname(path.resolve(file)) });
}

/** One line for a failure: "/dev/loop5: target too small: … (ENOSPC from write at byte 0)". */
export function describeError(error: unknown): string {
  if (error instanceof DevmoveError) {
    const who = error.path !== undefined ? `${error.path}: ` : '';
    const what = error.detail ?? describeErrno(error.errno)[1];
    return `${who}${what} ${errorClause(error)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function errorJson(error: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { name: error.name, message: describeError(error) };
  if (error instanceof DevmoveError) {
    Object.assign(out, { code: error.code, errno: error.errno, syscall: error.syscall, operation: error.operation, path: error.path, offset: error.offset, detail: error.detail, bytesCopied: error.bytesCopied });
  } else if (error instanceof CopyAbortError) {
    Object.assign(out, { code: error.code, bytesCopied: error.bytesCopied });
  } else if (typeof (error as { code?: unknown }).code === 'string') {
    out.code = (error as unknown as { code: string }).code;
  }
  return out;
}

function eventJson(event: JobEvent): Record<string, unknown> {
  return event.type === 'pair-failed' ? { type: event.type, pair: event.pair, error: errorJson(event.error) } : { ...event };
}

function outcomeJson(p: PairOutcome): Record<string, unknown> {
  const out: Record<string, unknown> = {
    name: p.name,
    status: p.status,
    source: p.source,
    targets: p.targets,
    queueDepth: p.queueDepth,
    queueDepthGranted: p.queueDepthGranted,
    blockSize: p.blockSize,
    bytesCopied: p.bytesCopied,
    seconds: p.seconds,
    bytesPerSecond: p.bytesPerSecond,
  };
  if (p.result !== undefined) out.result = p.result;
  if (p.error !== undefined) out.error = errorJson(p.error);
  return out;
}

function seconds(s: number): string {
  return s === 0 ? '0' : String(Number(s.toPrecision(3)));
}

function bytesText(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${bytes} bytes (${formatBytesIEC(bytes)})`;
}

export type PairLine = Pick<PairOutcome, 'name' | 'status' | 'bytesCopied'> & Partial<Pick<PairOutcome, 'seconds' | 'bytesPerSecond' | 'error'>>;

/** "db: 67108864 bytes (64 MiB) copied in 0.52 s, 129 MB/s" or "logs: failed after …: reason". */
export function pairLine(p: PairLine): string {
  if (p.status === 'done') return `${p.name}: ${bytesText(p.bytesCopied)} copied in ${seconds(p.seconds ?? 0)} s, ${formatBytesSI(p.bytesPerSecond ?? 0)}/s`;
  if (p.status === 'cancelled') return `${p.name}: cancelled after ${bytesText(p.bytesCopied)}; what was written has been flushed`;
  return `${p.name}: failed after ${bytesText(p.bytesCopied)}: ${describeError(p.error)}`;
}

export function summaryLine(result: JobResult): string {
  const count = (status: PairOutcome['status']): number => result.pairs.filter((p) => p.status === status).length;
  const parts = [`${count('done')} done`];
  if (count('failed') > 0) parts.push(`${count('failed')} failed`);
  if (count('cancelled') > 0) parts.push(`${count('cancelled')} cancelled`);
  const n = result.pairs.length;
  return `${n} ${n === 1 ? 'pair' : 'pairs'}: ${parts.join(', ')}; ${bytesText(result.bytesCopied)} in ${seconds(result.seconds)} s`;
}

/** The job file a command line names, or the exit status of a usage error (or --help). */
function readCommand(args: readonly string[], io: RunIo): { parsed: ParsedArgs; spec: JobSpec } | number {
  try {
    const parsed = parseArgs(args);
    if (parsed.help) {
      io.stdout.write(runHelpText());
      return 0;
    }
    return { parsed, spec: readJob(parsed.file as string) };
  } catch (error) {
    if (error instanceof RunUsageError || error instanceof JobFileError) {
      io.stderr.write(`devmove: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

/** What the command prints while the job runs: JSON lines, a line per finished pair, a live display, SIGUSR1 statistics. */
class JobReporter {
  private readonly latest = new Map<string, CopyProgress>();
  private readonly live: JobDisplay | undefined;

  constructor(
    private readonly io: RunIo,
    private readonly spec: JobSpec,
    private readonly parsed: ParsedArgs,
  ) {
    // On a terminal: a live line per pair and a total (plain lines otherwise, and with --json/--quiet).
    this.live = !parsed.json && !parsed.quiet && io.stderr.isTTY === true ? new JobDisplay(io.stderr, spec.pairs.map((p) => p.name)) : undefined;
  }

  write(object: Record<string, unknown>): void {
    this.io.stdout.write(`${JSON.stringify(object)}\n`);
  }

  /** SIGUSR1: where every pair is, as dd prints its statistics. */
  status(): void {
    for (const pair of this.spec.pairs) {
      const p = this.latest.get(pair.name);
      this.io.stderr.write(`devmove: ${pair.name}: ${p === undefined ? 'waiting' : `${bytesText(p.bytesDone)}${p.bytesTotal === undefined ? '' : ` of ${bytesText(p.bytesTotal)}`}, ${formatBytesSI(p.bytesPerSecond)}/s`}\n`);
    }
  }

  event(event: JobEvent): void {
    if (event.type === 'progress') this.latest.set(event.pair, event);
    this.live?.update(event);
    if (this.parsed.json) {
      if (!(this.parsed.quiet && event.type === 'progress')) this.write(eventJson(event));
    } else if (event.type === 'pair-done') {
      const { result } = event;
      this.outcome({ name: event.pair, status: 'done', bytesCopied: result.bytesCopied, seconds: result.seconds, bytesPerSecond: result.bytesPerSecond });
    } else if (event.type === 'pair-failed') {
      const bytes = (event.error as { bytesCopied?: unknown }).bytesCopied;
      const status = event.error instanceof CopyAbortError ? 'cancelled' : 'failed';
      this.outcome({ name: event.pair, status, bytesCopied: typeof bytes === 'number' ? bytes : 0, error: event.error });
    }
    if (event.type === 'pair-done' || event.type === 'pair-failed') this.live?.draw();
  }

  /** One line per pair as it finishes; --quiet keeps only the failures, on stderr. */
  private outcome(line: PairLine): void {
    this.live?.clear();
    if (!this.parsed.quiet) this.io.stdout.write(`${pairLine(line)}\n`);
    else if (line.status === 'failed') this.io.stderr.write(`devmove: ${pairLine(line)}\n`);
  }

  clear(): void {
    this.live?.clear();
  }
}

/** SIGINT/SIGTERM cancel the job, SIGUSR1 reports; undone by `release()`. */
class SignalScope {
  readonly controller = new AbortController();
  interruptedBy: NodeJS.Signals | undefined;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.interruptedBy ??= signal;
    this.controller.abort(new Error(`interrupted by ${signal}`));
  };
  private readonly onAbort = (): void => this.controller.abort(this.options.signal?.reason);

  constructor(
    private readonly options: RunCommandOptions,
    reporter: JobReporter,
  ) {
    if (this.handles) {
      process.on('SIGINT', this.onSignal);
      process.on('SIGTERM', this.onSignal);
      onStatusSignal(() => reporter.status());
    }
    if (options.signal?.aborted) this.onAbort();
    else options.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private get handles(): boolean {
    return this.options.handleSignals ?? true;
  }

  release(): void {
    if (this.handles) {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      onStatusSignal(undefined);
    }
    this.options.signal?.removeEventListener('abort', this.onAbort);
  }
}

/** The summary and the exit status of a job that ran. */
function finishReport(result: JobResult, reporter: JobReporter, parsed: ParsedArgs, io: RunIo, signal: NodeJS.Signals | undefined): number {
  if (parsed.json) {
    reporter.write({ type: 'result', ok: result.ok, cancelled: result.cancelled, seconds: result.seconds, bytesCopied: result.bytesCopied, pairs: result.pairs.map(outcomeJson) });
  } else if (!parsed.quiet) {
    io.stdout.write(`${summaryLine(result)}\n`);
  }
  if (result.cancelled) {
    const cancelled = result.pairs.filter((p) => p.status === 'cancelled').length;
    io.stderr.write(
      `devmove: ${signal !== undefined ? `interrupted by ${signal}` : 'cancelled'}; ${cancelled} of ${result.pairs.length} pairs cancelled, what was written has been flushed\n`,
    );
    return signal === 'SIGTERM' ? 143 : 130;
  }
  if (!result.ok) {
    const failed = result.pairs.filter((p) => p.status !== 'done');
    if (!parsed.quiet || parsed.json) io.stderr.write(`devmove: ${failed.length} of ${result.pairs.length} pairs failed: ${failed.map((p) => p.name).join(', ')}\n`);
    return 1;
  }
  return 0;
}

/** `devmove run ARGS…`; resolves to the exit status. */
export async function runRunCommand(args: readonly string[], io: RunIo, options: RunCommandOptions = {}): Promise<number> {
  const command = readCommand(args, io);
  if (typeof command === 'number') return command;
  const { parsed, spec } = command;
  const reporter = new JobReporter(io, spec, parsed);
  const signals = new SignalScope(options, reporter);
  let result: JobResult;
  try {
    result = await runJob(spec, { signal: signals.controller.signal, onEvent: (e) => reporter.event(e), ...(parsed.json ? { progressInterval: 1000 } : {}) });
  } catch (error) {
    io.stderr.write(`devmove: ${error instanceof JobFileError ? error.message : describeError(error)}\n`);
    return error instanceof JobFileError ? 2 : 1;
  } finally {
    reporter.clear();
    signals.release();
  }
  return finishReport(result, reporter, parsed, io, signals.interruptedBy);
}
