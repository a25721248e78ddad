// The data movement operator: copies a byte range from one source to one or
// more targets through a ring of aligned buffers and one io_uring. Reads and
// writes are in flight at the same time; a freed buffer immediately takes the
// next sequential source address, and a buffer whose read completed is written
// at once, so both devices stream.
//
// Around that loop: unreadable blocks are located exactly (trimmed down to the
// logical block) and either stop the copy there or, with no_error, are
// zero-filled and reported; finished ranges are made durable and reported in
// checkpoints (the mapfile); zero blocks can be skipped, punched or
// discarded; the rate can be capped and changed live; the copy can be paused;
// a failing target can be dropped while the others finish; the data read can
// be hashed; and the result can be verified by re-reading both sides.
//
// Pure C++ (no Node-API): the addon runs it on its own thread, the native
// tests drive it directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "buffer_pool.h"
#include "device_file.h"
#include "hasher.h"
#include "io_uring_ring.h"
#include "limits.h"
#include "sys_error.h"

namespace devmove {

// A byte range. In plans and reports: absolute offsets in the source.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
};

enum class ZeroMode {
  kWrite,    // write zero blocks like any other (dd)
  kSkip,     // the target is known to read zeros: do not write them
  kDiscard,  // punch a hole (files) / write-zeroes with unmap (block devices)
  kSparse,   // dd conv=sparse: seek over them; a file target is extended at the end
};

enum class TargetErrorPolicy { kStop, kDrop };

struct TargetPlan {
  OpenRequest open;
  uint64_t offset_bytes = 0;
  int64_t truncate_to = -1;  // regular files: set the size to this first (dd without conv=notrunc); -1 = keep
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
  bool fixed_buffers = true;     // IORING_REGISTER_BUFFERS + READ/WRITE_FIXED
  bool fixed_files = true;       // IORING_REGISTER_FILES + IOSQE_FIXED_FILE
  bool sqpoll = false;
  // Submit each buffer's read and its write as one IOSQE_IO_LINK chain, so the
  // write starts in the kernel as soon as the read completes (one target, zero
  // blocks written as usual).
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
  TargetErrorPolicy on_target_error = TargetErrorPolicy::kStop;
  std::string hash_algorithm;    // '' = none
  bool verify = false;           // re-read both sides with O_DIRECT after the copy and compare
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
  std::string kind;  // 'block' | 'file'
  uint64_t size_bytes = 0;
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
};

struct VerifyReport {
  bool done = false;
  uint64_t bytes_compared = 0;
  uint64_t mismatched_blocks = 0;       // of compare_block_bytes each
  uint32_t compare_block_bytes = 0;
  int64_t first_mismatch_offset = -1;   // absolute source offset
  int32_t first_mismatch_target = -1;
};

struct CopyReport {
  uint64_t bytes_copied = 0;       // this run: finished on every remaining target
  uint64_t bytes_total = 0;        // this run's planned bytes
  uint64_t domain_offset = 0;      // the whole copy range, absolute source offsets
  uint64_t domain_length = 0;
  double seconds = 0;
  bool cancelled = false;
  std::string durability;          // what was done to make the targets durable
  FileReport source;
  std::vector<FileReport> targets;
  uint32_t block_bytes = 0;
  uint32_t queue_depth = 0;
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
  uint64_t reads = 0;             // read commands submitted
  uint64_t writes = 0;            // write commands submitted
  uint64_t buffered_ios = 0;      // of those, on the non-O_DIRECT descriptor
  uint64_t short_transfers = 0;   // short reads/writes continued
  uint64_t requeues = 0;          // -EAGAIN / -EINTR resubmitted
  // Unreadable source blocks
  uint64_t read_errors = 0;       // failed read commands
  uint64_t retried_reads = 0;     // re-reads of failed pieces
  uint64_t bad_bytes = 0;
  std::vector<ByteRange> bad_ranges;  // merged, absolute source offsets (first 1000)
  uint64_t bad_range_count = 0;
  // Zero blocks (zero_mode != kWrite)
  uint64_t zero_bytes = 0;        // all-zero source bytes found
  uint64_t zero_bytes_skipped = 0;
  uint64_t zero_bytes_discarded = 0;
  uint64_t discards = 0;          // fallocate commands
  // Checkpoints (mapfile)
  uint64_t checkpoints = 0;
  std::string hash_algorithm;
  std::string hash_hex;           // digest of the bytes read, in source order
  VerifyReport verify;
  uint64_t rate_bytes_per_second = 0;  // the cap at the end (0 = none)
  // The unreadable block the copy stopped at (no_error false), absolute source
  // offset; length 0 when it did not stop at one.
  ByteRange stopped_at_bad_block;
};

struct ProgressInfo {
  uint64_t domain_offset = 0;   // the whole copy range (absolute source offsets)
  uint64_t domain_length = 0;
  uint64_t bytes_done = 0;      // finished on every target
  uint64_t bytes_total = 0;
  uint64_t bad_bytes = 0;
  uint64_t zero_bytes = 0;
  bool paused = false;
  bool verifying = false;
  uint64_t verify_done = 0;     // bytes compared so far
  uint64_t verify_total = 0;
};

class CopyEngine {
 public:
  // Called on the engine's thread at most once per progress_interval_ms, and
  // once at the start.
  using ProgressFn = std::function<void(const ProgressInfo&)>;
  // Ranges (absolute source offsets) that are now durable on every remaining
  // target: finished, and unreadable (zero-filled on the targets).
  using CheckpointFn = std::function<void(const std::vector<ByteRange>& finished, const std::vector<ByteRange>& bad)>;

