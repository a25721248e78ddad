#include "copy_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/ioprio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <string>

namespace devmove {
namespace {

// user_data layout: slot index in the high 32 bits, op in bits 8..15, target in bits 0..7.
constexpr uint64_t kOpRead = 1;
constexpr uint64_t kOpWrite = 2;
constexpr uint64_t kOpDiscard = 3;
constexpr uint64_t kOpFsync = 4;
constexpr uint64_t kOpVerifySource = 5;
constexpr uint64_t kOpVerifyTarget = 6;
constexpr uint32_t kNoSlot = 0xffffffffu;

uint64_t PackUserData(uint32_t slot, uint64_t op, uint32_t target) {
  return (static_cast<uint64_t>(slot) << 32) | (op << 8) | target;
}

// How long one wait in the kernel may last: bounds cancellation and progress latency.
constexpr uint64_t kWaitTimeoutNs = 100ull * 1000 * 1000;
// An unreadable buffer is first re-read in pieces of this size, then the
// failing pieces block by block (ddrescue's trimming, in short).
constexpr uint32_t kScrapeChunkBytes = 64 * 1024;
constexpr size_t kBadRangesReported = 1000;

double NowSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void SleepSeconds(double seconds) {
  if (seconds <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(seconds);
  ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
  nanosleep(&ts, nullptr);
}

uint64_t RoundUp(uint64_t value, uint64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

FileReport Describe(const DeviceFile& f) {
  FileReport r;
  r.path = f.path();
  r.kind = f.kind_name();
  r.size_bytes = f.size_bytes();
  r.logical_block_bytes = f.logical_block_bytes();
  r.physical_block_bytes = f.physical_block_bytes();
  r.direct = f.has_direct();
  r.direct_note = f.direct_note();
  r.created = f.created();
  return r;
}

std::string Bytes(uint64_t n) { return std::to_string(n) + " bytes"; }

// Errors a failing medium or transport produces (the block layer's
// BLK_STS_* mapped to errno): worth locating and, with no_error, skipping.
// Anything else (EINVAL, EBADF, ENOMEM...) is a bug or a setup problem.
bool IsMediaError(int error) {
  switch (error) {
    case EIO: case ENODATA: case EREMOTEIO: case EILSEQ: case ETIMEDOUT: case ENOLINK: case EBADE: case EBADMSG:
      return true;
    default:
      return false;
  }
}

bool IsAllZero(const uint8_t* p, size_t n) {
  if (n < 16) {
    for (size_t i = 0; i < n; ++i)
      if (p[i] != 0) return false;
    return true;
  }
  uint64_t head;
  std::memcpy(&head, p, sizeof head);
  if (head != 0) return false;  // random data leaves here, on the first word
  return std::memcmp(p, p + 8, n - 8) == 0;
}

// Sorts and merges ranges in place.
void Normalize(std::vector<ByteRange>* ranges) {
  std::sort(ranges->begin(), ranges->end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> out;
  for (const ByteRange& r : *ranges) {
    if (r.length == 0) continue;
    if (!out.empty() && r.offset <= out.back().end()) {
      out.back().length = std::max(out.back().end(), r.end()) - out.back().offset;
    } else {
      out.push_back(r);
    }
  }
  ranges->swap(out);
}

// `ranges` minus `holes`, both normalized.
std::vector<ByteRange> Subtract(const std::vector<ByteRange>& ranges, const std::vector<ByteRange>& holes) {
  std::vector<ByteRange> out;
  size_t h = 0;
  for (ByteRange r : ranges) {
    while (h < holes.size() && holes[h].end() <= r.offset) ++h;
    size_t k = h;
    while (r.length > 0 && k < holes.size() && holes[k].offset < r.end()) {
      if (holes[k].offset > r.offset) out.push_back({r.offset, holes[k].offset - r.offset});
      const uint64_t end = r.end();
      const uint64_t next = std::min(end, holes[k].end());
      r.offset = next;
      r.length = end - next;
      ++k;
    }
    if (r.length > 0) out.push_back(r);
  }
  return out;
}

// A block device's capacity to write zeroes (what fallocate(PUNCH_HOLE)
// turns into): queue/write_zeroes_max_bytes, on the disk for a partition.
uint64_t WriteZeroesMaxBytes(dev_t rdev) {
  for (const char* rel : {"queue/write_zeroes_max_bytes", "../queue/write_zeroes_max_bytes"}) {
    const std::string path = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)) +
                             "/" + rel;
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    unsigned long long value = 0;
    const int n = std::fscanf(f, "%llu", &value);
    std::fclose(f);
    if (n == 1) return value;
  }
  return 0;
}

}  // namespace

struct CopyEngine::Slot {
  struct Piece {
    uint32_t offset = 0;  // in the buffer
    uint32_t length = 0;
    uint32_t tries = 0;
  };
  uint32_t index = 0;
  uint8_t* buffer = nullptr;
  bool busy = false;
  uint64_t sequence = 0;  // start order
  uint64_t position = 0;  // relative to the copy's start
  uint32_t length = 0;
  uint32_t read_done = 0;
  bool read_in_flight = false;
  bool examined = false;  // read complete: zero check done, handed to the hash
  bool zero = false;
  bool hashed = false;
  bool discarded = false;
  // Locating unreadable blocks: the rest of the buffer, read piece by piece.
  bool scraping = false;
  std::vector<Piece> pieces;
  size_t piece = 0;
  std::vector<ByteRange> bad;            // relative positions, zero-filled in the buffer
  std::vector<uint32_t> write_done;      // per target
  std::vector<uint8_t> write_in_flight;  // per target
};

CopyEngine::CopyEngine(CopyPlan plan) : plan_(std::move(plan)) { rate_.store(plan_.rate_bytes_per_second); }
CopyEngine::~CopyEngine() = default;

SysError CopyEngine::Run(const ProgressFn& progress, CopyReport* report, const CheckpointFn& checkpoint) {
  report_ = report;
  const double start = NowSeconds();
  SysError error = Prepare(report);
  if (!error.failed()) error = SetupRing(report);
  if (!error.failed()) error = Loop(progress, checkpoint, report);
  if (!error.failed() && plan_.verify) error = Verify(progress, report);
  report->bytes_copied = bytes_completed_;
  report->bad_bytes = bad_bytes_;
  {
    std::vector<ByteRange> bad = bad_all_;
    Normalize(&bad);
    report->bad_range_count = bad.size();
    for (size_t i = 0; i < bad.size() && i < kBadRangesReported; ++i)
      report->bad_ranges.push_back({Absolute(bad[i].offset), bad[i].length});
  }
  if (hasher_ && !error.failed()) {
    report->hash_algorithm = hasher_->algorithm();
    report->hash_hex = hasher_->FinalHex();
  }
  report->rate_bytes_per_second = rate_.load();
  if (halt_error_.failed()) report->stopped_at_bad_block = {Absolute(halt_position_), halt_length_};
  report->seconds = NowSeconds() - start;
  if (error.failed() && bytes_completed_ == 0) {
    // Nothing was written: leave no new empty file behind.
    for (auto& t : targets_) t->UnlinkIfCreated();
    for (FileReport& t : report->targets) t.created = false;
  }
  // Release everything now, not when the JS object is collected: the ring
  // first (nothing is in flight any more), then buffers, then descriptors.
  ring_.reset();
  pool_.reset();
  targets_.clear();
  source_.reset();
  return error;
}

SysError CopyEngine::Prepare(CopyReport* report) {
  assert(!plan_.targets.empty() && plan_.targets.size() <= CopyPlan::kTargetsMax);
  assert(plan_.queue_depth >= 1 && plan_.queue_depth <= CopyPlan::kQueueDepthMax);
  assert(plan_.block_bytes >= 1 && plan_.block_bytes <= CopyPlan::kBlockBytesMax);
  SysError error;

  source_ = DeviceFile::Open(plan_.source, &error);
  if (!source_) return error;
  report->source = Describe(*source_);

  const uint64_t source_size = source_->size_bytes();
  if (plan_.source_offset_bytes > source_size) {
    return SysError::Make(EINVAL, "read", source_->path(), -1,
                          "source offset " + Bytes(plan_.source_offset_bytes) + " is past the end of the source (" +
                              Bytes(source_size) + ")");
  }
  const uint64_t available = source_size - plan_.source_offset_bytes;
  length_bytes_ = available;
  if (plan_.has_length) {
    if (plan_.length_bytes > available && !plan_.length_is_max) {
      return SysError::Make(EINVAL, "read", source_->path(), -1,
                            "length " + Bytes(plan_.length_bytes) + " runs past the end of the source: only " +
                                Bytes(available) + " after offset " + std::to_string(plan_.source_offset_bytes));
    }
    length_bytes_ = std::min(plan_.length_bytes, available);
  }
  report->domain_offset = plan_.source_offset_bytes;
  report->domain_length = length_bytes_;

  // What this run copies: the plan's extents within the domain, or all of it.
  extents_.clear();
  if (plan_.has_extents) {
    for (const ByteRange& e : plan_.extents) {
      const uint64_t lo = std::max(e.offset, plan_.source_offset_bytes);
      const uint64_t hi = std::min(e.end(), plan_.source_offset_bytes + length_bytes_);
      if (hi > lo) extents_.push_back({lo - plan_.source_offset_bytes, hi - lo});
    }
    Normalize(&extents_);
  } else if (length_bytes_ > 0) {
    extents_.push_back({0, length_bytes_});
  }
  planned_bytes_ = 0;
  for (const ByteRange& e : extents_) planned_bytes_ += e.length;
  report->bytes_total = planned_bytes_;
  scrape_block_ = std::max<uint32_t>(512, source_->logical_block_bytes());

  auto require_direct_alignment = [&](const DeviceFile& f, DirectMode mode, uint64_t offset,
                                      const char* offset_name) -> SysError {
    if (mode != DirectMode::kAlways) return {};
    const uint32_t align = f.direct_alignment();
    if (plan_.block_bytes % align != 0)
      return SysError::Make(EINVAL, "open", f.path(), -1,
                            "direct I/O needs the block size (" + std::to_string(plan_.block_bytes) +
                                ") to be a multiple of the logical block size (" + std::to_string(align) + ")");
    if (offset % align != 0)
      return SysError::Make(EINVAL, "open", f.path(), -1,
                            std::string("direct I/O needs the ") + offset_name + " (" + std::to_string(offset) +
                                ") to be a multiple of the logical block size (" + std::to_string(align) + ")");
    return {};
  };
  error = require_direct_alignment(*source_, plan_.source.direct, plan_.source_offset_bytes, "source offset");
  if (error.failed()) return error;

  for (size_t i = 0; i < plan_.targets.size(); ++i) {
    const TargetPlan& t = plan_.targets[i];
    OpenRequest open = t.open;
    open.read_back = open.read_back || plan_.verify;
    std::unique_ptr<DeviceFile> opened = DeviceFile::Open(open, &error);
    if (!opened) return error;
    // Owned by targets_ from here on: a refusal below removes a file it created (Run()).
    targets_.push_back(std::move(opened));
    DeviceFile* target = targets_.back().get();
    if (target->st_rdev() == source_->st_rdev() && target->kind() == DeviceFile::Kind::kBlockDevice &&
        source_->kind() == DeviceFile::Kind::kBlockDevice) {
      return SysError::Make(EINVAL, "open", target->path(), -1,
                            "target is the same device as the source (" + source_->path() + ")");
    }
    for (size_t j = 0; j + 1 < targets_.size(); ++j) {
      const DeviceFile& other = *targets_[j];
      const bool same = target->kind() == other.kind() &&
                        (target->kind() == DeviceFile::Kind::kBlockDevice
                             ? target->st_rdev() == other.st_rdev()
                             : target->st_dev() == other.st_dev() && target->st_ino() == other.st_ino());
      if (same) {
        return SysError::Make(EINVAL, "open", target->path(), -1,
                              "the same target is given twice (also as " + other.path() + ")");
      }
    }
    if (target->kind() == DeviceFile::Kind::kRegularFile && source_->kind() == DeviceFile::Kind::kRegularFile &&
        target->st_dev() == source_->st_dev() && target->st_ino() == source_->st_ino()) {
      // One file as both source and target: only disjoint ranges are safe,
      // and cutting the file must not reach into what is still to be read.
      const uint64_t source_end = plan_.source_offset_bytes + length_bytes_;
      const uint64_t target_end = t.offset_bytes + length_bytes_;
      const bool overlap = length_bytes_ > 0 && plan_.source_offset_bytes < target_end && t.offset_bytes < source_end;
      if (overlap) {
        return SysError::Make(EINVAL, "open", target->path(), -1,
                              "target is the same file as the source (" + source_->path() +
                                  ") and the byte ranges overlap");
      }
      if (t.truncate_to >= 0 && static_cast<uint64_t>(t.truncate_to) < source_end) {
        return SysError::Make(EINVAL, "open", target->path(), -1,
                              "target is the same file as the source (" + source_->path() +
                                  "): truncating it at byte " + std::to_string(t.truncate_to) +
                                  " would destroy source data (use conv=notrunc)");
      }
    }
    error = require_direct_alignment(*target, t.open.direct, t.offset_bytes, "target offset");
    if (error.failed()) return error;
    if (target->kind() == DeviceFile::Kind::kBlockDevice) {
      const uint64_t end = t.offset_bytes + length_bytes_;
      if (end > target->size_bytes()) {
        return SysError::Make(ENOSPC, "write", target->path(), -1,
                              "target too small: the copy needs " + Bytes(end) + " (offset " +
                                  std::to_string(t.offset_bytes) + " + length " + std::to_string(length_bytes_) +
                                  ") but the device has " + Bytes(target->size_bytes()));
      }
    }
  }
  // Only once every target has been opened and checked: cut regular files
  // (dd without conv=notrunc), so a refusal leaves all targets untouched.
  for (size_t i = 0; i < targets_.size(); ++i) {
    const int64_t cut = plan_.targets[i].truncate_to;
    if (cut >= 0 && targets_[i]->kind() == DeviceFile::Kind::kRegularFile &&
        targets_[i]->Truncate(static_cast<uint64_t>(cut), &error) != 0)
      return error;
  }
  dropped_.assign(targets_.size(), 0);
  discard_ok_.assign(targets_.size(), 0);
  for (size_t i = 0; i < targets_.size(); ++i) {
    report->targets.push_back(Describe(*targets_[i]));
    if (plan_.zero_mode != ZeroMode::kDiscard) continue;
    const DeviceFile& t = *targets_[i];
    if (t.kind() == DeviceFile::Kind::kRegularFile) {
      discard_ok_[i] = 1;  // hole punching; a filesystem without it answers EOPNOTSUPP and zeros are written
    } else if (WriteZeroesMaxBytes(t.st_rdev()) > 0) {
      discard_ok_[i] = 1;
    } else {
      report->targets[i].zero_note =
          "the device cannot guarantee zeroes after a discard (queue/write_zeroes_max_bytes is 0): zero blocks are "
          "written";
    }
  }
  if (!plan_.hash_algorithm.empty()) {
    hasher_ = Hasher::Create(plan_.hash_algorithm, &error);
    if (!hasher_) return error;
  }
  report->block_bytes = plan_.block_bytes;
  report->queue_depth = plan_.queue_depth;
  return {};
}

SysError CopyEngine::SetupRing(CopyReport* report) {
  SysError error;
  const uint32_t targets = static_cast<uint32_t>(targets_.size());
  // Buffer memory follows the copy: never more buffers than it can use at
  // once, and never a buffer larger than its largest extent (rounded up to
  // the pool's alignment). bs=1G for a 64 MiB copy maps 64 MiB, and a copy of
  // nothing (count=0) maps a single page, as dd allocates nothing then.
  uint64_t useful = 0;
  uint64_t largest_extent = 0;
  for (const ByteRange& e : extents_) {
    useful += RoundUp(e.length, plan_.block_bytes) / plan_.block_bytes;
    largest_extent = std::max(largest_extent, e.length);
  }
  useful = std::max<uint64_t>(1, useful);
  const uint32_t depth = static_cast<uint32_t>(std::min<uint64_t>(plan_.queue_depth, useful));
  const uint64_t needed = std::max<uint64_t>(BufferPool::kAlignment, RoundUp(largest_extent, BufferPool::kAlignment));
  const uint32_t buffer_bytes = static_cast<uint32_t>(std::min<uint64_t>(plan_.block_bytes, needed));
  assert(buffer_bytes >= 1 && buffer_bytes <= plan_.block_bytes);
  pool_ = BufferPool::Create(depth, buffer_bytes, &error);
  if (!pool_) return error;

  RingOptions options;
  // Each slot has at most one read or one write (or discard) per target in
  // flight (a read and its linked write with link_read_write), plus one
  // fdatasync per target for a checkpoint. The CQ must hold all of their
  // completions; the SQ only what is prepared between two submits (NextSqe
  // flushes a full SQ), and IoUringRing::Create accepts at most 4096 SQ
  // entries. That flush must never split a linked read→write pair (a chain
  // ends at a submit: the write would run unlinked, before its read filled the
  // buffer), so with links the SQ holds all 2 × depth ≤ 2048.
  link_ = plan_.link_read_write && targets == 1 && plan_.zero_mode == ZeroMode::kWrite;
  const uint32_t in_flight_max = depth * (link_ ? 2 : std::max<uint32_t>(1, targets)) + targets;
  options.sq_entries = std::min<uint32_t>(4096, std::max<uint32_t>(8, in_flight_max));
  options.cq_entries = std::max<uint32_t>(options.sq_entries * 2, in_flight_max);
  options.sqpoll = plan_.sqpoll;
  ring_ = IoUringRing::Create(options, &error);
  if (!ring_) return error;
  report->ring_setup_flags = ring_->setup_flags();
  report->ring_features = ring_->features();
  report->sqpoll = (ring_->setup_flags() & IORING_SETUP_SQPOLL) != 0;
  if (!ring_->OpSupported(IORING_OP_READ) || !ring_->OpSupported(IORING_OP_WRITE)) {
    return SysError::Make(ENOSYS, "io_uring_setup", {}, -1,
                          "this kernel's io_uring lacks IORING_OP_READ/WRITE (Linux >= 5.6 is needed)");
  }
  if (plan_.checkpoint_interval_ms > 0 && !ring_->OpSupported(IORING_OP_FSYNC)) {
    return SysError::Make(ENOSYS, "io_uring_setup", {}, -1, "this kernel's io_uring lacks IORING_OP_FSYNC");
  }
  if (plan_.zero_mode == ZeroMode::kDiscard && !ring_->OpSupported(IORING_OP_FALLOCATE)) {
    for (size_t i = 0; i < targets_.size(); ++i) {
      if (discard_ok_[i]) report->targets[i].zero_note = "this kernel's io_uring lacks IORING_OP_FALLOCATE";
      discard_ok_[i] = 0;
    }
  }

  if (!plan_.fixed_buffers) {
    report->fixed_buffers_note = "disabled by option";
  } else if (!ring_->OpSupported(IORING_OP_READ_FIXED) || !ring_->OpSupported(IORING_OP_WRITE_FIXED)) {
    report->fixed_buffers_note = "kernel lacks READ_FIXED/WRITE_FIXED";
  } else {
    const int r = ring_->RegisterBuffers(pool_->iovecs().data(), pool_->count());
    if (r == 0) {
      use_fixed_buffers_ = true;
    } else {
      report->fixed_buffers_note = std::string("IORING_REGISTER_BUFFERS failed: ") + std::strerror(-r) +
                                   (r == -ENOMEM ? " (RLIMIT_MEMLOCK too low for the buffer ring)" : "");
    }
  }
  report->fixed_buffers = use_fixed_buffers_;
  report->linked = link_;
  report->batched = plan_.batch_submissions;

  // Descriptor table: [buffered, direct] for the source, then each target.
  std::vector<int> fds;
  auto add = [&](const DeviceFile& f) {
    fds.push_back(f.buffered_fd());
    fds.push_back(f.has_direct() ? f.direct_fd() : -1);
  };
  add(*source_);
  for (auto& t : targets_) add(*t);
  fixed_index_.assign(fds.size(), -1);
  if (!plan_.fixed_files) {
    report->fixed_files_note = "disabled by option";
  } else {
    // -1 entries are sparse slots (IORING_REGISTER_FILES_SKIP is -2; -1 is accepted as empty).
    const int r = ring_->RegisterFiles(fds.data(), static_cast<uint32_t>(fds.size()));
    if (r == 0) {
      for (size_t i = 0; i < fds.size(); ++i) fixed_index_[i] = fds[i] >= 0 ? static_cast<int>(i) : -1;
      report->fixed_files = true;
    } else {
      report->fixed_files_note = std::string("IORING_REGISTER_FILES failed: ") + std::strerror(-r);
    }
  }

  slots_.resize(depth);
  free_slots_.clear();
  for (uint32_t i = 0; i < depth; ++i) {
    slots_[i].index = i;
    slots_[i].buffer = pool_->buffer(i);
    slots_[i].write_done.assign(targets, 0);
    slots_[i].write_in_flight.assign(targets, 0);
  }
  // Refill takes from the back: push in reverse so buffer 0 goes first.
  for (uint32_t i = depth; i-- > 0;) free_slots_.push_back(i);
  return {};
}

CopyEngine::Fd CopyEngine::FdFor(const DeviceFile& file, uint32_t file_index, uint64_t offset, uint64_t length) {
  const bool direct = file.DirectUsable(offset, length);
  Fd fd;
  fd.fd = direct ? file.direct_fd() : file.buffered_fd();
  fd.fixed_index = fixed_index_[file_index * 2 + (direct ? 1 : 0)];
  if (!direct) ++report_->buffered_ios;
  return fd;
}

io_uring_sqe* CopyEngine::NextSqe() {
  io_uring_sqe* sqe = ring_->GetSqe();
  while (!sqe) {
    // The SQ is full: more I/Os in flight than it holds (slots × targets >
    // 4096), SQEs the kernel left unconsumed, or an SQPOLL thread that has not
    // caught up yet. Push them in and retry.
    const int r = ring_->SubmitAndWait(0, 0);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) break;
    sqe = ring_->GetSqe();
  }
  assert(sqe != nullptr);
  ++in_flight_;
  return sqe;
}

void CopyEngine::PrepIo(uint8_t opcode, const Fd& fd, Slot& slot, uint32_t buffer_offset, uint32_t length,
                        uint64_t file_offset, uint64_t user_data, bool link) {
  io_uring_sqe* sqe = NextSqe();
  const bool fixed_buffer = use_fixed_buffers_;
  if (opcode == IORING_OP_READ) {
    sqe->opcode = fixed_buffer ? IORING_OP_READ_FIXED : IORING_OP_READ;
  } else {
    sqe->opcode = fixed_buffer ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE;
  }
  if (fd.fixed_index >= 0) {
    sqe->fd = fd.fixed_index;
    sqe->flags |= IOSQE_FIXED_FILE;
  } else {
    sqe->fd = fd.fd;
  }
  sqe->addr = reinterpret_cast<uint64_t>(slot.buffer + buffer_offset);
  sqe->len = length;
  sqe->off = file_offset;
  if (fixed_buffer) sqe->buf_index = static_cast<uint16_t>(slot.index);
  if (plan_.idle_priority) sqe->ioprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0);
  sqe->user_data = user_data;
  if (link) sqe->flags |= IOSQE_IO_LINK;
  if (!plan_.batch_submissions && !link) {
    ring_->SubmitAndWait(0, 0);
    ++report_->submit_calls;
  }
}

