// The only module that loads the compiled addon. It gives the binary a typed
// interface and, when loading fails, throws one error that says what to do.
import path from 'node:path';

export type NativeDirectMode = 'auto' | 'always' | 'never';
/** Which I/O driver runs the copy; 'auto' = io_uring, or threads where io_uring cannot be set up. */
export type NativeIoEngine = 'auto' | 'io_uring' | 'threads';
export type NativeDurability = 'fdatasync' | 'fsync' | 'dsync' | 'sync' | 'none';

/** An NBD export as a side of the copy (the path is then its URI): where its server is. */
export interface NativeNbd {
  /** nbd+unix: the socket's absolute path. */
  socket?: string;
  /** nbd: the host and TCP port. */
  host?: string;
  port?: number;
  exportName: string;
  /** The export's storage id (nbd-uri.ts nbdStorageId). */
  identity: string;
  /** Connections at most (multi-conn); one when the server does not allow several. Default 4. */
  connections?: number;
  /** A server owing answers that sends nothing this long is given up on (ECONNABORTED); 0 = never. */
  answerTimeoutMs?: number;
}

/** The plan handed to the engine: clean primitives only, validated in copy.ts. */
export interface NativePlan {
  source: { path: string; offset: number; direct: NativeDirectMode; noatime: boolean; nbd?: NativeNbd };
  targets: Array<{
    path: string;
    nbd?: NativeNbd;
    offset: number;
    direct: NativeDirectMode;
    create: boolean;
    exclusiveCreate: boolean;
    /** Block devices: open with O_EXCL (refused while mounted or held). False only with force. */
    exclusive: boolean;
    /** Regular files: cut to this size before copying. */
    truncateTo?: number;
    /** With truncateTo 0: cut by opening with O_TRUNC, as GNU dd opens its output when seek= is below one output block. */
    truncateAtOpen?: boolean;
  }>;
  /** Omitted: to the end of the source. */
  length?: number;
  /** With length: stop early at the end of the source instead of failing (dd count=). */
  lengthIsMax: boolean;
  durability: NativeDurability;
  blockBytes: number;
  queueDepth: number;
  /** The ring may grow to this many buffers while the copy runs (setQueueDepth); omitted = queueDepth. */
  queueDepthMax?: number;
  fixedBuffers: boolean;
  fixedFiles: boolean;
  sqpoll: boolean;
  linkReadWrite: boolean;
  batchSubmissions: boolean;
  progressIntervalMs: number;
  /** Absolute source ranges [offset, length] to copy this run (a resumed copy); omitted = the whole range. */
  extents?: Array<[number, number]>;
  /** Absolute source ranges not compared by verify (known-bad blocks). */
  verifySkip?: Array<[number, number]>;
  /** Unreadable blocks: zero-fill, report and go on (true) or stop at the first (false, default). */
  noError?: boolean;
  /** Extra reads of an unreadable logical block before it counts as bad. */
  retries?: number;
  zeroBlocks?: 'write' | 'skip' | 'discard' | 'sparse';
  /** Holes of a source that says where its data is: never read. Omitted: 'auto'. */
  holes?: 'auto' | 'policy' | 'read';
  /** 'sparse' with a mapfile or verify: zero blocks below the target's end are punched or written, not passed over. */
  sparseExact?: boolean;
  /** The zero check's block (dd's obs= for conv=sparse); must divide blockBytes. Omitted: blockBytes. */
  zeroBlockBytes?: number;
  onTargetError?: 'stop' | 'drop';
  /** OpenSSL digest name of the bytes read. */
  hash?: string;
  verify?: boolean;
  /** With verify: read the source again too (strict); otherwise the targets are checked against per-block digests of what the copy read. */
  verifyStrict?: boolean;
  verifyBehind?: boolean;
  /** Read each target back in the pipeline and write only the blocks that differ. */
  onlyChanged?: boolean;
  /** Bytes per second; 0 = unlimited. */
  rate?: number;
  /** Every request in the idle I/O priority class (background mode). */
  idlePriority?: boolean;
  /** > 0: make finished ranges durable and report them (checkpoint events) at this interval. */
  checkpointIntervalMs?: number;
  /** Omitted: 'auto'. */
  ioEngine?: NativeIoEngine;
}

/** What an endpoint is: a block device, a regular file, or a stream (pipe, socket, character device). */
export type NativeEndpointKind = 'block' | 'file' | 'pipe' | 'socket' | 'character';

