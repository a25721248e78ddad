#include "copy_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <string>

namespace devmove {
namespace {

// user_data layout: slot index in the high 32 bits, op in bits 8..15, target in bits 0..7.
constexpr uint64_t kOpRead = 1;
constexpr uint64_t kOpWrite = 2;

uint64_t PackUserData(uint32_t slot, uint64_t op, uint32_t target) {
  return (static_cast<uint64_t>(slot) << 32) | (op << 8) | target;
}

// How long one wait in the kernel may last: bounds cancellation and progress latency.
constexpr uint64_t kWaitTimeoutNs = 100ull * 1000 * 1000;

double NowSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
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

}  // namespace

struct CopyEngine::Slot {
  uint32_t index = 0;
  uint8_t* buffer = nullptr;
  bool busy = false;
  uint64_t position = 0;  // relative to the copy's start
  uint32_t length = 0;
  uint32_t read_done = 0;
  bool read_in_flight = false;
  std::vector<uint32_t> write_done;      // per target
  std::vector<uint8_t> write_in_flight;  // per target
};

CopyEngine::CopyEngine(CopyPlan plan) : plan_(std::move(plan)) {}
CopyEngine::~CopyEngine() = default;

SysError CopyEngine::Run(const ProgressFn& progress, CopyReport* report) {
  report_ = report;
  const double start = NowSeconds();
  SysError error = Prepare(report);
  if (!error.failed()) error = SetupRing(report);
  if (!error.failed()) error = Loop(progress, report);
  report->bytes_copied = bytes_completed_;
  report->seconds = NowSeconds() - start;
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
  report->bytes_total = length_bytes_;

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

  for (const TargetPlan& t : plan_.targets) {
    std::unique_ptr<DeviceFile> target = DeviceFile::Open(t.open, &error);
    if (!target) return error;
    if (target->st_rdev() == source_->st_rdev() && target->kind() == DeviceFile::Kind::kBlockDevice &&
        source_->kind() == DeviceFile::Kind::kBlockDevice) {
      return SysError::Make(EINVAL, "open", target->path(), -1,
                            "target is the same device as the source (" + source_->path() + ")");
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
    } else if (t.truncate_to >= 0) {
      if (target->Truncate(static_cast<uint64_t>(t.truncate_to), &error) != 0) return error;
    }
    targets_.push_back(std::move(target));
  }
  for (size_t i = 0; i < targets_.size(); ++i) report->targets.push_back(Describe(*targets_[i]));
  report->block_bytes = plan_.block_bytes;
  report->queue_depth = plan_.queue_depth;
  return {};
}

SysError CopyEngine::SetupRing(CopyReport* report) {
  SysError error;
  const uint32_t targets = static_cast<uint32_t>(targets_.size());
  // Never more buffers than the copy can use at once.
  uint64_t useful = std::max<uint64_t>(1, RoundUp(length_bytes_, plan_.block_bytes) / plan_.block_bytes);
  const uint32_t depth = static_cast<uint32_t>(std::min<uint64_t>(plan_.queue_depth, useful));
  pool_ = BufferPool::Create(depth, plan_.block_bytes, &error);
  if (!pool_) return error;

  RingOptions options;
  // Each slot has at most one read or one write per target in flight (a read
  // and its linked write with link_read_write): up to 1024 × 64. The CQ must
  // hold all of their completions; the SQ only what is prepared between two
  // submits (PrepIo flushes a full SQ), and IoUringRing::Create accepts at
  // most 4096 SQ entries. That flush must never split a linked read→write
  // pair (a chain ends at a submit: the write would run unlinked, before its
  // read filled the buffer), so with links the SQ holds all 2 × depth ≤ 2048.
  link_ = plan_.link_read_write && targets == 1;
  const uint32_t in_flight_max = depth * (link_ ? 2 : std::max<uint32_t>(1, targets));
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

void CopyEngine::PrepIo(uint8_t op, const Fd& fd, Slot& slot, uint32_t buffer_offset, uint32_t length,
                        uint64_t file_offset, uint64_t user_data, bool link) {
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
  const bool fixed_buffer = use_fixed_buffers_;
  if (op == kOpRead) {
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
  sqe->user_data = user_data;
  if (link) sqe->flags |= IOSQE_IO_LINK;
  ++in_flight_;
  if (!plan_.batch_submissions && !link) {
    ring_->SubmitAndWait(0, 0);
    ++report_->submit_calls;
  }
}

void CopyEngine::SubmitRead(Slot& slot, bool link) {
  const uint64_t offset = plan_.source_offset_bytes + slot.position + slot.read_done;
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
  PrepIo(kOpRead, fd, slot, slot.read_done, static_cast<uint32_t>(length), offset,
         PackUserData(slot.index, kOpRead, 0), link);
  ++report_->reads;
}

void CopyEngine::SubmitWrite(Slot& slot, uint32_t target) {
  const uint32_t done = slot.write_done[target];
  const uint64_t offset = plan_.targets[target].offset_bytes + slot.position + done;
  const uint32_t length = slot.length - done;
  const Fd fd = FdFor(*targets_[target], 1 + target, offset, length);
  slot.write_in_flight[target] = 1;
  PrepIo(kOpWrite, fd, slot, done, length, offset, PackUserData(slot.index, kOpWrite, target), false);
  ++report_->writes;
}

void CopyEngine::Fail(SysError error) {
  if (!first_error_.failed()) first_error_ = std::move(error);
  stopping_ = true;
}

void CopyEngine::StartSlot(Slot& slot) {
  slot.busy = true;
  slot.position = next_position_;
  slot.length = static_cast<uint32_t>(std::min<uint64_t>(pool_->buffer_bytes(), length_bytes_ - next_position_));
  slot.read_done = 0;
  std::fill(slot.write_done.begin(), slot.write_done.end(), 0);
  next_position_ += slot.length;
  if (link_) {
    // The write waits in the kernel for its read; a short or failed read
    // cancels it (-ECANCELED) and Advance() resubmits it once the data is in.
    SubmitRead(slot, /*link=*/true);
    SubmitWrite(slot, 0);
  } else {
    SubmitRead(slot, /*link=*/false);
  }
}

void CopyEngine::HandleCompletion(uint64_t user_data, int32_t result) {
  assert(in_flight_ > 0);
  --in_flight_;
  const uint32_t slot_index = static_cast<uint32_t>(user_data >> 32);
  const uint64_t op = (user_data >> 8) & 0xff;
  const uint32_t target = static_cast<uint32_t>(user_data & 0xff);
  assert(slot_index < slots_.size());
  Slot& slot = slots_[slot_index];
  assert(slot.busy);

  if (op == kOpRead) {
    assert(slot.read_in_flight);
    slot.read_in_flight = false;
    const uint64_t offset = plan_.source_offset_bytes + slot.position + slot.read_done;
    if (result == -EAGAIN || result == -EINTR) {
      ++report_->requeues;
    } else if (result < 0) {
      Fail(SysError::Make(-result, "read", source_->path(), static_cast<int64_t>(offset)));
    } else if (result == 0) {
      Fail(SysError::Make(ENODATA, "read", source_->path(), static_cast<int64_t>(offset),
                          "the source ended at byte " + std::to_string(offset) + ", before the planned end at byte " +
                              std::to_string(plan_.source_offset_bytes + length_bytes_)));
    } else {
      slot.read_done = std::min<uint32_t>(slot.length, slot.read_done + static_cast<uint32_t>(result));
      if (slot.read_done < slot.length) ++report_->short_transfers;
    }
  } else {
    assert(op == kOpWrite && target < targets_.size() && slot.write_in_flight[target]);
    slot.write_in_flight[target] = 0;
    const uint64_t offset = plan_.targets[target].offset_bytes + slot.position + slot.write_done[target];
    if (result == -ECANCELED && link_) {
      ++report_->broken_links;
    } else if (result == -EAGAIN || result == -EINTR) {
      ++report_->requeues;
    } else if (result < 0) {
      Fail(SysError::Make(-result, "write", targets_[target]->path(), static_cast<int64_t>(offset)));
    } else if (result == 0) {
      Fail(SysError::Make(EIO, "write", targets_[target]->path(), static_cast<int64_t>(offset),
                          "the target accepted no bytes"));
    } else {
      slot.write_done[target] += static_cast<uint32_t>(result);
      if (slot.write_done[target] < slot.length) ++report_->short_transfers;
    }
  }
  Advance(slot);
}

void CopyEngine::Advance(Slot& slot) {
  bool writes_in_flight = false;
  bool all_written = true;
  for (uint32_t t = 0; t < targets_.size(); ++t) {
    if (!stopping_ && slot.read_done == slot.length && slot.write_done[t] < slot.length && !slot.write_in_flight[t])
      SubmitWrite(slot, t);
    writes_in_flight |= slot.write_in_flight[t] != 0;
    all_written &= slot.write_done[t] == slot.length;
  }
  if (!stopping_ && slot.read_done < slot.length && !slot.read_in_flight) SubmitRead(slot, /*link=*/false);
  if (slot.read_in_flight || writes_in_flight) return;
  if (all_written) {
    bytes_completed_ += slot.length;
    bytes_done_public_.store(bytes_completed_, std::memory_order_relaxed);
  } else {
    assert(stopping_);  // abandoned: the job stopped with this buffer unfinished
  }
  slot.busy = false;
  free_slots_.push_back(slot.index);
}

SysError CopyEngine::Loop(const ProgressFn& progress, CopyReport* report) {
  const double interval = plan_.progress_interval_ms / 1000.0;
  double last_progress = NowSeconds();
  if (progress) progress(0, length_bytes_);

  for (;;) {
    if (!stopping_ && cancel_requested_.load(std::memory_order_relaxed)) {
      stopping_ = true;
      report->cancelled = true;
    }
    while (!stopping_ && !free_slots_.empty() && next_position_ < length_bytes_) {
      Slot& slot = slots_[free_slots_.back()];
      free_slots_.pop_back();
      StartSlot(slot);
    }
    if (in_flight_ == 0) break;

    const int r = ring_->SubmitAndWait(1, kWaitTimeoutNs);
    ++report->submit_calls;
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      // The ring itself failed: nothing in flight can be reaped any more.
      // Closing the ring waits for the kernel; our buffers stay mapped until then.
      Fail(SysError::Make(-r, "io_uring_enter"));
      break;
    }
    io_uring_cqe cqe;
    while (ring_->PopCqe(&cqe)) HandleCompletion(cqe.user_data, cqe.res);

    if (progress) {
      const double now = NowSeconds();
      if (now - last_progress >= interval) {
        last_progress = now;
        progress(bytes_completed_, length_bytes_);
      }
    }
  }
  assert(in_flight_ == 0 || first_error_.failed());

  const bool failed = first_error_.failed() || report->cancelled;
  SysError durable = MakeDurable(failed, report);
  if (first_error_.failed()) return first_error_;
  if (durable.failed()) return durable;
  if (report->cancelled) {
    return SysError::Make(ECANCELED, "copy", source_->path(), -1, "the copy was cancelled");
  }
  if (progress) progress(bytes_completed_, length_bytes_);
  return {};
}

SysError CopyEngine::MakeDurable(bool best_effort, CopyReport* report) {
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
    // On a block device either call flushes the device's volatile write cache.
    const int r = mode == Durability::kFsync ? fsync(t.buffered_fd()) : fdatasync(t.buffered_fd());
    if (r != 0 && !first.failed()) {
      first = SysError::Make(errno, mode == Durability::kFsync ? "fsync" : "fdatasync", t.path());
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
  if (best_effort) return {};
  return first;
}

}  // namespace devmove