void CopyEngine::SubmitRead(Slot& slot, bool link) {
  const uint64_t offset = Absolute(slot.position + slot.read_done);
  uint64_t length = slot.length - slot.read_done;
  // An unaligned tail can still go through O_DIRECT by reading up to the next
  // block boundary: the buffer has room, a block device's size is a multiple
  // of its block size and a regular file returns short at EOF.
  if (source_->has_direct() && offset % source_->direct_alignment() == 0) {
    const uint64_t rounded = RoundUp(length, source_->direct_alignment());
    if (slot.read_done + rounded <= pool_->buffer_bytes()) length = rounded;
  }
  const Fd fd = FdFor(*source_, 0, offset, length);
  slot.read_in_flight = true;
  PrepIo(IORING_OP_READ, fd, slot, slot.read_done, static_cast<uint32_t>(length), offset,
         PackUserData(slot.index, kOpRead, 0), link);
  ++report_->reads;
}

void CopyEngine::SubmitPieceRead(Slot& slot) {
  const Slot::Piece& p = slot.pieces[slot.piece];
  const uint64_t offset = Absolute(slot.position + p.offset);
  const Fd fd = FdFor(*source_, 0, offset, p.length);
  slot.read_in_flight = true;
  PrepIo(IORING_OP_READ, fd, slot, p.offset, p.length, offset, PackUserData(slot.index, kOpRead, 0), false);
  ++report_->reads;
}

