// The library API: copy(options) validates everything, hands the engine a
// plan of clean primitives and returns a job that is awaitable, emits progress
// and can be cancelled. No byte of the data ever passes through JavaScript.
import { EventEmitter } from 'node:events';

import { loadNative, type NativeCopyJob, type NativeErrorInfo, type NativeEvent, type NativePlan } from '../addon/binding';
import { CopyAbortError, CopyFailure, DevmoveError } from '../base/errors';
import { toByteCount } from '../base/size';
import type { CopyJobEvents, CopyOptions, CopyProgress, CopyResult, Size } from '../base/types';
import { resolveDevicePath } from '../devices/manager';
import { loadDomain, restrictToDomain, type Domain } from '../resume/domain';
import { MapfileError } from '../resume/mapfile';
import { MapfileSession } from '../resume/session';
import { describeBusy } from '../storage/holders';
import { checkCopySafety } from '../storage/safety';
import { planCopy } from './plan';
import { isConnectionLoss, reconnectDelaySeconds } from './reconnect';
import { refuseWhatStreamsCannotDo } from './streams';
import { toResult } from './result';

const EBUSY = 16;
const ECANCELED = 125;

/** What the engine reported, with what only JavaScript can add: who keeps a busy device. */
function explainFailure(info: NativeErrorInfo): NativeErrorInfo {
  if (info.errno !== EBUSY || info.syscall !== 'open' || info.path === undefined) return info;
  return { ...info, detail: `${info.detail ?? 'device is busy'}; ${describeBusy(info.path)}` };
}

/** What the copy rejects with, if anything: a mapfile that could not be kept wins over the engine's error. */
function failureOf(mapfileError: unknown, error: NativeErrorInfo | undefined, cancelled: boolean, signal: AbortSignal | undefined): CopyFailure | undefined {
  if (mapfileError instanceof CopyFailure) return mapfileError;
  if (mapfileError !== undefined) return new MapfileError(String(mapfileError), { cause: mapfileError });
  if (error === undefined) return undefined;
  if (cancelled && error.errno === ECANCELED) return new CopyAbortError('The copy was aborted', signal?.aborted ? { cause: signal.reason } : undefined);
  return new DevmoveError(explainFailure(error));
}

interface JobSetup {
  signal: AbortSignal | undefined;
  onProgress: ((p: CopyProgress) => void) | undefined;
  mapfile: string | undefined;
  domainMapfile: string | undefined;
  retryBad: boolean;
  /** Starts again from the mapfile at most this many times when an NBD server goes away (reconnect.ts). */
  reconnect: number;
}

interface Settle {
  resolve(result: CopyResult): void;
  reject(error: unknown): void;
}

/** Before the engine starts: node names resolved, every refusal made, the mapfiles loaded. */
function prepare(plan: NativePlan, setup: JobSetup): { session: MapfileSession | undefined; domain: Domain | undefined } {
  // Node names ('sdb', 'loop3', '7:3') are accepted wherever a path is.
  const resolve = (p: string): string => (p === '-' ? p : resolveDevicePath(p));
  plan.source.path = resolve(plan.source.path);
  for (const t of plan.targets) t.path = resolve(t.path);
  checkCopySafety(plan, setup.mapfile);
  // Read before the mapfile is written, so a domain that is not a mapfile leaves nothing behind.
  const domain = setup.domainMapfile === undefined ? undefined : loadDomain(setup.domainMapfile);
  const session = setup.mapfile === undefined ? undefined : new MapfileSession(setup.mapfile, plan, setup.retryBad);
  if (domain) restrictToDomain(plan, domain, session);
  return { session, domain };
}

/**
 * The mapfile while the engine runs: the first error keeping it stops the copy (better no copy
 * than one without a record), and later steps are skipped.
 */
class MapKeeper {
  error: unknown;
  constructor(
    readonly session: MapfileSession | undefined,
    private readonly stop: () => void,
  ) {}

  keep(step: (session: MapfileSession) => void, stopOnError = true): void {
    if (this.session === undefined || this.error !== undefined) return;
    try {
      step(this.session);
    } catch (error) {
      this.error = error;
      if (stopOnError) this.stop();
    }
  }
}

/** Rate over a sliding window of recent samples, so ETA follows the current speed. */
class RateMeter {
  private readonly samples: Array<[seconds: number, bytes: number]> = [];
  constructor(private readonly windowSeconds = 3) {}
  add(seconds: number, bytes: number): number {
    this.samples.push([seconds, bytes]);
    while (this.samples.length > 2 && seconds - this.samples[0][0] > this.windowSeconds) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return seconds > t0 ? (bytes - b0) / (seconds - t0) : 0;
  }
}

