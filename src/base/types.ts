// The public data types of the library: options, progress, results, and the
// lists of accepted values that the CLI and job files share.
import type { IoCounters } from '../addon/binding';

export type Size = number | bigint | string;
export type DirectMode = 'auto' | 'always' | 'never';
export type Durability = 'fdatasync' | 'fsync' | 'dsync' | 'sync' | 'none';
/**
 * All-zero source blocks: 'write' them like any other (default, dd); 'skip' them because the target
 * already reads zeros (qemu-img/nbdcopy --target-is-zero); 'discard' them (hole punch on files,
 * write-zeroes with unmap on block devices that guarantee zeroes; written where neither works);
 * 'sparse' = dd conv=sparse (seek over them; a file target is extended to the copy's end).
 */
export type ZeroBlocks = 'write' | 'skip' | 'discard' | 'sparse';
/**
 * Holes of a sparse source file (where SEEK_DATA/SEEK_HOLE says there is no data) or of an NBD export
 * (NBD_STATE_ZERO in its block status) are never read.
 * 'auto' (default): on a file target this copy creates or truncates they stay holes (as qemu-img
 * keeps them); on any other target they go through zeroBlocks. 'policy': through zeroBlocks on every
 * target ('write': the fully allocated target dd makes, still without reading them: each hole zeroed in
 * place by one write-zeroes without unmap — fallocate(ZERO_RANGE), NBD_CMD_WRITE_ZEROES with
 * NBD_CMD_FLAG_NO_HOLE — where the target takes it, else zeros written; zeroNote says why).
 * 'read': read like data (dd's I/O exactly).
 */
export type Holes = 'auto' | 'policy' | 'read';
export type TargetErrorPolicy = 'stop' | 'drop';
/**
 * The I/O driver: 'io_uring', worker threads with pread/pwrite ('threads'), or 'auto' — io_uring,
 * and threads where io_uring cannot be set up (a seccomp profile such as Docker's or containerd's
 * default, sysctl kernel.io_uring_disabled, RLIMIT_MEMLOCK), named in the result.
 */
export type IoEngine = 'auto' | 'io_uring' | 'threads';
/** What a DevmoveError carries (see base/errors.ts). */
export interface SystemErrorLike extends Error {
  code: string;
  errno: number;
  syscall?: string;
  operation?: string;
  path?: string;
  offset?: number;
  detail?: string;
}

/** A byte range: [offset, length]. */
export type Range = [offset: number, length: number];

/** '-': standard input as a source, standard output as a target, as in dd. */
export const STANDARD_STREAM = '-';

export const DEFAULT_BLOCK_SIZE = 512 * 1024;
/** Chosen by measurement on a loop-device pair over tmpfs (see bench/): 4–8 buffers saturate it. */
export const DEFAULT_QUEUE_DEPTH = 8;

