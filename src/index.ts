// devmove's public face: the library API. The CLI (src/cli/) is not part of it.
export { copy, CopyJob } from './api/copy';
export { planCopy } from './api/plan';
export { probeIoUring } from './api/probe';
export type { IoUringProbe } from './api/probe';
export { DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH, HASH_ALGORITHMS } from './base/types';
export type {
  CopyOptions,
  HashAlgorithm,
  Range,
  TargetErrorPolicy,
  ZeroBlocks,
  CopyProgress,
  ReconnectEvent,
  CopyResult,
  DirectMode,
  Durability,
  EngineOptions,
  FileInfo,
  Size,
} from './base/types';
export type { IoCounters } from './addon/binding';
export { DevmoveError, CopyAbortError, CopyFailure } from './base/errors';
export type { ErrorInfo } from './base/errors';
export { toByteCount, parseDdNumber } from './base/size';
export { devices, list as listDevices, lookup as lookupDevice, watch as watchDevices, resolveDevicePath, DeviceWatcher, deviceManagerStatus } from './devices/manager';
export type {
  Device,
  DeviceMount,
  DeviceIdentity,
  DeviceEvent,
  DeviceAction,
  WatchOptions,
  DeviceWatcherEvents,
  DeviceManagerStatus,
  DeviceContent,
  DeviceContentProbe,
  DeviceProbeError,
  QueueFacts,
  NodeAccess,
  FilesystemUsage,
} from './devices/manager';
export { runJob } from './jobs/job';
export type { JobEvent, JobHooks, JobResult, PairOutcome } from './jobs/job';
export { parseJobFile, validateJob, JobFileError } from './jobs/jobfile';
export type { JobSpec, JobPair, PairOptions } from './jobs/jobfile';
export { RescueMap, MapfileError } from './resume/mapfile';
export type { BlockStatus, MapBlock } from './resume/mapfile';