void CopyEngine::SubmitWrite(Slot& slot, uint32_t target) {
  const uint32_t done = slot.write_done[target];
  const uint64_t offset = plan_.targets[target].offset_bytes + slot.position + done;
  const uint32_t length = slot.length - done;
  const Fd fd = FdFor(*targets_[target], 1 + target, offset, length);
  slot.write_in_flight[target] = 1;
  PrepIo(IORING_OP_WRITE, fd, slot, done, length, offset, PackUserData(slot.index, kOpWrite, target), false);
  ++report_->writes;
}

void CopyEngine::SubmitDiscard(Slot& slot, uint32_t target) {
  const DeviceFile& t = *targets_[target];
  const uint64_t offset = plan_.targets[target].offset_bytes + slot.position;
  io_uring_sqe* sqe = NextSqe();
  sqe->opcode = IORING_OP_FALLOCATE;
  const int fixed = fixed_index_[(1 + target) * 2];
  if (fixed >= 0) {
    sqe->fd = fixed;
    sqe->flags |= IOSQE_FIXED_FILE;
  } else {
    sqe->fd = t.buffered_fd();
  }
  // On a file: a hole. On a block device the kernel turns PUNCH_HOLE into
  // REQ_OP_WRITE_ZEROES that may unmap, and fails (EOPNOTSUPP) rather than
  // fall back to writing: zeroes are guaranteed either way.
  sqe->off = offset;
  sqe->addr = slot.length;
  sqe->len = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  sqe->user_data = PackUserData(slot.index, kOpDiscard, target);
  slot.write_in_flight[target] = 1;
  ++report_->discards;
}