export interface CopyOptions {
  /**
   * Block device or image file to read: a path, or a node name such as 'sdb', 'loop3' or '7:3'; or an
   * NBD export's URI (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH).
   */
  source: string;
  /** Block device, image file (path or node name; a missing regular file is created, see createTarget) or NBD export URI to write. */
  target?: string;
  /**
   * Several targets (fan-out): each block is read once and written to every target from the same
   * buffer. Give target or targets, not both. Up to 64.
   */
  targets?: string[];
  /** A target that fails: 'stop' the job (default) or 'drop' it, report it and let the others finish. */
  onTargetError?: TargetErrorPolicy;
  /** Byte offset in the source where the copy starts. Default 0. */
  sourceOffset?: Size;
  /** Byte offset in the target where the copy starts. Default 0. */
  targetOffset?: Size;
  /** Exact number of bytes to copy; fails if the source is shorter. Default: to the end of the source. */
  length?: Size;
  /** Copy at most this many bytes, stopping early at the end of the source (dd's count=). */
  maxLength?: Size;
  /**
   * I/O size and size of each buffer in the ring. Default '512K'; 1 byte to 1 GiB. Sizes that are not a
   * multiple of a side's logical block size go through the page cache on that side (or fail with direct: 'always').
   */
  blockSize?: Size;
  /** Buffers in the ring, i.e. I/O commands in flight at most. Default 8; 1..1024. */
  queueDepth?: number;
  /**
   * O_DIRECT use: 'auto' (default) uses it wherever the file supports it and the I/O is aligned,
   * falling back visibly (see result.source.direct/directNote); 'always' fails instead of falling
   * back; 'never' goes through the page cache. One mode for both sides, or one per side.
   */
  direct?: DirectMode | { source?: DirectMode; target?: DirectMode };
  /**
   * How the copy is made durable before it resolves: 'fdatasync' (default), 'fsync',
   * 'dsync' (every write O_DSYNC/FUA), 'sync' (O_SYNC), or 'none' (not durable on success!).
   */
  durability?: Durability;
  /** Create a missing regular-file target. Default true. Never creates files under /dev. */
  createTarget?: boolean;
  /** Fail if the target already exists (dd conv=excl). Default false. */
  exclusiveCreate?: boolean;
  /**
   * Cut a regular-file target before copying: true cuts it at targetOffset (dd without conv=notrunc),
   * a size cuts it to that size. Block devices are never truncated. Default false.
   */
  truncateTarget?: boolean | Size;
  /** Open the source with O_NOATIME. Default false. */
  noatime?: boolean;
  /**
   * Write to a block device even though it is mounted read-only or held by LVM/md/dm (and without the
   * O_EXCL claim). Never overrides: mounted read-write, same device or overlapping ranges, read-only
   * device, target too small. Default false.
   */
  force?: boolean;
  /** Aborting it cancels the copy: in-flight I/O drains, written data is flushed, the job rejects with an AbortError. */
  signal?: AbortSignal;
  /** Called with progress at most every progressInterval ms. */
  onProgress?: (progress: CopyProgress) => void;
  /** Milliseconds between progress events; at least 100 (≤10 Hz). Default 200. */
  progressInterval?: number;
  /** Engine switches, for benchmarks and ablations. All default to the measured best. */
  engine?: EngineOptions;
  /**
   * Unreadable source blocks: false (default) stops at the first one, after locating it to the logical
   * block and copying everything before it; true (dd conv=noerror,sync) zero-fills them on the target,
   * reports them (result.bad) and goes on.
   */
  noError?: boolean;
  /** Extra reads of an unreadable logical block before it counts as bad. Default 0; up to 1000. */
  retries?: number;
  /**
   * GNU ddrescue mapfile: progress is recorded there (finished, bad and non-tried ranges) and a rerun
   * with the same mapfile copies only what is not finished. Updated atomically every checkpointInterval.
   */
  mapfile?: string;
  /**
   * GNU ddrescue's --domain-mapfile: only the ranges this mapfile marks finished ('+') are read and
   * written (absolute source offsets); the rest of each target is left as it is. `partclone.<fs> -D`
   * writes one for a filesystem's used blocks. With mapfile, a resume copies what is in both.
   */
  domainMapfile?: string;
  /** With noError and a mapfile: read the ranges the map marks bad again. Default false. */
  retryBad?: boolean;
  /** Milliseconds between mapfile checkpoints (fdatasync of the targets, then the map). Default 1000; ≥ 100. */
  checkpointInterval?: number;
  /**
   * An NBD server (a source or target given as nbd:// or nbd+unix://) that owes answers and sends
   * nothing for this many seconds is given up on: its connections are closed, the copy fails with
   * ECONNABORTED naming the export, and a mapfile resumes it. Also bounds the final flush's wait.
   * 0 waits forever. Default 60; at most 86400.
   */
  nbdTimeout?: number;
  /**
   * When an NBD server goes away mid-copy (connection reset or closed, silent past nbdTimeout,
   * refusing connections while it restarts), start the copy again from the mapfile up to this many
   * times, waiting 1, 2, 4, 8, 16, then 30 s before each ('reconnect' event). The mapfile holds what
   * the server had flushed, so everything written since the last flush is written again. Needs
   * mapfile. A server's error reply (EIO, ENOSPC) is not retried. Default 0; at most 100.
   */
  reconnect?: number;
  /**
   * After the copy, read each target again with O_DIRECT and compare it with what was copied; a
   * difference rejects with EILSEQ (the error's offset is the target's first differing byte).
   * true: with one read — while copying, devmove keeps a 128-bit digest of every block it read
   * (XXH3-128 from libxxhash, else BLAKE3; result.verify.digest), and the verify pass reads only the
   * targets (and the source only for a block without a digest or whose digest differs). 'strict':
   * read the source again too and compare byte for byte (also catches a source that changed during
   * the copy). 'behind': with one read, but each range is read back from the targets as soon as every
   * target has it, while the copy goes on; the pass after the copy reads only what that could not
   * confirm (result.verify.behindBytes says how much it did). Faster where the devices have room for
   * the extra reads; a change somebody makes to a target after its range was read back is not seen.
   * Default false.
   */
  verify?: boolean | 'strict' | 'behind';
  /**
   * Read each target back in the same pipeline as the source and write only the 4 KiB blocks that
   * differ (a second pass of a migration: writes = changed blocks). Targets must be seekable and
   * readable (not a pipe); an existing file target must not be truncated (truncateTarget false).
   * Reported as result.changed.
   */
  onlyChanged?: boolean;
  /**
   * Digest of the bytes read, in source order: 'blake3' (devmove's own, on the CPU's widest SIMD; `b3sum`
   * prints the same), or OpenSSL's 'sha256', 'sha512', 'sha1', 'md5', 'blake2b512', 'sha3-256'.
   */
  hash?: HashAlgorithm;
  /** Bytes per second at most (e.g. '200M'); 0 or absent = unlimited. job.setRate() changes it live. */
  rate?: Size;
  /**
   * Background mode: small requests (128 KiB) and few in flight (2), so other I/O on the same devices
   * keeps its latency. blockSize/queueDepth given explicitly win.
   */
  background?: boolean;
  /** All-zero source blocks; default 'write'. */
  zeroBlocks?: ZeroBlocks;
  /** Holes of a sparse source file: never read; default 'auto' (see Holes). */
  holes?: Holes;
  /**
   * The block the zero check judges (a block is all zeros or not), as dd's obs= does for conv=sparse.
   * Must divide blockSize. Default: blockSize.
   */
  zeroBlockSize?: Size;
  /** I/O driver. Default 'auto', or the DEVMOVE_IO_ENGINE environment variable when set. */
  ioEngine?: IoEngine;
}