/** A running copy: await it (or use .promise), listen for 'progress', pause, change its rate, cancel it. */
export class CopyJob extends EventEmitter<CopyJobEvents> implements PromiseLike<CopyResult> {
  /** Settles when the copy is done and durable (or failed, or was cancelled). */
  readonly promise: Promise<CopyResult>;
  private native: NativeCopyJob | undefined;
  private readonly started = process.hrtime.bigint();
  private readonly rateMeter = new RateMeter();
  private last: CopyProgress;
  private settled = false;
  private pausedNow = false;
  private rateNow: number;
  private queueDepthNow: number;
  /** The plan as copy() made it: each reconnect starts from a fresh copy of it (prepare() edits it). */
  private readonly pristine: NativePlan;
  private reconnects = 0;
  /** Waiting to start again after a lost server: cancel() ends the wait. */
  private retry: { timer: NodeJS.Timeout; settle: Settle; failure: CopyFailure } | undefined;

  /** @internal use copy() */
  constructor(plan: NativePlan, setup: JobSetup) {
    super();
    this.pristine = structuredClone(plan);
    this.rateNow = plan.rate ?? 0;
    this.queueDepthNow = plan.queueDepth;
    this.last = {
      bytesDone: 0, bytesTotal: plan.length ?? 0, percent: 0, bytesPerSecond: 0, etaSeconds: undefined, elapsedSeconds: 0,
      badBytes: 0, zeroBytes: 0, paused: false, phase: 'copy', verifyDone: 0, verifyTotal: 0,
    };
    if (setup.onProgress) this.on('progress', setup.onProgress);
    this.promise = new Promise<CopyResult>((resolve, reject) => this.start(plan, setup, { resolve, reject }));
    // A job nobody awaits must not crash the process with an unhandled rejection;
    // anyone who awaits it still sees the error.
    this.promise.catch(() => undefined);
  }

  private start(plan: NativePlan, setup: JobSetup, settle: Settle): void {
    const { signal } = setup;
    if (signal?.aborted) {
      this.settled = true;
      settle.reject(new CopyAbortError('The copy was aborted before it started', { cause: signal.reason }));
      return;
    }
    let map: MapKeeper;
    let domain: Domain | undefined;
    try {
      const prepared = prepare(plan, setup);
      domain = prepared.domain;
      map = new MapKeeper(prepared.session, () => this.cancel());
    } catch (error) {
      this.settled = true;
      if (error instanceof Error) Error.captureStackTrace(error, CopyJob);
      settle.reject(error);
      return;
    }
    const onAbort = (): void => this.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    const job = new (loadNative().CopyJob)(plan, (event) => {
      if (event.type === 'progress') {
        this.queueDepthNow = event.queueDepth;
        map.keep((m) => m.begin(event.domainOffset, event.domainLength));
        this.updateProgress(event.bytesDone, event.sizeKnown ? event.bytesTotal : undefined, true, event);
      } else if (event.type === 'checkpoint') {
        map.keep((m) => m.checkpoint(event.finished, event.bad));
      } else {
        signal?.removeEventListener('abort', onAbort);
        this.finish(event, plan, { map, domain, setup }, settle);
      }
    });
    this.native = job;
    job.start();
  }

  private finish(
    event: Extract<NativeEvent, { type: 'done' }>,
    plan: NativePlan,
    ctx: { map: MapKeeper; domain: Domain | undefined; setup: JobSetup },
    settle: Settle,
  ): void {
    const { map, setup } = ctx;
    this.settled = true;
    this.native = undefined;
    const { report } = event;
    map.keep((m) => m.end(report.stoppedAtBadBlock), false);
    this.updateProgress(report.bytesCopied, report.bytesTotal, false);
    const result = toResult(report, plan, map.session, ctx.domain);
    if (this.reconnects > 0) result.reconnects = this.reconnects;
    const failure = failureOf(map.error, event.error, report.cancelled, setup.signal);
    if (failure === undefined) {
      settle.resolve(result);
      return;
    }
    failure.bytesCopied = report.bytesCopied;
    failure.result = result;
    Error.captureStackTrace(failure, CopyJob);
    if (this.reconnects < setup.reconnect && map.session !== undefined && isConnectionLoss(failure, plan)) {
      this.startAgain(setup, settle, failure);
      return;
    }
    settle.reject(failure);
  }