void CopyEngine::Fail(SysError error) {
  if (!first_error_.failed()) first_error_ = std::move(error);
  stopping_ = true;
}

void CopyEngine::Halt(SysError error, uint64_t position, uint32_t length) {
  if (position < halt_position_) {
    halt_position_ = position;
    halt_length_ = length;
    halt_error_ = std::move(error);
  }
}

bool CopyEngine::Halted(const Slot& slot) const { return stopping_ || slot.position >= halt_position_; }

uint32_t CopyEngine::LiveTargets() const {
  uint32_t n = 0;
  for (uint8_t d : dropped_) n += d ? 0 : 1;
  return n;
}

void CopyEngine::WriteFailed(uint32_t target, SysError error) {
  if (dropped_[target]) return;
  if (plan_.on_target_error == TargetErrorPolicy::kDrop && LiveTargets() > 1) {
    dropped_[target] = 1;
    report_->targets[target].dropped = true;
    report_->targets[target].error = std::move(error);
    // The checkpoints (the mapfile) report only what is durable on every
    // target, the dropped one included: what completed but was not flushed
    // on it yet, and everything after, is never reported as finished, so a
    // rerun brings the dropped target up to date.
    checkpoints_frozen_ = true;
    pending_finished_.clear();
    pending_bad_.clear();
    return;
  }
  Fail(std::move(error));
}

void CopyEngine::StartSlot(Slot& slot) {
  const ByteRange& extent = extents_[extent_index_];
  slot.busy = true;
  slot.sequence = next_sequence_++;
  slot.position = extent.offset + extent_done_;
  slot.length = static_cast<uint32_t>(std::min<uint64_t>(pool_->buffer_bytes(), extent.length - extent_done_));
  extent_done_ += slot.length;
  if (extent_done_ == extent.length) {
    ++extent_index_;
    extent_done_ = 0;
  }
  bytes_started_ += slot.length;
  slot.read_done = 0;
  slot.read_in_flight = false;
  slot.examined = slot.zero = slot.hashed = slot.discarded = false;
  slot.scraping = false;
  slot.pieces.clear();
  slot.piece = 0;
  slot.bad.clear();
  std::fill(slot.write_done.begin(), slot.write_done.end(), 0);
  if (link_) {
    // The write waits in the kernel for its read; a short or failed read
    // cancels it (-ECANCELED) and Advance() resubmits it once the data is in.
    SubmitRead(slot, /*link=*/true);
    SubmitWrite(slot, 0);
  } else {
    SubmitRead(slot, /*link=*/false);
  }
}