export const HASH_ALGORITHMS = ['blake3', 'sha256', 'sha512', 'sha1', 'md5', 'blake2b512', 'sha3-256'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];
/** How verify compared: against the copy's per-block digests (one read), or re-reading the source. */
export type VerifyMode = 'digest' | 'strict';
export type BlockDigestAlgorithm = 'xxh3-128' | 'blake3-128';
export const BACKGROUND_BLOCK_SIZE = 128 * 1024;
export const BACKGROUND_QUEUE_DEPTH = 2;
export const DEFAULT_CHECKPOINT_INTERVAL = 1000;
/** Seconds an NBD server that owes answers may stay silent (nbdTimeout). */
export const DEFAULT_NBD_TIMEOUT = 60;

export interface EngineOptions {
  /** Register the buffer ring with io_uring (READ_FIXED/WRITE_FIXED). Default true. */
  fixedBuffers?: boolean;
  /** Register the file descriptors with io_uring. Default true. */
  fixedFiles?: boolean;
  /** Let a kernel thread poll the submission queue. Default false. */
  sqpoll?: boolean;
  /**
   * Submit each buffer's read and write as one linked chain (IOSQE_IO_LINK), so the write starts in the
   * kernel as soon as its read completes. Default true (measured: +40 % on a tmpfs loop pair, neutral on
   * a disk pair); single-target copies only.
   */
  linkReadWrite?: boolean;
  /** One io_uring_enter per loop turn for everything prepared (true) or one per request. Default true. */
  batchSubmissions?: boolean;
}

