// The copy itself on the command line (`devmove if=… of=…`): dd operands to
// copy() options, progress lines, signals, and the final report.
import fs from 'node:fs';

import { copy, type CopyJob } from '../api/copy';
import { CopyAbortError, DevmoveError, describeErrno } from '../base/errors';
import {
  BACKGROUND_BLOCK_SIZE, BACKGROUND_QUEUE_DEPTH, BLOCK_SIZE_MAX, DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH, RING_BYTES_MAX,
  type CopyOptions, type CopyProgress, type CopyResult,
} from '../base/types';
import { resolveDevicePath } from '../devices/manager';
import { parseRate, UsageError, type DdInvocation } from './dd-args';
import { EXIT_FAILURE, EXIT_OK, liveLine, records, transferLine, type CliIo } from './output';

/** Build copy() options from a dd invocation. */
export function optionsFromInvocation(inv: DdInvocation): CopyOptions {
  if (inv.source === undefined || inv.targets.length === 0) throw new UsageError("missing operand: need if=SOURCE and of=TARGET");
  const blockSize = Math.min(inv.blockSize ?? (inv.background ? BACKGROUND_BLOCK_SIZE : DEFAULT_BLOCK_SIZE), BLOCK_SIZE_MAX);
  let queueDepth = inv.queueDepth ?? (inv.background ? BACKGROUND_QUEUE_DEPTH : DEFAULT_QUEUE_DEPTH);
  if (queueDepth * blockSize > RING_BYTES_MAX) {
    if (inv.queueDepth !== undefined) {
      throw new UsageError(`--queue-depth=${inv.queueDepth} with a ${blockSize}-byte block size needs more than 1 GiB of buffers`);
    }
    queueDepth = Math.max(1, Math.floor(RING_BYTES_MAX / blockSize));
  }
  const options: CopyOptions = {
    source: inv.source,
    ...(inv.targets.length === 1 ? { target: inv.targets[0] } : { targets: [...inv.targets], onTargetError: inv.onTargetError }),
    sourceOffset: inv.sourceOffset,
    targetOffset: inv.targetOffset,
    blockSize,
    queueDepth,
    direct: { source: inv.directSource, target: inv.directTarget },
    durability: inv.durability,
    createTarget: inv.createTarget,
    exclusiveCreate: inv.exclusiveCreate,
    // GNU dd opens the target with O_TRUNC when the seek is less than one
    // output block (seek_records == 0) and ftruncate()s it at the seek offset
    // otherwise; reproduce both.
    truncateTarget: inv.truncate ? (Math.floor(inv.targetOffset / inv.obs) === 0 ? 0 : inv.targetOffset) : false,
    noatime: inv.noatime,
    force: inv.force,
    engine: { ...inv.engine },
  };
  if (inv.maxLength !== undefined) options.maxLength = inv.maxLength;
  if (inv.noError) options.noError = true;
  if (inv.retries > 0) options.retries = inv.retries;
  if (inv.mapfile !== undefined) options.mapfile = inv.mapfile;
  if (inv.retryBad) options.retryBad = true;
  if (inv.checkpointInterval !== undefined) options.checkpointInterval = inv.checkpointInterval;
  if (inv.verify) options.verify = true;
  if (inv.hash !== undefined) options.hash = inv.hash;
  if (inv.rate !== undefined) options.rate = inv.rate;
  if (inv.zeroBlocks !== 'write') options.zeroBlocks = inv.zeroBlocks;
  if (inv.background) options.background = true;
  return options;
}