void CopyEngine::ReadFailed(Slot& slot, int error, uint64_t offset, uint32_t length) {
  (void)length;
  ++report_->read_errors;
  if (!IsMediaError(error)) {
    Fail(SysError::Make(error, "read", source_->path(), static_cast<int64_t>(offset)));
    return;
  }
  // Find exactly which blocks are unreadable: the rest of the buffer in
  // pieces, then a failing piece block by block.
  slot.scraping = true;
  slot.pieces.clear();
  slot.piece = 0;
  const uint32_t chunk = std::max(scrape_block_, kScrapeChunkBytes);
  for (uint32_t off = slot.read_done; off < slot.length;) {
    // Piece boundaries on chunk multiples of the buffer, so pieces stay aligned.
    const uint32_t end = std::min<uint32_t>(slot.length, (off / chunk + 1) * chunk);
    slot.pieces.push_back({off, end - off, 0});
    off = end;
  }
}

void CopyEngine::HandleReadResult(Slot& slot, int32_t result) {
  assert(slot.read_in_flight);
  slot.read_in_flight = false;
  if (result == -EAGAIN || result == -EINTR) {
    ++report_->requeues;
    return;
  }
  if (!slot.scraping) {
    const uint64_t offset = Absolute(slot.position + slot.read_done);
    if (result < 0) {
      ReadFailed(slot, -result, offset, slot.length - slot.read_done);
    } else if (result == 0) {
      Fail(SysError::Make(ENODATA, "read", source_->path(), static_cast<int64_t>(offset),
                          "the source ended at byte " + std::to_string(offset) + ", before the planned end at byte " +
                              std::to_string(Absolute(length_bytes_))));
    } else {
      slot.read_done = std::min<uint32_t>(slot.length, slot.read_done + static_cast<uint32_t>(result));
      if (slot.read_done < slot.length) ++report_->short_transfers;
    }
    return;
  }

  Slot::Piece& p = slot.pieces[slot.piece];
  const uint64_t offset = Absolute(slot.position + p.offset);
  if (result < 0) {
    const int error = -result;
    ++report_->read_errors;
    if (!IsMediaError(error)) {
      Fail(SysError::Make(error, "read", source_->path(), static_cast<int64_t>(offset)));
      return;
    }
    if (p.length > scrape_block_ && offset % scrape_block_ == 0) {
      // Split the failing piece into logical blocks.
      std::vector<Slot::Piece> blocks;
      for (uint32_t off = p.offset; off < p.offset + p.length; off += scrape_block_)
        blocks.push_back({off, std::min(scrape_block_, p.offset + p.length - off), 0});
      slot.pieces.erase(slot.pieces.begin() + static_cast<long>(slot.piece));
      slot.pieces.insert(slot.pieces.begin() + static_cast<long>(slot.piece), blocks.begin(), blocks.end());
      return;
    }
    if (p.tries < plan_.retries) {
      ++p.tries;
      ++report_->retried_reads;
      return;
    }
    if (!plan_.no_error) {
      // Stop here: the buffer keeps only what precedes the bad block, and is
      // written; later buffers are abandoned.
      Halt(SysError::Make(error, "read", source_->path(), static_cast<int64_t>(offset)), slot.position + p.offset,
           p.length);
      slot.length = p.offset;
      slot.read_done = slot.length;
      slot.scraping = false;
      slot.pieces.clear();
      return;
    }
    std::memset(slot.buffer + p.offset, 0, p.length);
    slot.bad.push_back({slot.position + p.offset, p.length});
    bad_bytes_ += p.length;
    ++slot.piece;
  } else if (result == 0) {
    Fail(SysError::Make(ENODATA, "read", source_->path(), static_cast<int64_t>(offset),
                        "the source ended at byte " + std::to_string(offset) + ", before the planned end at byte " +
                            std::to_string(Absolute(length_bytes_))));
    return;
  } else if (static_cast<uint32_t>(result) < p.length) {
    ++report_->short_transfers;
    p.offset += static_cast<uint32_t>(result);
    p.length -= static_cast<uint32_t>(result);
  } else {
    ++slot.piece;
  }
  if (slot.piece == slot.pieces.size()) {
    slot.read_done = slot.length;
    slot.scraping = false;
    slot.pieces.clear();
  }
}

void CopyEngine::HandleCompletion(uint64_t user_data, int32_t result) {
  assert(in_flight_ > 0);
  --in_flight_;
  const uint32_t slot_index = static_cast<uint32_t>(user_data >> 32);
  const uint64_t op = (user_data >> 8) & 0xff;
  const uint32_t target = static_cast<uint32_t>(user_data & 0xff);

  if (slot_index == kNoSlot) {
    assert(op == kOpFsync && checkpoint_fsyncs_ > 0);
    --checkpoint_fsyncs_;
    if (result < 0) {
      // Not durable on this target: the checkpoint reports nothing (and the
      // target is dropped, or the copy fails).
      WriteFailed(target, SysError::Make(-result, "fdatasync", targets_[target]->path()));
      checkpoint_failed_ = true;
    }
    return;
  }
  assert(slot_index < slots_.size());
  Slot& slot = slots_[slot_index];
  assert(slot.busy);

  if (op == kOpRead) {
    HandleReadResult(slot, result);
  } else {
    assert((op == kOpWrite || op == kOpDiscard) && target < targets_.size() && slot.write_in_flight[target]);
    slot.write_in_flight[target] = 0;
    const uint64_t offset = plan_.targets[target].offset_bytes + slot.position + slot.write_done[target];
    if (dropped_[target]) {
      // A dropped target's late completions change nothing.
    } else if (result == -ECANCELED && link_) {
      ++report_->broken_links;
    } else if (result == -EAGAIN || result == -EINTR) {
      ++report_->requeues;
    } else if (op == kOpDiscard && (result == -EOPNOTSUPP || result == -EINVAL || result == -ENODEV)) {
      // No hole punching / write-zeroes here after all: write the zeros.
      discard_ok_[target] = 0;
      report_->targets[target].zero_note = std::string("fallocate(PUNCH_HOLE) failed: ") + std::strerror(-result) +
                                           "; zero blocks are written";
    } else if (result < 0) {
      WriteFailed(target, SysError::Make(-result, op == kOpDiscard ? "fallocate" : "write",
                                         targets_[target]->path(), static_cast<int64_t>(offset)));
    } else if (op == kOpDiscard) {
      slot.write_done[target] = slot.length;
      slot.discarded = true;
    } else if (result == 0) {
      WriteFailed(target, SysError::Make(EIO, "write", targets_[target]->path(), static_cast<int64_t>(offset),
                                         "the target accepted no bytes"));
    } else {
      slot.write_done[target] += static_cast<uint32_t>(result);
      if (slot.write_done[target] < slot.length) ++report_->short_transfers;
    }
  }
  Advance(slot);
}