export interface NativeFileReport {
  path: string;
  kind: NativeEndpointKind;
  sizeBytes: number;
  /** False for a stream: its size is not known. */
  sizeKnown: boolean;
  /** A stream, read or written strictly in order. */
  sequential: boolean;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  direct: boolean;
  directNote: string;
  created: boolean;
  /** Targets: dropped after failing (onTargetError 'drop'). */
  dropped?: boolean;
  error?: NativeErrorInfo;
  /** Targets: how zero blocks were handled when not as asked. */
  zeroNote?: string;
  /** Targets: holes of the source left unwritten. */
  holesKept?: boolean;
  /** Targets: bytes written by buffers abandoned when the copy stopped (not in bytesCopied). */
  unfinishedBytes?: number;
}

/** What the engine submitted, for diagnostics and benchmarks. */
export interface IoCounters {
  /** Read commands submitted. */
  reads: number;
  /** Write commands submitted. */
  writes: number;
  /** Of those, on the descriptor without O_DIRECT (unaligned tails or offsets, or no O_DIRECT support). */
  bufferedIos: number;
  /** Short reads/writes continued. */
  shortTransfers: number;
  /** -EAGAIN/-EINTR completions resubmitted. */
  requeues: number;
  /** io_uring_enter calls. */
  submitCalls: number;
  /** Linked writes cancelled by a short read and resubmitted. */
  brokenLinks: number;
  /** Failed read commands (unreadable blocks being located). */
  readErrors: number;
  /** Re-reads of unreadable blocks (retries). */
  retriedReads: number;
  /** Zeroing requests: fallocate (PUNCH_HOLE for zero blocks and holes, ZERO_RANGE for holes) or NBD_CMD_WRITE_ZEROES, one per zero run or hole, refused ones included. */
  discards: number;
  /** Read commands on targets (onlyChanged: read back to compare). */
  targetReads: number;
}

export interface NativeReport {
  bytesCopied: number;
  /** Bytes read from the source, partial buffers included. */
  bytesRead: number;
  bytesTotal: number;
  seconds: number;
  cancelled: boolean;
  durability: string;
  /** Absent when the source could not be opened. */
  source?: NativeFileReport;
  targets: NativeFileReport[];
  blockBytes: number;
  queueDepth: number;
  /** The I/O driver that ran the copy; absent when the copy failed before choosing one. */
  ioEngine?: 'io_uring' | 'threads';
  /** Why threads, when 'auto' fell back to them (io_uring_setup's failure explained). */
  ioEngineNote?: string;
  ring: {
    setupFlags: number;
    features: number;
    fixedBuffers: boolean;
    fixedBuffersNote: string;
    fixedFiles: boolean;
    fixedFilesNote: string;
    sqpoll: boolean;
    linked: boolean;
    batched: boolean;
  };
  io: IoCounters;
  domainOffset: number;
  domainLength: number;
  bad: { bytes: number; rangeCount: number; ranges: Array<[number, number]> };
  zero: { bytes: number; skipped: number; discarded: number };
  holes?: { bytes: number; note: string };
  checkpoints: number;
  /** threads: hash pool workers; 0 = computed on the engine's I/O thread. */
  hash?: { algorithm: string; hex: string; implementation: string; threads: number };
  /** With onlyChanged, per target: source bytes compared with it, and bytes written because they differed. */
  changed?: Array<{ bytesCompared: number; bytesWritten: number }>;
  verify?: {
    done: boolean;
    bytesCompared: number;
    mismatchedBlocks: number;
    blockBytes: number;
    firstMismatchOffset?: number;
    firstMismatchTarget?: number;
    mode: 'digest' | 'strict';
    sourceBytesRead: number;
    digest?: 'xxh3-128' | 'blake3-128';
    digestBlockBytes?: number;
    digestPagesSpilled?: number;
    behindBytes?: number;
  };
  rate: number;
  /** The unreadable block the copy stopped at (absolute source [offset, length]), when it stopped at one. */
  stoppedAtBadBlock?: [number, number];
}

/** A failed system call as the engine saw it; errno is positive here. */
export interface NativeErrorInfo {
  errno: number;
  syscall: string;
  path?: string;
  offset?: number;
  detail?: string;
}

export type NativeEvent =
  | {
      type: 'progress';
      domainOffset: number;
      domainLength: number;
      bytesDone: number;
      /** 0 with sizeKnown false. */
      bytesTotal: number;
      /** False for a stream source without a length: no total, no percent. */
      sizeKnown: boolean;
      badBytes: number;
      zeroBytes: number;
      paused: boolean;
      verifying: boolean;
      verifyDone: number;
      verifyTotal: number;
      /** Buffers in the ring now. */
      queueDepth: number;
    }
  | { type: 'checkpoint'; finished: Array<[number, number]>; bad: Array<[number, number]> }
  | { type: 'done'; report: NativeReport; error?: NativeErrorInfo };

