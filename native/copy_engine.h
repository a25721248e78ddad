// The data movement operator: copies a byte range from one source to one or
// more targets through a ring of aligned buffers and one io_uring. Reads and
// writes are in flight at the same time; a freed buffer immediately takes the
// next sequential source address, and a buffer whose read completed is written
// at once, so both devices see sequential access and stay busy.
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
#include "io_uring_ring.h"
#include "sys_error.h"

namespace devmove {

struct TargetPlan {
  OpenRequest open;
  uint64_t offset_bytes = 0;
  int64_t truncate_to = -1;  // regular files: set the size to this first (dd without conv=notrunc); -1 = keep
};

struct CopyPlan {
  static constexpr uint32_t kDefaultBlockBytes = 512 * 1024;
  // One read/write is capped by the kernel at INT_MAX & PAGE_MASK; stay well below.
  static constexpr uint32_t kBlockBytesMax = 1024 * 1024 * 1024;
  static constexpr uint32_t kQueueDepthMax = 1024;
  static constexpr uint32_t kTargetsMax = 64;

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
  // write starts in the kernel as soon as the read completes (one target only).
  bool link_read_write = true;
  // One io_uring_enter for everything prepared per loop turn (true), or one per
  // SQE (false, for the ablation).
  bool batch_submissions = true;
  uint32_t progress_interval_ms = 100;
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
};

struct CopyReport {
  uint64_t bytes_copied = 0;
  uint64_t bytes_total = 0;
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
};

class CopyEngine {
 public:
  // (bytes durable-or-written so far, bytes planned); called on the engine's
  // thread at most once per progress_interval_ms, and once at the start.
  using ProgressFn = std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

  explicit CopyEngine(CopyPlan plan);
  ~CopyEngine();

  // Runs the whole job on the calling thread. Returns a failed SysError for
  // the first error (the job stops, in-flight I/O is drained and what was
  // written is flushed); errno ECANCELED after Cancel().
  SysError Run(const ProgressFn& progress, CopyReport* report);

  // Safe from any thread: stop submitting, drain, flush, return.
  void Cancel() { cancel_requested_.store(true, std::memory_order_relaxed); }

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
  SysError Loop(const ProgressFn& progress, CopyReport* report);
  void StartSlot(Slot& slot);
  void SubmitRead(Slot& slot, bool link);
  void SubmitWrite(Slot& slot, uint32_t target);
  void PrepIo(uint8_t op, const Fd& fd, Slot& slot, uint32_t buffer_offset, uint32_t length,
              uint64_t file_offset, uint64_t user_data, bool link);
  void HandleCompletion(uint64_t user_data, int32_t result);
  // Moves a slot on after any completion: continue a short read, write a
  // complete buffer, free the buffer when every target has it (or on stop).
  void Advance(Slot& slot);
  void Fail(SysError error);
  Fd FdFor(const DeviceFile& file, uint32_t file_index, uint64_t offset, uint64_t length);
  SysError MakeDurable(bool best_effort, CopyReport* report);

  CopyPlan plan_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<uint64_t> bytes_done_public_{0};
  std::unique_ptr<DeviceFile> source_;
  std::vector<std::unique_ptr<DeviceFile>> targets_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<IoUringRing> ring_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  // Registered-file index of each descriptor: [file][0 = buffered, 1 = direct].
  std::vector<int> fixed_index_;
  bool use_fixed_buffers_ = false;
  bool link_ = false;
  uint64_t length_bytes_ = 0;
  uint64_t next_position_ = 0;     // relative position of the next read
  uint64_t bytes_completed_ = 0;   // written to every target
  uint32_t in_flight_ = 0;
  bool stopping_ = false;
  SysError first_error_;
  CopyReport* report_ = nullptr;
};

}  // namespace devmove
