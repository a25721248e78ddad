import { DevmoveError } from '../base/errors';
import { loadNative } from '../addon/binding';

export interface IoUringProbe {
  available: boolean;
  /** Why io_uring cannot be used here (seccomp, kernel.io_uring_disabled, RLIMIT_MEMLOCK, old kernel). */
  error?: DevmoveError;
  ops?: { read: boolean; write: boolean; readFixed: boolean; writeFixed: boolean; fsync: boolean };
  features?: { extArg: boolean; nodrop: boolean; singleMmap: boolean; deferTaskrun: boolean };
}

/** Whether this process can use io_uring, and which features the kernel offers. */
export function probeIoUring(): IoUringProbe {
  const p = loadNative().probe();
  const out: IoUringProbe = { available: p.available };
  if (p.error) out.error = new DevmoveError(p.error);
  if (p.ops) out.ops = p.ops;
  if (p.featureFlags) out.features = p.featureFlags;
  return out;
}