export interface NativeCopyJob {
  start(): void;
  cancel(): void;
  /** Bytes written to every target so far, read live from the engine. */
  bytesDone(): number;
  /** Hold new I/O (in-flight I/O completes). */
  pause(): void;
  resume(): void;
  /** Bytes per second, 0 = unlimited; takes effect at once. */
  setRate(bytesPerSecond: number): void;
  /** Let the ring grow to this many buffers (up to the plan's queueDepthMax); it never shrinks. */
  setQueueDepth(depth: number): void;
}

export interface NativeProbe {
  available: boolean;
  error?: NativeErrorInfo;
  setupFlags?: number;
  features?: number;
  ops?: { read: boolean; write: boolean; readFixed: boolean; writeFixed: boolean; fsync: boolean };
  featureFlags?: { extArg: boolean; nodrop: boolean; singleMmap: boolean; deferTaskrun: boolean };
}

/** One block device as libudev reports it (device manager; see native/udev_node.h). */
export interface NativeUdevDevice {
  syspath: string;
  sysname: string;
  subsystem: string;
  /** '/dev/…' (from DEVNAME); absent when the device has none. */
  devnode?: string;
  /** 'disk' | 'partition' for block devices. */
  devtype?: string;
  /** Monitor events only: 'add' | 'remove' | 'change' | 'move' | 'online' | 'offline' | … */
  action?: string;
  /** Monitor events only: the kernel's uevent sequence number. */
  seqnum?: number;
  major?: number;
  minor?: number;
  /** The udev database has the device (a udev daemon processed it); false without a udev daemon. */
  initialized: boolean;
  /** udev properties: the database's when present, else the kernel's uevent (DEVNAME, DEVTYPE, MAJOR, MINOR, PARTN, …). */
  properties: Record<string, string>;
  /** Symlinks to the node from the udev database (/dev/disk/by-id/…); empty without one. */
  devlinks: string[];
  /** Identity sysattrs of the whole disk ('device/model', 'device/vendor', 'device/serial', 'serial', 'wwid', 'device/wwid'), present ones only. */
  diskSysattrs: Record<string, string>;
  /** Partitions: the parent disk's kernel name. */
  disk?: string;
}

/** What a UdevMonitor delivers: a device event, or once, a failure of its socket (the monitor is then closed). */
export type NativeUdevMessage =
  | (NativeUdevDevice & { action: string; source: 'kernel' | 'udev'; error?: undefined })
  | { error: NativeErrorInfo };

export interface NativeUdevMonitor {
  /** Keep the event loop alive while open (monitors start unreferenced). */
  ref(): NativeUdevMonitor;
  unref(): NativeUdevMonitor;
  hasRef(): boolean;
  /** Idempotent. */
  close(): void;
  /** The netlink socket, -1 once closed. */
  readonly fd: number;
  readonly source: 'kernel' | 'udev';
}

export type NativeUdevStatus = NativeLibraryStatus;

/** Device-manager calls throw JS Errors carrying this (positive errno). */
export interface NativeUdevError extends Error {
  sysError?: NativeErrorInfo;
}

/** One kernel partition's entry in its disk's partition table, as libblkid formats PART_ENTRY_* (native/blkid_library.h). */
export interface NativeBlkidPartitionEntry {
  major: number;
  minor: number;
  /** The table has an entry for this partition (matched by its start and size in sysfs). */
  found: boolean;
  number?: number;
  /** PART_ENTRY_SCHEME: 'gpt', 'dos', … */
  scheme?: string;
  /** PART_ENTRY_TYPE: a GPT type GUID, or '0x83' for MBR-style types. */
  type?: string;
  name?: string;
  uuid?: string;
  /** '0x1'; absent when zero. */
  flags?: string;
}

/** What a read-only libblkid probe of one device node found. */
export interface NativeBlkidProbe {
  /** 'ambiguous': more than one signature, nothing reported (as `blkid -p`, exit 8). */
  outcome: 'found' | 'nothing' | 'ambiguous';
  /** TYPE, LABEL, UUID, VERSION of a superblock; PTTYPE, PTUUID of a partition table. */
  values: Record<string, string>;
  /** One per partition asked about, in order. */
  entries: NativeBlkidPartitionEntry[];
}

/** Whether a runtime library (libudev, libblkid) could be loaded. */
export interface NativeLibraryStatus {
  /** The library name dlopen()ed: the default, or DEVMOVE_LIBUDEV / DEVMOVE_LIBBLKID. */
  library: string;
  available: boolean;
  error?: NativeErrorInfo;
}

/** What a loop device is attached to (LOOP_GET_STATUS64); see native/loop_device.h. */
export interface NativeLoopStatus {
  /** st_dev of the backing file, 'MAJ:MIN'. */
  backingDevice: string;
  /** st_ino of the backing file, decimal (may exceed 2^53). */
  backingInode: string;
  /** The backing file's rdev when it is itself a block device node, 'MAJ:MIN'. */
  backingRdev?: string;
  offsetBytes: number;
  /** 0 = to the end of the backing file. */
  sizeLimitBytes: number;
  /** The name the driver keeps (at most 63 bytes). */
  fileName: string;
}

