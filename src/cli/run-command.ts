// `devmove run JOBFILE [--json] [--quiet]`: runs the pairs of a job file at once (job.ts).
//
// Human output: one line per pair as it finishes, then a summary. --json: one JSON object
// per line on stdout (pair-start, progress, pair-done, pair-failed events, then
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
verify, hash, zeroBlocks, onTargetError (as in copy()). Relative paths are
resolved against the job file's directory.

  --json   one JSON object per line: pair-start, progress, pair-done and
           pair-failed events, then {"type":"result","pairs":[...]}
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

/** `devmove run ARGS…`; resolves to the exit status. */
export async function runRunCommand(args: readonly string[], io: RunIo, options: RunCommandOptions = {}): Promise<number> {
  let parsed: ParsedArgs;
  let spec: JobSpec;
  try {
    parsed = parseArgs(args);
    if (parsed.help) {
      io.stdout.write(runHelpText());
      return 0;
    }
    spec = readJob(parsed.file as string);
  } catch (error) {
    if (error instanceof RunUsageError || error instanceof JobFileError) {
      io.stderr.write(`devmove: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const { json, quiet } = parsed;
  const write = (object: Record<string, unknown>): void => {
    io.stdout.write(`${JSON.stringify(object)}\n`);
  };

  // SIGUSR1: where every pair is, as dd prints its statistics.
  const latest = new Map<string, CopyProgress>();
  const onStatus = (): void => {
    for (const pair of spec.pairs) {
      const p = latest.get(pair.name);
      io.stderr.write(`devmove: ${pair.name}: ${p === undefined ? 'waiting' : `${bytesText(p.bytesDone)} of ${bytesText(p.bytesTotal)}, ${formatBytesSI(p.bytesPerSecond)}/s`}\n`);
    }
  };
  const controller = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    interruptedBy ??= signal;
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  const onAbort = (): void => controller.abort(options.signal?.reason);
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    onStatusSignal(onStatus);
  }
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  // On a terminal: a live line per pair and a total (plain lines otherwise, and with --json/--quiet).
  const live = !json && !quiet && io.stderr.isTTY === true ? new JobDisplay(io.stderr, spec.pairs.map((p) => p.name)) : undefined;
  // One line per pair as it finishes; --quiet keeps only the failures, on stderr.
  const printOutcome = (line: PairLine): void => {
    live?.clear();
    if (!quiet) io.stdout.write(`${pairLine(line)}\n`);
    else if (line.status === 'failed') io.stderr.write(`devmove: ${pairLine(line)}\n`);
  };
  const onEvent = (event: JobEvent): void => {
    if (event.type === 'progress') latest.set(event.pair, event);
    live?.update(event);
    if (json) {
      if (!(quiet && event.type === 'progress')) write(eventJson(event));
    } else if (event.type === 'pair-done') {
      const { result } = event;
      printOutcome({ name: event.pair, status: 'done', bytesCopied: result.bytesCopied, seconds: result.seconds, bytesPerSecond: result.bytesPerSecond });
    } else if (event.type === 'pair-failed') {
      const bytes = (event.error as { bytesCopied?: unknown }).bytesCopied;
      printOutcome({
        name: event.pair,
        status: event.error instanceof CopyAbortError ? 'cancelled' : 'failed',
        bytesCopied: typeof bytes === 'number' ? bytes : 0,
        error: event.error,
      });
    }
    if (event.type === 'pair-done' || event.type === 'pair-failed') live?.draw();
  };

  let result: JobResult;
  try {
    result = await runJob(spec, { signal: controller.signal, onEvent, ...(json ? { progressInterval: 1000 } : {}) });
  } catch (error) {
    if (error instanceof JobFileError) {
      io.stderr.write(`devmove: ${error.message}\n`);
      return 2;
    }
    io.stderr.write(`devmove: ${describeError(error)}\n`);
    return 1;
  } finally {
    live?.clear();
    if (handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      onStatusSignal(undefined);
    }
    options.signal?.removeEventListener('abort', onAbort);
  }

  if (json) {
    write({ type: 'result', ok: result.ok, cancelled: result.cancelled, seconds: result.seconds, bytesCopied: result.bytesCopied, pairs: result.pairs.map(outcomeJson) });
  } else if (!quiet) {
    io.stdout.write(`${summaryLine(result)}\n`);
  }
  if (result.cancelled) {
    const signal = interruptedBy;
    const cancelled = result.pairs.filter((p) => p.status === 'cancelled').length;
    io.stderr.write(
      `devmove: ${signal !== undefined ? `interrupted by ${signal}` : 'cancelled'}; ${cancelled} of ${result.pairs.length} pairs cancelled, what was written has been flushed\n`,
    );
    return signal === 'SIGTERM' ? 143 : 130;
  }
  if (!result.ok) {
    const failed = result.pairs.filter((p) => p.status !== 'done');
    if (!quiet || json) io.stderr.write(`devmove: ${failed.length} of ${result.pairs.length} pairs failed: ${failed.map((p) => p.name).join(', ')}\n`);
    return 1;
  }
  return 0;
}
