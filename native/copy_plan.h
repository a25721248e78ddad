// What a copy is asked to do (CopyPlan, from JavaScript or a native test) and
// what it reports (CopyReport, ProgressInfo): plain data, no behaviour.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "endpoint.h"
#include "limits.h"
#include "ranges.h"
#include "sys_error.h"

namespace devmove {

enum class ZeroMode {
  kWrite,    // write zero blocks like any other (dd)
  kSkip,     // the target is known to read zeros: do not write them
  kDiscard,  // punch a hole (files) / write-zeroes with unmap (block devices)
  kSparse,   // dd conv=sparse: seek over them; a file target is extended at the end
};

enum class TargetErrorPolicy { kStop, kDrop };

// Holes of a source that can say where its data is (a sparse image file:
// SEEK_DATA/SEEK_HOLE; NBD block status later) are never read. kAuto: a hole
// stays a hole on a regular-file target this copy created or cut at or before
// the copy's start on it (it reads zeros there already, as qemu-img keeps
// them), and goes through zero_mode on every other target. kPolicy: through
// zero_mode on every target (kWrite: zeros written without reading them — the
// fully allocated target dd makes). kRead: read like data (dd's I/O exactly).
enum class HoleMode { kAuto, kPolicy, kRead };

// Which I/O driver runs the copy: io_uring, worker threads, or io_uring with
// threads where io_uring cannot be set up (EPERM/ENOSYS/ENOMEM: seccomp,
// kernel.io_uring_disabled, RLIMIT_MEMLOCK).
enum class IoEngineChoice { kAuto, kIoUring, kThreads };

struct TargetPlan {
  OpenRequest open;
  uint64_t offset_bytes = 0;
  int64_t truncate_to = -1;  // regular files: set the size to this first (dd without conv=notrunc); -1 = keep
  // With truncate_to == 0: cut by opening with O_TRUNC, as GNU dd does when
  // seek= is below one output block (instead of ftruncate).
  bool truncate_at_open = false;
};

struct CopyPlan {
  static constexpr uint32_t kDefaultBlockBytes = 512 * 1024;
  static constexpr uint32_t kBlockBytesMax = limits::kBlockBytesMax;
  static constexpr uint32_t kQueueDepthMax = limits::kQueueDepthMax;
  static constexpr uint32_t kTargetsMax = limits::kTargetsMax;

  OpenRequest source;
  uint64_t source_offset_bytes = 0;
  std::vector<TargetPlan> targets;
  bool has_length = false;       // false: to the end of the source
  uint64_t length_bytes = 0;
  bool length_is_max = false;    // true: stop early at the source's end (dd count=)
  uint32_t block_bytes = kDefaultBlockBytes;
  uint32_t queue_depth = 8;      // buffers in the ring = I/Os in flight at most
  // The ring may grow to this many buffers while the copy runs (SetQueueDepth:
  // a job hands a finished pair's budget to the pairs still running); 0 = it
  // stays at queue_depth. Address space is reserved for it, memory only as it grows.
  uint32_t queue_depth_max = 0;
  IoEngineChoice io_engine = IoEngineChoice::kAuto;
  bool fixed_buffers = true;     // IORING_REGISTER_BUFFERS + READ/WRITE_FIXED
  bool fixed_files = true;       // IORING_REGISTER_FILES + IOSQE_FIXED_FILE
  bool sqpoll = false;
  // Submit each buffer's read and its write as one IOSQE_IO_LINK chain, so the
  // write starts in the kernel as soon as the read completes (one target, zero
  // blocks written as usual). Measured +40 % on the ram pair.
  bool link_read_write = true;
  // One io_uring_enter for everything prepared per loop turn (true), or one per
  // SQE (false, for the ablation).
  bool batch_submissions = true;
  uint32_t progress_interval_ms = 100;