void CopyEngine::Advance(Slot& slot) {
  if (!slot.busy) return;
  const bool halted = Halted(slot);
  if (!halted && slot.read_done < slot.length && !slot.read_in_flight) {
    if (slot.scraping) {
      SubmitPieceRead(slot);
    } else {
      SubmitRead(slot, /*link=*/false);
    }
  }
  const bool read_complete = slot.read_done == slot.length && !slot.read_in_flight;
  if (read_complete && !halted) {
    if (!slot.examined) {
      slot.examined = true;
      if (plan_.zero_mode != ZeroMode::kWrite) slot.zero = IsAllZero(slot.buffer, slot.length);
      if (hasher_) HashInOrder();
    }
    for (uint32_t t = 0; t < targets_.size(); ++t) {
      if (dropped_[t] || slot.write_done[t] == slot.length || slot.write_in_flight[t]) continue;
      if (slot.zero && (plan_.zero_mode == ZeroMode::kSkip || plan_.zero_mode == ZeroMode::kSparse)) {
        slot.write_done[t] = slot.length;
      } else if (slot.zero && plan_.zero_mode == ZeroMode::kDiscard && discard_ok_[t] &&
                 slot.write_done[t] == 0 &&
                 (plan_.targets[t].offset_bytes + slot.position) % targets_[t]->logical_block_bytes() == 0 &&
                 slot.length % targets_[t]->logical_block_bytes() == 0) {
        SubmitDiscard(slot, t);
      } else {
        SubmitWrite(slot, t);
      }
    }
  }
  FinishIfDone(slot);
}

void CopyEngine::HashInOrder() {
  // The digest follows source order; buffers complete out of order, so a
  // buffer is hashed when every buffer started before it has been.
  std::vector<uint32_t> hashed;
  for (;;) {
    Slot* next = nullptr;
    for (Slot& s : slots_) {
      if (s.busy && s.sequence == hash_sequence_) {
        next = &s;
        break;
      }
    }
    if (next == nullptr || !next->examined) break;
    hasher_->Update(next->buffer, next->length);
    next->hashed = true;
    ++hash_sequence_;
    hashed.push_back(next->index);
  }
  for (uint32_t i : hashed) FinishIfDone(slots_[i]);
}

void CopyEngine::FinishIfDone(Slot& slot) {
  if (!slot.busy || slot.read_in_flight) return;
  bool all_written = slot.read_done == slot.length;
  for (uint32_t t = 0; t < targets_.size(); ++t) {
    if (slot.write_in_flight[t]) return;
    if (!dropped_[t]) all_written &= slot.write_done[t] == slot.length;
  }
  const bool halted = Halted(slot);
  if (all_written && hasher_ && !slot.hashed && !halted) return;  // waits for its turn in the digest
  if (!all_written && !halted) return;  // more to do (resubmitted by Advance)
  if (all_written && slot.length > 0) {
    bytes_completed_ += slot.length;
    bytes_done_public_.store(bytes_completed_, std::memory_order_relaxed);
    // Finished = the buffer's range minus its unreadable blocks (which are
    // zero-filled on the targets and reported as bad).
    std::vector<ByteRange> whole{{slot.position, slot.length}};
    if (!checkpoints_frozen_) {
      for (const ByteRange& r : Subtract(whole, slot.bad)) pending_finished_.push_back(r);
      for (const ByteRange& r : slot.bad) pending_bad_.push_back(r);
    }
    for (const ByteRange& r : slot.bad) bad_all_.push_back(r);
    if (slot.zero) {
      report_->zero_bytes += slot.length;
      if (plan_.zero_mode == ZeroMode::kSkip || plan_.zero_mode == ZeroMode::kSparse) {
        report_->zero_bytes_skipped += slot.length;
      } else if (slot.discarded) {
        report_->zero_bytes_discarded += slot.length;
      }
    }
  } else {
    // Abandoned: the job stopped with this buffer unfinished. Its bad blocks
    // were already counted; they stay out of the checkpoints.
    assert(stopping_ || halted);
    // What its writes did put on the targets (a write cut short by EFBIG or
    // ENOSPC is continued, then fails): dd counts it as a partial record.
    for (uint32_t t = 0; t < targets_.size(); ++t) report_->targets[t].unfinished_bytes_written += slot.write_done[t];
  }
  slot.busy = false;
  free_slots_.push_back(slot.index);
}

void CopyEngine::StartCheckpoint(const CheckpointFn& checkpoint) {
  if (!checkpoint || (pending_finished_.empty() && pending_bad_.empty())) return;
  checkpoint_finished_.swap(pending_finished_);
  checkpoint_bad_.swap(pending_bad_);
  pending_finished_.clear();
  pending_bad_.clear();
  checkpoint_failed_ = false;
  const Durability mode = plan_.targets.front().open.durability;
  if (mode == Durability::kDsync || mode == Durability::kSync) {
    EmitCheckpoint(checkpoint);  // every completed write is already durable
    return;
  }
  // fdatasync covers every write that completed before it was issued: exactly
  // the ranges just taken. The copy goes on meanwhile.
  for (uint32_t t = 0; t < targets_.size(); ++t) {
    if (dropped_[t]) continue;
    io_uring_sqe* sqe = NextSqe();
    sqe->opcode = IORING_OP_FSYNC;
    const int fixed = fixed_index_[(1 + t) * 2];
    if (fixed >= 0) {
      sqe->fd = fixed;
      sqe->flags |= IOSQE_FIXED_FILE;
    } else {
      sqe->fd = targets_[t]->buffered_fd();
    }
    sqe->fsync_flags = mode == Durability::kFsync ? 0 : IORING_FSYNC_DATASYNC;
    sqe->user_data = PackUserData(kNoSlot, kOpFsync, t);
    ++checkpoint_fsyncs_;
  }
}

void CopyEngine::EmitCheckpoint(const CheckpointFn& checkpoint) {
  std::vector<ByteRange> finished, bad;
  for (const ByteRange& r : checkpoint_finished_) finished.push_back({Absolute(r.offset), r.length});
  for (const ByteRange& r : checkpoint_bad_) bad.push_back({Absolute(r.offset), r.length});
  checkpoint_finished_.clear();
  checkpoint_bad_.clear();
  Normalize(&finished);
  Normalize(&bad);
  if (finished.empty() && bad.empty()) return;
  ++report_->checkpoints;
  checkpoint(finished, bad);
}

