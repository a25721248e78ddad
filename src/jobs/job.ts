// Many pairs in one job: every (source, target) pair of a JobSpec runs as its own copy(),
// all at once, within the job's shared budget of I/Os in flight and buffer memory
// (allocateBudget in jobfile.ts; when a pair settles, JobBudget in budget.ts moves its share
// to the pairs still running). Each pair has its own progress and its own result or
// error; one pair failing does not stop the others; aborting the signal cancels all.
import { setMaxListeners } from 'node:events';

import { copy, type CopyJob } from '../api/copy';
import type { CopyOptions, CopyProgress, CopyResult } from '../base/types';
import { CopyAbortError } from '../base/errors';
import { JobBudget, type BudgetMember } from './budget';
import { checkPairConflicts } from './conflicts';
import { allocateBudget, type PairAllocation } from './jobfile';
import type { JobPair, JobSpec } from './spec';

export type JobEvent =
  | {
      type: 'pair-start';
      pair: string;
      source: string;
      targets: string[];
      /** What the pair got from the job's budget. */
      queueDepth: number;
      blockSize: number;
    }
  /** `queueDepth`: buffers in the pair's ring now (it grows when the job gives it more). */
  | ({ type: 'progress'; pair: string; queueDepth: number } & CopyProgress)
  /** Another pair settled and its share went to this one: the I/Os it may now have in flight, its buffer bytes. */
  | { type: 'pair-budget'; pair: string; queueDepth: number; bufferBytes: number }
  | { type: 'pair-done'; pair: string; result: CopyResult }
  /** The pair failed, or was cancelled (then `error` is the AbortError, code 'ABORT_ERR'). */
  | { type: 'pair-failed'; pair: string; error: Error };

export interface JobHooks {
  /** Every event of every pair, in the order they happen. */
  onEvent?(event: JobEvent): void;
  /** Aborting it cancels every pair: in-flight I/O drains, written data is flushed. */
  signal?: AbortSignal;
  /** Milliseconds between a pair's progress events (at least 100). Default 200. */
  progressInterval?: number;
}

export interface PairOutcome {
  name: string;
  status: 'done' | 'failed' | 'cancelled';
  source: string;
  targets: string[];
  /** What the pair started with (pair-start). */
  queueDepth: number;
  /** The most the job gave it: queueDepth, or more once other pairs had settled (pair-budget events). */
  queueDepthGranted: number;
  blockSize: number;
  /** Written (and flushed) to the target(s), also when the pair failed or was cancelled. */
  bytesCopied: number;
  seconds: number;
  bytesPerSecond: number;
  /** When status is 'done'. */
  result?: CopyResult;
  /** When status is 'failed' or 'cancelled'. */
  error?: Error;
}

export interface JobResult {
  /** Every pair done. */
  ok: boolean;
  /** The signal was aborted. */
  cancelled: boolean;
  seconds: number;
  bytesCopied: number;
  /** One entry per pair, in the job's order. */
  pairs: PairOutcome[];
}

function targetsOf(pair: JobPair): string[] {
  return pair.options.targets ?? (pair.options.target !== undefined ? [pair.options.target] : []);
}

/** A running pair in the job's budget, with its copy to grow. */
interface Member extends BudgetMember {
  job?: CopyJob;
}

/** copy()'s options for one pair with its share of the budget. */
function copyOptionsFor(pair: JobPair, allocation: PairAllocation, signal: AbortSignal, progressInterval: number | undefined): CopyOptions {
  const { queueDepth: _wanted, blockSize: _block, ...rest } = pair.options;
  const options: CopyOptions = { ...rest, blockSize: allocation.blockSize, queueDepth: allocation.queueDepth, signal };
  if (progressInterval !== undefined) options.progressInterval = progressInterval;
  return options;
}

// ---- the runner ----------------------------------------------------------------------