  // What to copy within the copy's domain (absolute source offsets, any
  // order, may overlap); empty = the whole domain. A resumed copy passes the
  // ranges its mapfile does not mark finished.
  bool has_extents = false;
  std::vector<ByteRange> extents;
  // Unreadable source blocks: false = stop at the first one (its exact offset
  // is found first, everything before it is copied); true = zero-fill it on
  // the targets, report it and go on (dd conv=noerror,sync).
  bool no_error = false;
  uint32_t retries = 0;          // extra reads of an unreadable logical block before it counts as bad
  ZeroMode zero_mode = ZeroMode::kWrite;
  HoleMode hole_mode = HoleMode::kAuto;
  // kSparse when something will vouch for the target (a mapfile's finished
  // ranges, verify): a zero block is passed over only where the target already
  // reads zeros (past its end at the start); below that it is punched or
  // written, so the target holds the source's zeros. Plain dd conv=sparse
  // (false) leaves the old bytes under a zero block, as dd does.
  bool sparse_exact = false;
  // The zero check's block (dd's obs= for conv=sparse); 0 = the block size.
  // Must divide block_bytes.
  uint32_t zero_block_bytes = 0;
  TargetErrorPolicy on_target_error = TargetErrorPolicy::kStop;
  std::string hash_algorithm;    // '' = none
  bool verify = false;           // after the copy, read the targets again with O_DIRECT and compare
  // Verify how: false = with one read (the copy keeps a digest per block of
  // what it read and the verify pass reads only the targets); true = strict,
  // the source is read again too and compared byte for byte.
  bool verify_strict = false;
  // With one read: each range is read back from the targets once every
  // target has it, while the copy goes on (behind_verifier.h); the pass
  // after the copy reads only what that could not confirm.
  bool verify_behind = false;
  // Verify with one read: digests kept in memory (the rest spill to a file in
  // verify_spill_dir, on disk rather than tmpfs).
  uint64_t verify_digest_memory_bytes = 64ull << 20;
  std::string verify_spill_dir = "/var/tmp";
  // --only-changed: each buffer's range is read back from every target in the
  // same pipeline as the source's read, compared block by block, and only the
  // blocks that differ are written (a second pass of a migration). Targets
  // must be seekable and readable; a file target is never cut first.
  bool only_changed = false;
  std::vector<ByteRange> verify_skip;  // not compared (known-bad source blocks)
  uint64_t rate_bytes_per_second = 0;  // 0 = unlimited; SetRate() changes it live
  // Background copies: every request in the idle I/O class, so an I/O
  // scheduler that honours priorities (mq-deadline, bfq; loop devices pass it
  // on to their backing file) serves other work first.
  bool idle_priority = false;
  // > 0: every interval, make what finished durable on the targets and report
  // it through the checkpoint callback (the mapfile's only source of truth).
  uint32_t checkpoint_interval_ms = 0;
};

struct FileReport {
  std::string path;
  std::string kind;  // 'block' | 'file' | 'pipe' | 'socket' | 'character'
  uint64_t size_bytes = 0;
  bool size_known = true;
  bool sequential = false;   // a stream: read or written strictly in order
  uint32_t logical_block_bytes = 0;
  uint32_t physical_block_bytes = 0;
  bool direct = false;       // O_DIRECT used for the aligned I/O
  std::string direct_note;   // why not, when direct is false
  bool created = false;
  // Targets only:
  bool dropped = false;      // failed and dropped (TargetErrorPolicy::kDrop)
  SysError error;            // why it was dropped
  std::string zero_note;     // how zero blocks were handled, when not as asked
  uint64_t unfinished_bytes_written = 0;  // by buffers abandoned when the copy stopped (not in bytes_copied)
  bool holes_kept = false;   // targets: holes of the source left unwritten (the target reads zeros there)
  // Targets, with only_changed: source bytes compared with what the target
  // held, and bytes written because they differed (what the target accepted).
  uint64_t compared_bytes = 0;
  uint64_t changed_bytes_written = 0;
};

struct VerifyReport {
  bool done = false;
  uint64_t bytes_compared = 0;
  uint64_t mismatched_blocks = 0;       // of compare_block_bytes each
  uint32_t compare_block_bytes = 0;
  int64_t first_mismatch_offset = -1;   // absolute source offset
  int32_t first_mismatch_target = -1;
  std::string mode;                     // 'digest' (one read) or 'strict'
  std::string digest;                   // mode 'digest': 'xxh3-128' or 'blake3-128'
  uint32_t digest_block_bytes = 0;
  // Source bytes read again by the verify pass: all of them in strict mode;
  // in digest mode only blocks without a digest (a range's partial edge
  // blocks, ranges an earlier run copied) and blocks whose digest differs.
  uint64_t source_bytes_read = 0;
  uint64_t digest_pages_spilled = 0;    // pages of digests written to the spill file
  uint64_t behind_bytes = 0;            // of bytes_compared: confirmed behind the copy on every live target (--verify=behind)
};

struct CopyReport {
  uint64_t bytes_copied = 0;       // this run: finished on every remaining target
  uint64_t bytes_read = 0;         // this run: read from the source, partial buffers included
  uint64_t bytes_total = 0;        // this run's planned bytes (a stream source: what it held)
  uint64_t domain_offset = 0;      // the whole copy range, absolute source offsets
  uint64_t domain_length = 0;
  double seconds = 0;
  bool cancelled = false;
  std::string durability;          // what was done to make the targets durable
  FileReport source;
  std::vector<FileReport> targets;
  uint32_t block_bytes = 0;
  uint32_t queue_depth = 0;
  std::string io_engine;           // 'io_uring' | 'threads'
  std::string io_engine_note;      // why threads, when it was not asked for
  uint32_t ring_setup_flags = 0;
  uint32_t ring_features = 0;
  bool fixed_buffers = false;
  std::string fixed_buffers_note;
  bool fixed_files = false;
  std::string fixed_files_note;
  bool sqpoll = false;
  bool linked = false;             // read→write chains were used
  bool batched = true;
  uint64_t submit_calls = 0;       // io_uring_enter calls
  uint64_t broken_links = 0;       // linked writes cancelled by a short/failed read, resubmitted
  uint64_t reads = 0;              // read commands submitted (source)
  uint64_t target_reads = 0;       // read commands on targets (only_changed: read back to compare)
  uint64_t writes = 0;             // write commands submitted
  uint64_t buffered_ios = 0;       // of those, on the non-O_DIRECT descriptor
  uint64_t short_transfers = 0;    // short reads/writes continued
  uint64_t requeues = 0;           // -EAGAIN / -EINTR resubmitted
  // Unreadable source blocks
  uint64_t read_errors = 0;        // failed read commands
  uint64_t retried_reads = 0;      // re-reads of failed pieces
  uint64_t bad_bytes = 0;
  std::vector<ByteRange> bad_ranges;  // merged, absolute source offsets (first 1000)
  uint64_t bad_range_count = 0;
  // Zero blocks (zero_mode != kWrite)
  uint64_t zero_bytes = 0;         // all-zero source bytes found
  uint64_t zero_bytes_skipped = 0;
  uint64_t zero_bytes_discarded = 0;
  uint64_t discards = 0;           // fallocate commands
  // Holes of the source (hole_mode != kRead): never read
  uint64_t hole_bytes = 0;
  std::string holes_note;          // how the source's data was found, or why holes were read
  // Checkpoints (mapfile)
  uint64_t checkpoints = 0;
  std::string hash_algorithm;
  std::string hash_hex;            // digest of the bytes read, in source order
  std::string hash_implementation;  // 'openssl', or the BLAKE3 kernel ('avx512', 'avx2', 'portable')
  uint32_t hash_threads = 0;       // hash pool workers; 0 = on the engine's thread
  VerifyReport verify;
  bool only_changed = false;       // targets[].compared_bytes / changed_bytes_written are meant
  uint64_t rate_bytes_per_second = 0;  // the cap at the end (0 = none)
  // The unreadable block the copy stopped at (no_error false), absolute source
  // offset; length 0 when it did not stop at one.
  ByteRange stopped_at_bad_block;
};

struct ProgressInfo {
  uint64_t domain_offset = 0;   // the whole copy range (absolute source offsets)
  uint64_t domain_length = 0;
  uint64_t bytes_done = 0;      // finished on every target
  uint64_t bytes_total = 0;     // 0 with size_known false
  bool size_known = true;       // false: a stream source without a length (no percent)
  uint64_t bad_bytes = 0;
  uint64_t zero_bytes = 0;
  bool paused = false;
  bool verifying = false;
  uint64_t verify_done = 0;     // bytes compared so far
  uint64_t verify_total = 0;
  uint32_t queue_depth = 0;     // buffers in the ring now (grows with SetQueueDepth)
};

}  // namespace devmove
