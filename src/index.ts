export { copy, CopyJob, planCopy, DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH, HASH_ALGORITHMS } from './copy';
export type {
  CopyOptions,
  HashAlgorithm,
  Range,
  TargetErrorPolicy,
  ZeroBlocks,
  CopyProgress,
  CopyResult,
  DirectMode,
  Durability,
  EngineOptions,
  FileInfo,
  Size,
} from './copy';
export type { IoCounters } from './native';
export { DevmoveError, CopyAbortError } from './errors';
export { toByteCount, parseDdNumber } from './size';
export { probeIoUring } from './probe';
export type { IoUringProbe } from './probe';
export { devices, list as listDevices, lookup as lookupDevice, watch as watchDevices, resolveDevicePath, DeviceWatcher, deviceManagerStatus } from './devices';
export type { Device, DeviceMount, DeviceIdentity, DeviceEvent, DeviceAction, WatchOptions, DeviceWatcherEvents } from './devices';
export { runDevicesCommand } from './cli-devices';
export { runJob } from './job';
export type { JobEvent, JobHooks, JobResult, PairOutcome } from './job';
export { parseJobFile, validateJob, JobFileError } from './jobfile';
export type { JobSpec, JobPair, PairOptions } from './jobfile';
export { RescueMap, MapfileError } from './mapfile';
export type { BlockStatus, MapBlock } from './mapfile';