  /** A lost NBD server: wait, then start again from the mapfile (what the server flushed). */
  private startAgain(setup: JobSetup, settle: Settle, failure: CopyFailure): void {
    this.settled = false;
    this.reconnects += 1;
    const delaySeconds = reconnectDelaySeconds(this.reconnects);
    this.emit('reconnect', { attempt: this.reconnects, of: setup.reconnect, delaySeconds, error: failure });
    const onAbort = (): void => this.cancel();
    setup.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      setup.signal?.removeEventListener('abort', onAbort);
      this.retry = undefined;
      this.start(structuredClone(this.pristine), setup, settle);
    }, delaySeconds * 1000);
    this.retry = { timer, settle, failure };
  }

  /** Progress now: the byte count is read live from the engine while it runs. */
  get progress(): CopyProgress {
    if (this.native && !this.settled) this.updateProgress(this.native.bytesDone(), this.last.bytesTotal, false);
    return this.last;
  }

  /** Stop submitting I/O, drain what is in flight, flush what was written; the job rejects with an AbortError. */
  cancel(): void {
    if (this.retry !== undefined) {
      // Between two attempts: nothing runs, the last failure's result stands.
      const { timer, settle, failure } = this.retry;
      clearTimeout(timer);
      this.retry = undefined;
      this.settled = true;
      settle.reject(new CopyAbortError('The copy was aborted while waiting to reconnect', { cause: failure }));
      return;
    }
    if (!this.settled) this.native?.cancel();
  }

  /** Hold new I/O; what is in flight completes. Checkpoints go on, so a mapfile stays current. */
  pause(): void {
    if (this.settled) return;
    this.pausedNow = true;
    this.native?.pause();
  }

  resume(): void {
    if (this.settled) return;
    this.pausedNow = false;
    this.native?.resume();
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  /** Changes the rate cap at once: bytes per second ('200M', 50e6), 0 = unlimited. */
  setRate(rate: Size): void {
    const n = toByteCount(rate, 'rate');
    this.rateNow = n;
    if (!this.settled) this.native?.setRate(n);
  }

  /** The rate cap in bytes per second (0 = none). */
  get rate(): number {
    return this.rateNow;
  }

  /** Buffers in the ring (I/Os in flight at most), as the engine last reported. */
  get queueDepth(): number {
    return this.queueDepthNow;
  }

  /**
   * @internal A job's budget: let the ring grow to `depth` buffers, within the queueDepthMax the
   * copy was started with (runJob hands a finished pair's share to the pairs still running).
   */
  growQueueDepth(depth: number): void {
    if (!this.settled) this.native?.setQueueDepth(depth);
  }

  then<T1 = CopyResult, T2 = never>(
    onFulfilled?: ((value: CopyResult) => T1 | PromiseLike<T1>) | null,
    onRejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null,
  ): Promise<T1 | T2> {
    return this.promise.then(onFulfilled, onRejected);
  }

  catch<T = never>(onRejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<CopyResult | T> {
    return this.promise.catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<CopyResult> {
    return this.promise.finally(onFinally);
  }

  private updateProgress(
    bytesDone: number,
    bytesTotal: number | undefined,
    emit = true,
    extra?: { badBytes: number; zeroBytes: number; paused: boolean; verifying: boolean; verifyDone: number; verifyTotal: number },
  ): void {
    const elapsedSeconds = Number(process.hrtime.bigint() - this.started) / 1e9;
    const bytesPerSecond = this.rateMeter.add(elapsedSeconds, bytesDone);
    // A stream without a length: no total, no percent, no ETA.
    const remaining = bytesTotal === undefined ? undefined : Math.max(0, bytesTotal - bytesDone);
    this.last = {
      bytesDone,
      bytesTotal,
      percent: bytesTotal === undefined ? undefined : bytesTotal > 0 ? (bytesDone / bytesTotal) * 100 : 100,
      bytesPerSecond,
      etaSeconds: remaining === undefined ? undefined : bytesPerSecond > 0 ? remaining / bytesPerSecond : remaining === 0 ? 0 : undefined,
      elapsedSeconds,
      badBytes: extra?.badBytes ?? this.last.badBytes,
      zeroBytes: extra?.zeroBytes ?? this.last.zeroBytes,
      paused: extra?.paused ?? this.pausedNow,
      phase: extra ? (extra.verifying ? 'verify' : 'copy') : this.last.phase,
      verifyDone: extra?.verifyDone ?? this.last.verifyDone,
      verifyTotal: extra?.verifyTotal ?? this.last.verifyTotal,
    };
    if (emit) this.emit('progress', this.last);
  }
}

/** @internal What runJob adds to a pair's copy(). */
export interface CopyInternals {
  /** The ring may grow to this many buffers (growQueueDepth); default: it stays at queueDepth. */
  queueDepthMax?: number;
}

/**
 * Copy a byte range from a block device or image file to another, through
 * io_uring and O_DIRECT. Throws TypeError/RangeError at once for bad options;
 * the returned job rejects with a DevmoveError (code, errno, syscall, path,
 * offset) for I/O failures and with an AbortError when cancelled.
 */
export function copy(options: CopyOptions, internal: CopyInternals = {}): CopyJob {
  const plan = planCopy(options);
  if (internal.queueDepthMax !== undefined && internal.queueDepthMax > plan.queueDepth) plan.queueDepthMax = internal.queueDepthMax;
  refuseWhatStreamsCannotDo(plan, options.mapfile);
  return new CopyJob(plan, {
    signal: options.signal,
    onProgress: options.onProgress,
    mapfile: options.mapfile,
    domainMapfile: options.domainMapfile,
    retryBad: options.retryBad ?? false,
    reconnect: options.reconnect ?? 0,
  });
}