export interface CopyProgress {
  bytesDone: number;
  /** Undefined when the size is not known (a pipe as the source, without a length). */
  bytesTotal: number | undefined;
  /** 0..100; undefined when the size is not known. */
  percent: number | undefined;
  /** Recent rate, bytes per second. */
  bytesPerSecond: number;
  /** Seconds left at the recent rate; undefined until a rate is known. */
  etaSeconds: number | undefined;
  elapsedSeconds: number;
  /** Unreadable bytes zero-filled so far (noError). */
  badBytes: number;
  /** All-zero bytes found so far (zeroBlocks other than 'write'). */
  zeroBytes: number;
  paused: boolean;
  /** 'copy', then 'verify' while comparing (verifyDone of verifyTotal bytes). */
  phase: 'copy' | 'verify';
  verifyDone: number;
  verifyTotal: number;
}

export interface FileInfo {
  path: string;
  /** 'pipe', 'socket' or 'character' for a stream (standard input/output, a FIFO): read and written in order; 'nbd' for an NBD export (path is its URI). */
  kind: 'block' | 'file' | 'pipe' | 'socket' | 'character' | 'nbd';
  /** For a stream: 0, its size is not known. */
  sizeBytes: number;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  /** Whether O_DIRECT was used for the aligned I/O on this side. */
  direct: boolean;
  /** Why not, when direct is false. */
  directNote?: string;
  /** The target file did not exist and was created. */
  created: boolean;
  /** Targets: failed and dropped (onTargetError 'drop'); error says why. */
  dropped?: boolean;
  /** A DevmoveError (declared structurally here: errors.ts builds on these types). */
  error?: SystemErrorLike;
  /** Targets: how zero blocks were handled when not as asked. */
  zeroNote?: string;
  /**
   * Targets, after a failed or cancelled copy: bytes written past the finished ones (bytesCopied) by
   * buffers that never completed, e.g. a write cut short by a full disk or a file-size limit.
   */
  unfinishedBytes?: number;
  /** Targets: holes of the source were left unwritten (the target reads zeros there). */
  holesKept?: boolean;
  /** Targets, with onlyChanged: source bytes compared with this target, and bytes written because they differed. */
  changed?: { bytesCompared: number; bytesWritten: number };
}

