// Errors shaped like Node's fs errors: `code`, negative `errno`, `syscall`,
// `path`, plus the byte `offset` of a failed I/O. Unknown errnos stay visible
// as UNKNOWN_<n>.
//
// Every way a copy can fail is a CopyFailure, which keeps how many bytes were
// written and what the copy did (`bytesCopied`, `result`), whatever the kind:
// a system error (DevmoveError), a cancellation (CopyAbortError), a mapfile
// that could not be kept (MapfileError, resume/mapfile.ts).
import util from 'node:util';

import type { CopyResult } from './types';

/** A failed system call or a refusal, as the engine (positive errno) or a JS check reports it. */
export interface ErrorInfo {
  errno: number;
  /** The system call that failed. Absent when devmove refused or concluded it itself. */
  syscall?: string;
  /** For a refusal or conclusion of devmove's own: the devmove operation ('copy', 'lookup'). */
  operation?: string;
  path?: string;
  offset?: number;
  detail?: string;
}

/** The common base of everything a copy rejects with. */
export class CopyFailure extends Error {
  /** Bytes written (and flushed) to the target(s) before the copy stopped. */
  bytesCopied = 0;
  /**
   * What the copy did before it failed, when it ran at all: bytes, unreadable ranges, dropped
   * targets, the mapfile, and for a verify mismatch the comparison (result.verify).
   */
  result?: CopyResult;
}

export class DevmoveError extends CopyFailure {
  override name = 'DevmoveError';
  /** 'EIO', 'ENOSPC', … or 'UNKNOWN_<n>' */
  readonly code: string;
  /** Negative, as in Node's fs errors. */
  readonly errno: number;
  /** The system call that failed; absent when devmove itself refused (see `operation`). */
  readonly syscall?: string;
  /** What devmove was doing when it refused or concluded this itself: 'copy' (checks before the first write), 'lookup'. */
  readonly operation?: string;
  readonly path?: string;
  /** Byte offset on `path` of the I/O that failed. */
  readonly offset?: number;
  /** Extra detail from the engine (why io_uring is unavailable, why a target is too small, …). */
  readonly detail?: string;

  constructor(info: ErrorInfo) {
    const [code, description] = describeErrno(info.errno);
    let message = `${code}: ${description}, ${info.syscall ?? info.operation ?? 'copy'}`;
    if (info.path !== undefined) message += ` '${info.path}'`;
    if (info.offset !== undefined) message += ` at byte offset ${info.offset}`;
    if (info.detail) message += `: ${info.detail}`;
    super(message);
    this.code = code;
    this.errno = -info.errno;
    if (info.syscall !== undefined) this.syscall = info.syscall;
    else this.operation = info.operation ?? 'copy';
    if (info.path !== undefined) this.path = info.path;
    if (info.offset !== undefined) this.offset = info.offset;
    if (info.detail) this.detail = info.detail;
  }

  /** devmove refused (or concluded) this itself; no system call failed. */
  get refused(): boolean {
    return this.syscall === undefined;
  }
}

// Linux errnos that Node's errno map (libuv's) lacks: asm-generic values, the
// same on x86-64 and arm64.
const LINUX_ERRNOS: ReadonlyMap<number, [code: string, description: string]> = new Map([
  [15, ['ENOTBLK', 'block device required']],
  [79, ['ELIBACC', 'cannot access a needed shared library']],
  [80, ['ELIBBAD', 'accessing a corrupted shared library']],
]);

export function describeErrno(errno: number): [code: string, description: string] {
  const entry = util.getSystemErrorMap().get(-Math.abs(errno));
  if (entry) return [entry[0], entry[1]];
  const linux = LINUX_ERRNOS.get(Math.abs(errno));
  if (linux) return [...linux];
  return [`UNKNOWN_${Math.abs(errno)}`, `unknown error ${Math.abs(errno)}`];
}

/** What `copy()` rejects with when cancelled through `cancel()` or an AbortSignal. */
export class CopyAbortError extends CopyFailure {
  override name = 'AbortError';
  readonly code = 'ABORT_ERR';
  constructor(message = 'The copy was aborted', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * An option a library call cannot take: a TypeError (wrong type, or options that exclude each
 * other) or a RangeError (a value out of range), carrying Node's codes for invalid arguments so a
 * caller (the CLI) can tell them from a TypeError a bug throws.
 */
export function invalidOption(message: string, range: boolean): TypeError | RangeError {
  const error = range ? new RangeError(message) : new TypeError(message);
  Object.defineProperty(error, 'code', { value: range ? 'ERR_OUT_OF_RANGE' : 'ERR_INVALID_ARG_TYPE', enumerable: true, writable: true, configurable: true });
  return error;
}

/** An error from invalidOption() (not a TypeError of some bug). */
export function isInvalidOption(error: unknown): error is (TypeError | RangeError) & { code: string } {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (error instanceof TypeError || error instanceof RangeError) && (code === 'ERR_OUT_OF_RANGE' || code === 'ERR_INVALID_ARG_TYPE');
}
