// A bounded reconnect (reconnect: N, --reconnect=N): when a copy fails because an NBD server went
// away — the connection reset or closed, the server silent past nbdTimeout, or refusing
// connections while it restarts — the copy is started again from its mapfile, which holds exactly
// what the server had flushed (checkpoints are reported only after a flush on every connection), so
// everything written since the last flush is written again. Nothing else is retried: a server's
// error reply (EIO, ENOSPC) or a local failure ends the copy as before.
import type { NativePlan } from '../addon/binding';
import type { CopyFailure } from '../base/errors';
import { isNbdUri } from '../storage/nbd-uri';

/** How a lost server shows: reset, closed, timed out (--nbd-timeout), refused while it restarts. */
const CONNECTION_LOST = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ECONNREFUSED', 'ENOTCONN', 'ENOENT', 'ETIMEDOUT']);

/** Whether this failure is an NBD side's server going away (and so worth a reconnect). */
export function isConnectionLoss(failure: CopyFailure, plan: NativePlan): boolean {
  const error = failure as CopyFailure & { code?: string; path?: string };
  if (error.code === undefined || !CONNECTION_LOST.has(error.code) || error.path === undefined) return false;
  const nbdPaths = [plan.source.path, ...plan.targets.map((t) => t.path)].filter((p) => isNbdUri(p));
  // ENOENT is only a lost server on a unix socket that is not there yet (the server restarting).
  return nbdPaths.includes(error.path) && (error.code !== 'ENOENT' || error.path.startsWith('nbd+unix:'));
}

/** Seconds before attempt n (1-based): 1, 2, 4, 8, 16, then 30 each. */
export function reconnectDelaySeconds(attempt: number): number {
  return Math.min(30, 2 ** (attempt - 1));
}