export interface NativeBinding {
  readonly abiVersion: number;
  readonly CopyJob: new (plan: NativePlan, onEvent: (event: NativeEvent) => void) => NativeCopyJob;
  probe(): NativeProbe;
  explainIoUringSetupFailure(errno: number): string;
  /** A loop device's backing file identity and window; throws an Error with sysError (ENXIO: nothing attached). */
  loopStatus(path: string): NativeLoopStatus;
  /** Unblocks SIGUSR1 in the calling thread (Node with --disable-sigusr1 keeps it blocked). */
  unblockStatusSignal(): void;
  /** Device manager: monitor a udev netlink source ('kernel': raw uevents; 'udev': after the udev daemon), filtered by subsystem. */
  readonly UdevMonitor: new (
    source: 'kernel' | 'udev',
    subsystem: string,
    onEvent: (message: NativeUdevMessage) => void,
  ) => NativeUdevMonitor;
  /** Device manager: every device of the block subsystem. */
  udevListBlockDevices(): NativeUdevDevice[];
  /** Device manager: one block device by kernel name or number; undefined when none. */
  udevBlockDevice(query: { sysname: string } | { major: number; minor: number }): NativeUdevDevice | undefined;
  /** Whether libudev could be loaded (loads it on first call). */
  udevStatus(): NativeUdevStatus;
  /**
   * Content probe: libblkid on device nodes, read-only, several devices at once (on native threads;
   * the call blocks until all are done). `partitions`: [major, minor] of kernel partitions of that
   * whole disk whose table entries are wanted. Per request, in order: the probe, or the error that
   * stopped it (the node could not be opened or read). Throws (sysError) ELIBACC without libblkid.
   */
  blkidProbe(requests: Array<{ path: string; partitions: Array<[number, number]> }>): Array<NativeBlkidProbe | { error: NativeErrorInfo }>;
  /** Whether libblkid could be loaded (loads it on first call). */
  blkidStatus(): NativeLibraryStatus;
  /** User and group names of numeric ids, from the C library's name service; absent when unknown. */
  accountNames(uid: number, gid: number): { user?: string; group?: string };
}

const EXPECTED_ABI_VERSION = 4;

/** The package's root: dist/addon/binding.js and the bundled CLI dist/cli/main.js both sit two levels below it. */
const PACKAGE_ROOT = path.join(__dirname, '..', '..');

/**
 * Which devmove.node to load. DEVMOVE_NATIVE_PATH selects another build (the sanitizer build).
 * Otherwise node-gyp-build chooses, as in node-usb and leveldown: a build from source in
 * build/Release first, else the binary shipped in prebuilds/<platform>-<arch>/ whose tags fit
 * this process (Node-API, so one binary for every Node version; glibc or musl).
 */
export function nativePath(): string {
  const override = process.env.DEVMOVE_NATIVE_PATH;
  if (override) return path.resolve(override);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
  return nodeGypBuild.path(PACKAGE_ROOT);
}

let cached: NativeBinding | undefined;

/** One actionable error for every way loading fails: none found, wrong platform, or dlopen refused it. */
function loadError(file: string | undefined, cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
  const what = file === undefined ? 'its native addon' : `its native addon ${file}`;
  const fix = process.env.DEVMOVE_NATIVE_PATH
    ? 'DEVMOVE_NATIVE_PATH must name a devmove.node built for this system'
    : 'devmove ships a prebuilt binary for linux-x64 with glibc >= 2.28; elsewhere build it from source with ' +
      '`npm rebuild devmove` (needs python3, make and g++; npm >= 11 runs a dependency\'s build only once ' +
      'allowed: `npm install-scripts approve devmove`), or set DEVMOVE_NATIVE_PATH to a built devmove.node';
  return new Error(`devmove could not load ${what}: ${reason}. ${fix}.`, { cause });
}

export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    throw new Error(`devmove runs on Linux only (io_uring and O_DIRECT); this is ${process.platform}`);
  }
  let file: string | undefined;
  let binding: NativeBinding;
  try {
    file = nativePath();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as NativeBinding;
  } catch (cause) {
    throw loadError(file, cause);
  }
  if (binding.abiVersion !== EXPECTED_ABI_VERSION) {
    throw new Error(
      `devmove's native addon ${file} is ABI ${binding.abiVersion}, this JavaScript expects ${EXPECTED_ABI_VERSION}: rebuild it with \`npm rebuild devmove\``,
    );
  }
  cached = binding;
  return binding;
}
