// The only module that loads the compiled addon. It gives the binary a typed
// interface and, when loading fails, throws one error that says what to do.
import path from 'node:path';

export type NativeDirectMode = 'auto' | 'always' | 'never';
export type NativeDurability = 'fdatasync' | 'fsync' | 'dsync' | 'sync' | 'none';

/** The plan handed to the engine: clean primitives only, validated in copy.ts. */
export interface NativePlan {
  source: { path: string; offset: number; direct: NativeDirectMode; noatime: boolean };
  targets: Array<{
    path: string;
    offset: number;
    direct: NativeDirectMode;
    create: boolean;
    exclusiveCreate: boolean;
    /** Block devices: open with O_EXCL (refused while mounted or held). False only with force. */
    exclusive: boolean;
    /** Regular files: cut to this size before copying. */
    truncateTo?: number;
  }>;
  /** Omitted: to the end of the source. */
  length?: number;
  /** With length: stop early at the end of the source instead of failing (dd count=). */
  lengthIsMax: boolean;
  durability: NativeDurability;
  blockBytes: number;
  queueDepth: number;
  fixedBuffers: boolean;
  fixedFiles: boolean;
  sqpoll: boolean;
  linkReadWrite: boolean;
  batchSubmissions: boolean;
  progressIntervalMs: number;
}

export interface NativeFileReport {
  path: string;
  kind: 'block' | 'file';
  sizeBytes: number;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  direct: boolean;
  directNote: string;
  created: boolean;
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
}

export interface NativeReport {
  bytesCopied: number;
  bytesTotal: number;
  seconds: number;
  cancelled: boolean;
  durability: string;
  /** Absent when the source could not be opened. */
  source?: NativeFileReport;
  targets: NativeFileReport[];
  blockBytes: number;
  queueDepth: number;
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
  | { type: 'progress'; bytesDone: number; bytesTotal: number }
  | { type: 'done'; report: NativeReport; error?: NativeErrorInfo };

export interface NativeCopyJob {
  start(): void;
  cancel(): void;
  /** Bytes written to every target so far, read live from the engine. */
  bytesDone(): number;
}

export interface NativeProbe {
  available: boolean;
  error?: NativeErrorInfo;
  setupFlags?: number;
  features?: number;
  ops?: { read: boolean; write: boolean; readFixed: boolean; writeFixed: boolean; fsync: boolean };
  featureFlags?: { extArg: boolean; nodrop: boolean; singleMmap: boolean; deferTaskrun: boolean };
}

export interface NativeBinding {
  readonly abiVersion: number;
  readonly CopyJob: new (plan: NativePlan, onEvent: (event: NativeEvent) => void) => NativeCopyJob;
  probe(): NativeProbe;
  explainIoUringSetupFailure(errno: number): string;
}

const EXPECTED_ABI_VERSION = 1;

/** Where the addon is looked for; DEVMOVE_NATIVE_PATH selects another build (the sanitizer build). */
export function nativePath(): string {
  const override = process.env.DEVMOVE_NATIVE_PATH;
  if (override) return path.resolve(override);
  return path.join(__dirname, '..', 'build', 'Release', 'devmove.node');
}

let cached: NativeBinding | undefined;

export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    throw new Error(`devmove runs on Linux only (io_uring and O_DIRECT); this is ${process.platform}`);
  }
  const file = nativePath();
  let binding: NativeBinding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as NativeBinding;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new Error(
      `devmove could not load its native addon ${file}: ${reason}. ` +
        'Build it with `npm rebuild devmove` (needs python3, make and g++), ' +
        'or set DEVMOVE_NATIVE_PATH to a built devmove.node.',
      { cause },
    );
  }
  if (binding.abiVersion !== EXPECTED_ABI_VERSION) {
    throw new Error(
      `devmove's native addon ${file} is ABI ${binding.abiVersion}, this JavaScript expects ${EXPECTED_ABI_VERSION}: rebuild it with \`npm rebuild devmove\``,
    );
  }
  cached = binding;
  return binding;
}
