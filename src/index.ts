export { copy, CopyJob, planCopy, DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH } from './copy';
export type {
  CopyOptions,
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