function elapsed(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

interface PairContext {
  emit(event: JobEvent): void;
  signal: AbortSignal;
  progressInterval: number | undefined;
  budget: JobBudget<Member>;
}

/** A settled pair's share goes to the pairs still running: their rings grow, each says so. */
function release(member: Member, { budget, emit }: PairContext): void {
  for (const m of budget.leave(member)) {
    m.job?.growQueueDepth(m.queueDepth);
    emit({ type: 'pair-budget', pair: m.name, queueDepth: m.queueDepth, bufferBytes: m.queueDepth * m.blockSize });
  }
}

/** One pair's copy, start to end, as events and an outcome; never throws. */
async function runPair(pair: JobPair, allocation: PairAllocation, context: PairContext): Promise<PairOutcome> {
  const { emit, signal, progressInterval } = context;
  const member: Member = { name: pair.name, blockSize: allocation.blockSize, queueDepth: allocation.queueDepth, queueDepthMax: allocation.queueDepthMax };
  const outcome: PairOutcome = {
    name: pair.name,
    status: 'failed',
    source: pair.options.source,
    targets: targetsOf(pair),
    queueDepth: allocation.queueDepth,
    queueDepthGranted: allocation.queueDepth,
    blockSize: allocation.blockSize,
    bytesCopied: 0,
    seconds: 0,
    bytesPerSecond: 0,
  };
  emit({ type: 'pair-start', pair: pair.name, source: outcome.source, targets: outcome.targets, queueDepth: allocation.queueDepth, blockSize: allocation.blockSize });
  const pairStarted = process.hrtime.bigint();
  let job: CopyJob | undefined;
  context.budget.join(member);
  const progressOf = (p: CopyProgress, j: CopyJob): JobEvent => ({ type: 'progress', pair: pair.name, ...p, queueDepth: j.queueDepth });
  try {
    const running = copy(copyOptionsFor(pair, allocation, signal, progressInterval), { queueDepthMax: allocation.queueDepthMax });
    job = member.job = running;
    running.on('progress', (p) => emit(progressOf(p, running)));
    const result = await job;
    // Every pair's last progress event says where it ended, however short the copy was.
    emit(progressOf(job.progress, job));
    Object.assign(outcome, { status: 'done', result, bytesCopied: result.bytesCopied, seconds: result.seconds, bytesPerSecond: result.bytesPerSecond });
    emit({ type: 'pair-done', pair: pair.name, result });
  } catch (caught) {
    const error = caught instanceof Error ? caught : new Error(String(caught));
    outcome.status = error instanceof CopyAbortError ? 'cancelled' : 'failed';
    outcome.error = error;
    const bytes = (error as { bytesCopied?: unknown }).bytesCopied;
    outcome.bytesCopied = typeof bytes === 'number' ? bytes : 0;
    outcome.seconds = elapsed(pairStarted);
    outcome.bytesPerSecond = outcome.seconds > 0 ? outcome.bytesCopied / outcome.seconds : 0;
    if (job !== undefined) emit(progressOf(job.progress, job));
    emit({ type: 'pair-failed', pair: pair.name, error });
  } finally {
    outcome.queueDepthGranted = member.queueDepth;
    release(member, context);
  }
  return outcome;
}

/**
 * Runs every pair of the job at once. Resolves when all pairs have settled, with one
 * outcome per pair (done, failed or cancelled); never rejects because a pair failed.
 * Rejects only for a job that cannot start: pairs that would write to each other's
 * storage, or a budget too small for one buffer (JobFileError).
 */
export async function runJob(spec: JobSpec, hooks: JobHooks = {}): Promise<JobResult> {
  const allocations = allocateBudget(spec);
  // Again now: devices may have come and gone since the job file was read.
  checkPairConflicts(spec, 'storage');

  const controller = new AbortController();
  // Every pair's copy() listens on it: not a leak, however many pairs.
  setMaxListeners(spec.pairs.length + 1, controller.signal);
  const onAbort = (): void => controller.abort(hooks.signal?.reason);
  if (hooks.signal?.aborted) onAbort();
  else hooks.signal?.addEventListener('abort', onAbort, { once: true });

  let listenerError: { error: unknown } | undefined;
  const emit = (event: JobEvent): void => {
    if (hooks.onEvent === undefined || listenerError !== undefined) return;
    try {
      hooks.onEvent(event);
    } catch (error) {
      // A throwing listener stops the job; runJob rejects with its error once every pair has settled.
      listenerError = { error };
      controller.abort(error);
    }
  };

  const started = process.hrtime.bigint();
  const budget = new JobBudget<Member>(spec, allocations);
  const context: PairContext = { emit, signal: controller.signal, progressInterval: hooks.progressInterval, budget };

  try {
    const pairs = await Promise.all(spec.pairs.map((pair, i) => runPair(pair, allocations[i], context)));
    if (listenerError !== undefined) throw listenerError.error;
    return {
      ok: pairs.every((p) => p.status === 'done'),
      cancelled: hooks.signal?.aborted === true,
      seconds: elapsed(started),
      bytesCopied: pairs.reduce((sum, p) => sum + p.bytesCopied, 0),
      pairs,
    };
  } finally {
    hooks.signal?.removeEventListener('abort', onAbort);
  }
}