/** A rate file's content: a rate ('200M', '50MB/s'), or 0 / 'unlimited' for no cap. */
export function parseRateFile(text: string): number {
  const value = text.trim();
  if (value === '0' || value === 'unlimited' || value === 'none') return 0;
  return parseRate('--rate-file', value);
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

function operandFor(path: string, inv: DdInvocation): string {
  if (path === inv.source || path === resolvedOrSame(inv.source)) return `if=${path}`;
  if (inv.targets.some((t) => path === t || path === resolvedOrSame(t))) return `of=${path}`;
  return path;
}

function describeFailure(error: DevmoveError, inv: DdInvocation): string {
  const who = error.path !== undefined ? `${operandFor(error.path, inv)}: ` : '';
  const what = error.detail ?? describeErrno(error.errno)[1];
  const where = error.offset !== undefined ? ` at byte ${error.offset}` : '';
  let line = `${who}${what} (${error.code} from ${error.syscall}${where})`;
  const r = error.result;
  if (r && error.offset !== undefined && ['read', 'write', 'fallocate'].includes(error.syscall)) {
    line += `; ${error.bytesCopied} bytes copied and flushed`;
    const partial = r.target.unfinishedBytes ?? 0;
    if (partial > 0) line += ` (and ${partial} more written by the unfinished write)`;
    if (error.syscall === 'read' && error.offset !== undefined && error.offset > r.range.offset && !r.mapfile?.resumed) {
      line += `, everything before byte ${error.offset} of the source is on the target`;
    }
  }
  if (r?.mapfile) line += `; mapfile ${r.mapfile.path} updated (rerun to resume)`;
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

/** Lines after a successful copy for what dd does not have: bad blocks, dropped targets, zero blocks, verify, the map. */
export function summaryLines(result: CopyResult, inv: DdInvocation): Array<{ kind: SummaryKind; text: string }> {
  const lines: Array<{ kind: SummaryKind; text: string }> = [];
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
  if (result.verify) lines.push({ kind: 'statistic', text: `verified: ${result.verify.bytesCompared} bytes identical on source and target` });
  if (result.mapfile) {
    const m = result.mapfile;
    const resumed = m.resumed ? ` (resumed; ${m.previouslyFinished} bytes were already done)` : '';
    // Bad ranges in the map make the exit status 1: then the line is the reason.
    lines.push({
      kind: m.bad > 0 ? 'warning' : 'statistic',
      text: `mapfile ${m.path}: ${m.finished} bytes finished, ${m.bad} bad, ${m.nonTried} not tried${resumed}`,
    });
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
      this.io.stdout.write(`${JSON.stringify({ type: 'progress', ...p })}\n`);
    } else if (this.live) {
      this.io.stderr.write(`\r\x1b[K${liveLine(p)}`);
      this.liveShown = true;
    } else {
      this.ddLine?.update(p.bytesDone, p.elapsedSeconds);
    }
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
  fs.watchFile(file, { interval: 250, persistent: false }, apply);
  return () => fs.unwatchFile(file, apply);
}

/** dd's statistics: records in and out, then (unless status=noxfer) the transfer line. */
function printStats(inv: DdInvocation, io: CliIo, view: ProgressView, bytes: number, seconds: number): void {
  view.clear();
  if (inv.status === 'none' || inv.json) return;
  io.stderr.write(`${records(bytes, inv.ibs)} in\n${records(bytes, inv.obs)} out\n`);
  if (inv.status !== 'noxfer') io.stderr.write(`${transferLine(bytes, seconds)}\n`);
}

function reportSuccess(inv: DdInvocation, io: CliIo, result: CopyResult): number {
  if (inv.json) {
    io.stdout.write(`${JSON.stringify({ type: 'result', ...result })}\n`);
  } else {
    if (result.hash) io.stdout.write(`${result.hash.algorithm.toUpperCase()} (${result.source.path}) = ${result.hash.hex}\n`);
    for (const line of summaryLines(result, inv)) {
      if (summaryShown(line.kind, inv.status)) io.stderr.write(`devmove: ${line.text}\n`);
    }
  }
  // Unlike dd (which exits 0 after conv=noerror skipped unreadable blocks):
  // bad blocks or a dropped target make the exit status 1.
  const degraded = result.bad.bytes > 0 || (result.mapfile?.bad ?? 0) > 0 || result.targets.some((t) => t.dropped);
  return degraded ? EXIT_FAILURE : EXIT_OK;
}

function reportFailure(inv: DdInvocation, io: CliIo, error: DevmoveError): number {
  const line = describeFailure(error, inv);
  if (inv.json) {
    const { code, errno, syscall, path, offset, bytesCopied } = error;
    io.stdout.write(`${JSON.stringify({ type: 'error', code, errno, syscall, path, offset, message: line, bytesCopied })}\n`);
  }
  io.stderr.write(`devmove: ${line}\n`);
  return EXIT_FAILURE;
}

/** Runs one copy as the CLI does and returns the exit code. */
export async function runCopy(inv: DdInvocation, ctx: RunContext): Promise<number> {
  const { io } = ctx;
  const options = optionsFromInvocation(inv);
  // dd's status=progress prints on whole seconds: sample often enough to hit them.
  options.progressInterval = inv.json ? 1000 : 200;
  let job: CopyJob;
  try {
    job = copy(options);
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message);
    throw error;
  }
  const view = new ProgressView(inv, io);
  job.on('progress', (p) => view.show(p));
  const stopWatching = inv.rateFile === undefined ? undefined : watchRateFile(job, inv.rateFile, io, view);

  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interruptedBy !== undefined) {
      // A second signal: the user does not want to wait for the drain.
      view.clear();
      io.stderr.write(`devmove: ${signal} again: exiting without waiting for in-flight I/O\n`);
      process.exit(signal === 'SIGTERM' ? 143 : 130);
    }
    interruptedBy = signal;
    job.cancel();
  };
  const onUsr1 = (): void => {
    const p = job.progress;
    view.clear();
    io.stderr.write(`${records(p.bytesDone, inv.ibs)} in\n${records(p.bytesDone, inv.obs)} out\n${transferLine(p.bytesDone, p.elapsedSeconds)}\n`);
  };
  if (ctx.handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGUSR1', onUsr1);
  }

  try {
    const result: CopyResult = await job;
    // The engine's own seconds start later than the job's clock that the
    // progress lines show: the final time is never the smaller one.
    printStats(inv, io, view, result.bytesCopied, Math.max(result.seconds, job.progress.elapsedSeconds));
    return reportSuccess(inv, io, result);
  } catch (error) {
    const seconds = job.progress.elapsedSeconds;
    if (error instanceof CopyAbortError) {
      printStats(inv, io, view, bytesOut(error.bytesCopied, error.result), seconds);
      const signal = interruptedBy ?? 'SIGINT';
      const mapNote = error.result?.mapfile ? `; mapfile ${error.result.mapfile.path} updated (rerun to resume)` : '';
      const line = `interrupted by ${signal} after ${error.bytesCopied} bytes; what was written has been flushed${mapNote}`;
      if (inv.json) io.stdout.write(`${JSON.stringify({ type: 'error', code: 'ABORT_ERR', message: line, bytesCopied: error.bytesCopied })}\n`);
      io.stderr.write(`devmove: ${line}\n`);
      return signal === 'SIGTERM' ? 143 : 130;
    }
    view.clear();
    if (error instanceof DevmoveError) {
      const bytes = bytesOut(error.bytesCopied, error.result);
      if (bytes > 0) printStats(inv, io, view, bytes, seconds);
      return reportFailure(inv, io, error);
    }
    throw error;
  } finally {
    stopWatching?.();
    if (ctx.handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGUSR1', onUsr1);
    }
  }
}