  explicit CopyEngine(CopyPlan plan);
  ~CopyEngine();

  // Runs the whole job on the calling thread. Returns a failed SysError for
  // the first error (the job stops, in-flight I/O is drained and what was
  // written is flushed); errno ECANCELED after Cancel().
  SysError Run(const ProgressFn& progress, CopyReport* report, const CheckpointFn& checkpoint = {});

  // Safe from any thread: stop submitting, drain, flush, return.
  void Cancel() { cancel_requested_.store(true, std::memory_order_relaxed); }
  // Safe from any thread: hold new I/O (in-flight I/O completes) / go on.
  void Pause() { paused_.store(true, std::memory_order_relaxed); }
  void Resume() { paused_.store(false, std::memory_order_relaxed); }
  // Safe from any thread: bytes per second, 0 = unlimited.
  void SetRate(uint64_t bytes_per_second) { rate_.store(bytes_per_second, std::memory_order_relaxed); }

  // Safe from any thread: bytes written to every target so far.
  uint64_t bytes_done() const { return bytes_done_public_.load(std::memory_order_relaxed); }

 private:
  struct Slot;
  struct Fd {
    int fd = -1;
    int fixed_index = -1;
  };

  SysError Prepare(CopyReport* report);
  SysError SetupRing(CopyReport* report);
  SysError Loop(const ProgressFn& progress, const CheckpointFn& checkpoint, CopyReport* report);
  bool HasMoreWork() const { return extent_index_ < extents_.size(); }
  void StartSlot(Slot& slot);
  void SubmitRead(Slot& slot, bool link);
  void SubmitPieceRead(Slot& slot);
  void SubmitWrite(Slot& slot, uint32_t target);
  void SubmitDiscard(Slot& slot, uint32_t target);
  void PrepIo(uint8_t opcode, const Fd& fd, Slot& slot, uint32_t buffer_offset, uint32_t length,
              uint64_t file_offset, uint64_t user_data, bool link);
  io_uring_sqe* NextSqe();
  void HandleCompletion(uint64_t user_data, int32_t result);
  void HandleReadResult(Slot& slot, int32_t result);
  void ReadFailed(Slot& slot, int error, uint64_t offset, uint32_t length);
  void WriteFailed(uint32_t target, SysError error);
  // Moves a slot on after any completion: continue a short read, write a
  // complete buffer, free the buffer when every target has it (or on stop).
  void Advance(Slot& slot);
  void HashInOrder();
  void FinishIfDone(Slot& slot);
  void Fail(SysError error);
  // Stop at an unreadable block [position, position + length): everything
  // before it is still copied.
  void Halt(SysError error, uint64_t position, uint32_t length);
  bool Halted(const Slot& slot) const;
  uint32_t LiveTargets() const;
  Fd FdFor(const DeviceFile& file, uint32_t file_index, uint64_t offset, uint64_t length);
  void StartCheckpoint(const CheckpointFn& checkpoint);
  void EmitCheckpoint(const CheckpointFn& checkpoint);
  SysError MakeDurable(CopyReport* report);
  SysError FinishTargets();
  SysError Verify(const ProgressFn& progress, CopyReport* report);
  // The progress fields every phase reports.
  ProgressInfo ProgressNow(const CopyReport& report) const;
  uint64_t Absolute(uint64_t position) const { return plan_.source_offset_bytes + position; }

  CopyPlan plan_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> paused_{false};
  std::atomic<uint64_t> rate_{0};
  std::atomic<uint64_t> bytes_done_public_{0};
  std::unique_ptr<DeviceFile> source_;
  std::vector<std::unique_ptr<DeviceFile>> targets_;
  std::vector<uint8_t> dropped_;        // per target
  std::vector<uint8_t> discard_ok_;     // per target: fallocate may be used for zero blocks
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<IoUringRing> ring_;
  std::unique_ptr<Hasher> hasher_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  // Registered-file index of each descriptor: [file][0 = buffered, 1 = direct].
  std::vector<int> fixed_index_;
  bool use_fixed_buffers_ = false;
  bool link_ = false;
  uint32_t scrape_block_ = 512;        // smallest piece an unreadable range is read in
  uint64_t length_bytes_ = 0;          // the domain: [0, length) relative to source_offset
  std::vector<ByteRange> extents_;     // relative, sorted, merged, within the domain
  size_t extent_index_ = 0;
  uint64_t extent_done_ = 0;           // bytes of extents_[extent_index_] already started
  uint64_t planned_bytes_ = 0;
  uint64_t bytes_started_ = 0;
  uint64_t next_sequence_ = 0;         // start order of slots (the hash follows it)
  uint64_t hash_sequence_ = 0;
  uint64_t bytes_completed_ = 0;       // written to every target
  uint64_t bad_bytes_ = 0;
  std::vector<ByteRange> bad_all_;     // relative, this run
  std::vector<ByteRange> pending_finished_;  // relative, not yet checkpointed
  std::vector<ByteRange> pending_bad_;
  std::vector<ByteRange> checkpoint_finished_;  // in the checkpoint in flight
  std::vector<ByteRange> checkpoint_bad_;
  uint32_t checkpoint_fsyncs_ = 0;     // fdatasyncs of the checkpoint in flight
  bool checkpoint_failed_ = false;
  // A target was dropped: nothing more is reported finished (see WriteFailed).
  bool checkpoints_frozen_ = false;
  uint32_t in_flight_ = 0;
  bool stopping_ = false;
  uint64_t halt_position_ = UINT64_MAX;
  uint32_t halt_length_ = 0;
  SysError first_error_;
  SysError halt_error_;
  CopyReport* report_ = nullptr;
};

}  // namespace devmove