SysError CopyEngine::Loop(const ProgressFn& progress, const CheckpointFn& checkpoint, CopyReport* report) {
  const double interval = plan_.progress_interval_ms / 1000.0;
  const double checkpoint_interval = plan_.checkpoint_interval_ms / 1000.0;
  double last_progress = NowSeconds();
  double next_checkpoint = last_progress + checkpoint_interval;
  bool checkpoint_active = false;
  // Pacing: bytes started may not run ahead of rate × time since the base
  // (reset whenever the rate changes or the copy resumes from a pause) by
  // more than one buffer.
  uint64_t rate_seen = rate_.load(std::memory_order_relaxed);
  double rate_base_time = last_progress;
  uint64_t rate_base_bytes = 0;
  bool was_paused = false;

  auto emit_progress = [&](bool paused) {
    if (!progress) return;
    ProgressInfo info = ProgressNow(*report);
    info.paused = paused;
    progress(info);
  };
  emit_progress(false);

  for (;;) {
    double now = NowSeconds();
    if (!stopping_ && cancel_requested_.load(std::memory_order_relaxed)) {
      stopping_ = true;
      report->cancelled = true;
    }
    const bool paused = paused_.load(std::memory_order_relaxed);
    const uint64_t rate = rate_.load(std::memory_order_relaxed);
    if (rate != rate_seen || (was_paused && !paused)) {
      rate_seen = rate;
      rate_base_time = now;
      rate_base_bytes = bytes_started_;
    }
    was_paused = paused;
    uint64_t wait_ns = kWaitTimeoutNs;
    while (!stopping_ && halt_position_ == UINT64_MAX && !paused && !free_slots_.empty() && HasMoreWork()) {
      if (rate > 0) {
        const uint64_t next = std::min<uint64_t>(pool_->buffer_bytes(), extents_[extent_index_].length - extent_done_);
        // Allowance not used during a stall (a slow device, a busy CPU) is
        // kept only up to a small bucket, so a stall is never paid back as a
        // burst above the cap: rebase when the backlog would exceed it.
        const double bucket = std::max(2.0 * pool_->buffer_bytes(), static_cast<double>(rate) * 0.05);
        const double earned = static_cast<double>(rate_base_bytes) + static_cast<double>(rate) * (now - rate_base_time);
        if (earned - static_cast<double>(bytes_started_) > bucket) {
          rate_base_bytes = bytes_started_;
          rate_base_time = now - bucket / static_cast<double>(rate);
        }
        const double allowed = static_cast<double>(rate_base_bytes) + static_cast<double>(rate) * (now - rate_base_time) +
                               static_cast<double>(pool_->buffer_bytes());
        const double wanted = static_cast<double>(bytes_started_ + next);
        if (wanted > allowed) {
          const double wait = (wanted - allowed) / static_cast<double>(rate);
          wait_ns = std::min<uint64_t>(wait_ns, static_cast<uint64_t>(wait * 1e9) + 1);
          break;
        }
      }
      Slot& slot = slots_[free_slots_.back()];
      free_slots_.pop_back();
      StartSlot(slot);
    }
    if (checkpoint_interval > 0 && !checkpoint_active && now >= next_checkpoint) {
      next_checkpoint = now + checkpoint_interval;
      StartCheckpoint(checkpoint);
      checkpoint_active = checkpoint_fsyncs_ > 0;
    }
    if (checkpoint_interval > 0 && !checkpoint_active) {
      wait_ns = std::min<uint64_t>(wait_ns, static_cast<uint64_t>(std::max(0.0, next_checkpoint - now) * 1e9) + 1);
    }

    if (in_flight_ == 0) {
      const bool more = !stopping_ && halt_position_ == UINT64_MAX && HasMoreWork();
      if (!more) break;
      // Paused or held back by the rate: nothing to wait for in the kernel.
      SleepSeconds(static_cast<double>(wait_ns) / 1e9);
    } else {
      const int r = ring_->SubmitAndWait(1, wait_ns);
      ++report->submit_calls;
      if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        // The ring itself failed: nothing in flight can be reaped any more.
        // Closing the ring waits for the kernel; our buffers stay mapped until then.
        Fail(SysError::Make(-r, "io_uring_enter"));
        break;
      }
      io_uring_cqe cqe;
      while (ring_->PopCqe(&cqe)) HandleCompletion(cqe.user_data, cqe.res);
    }
    if (checkpoint_active && checkpoint_fsyncs_ == 0) {
      checkpoint_active = false;
      if (!checkpoint_failed_) {
        EmitCheckpoint(checkpoint);
      } else {
        checkpoint_finished_.clear();
        checkpoint_bad_.clear();
      }
    }

    if (progress) {
      now = NowSeconds();
      if (now - last_progress >= interval) {
        last_progress = now;
        emit_progress(paused);
      }
    }
  }
  assert(in_flight_ == 0 || first_error_.failed());
  // Buffers waiting for their turn in the digest when the job stopped.
  for (Slot& s : slots_) FinishIfDone(s);

  const bool failed = first_error_.failed() || report->cancelled || halt_error_.failed();
  SysError finish;
  if (!failed) finish = FinishTargets();
  SysError durable = MakeDurable(report);
  if (!durable.failed() && !finish.failed() && checkpoint && !first_error_.failed()) {
    // Everything that completed is durable now: the last checkpoint.
    for (const ByteRange& r : pending_finished_) checkpoint_finished_.push_back(r);
    for (const ByteRange& r : pending_bad_) checkpoint_bad_.push_back(r);
    pending_finished_.clear();
    pending_bad_.clear();
    EmitCheckpoint(checkpoint);
  }
  if (first_error_.failed()) return first_error_;
  if (finish.failed()) return finish;
  if (durable.failed()) return durable;
  if (halt_error_.failed()) return halt_error_;
  if (report->cancelled) {
    return SysError::Make(ECANCELED, "copy", source_->path(), -1, "the copy was cancelled");
  }
  emit_progress(false);
  return {};
}

ProgressInfo CopyEngine::ProgressNow(const CopyReport& report) const {
  ProgressInfo info;
  info.domain_offset = plan_.source_offset_bytes;
  info.domain_length = length_bytes_;
  info.bytes_done = bytes_completed_;
  info.bytes_total = planned_bytes_;
  info.bad_bytes = bad_bytes_;
  info.zero_bytes = report.zero_bytes;
  return info;
}

SysError CopyEngine::FinishTargets() {
  // Zero blocks that were skipped or punched at the end leave a file target
  // short: extend it to the copy's end, as dd conv=sparse does.
  if (plan_.zero_mode == ZeroMode::kWrite) return {};
  for (size_t i = 0; i < targets_.size(); ++i) {
    DeviceFile& t = *targets_[i];
    if (dropped_[i] || t.kind() != DeviceFile::Kind::kRegularFile) continue;
    const uint64_t end = plan_.targets[i].offset_bytes + length_bytes_;
    t.RefreshSize();
    if (t.size_bytes() < end) {
      SysError error;
      if (t.Truncate(end, &error) != 0) return error;
    }
  }
  return {};
}