export interface CopyResult {
  /** This run's bytes (after a reconnect: the last run's; the mapfile has the whole copy). */
  bytesCopied: number;
  /** Times the copy started again from its mapfile after an NBD server went away (options.reconnect). */
  reconnects?: number;
  /** Bytes read from the source, partial buffers included (dd's "records in"). */
  bytesRead: number;
  seconds: number;
  bytesPerSecond: number;
  /** What made the target durable: 'fdatasync', 'fsync', 'O_DSYNC writes', 'O_SYNC writes', 'none', or 'none (the target is a stream)' when every target is a pipe; with an NBD target the server's meaning follows ('fdatasync (NBD: NBD_CMD_FLUSH on every connection)', '... (NBD: FUA writes)'). */
  durability: string;
  source: FileInfo;
  /** The first target (the only one without fan-out). */
  target: FileInfo;
  /** Every target, in the order given. */
  targets: FileInfo[];
  /** The copy's range in the source: [sourceOffset, sourceOffset + length). */
  range: { offset: number; length: number };
  /** Unreadable source bytes (zero-filled on the targets with noError): absolute source ranges, first 1000. */
  bad: { bytes: number; rangeCount: number; ranges: Range[] };
  /** All-zero source bytes found, and how many were not written (skipped) or discarded. */
  zero: { bytes: number; skipped: number; discarded: number };
  /**
   * Holes of the source, never read: bytes, and how the source's data was found ('SEEK_DATA/SEEK_HOLE')
   * or why holes were read like data.
   */
  holes: { bytes: number; note: string };
  /**
   * Digest of the bytes read, in source order. implementation: 'openssl', or for 'blake3' the SIMD
   * kernel that computed it ('avx512', 'avx2', 'portable'). threads: the hash pool's workers that
   * computed it off the I/O thread (one per usable CPU; DEVMOVE_HASH_THREADS=N sets N, =io computes it on
   * the engine's thread: 0).
   */
  hash?: { algorithm: string; hex: string; implementation: string; threads: number };
  /**
   * mode: 'digest' (verify with one read) or 'strict'; digest: the per-block digest ('xxh3-128', or
   * 'blake3-128' where libxxhash is missing) and its block; sourceBytesRead: source bytes the verify
   * pass read again (all in strict mode); digestPagesSpilled: 64 KiB pages of digests that went to the
   * spill file (DEVMOVE_VERIFY_DIGEST_MEMORY bytes stay in memory, 64 MiB by default); behindBytes: of
   * bytesCompared, the bytes confirmed behind the copy (verify 'behind').
   */
  verify?: {
    bytesCompared: number; mismatchedBlocks: number; blockBytes: number; firstMismatchOffset?: number;
    mode: VerifyMode; sourceBytesRead: number; digest?: BlockDigestAlgorithm; digestBlockBytes?: number; digestPagesSpilled?: number;
    behindBytes?: number;
  };
  /**
   * With onlyChanged: source bytes compared with what the targets held and bytes written because they
   * differed, summed over the targets (each target's in targets[i].changed).
   */
  changed?: { bytesCompared: number; bytesWritten: number };
  /** With domainMapfile: the domain's bytes within the copy's range (all that was to be copied). */
  domain?: { path: string; bytes: number };
  mapfile?: {
    path: string;
    /** A previous run's map was found and only what it lacked was copied. */
    resumed: boolean;
    /** Bytes the map already had as finished before this run. */
    previouslyFinished: number;
    finished: number;
    bad: number;
    nonTried: number;
  };
  /** The rate cap at the end, bytes per second (0 = none). */
  rate: number;
  blockSize: number;
  queueDepth: number;
  /** The I/O driver that ran the copy. */
  ioEngine: 'io_uring' | 'threads';
  /** Why threads when ioEngine 'auto' fell back to them (why io_uring could not be set up). */
  ioEngineNote?: string;
  engine: {
    fixedBuffers: boolean;
    fixedBuffersNote?: string;
    fixedFiles: boolean;
    fixedFilesNote?: string;
    sqpoll: boolean;
    linkReadWrite: boolean;
    batchSubmissions: boolean;
    ringSetupFlags: number;
  };
  io: IoCounters;
}

/** A lost NBD server, and the copy about to start again from its mapfile (options.reconnect). */
export interface ReconnectEvent {
  /** This attempt, 1-based, and the most there will be. */
  attempt: number;
  of: number;
  /** The wait before it starts. */
  delaySeconds: number;
  /** Why the last run ended (ECONNRESET, ECONNABORTED, ECONNREFUSED ... naming the export). */
  error: Error;
}

export interface CopyJobEvents {
  progress: [CopyProgress];
  reconnect: [ReconnectEvent];
}

export const DIRECT_MODES: readonly DirectMode[] = ['auto', 'always', 'never'];
export const DURABILITIES: readonly Durability[] = ['fdatasync', 'fsync', 'dsync', 'sync', 'none'];
export const ZERO_MODES: readonly ZeroBlocks[] = ['write', 'skip', 'discard', 'sparse'];
export const HOLE_MODES: readonly Holes[] = ['auto', 'policy', 'read'];
export const TARGET_ERROR_POLICIES: readonly TargetErrorPolicy[] = ['stop', 'drop'];
export const IO_ENGINES: readonly IoEngine[] = ['auto', 'io_uring', 'threads'];
