// The limits every layer enforces, from one file: native/limits.json is read
// here, by binding.gyp and by CMakeLists.txt (as DEVMOVE_LIMIT_* defines for
// the engine), so the library, the CLI, job files and the engine can never
// disagree on how large a block or how deep a queue may be.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const limits = require('../../native/limits.json') as {
  blockBytesMax: number;
  queueDepthMax: number;
  ringBytesMax: number;
  targetsMax: number;
  retriesMax: number;
  checkpointIntervalMsMin: number;
  checkpointIntervalMsMax: number;
  progressIntervalMsMin: number;
  nbdTimeoutSecondsMax: number;
};

/** One I/O and one buffer at most (the kernel caps one read/write at INT_MAX & PAGE_MASK). */
export const BLOCK_SIZE_MAX = limits.blockBytesMax;
export const QUEUE_DEPTH_MAX = limits.queueDepthMax;
/** queueDepth × blockSize at most: the buffer ring's memory. */
export const RING_BYTES_MAX = limits.ringBytesMax;
export const TARGETS_MAX = limits.targetsMax;
export const RETRIES_MAX = limits.retriesMax;
export const CHECKPOINT_INTERVAL_MIN = limits.checkpointIntervalMsMin;
export const CHECKPOINT_INTERVAL_MAX = limits.checkpointIntervalMsMax;
/** An NBD server's silence tolerated at most (nbdTimeout, seconds): a day. */
export const NBD_TIMEOUT_MAX = limits.nbdTimeoutSecondsMax;
/** Reconnects of one copy at most (options.reconnect). */
export const RECONNECT_MAX = 100;
/** Progress at most 10 times a second. */
export const PROGRESS_INTERVAL_MIN = limits.progressIntervalMsMin;