SysError CopyEngine::MakeDurable(CopyReport* report) {
  const Durability mode = plan_.targets.front().open.durability;
  switch (mode) {
    case Durability::kNone: report->durability = "none"; return {};
    case Durability::kDsync: report->durability = "O_DSYNC writes"; return {};
    case Durability::kSync: report->durability = "O_SYNC writes"; return {};
    case Durability::kFdatasync: report->durability = "fdatasync"; break;
    case Durability::kFsync: report->durability = "fsync"; break;
  }
  SysError first;
  for (size_t i = 0; i < targets_.size(); ++i) {
    DeviceFile& t = *targets_[i];
    if (dropped_[i]) continue;
    // On a block device either call flushes the device's volatile write cache.
    const int r = mode == Durability::kFsync ? fsync(t.buffered_fd()) : fdatasync(t.buffered_fd());
    if (r != 0) {
      SysError e = SysError::Make(errno, mode == Durability::kFsync ? "fsync" : "fdatasync", t.path());
      if (plan_.on_target_error == TargetErrorPolicy::kDrop && LiveTargets() > 1) {
        WriteFailed(static_cast<uint32_t>(i), e);
      } else if (!first.failed()) {
        first = e;
      }
    }
    if (t.created()) {
      // A new file's directory entry must be durable too.
      const int dfd = open(ParentDirectory(t.path()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
    }
    t.RefreshSize();
    report->targets[i].size_bytes = t.size_bytes();
  }
  return first;
}

SysError CopyEngine::Verify(const ProgressFn& progress, CopyReport* report) {
  // Re-read both sides and compare. O_DIRECT wherever the range allows, so
  // the page cache cannot answer for the device; what has to go through the
  // cache is dropped from it first.
  std::vector<ByteRange> skip;
  for (const ByteRange& r : plan_.verify_skip) {
    const uint64_t lo = std::max(r.offset, plan_.source_offset_bytes);
    const uint64_t hi = std::min(r.end(), plan_.source_offset_bytes + length_bytes_);
    if (hi > lo) skip.push_back({lo - plan_.source_offset_bytes, hi - lo});
  }
  for (const ByteRange& r : bad_all_) skip.push_back(r);
  Normalize(&skip);
  std::vector<ByteRange> whole;
  if (length_bytes_ > 0) whole.push_back({0, length_bytes_});
  const std::vector<ByteRange> ranges = Subtract(whole, skip);
  uint64_t total = 0;
  for (const ByteRange& r : ranges) total += r.length;

  VerifyReport& v = report->verify;
  v.compare_block_bytes = scrape_block_;
  const uint32_t depth = pool_->count();
  const uint32_t block = pool_->buffer_bytes();
  SysError error;
  std::unique_ptr<BufferPool> other = BufferPool::Create(depth, block, &error);
  if (!other) return error;
  posix_fadvise(source_->buffered_fd(), 0, 0, POSIX_FADV_DONTNEED);

  struct VSlot {
    bool busy = false;
    uint64_t position = 0;
    uint32_t length = 0;
    uint32_t done[2] = {0, 0};  // source, target
    bool in_flight[2] = {false, false};
  };
  std::vector<VSlot> vslots(depth);
  const double interval = plan_.progress_interval_ms / 1000.0;
  double last_progress = NowSeconds();
  uint64_t compared_all = 0;
  const uint64_t verify_total = total * LiveTargets();

  for (uint32_t t = 0; t < targets_.size(); ++t) {
    if (dropped_[t]) continue;
    DeviceFile& target = *targets_[t];
    posix_fadvise(target.buffered_fd(), 0, 0, POSIX_FADV_DONTNEED);
    size_t range_index = 0;
    uint64_t range_done = 0;
    SysError failure;
    auto submit = [&](uint32_t i, int side) {
      VSlot& s = vslots[i];
      DeviceFile& f = side == 0 ? *source_ : target;
      const uint64_t base = side == 0 ? plan_.source_offset_bytes : plan_.targets[t].offset_bytes;
      const uint64_t offset = base + s.position + s.done[side];
      const uint32_t length = s.length - s.done[side];
      const Fd fd = FdFor(f, side == 0 ? 0 : 1 + t, offset, length);
      io_uring_sqe* sqe = NextSqe();
      sqe->opcode = IORING_OP_READ;
      if (fd.fixed_index >= 0) {
        sqe->fd = fd.fixed_index;
        sqe->flags |= IOSQE_FIXED_FILE;
      } else {
        sqe->fd = fd.fd;
      }
      uint8_t* buffer = side == 0 ? pool_->buffer(i) : other->buffer(i);
      sqe->addr = reinterpret_cast<uint64_t>(buffer + s.done[side]);
      sqe->len = length;
      sqe->off = offset;
      sqe->user_data = PackUserData(i, side == 0 ? kOpVerifySource : kOpVerifyTarget, t);
      s.in_flight[side] = true;
    };
    for (;;) {
      if (!failure.failed() && cancel_requested_.load(std::memory_order_relaxed)) {
        report->cancelled = true;
        failure = SysError::Make(ECANCELED, "copy", source_->path(), -1, "the copy was cancelled while verifying");
      }
      for (uint32_t i = 0; i < depth && !failure.failed() && range_index < ranges.size(); ++i) {
        VSlot& s = vslots[i];
        if (s.busy) continue;
        const ByteRange& r = ranges[range_index];
        s.busy = true;
        s.position = r.offset + range_done;
        s.length = static_cast<uint32_t>(std::min<uint64_t>(block, r.length - range_done));
        s.done[0] = s.done[1] = 0;
        range_done += s.length;
        if (range_done == r.length) {
          ++range_index;
          range_done = 0;
        }
        submit(i, 0);
        submit(i, 1);
      }
      if (in_flight_ == 0) break;
      const int r = ring_->SubmitAndWait(1, kWaitTimeoutNs);
      if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        return SysError::Make(-r, "io_uring_enter");
      }
      io_uring_cqe cqe;
      while (ring_->PopCqe(&cqe)) {
        --in_flight_;
        const uint32_t i = static_cast<uint32_t>(cqe.user_data >> 32);
        const int side = ((cqe.user_data >> 8) & 0xff) == kOpVerifySource ? 0 : 1;
        VSlot& s = vslots[i];
        s.in_flight[side] = false;
        const std::string& path = side == 0 ? source_->path() : target.path();
        const uint64_t base = side == 0 ? plan_.source_offset_bytes : plan_.targets[t].offset_bytes;
        if (cqe.res == -EAGAIN || cqe.res == -EINTR) {
          if (!failure.failed()) submit(i, side);
        } else if (cqe.res < 0) {
          if (!failure.failed())
            failure = SysError::Make(-cqe.res, "read", path, static_cast<int64_t>(base + s.position + s.done[side]),
                                     "while verifying");
        } else if (cqe.res == 0) {
          if (!failure.failed())
            failure = SysError::Make(ENODATA, "read", path, static_cast<int64_t>(base + s.position + s.done[side]),
                                     "ended early while verifying");
        } else {
          s.done[side] = std::min(s.length, s.done[side] + static_cast<uint32_t>(cqe.res));
          if (s.done[side] < s.length && !failure.failed()) submit(i, side);
        }
        if (s.in_flight[0] || s.in_flight[1]) continue;
        if (!failure.failed() && s.done[0] == s.length && s.done[1] == s.length) {
          const uint8_t* a = pool_->buffer(i);
          const uint8_t* b = other->buffer(i);
          if (std::memcmp(a, b, s.length) != 0) {
            for (uint32_t off = 0; off < s.length; off += v.compare_block_bytes) {
              const uint32_t n = std::min(v.compare_block_bytes, s.length - off);
              if (std::memcmp(a + off, b + off, n) == 0) continue;
              ++v.mismatched_blocks;
              if (v.first_mismatch_offset < 0) {
                uint32_t k = 0;
                while (a[off + k] == b[off + k]) ++k;
                v.first_mismatch_offset = static_cast<int64_t>(Absolute(s.position + off + k));
                v.first_mismatch_target = static_cast<int32_t>(t);
              }
            }
          }
          v.bytes_compared += s.length;
          compared_all += s.length;
        }
        s.busy = false;
      }
      if (progress) {
        const double now = NowSeconds();
        if (now - last_progress >= interval) {
          last_progress = now;
          ProgressInfo info = ProgressNow(*report);
          info.verifying = true;
          info.verify_done = compared_all;
          info.verify_total = verify_total;
          progress(info);
        }
      }
    }
    if (failure.failed()) return failure;
  }
  v.done = true;
  if (v.mismatched_blocks > 0) {
    const DeviceFile& t = *targets_[static_cast<size_t>(v.first_mismatch_target)];
    const uint64_t target_offset = plan_.targets[static_cast<size_t>(v.first_mismatch_target)].offset_bytes +
                                   (static_cast<uint64_t>(v.first_mismatch_offset) - plan_.source_offset_bytes);
    return SysError::Make(EILSEQ, "verify", t.path(), static_cast<int64_t>(target_offset),
                          "the target differs from the source: first at byte " + std::to_string(target_offset) +
                              " of the target, " + std::to_string(v.mismatched_blocks) + " block(s) of " +
                              std::to_string(v.compare_block_bytes) + " bytes differ");
  }
  return {};
}

}  // namespace devmove
