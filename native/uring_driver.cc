#include "uring_driver.h"

#include <errno.h>
#include <linux/ioprio.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "buffer_pool.h"

namespace devmove {
namespace {

// user_data of the driver's own ASYNC_CANCEL requests: never an IoOp address.
constexpr uint64_t kInternalUserData = 0;

}  // namespace

std::unique_ptr<UringDriver> UringDriver::Create(const DriverOptions& options, SysError* error) {
  assert(options.in_flight_max >= 1 && options.in_flight_max <= DriverOptions::kInFlightMax);
  std::unique_ptr<UringDriver> driver(new UringDriver(options));
  RingOptions ring;
  // The SQ holds what is prepared between two submits; the CQ must hold every
  // completion of what is in flight (Flush() never lets more into the kernel).
  ring.sq_entries = std::min(kSqEntriesMax, std::max(kSqEntriesMin, options.in_flight_max));
  ring.cq_entries = std::max(ring.sq_entries * 2, options.in_flight_max);
  ring.sqpoll = options.sqpoll;
  driver->ring_ = IoUringRing::Create(ring, error);
  if (!driver->ring_) return nullptr;
  if (!driver->ring_->OpSupported(IORING_OP_READ) || !driver->ring_->OpSupported(IORING_OP_WRITE)) {
    *error = SysError::Make(ENOSYS, "io_uring_setup", {}, -1,
                            "this kernel's io_uring lacks IORING_OP_READ/WRITE (Linux >= 5.6 is needed)");
    return nullptr;
  }
  return driver;
}

// The owner drains before destroying the driver, unless the ring itself
// failed: closing it then waits for the kernel, and the owner keeps the
// buffers mapped until this returns.
UringDriver::~UringDriver() = default;

bool UringDriver::Supports(IoKind kind) const {
  switch (kind) {
    case IoKind::kRead:
    case IoKind::kWrite:
      return true;
    case IoKind::kFsync:
    case IoKind::kFdatasync:
      return ring_->OpSupported(IORING_OP_FSYNC);
    case IoKind::kPunchHole:
    case IoKind::kZeroRange:
      return ring_->OpSupported(IORING_OP_FALLOCATE);
    case IoKind::kSendMsg:
      return ring_->OpSupported(IORING_OP_SENDMSG);
    case IoKind::kRecv:
      return ring_->OpSupported(IORING_OP_RECV);
    case IoKind::kNop:
      return true;
  }
  return false;
}

std::string UringDriver::RegisterBuffers(const BufferPool& pool) {
  if (!ring_->OpSupported(IORING_OP_READ_FIXED) || !ring_->OpSupported(IORING_OP_WRITE_FIXED))
    return "kernel lacks READ_FIXED/WRITE_FIXED";
  const int r = ring_->RegisterBuffers(pool.iovecs().data(), pool.count());
  if (r != 0) {
    return std::string("IORING_REGISTER_BUFFERS failed: ") + std::strerror(-r) +
           (r == -ENOMEM ? " (RLIMIT_MEMLOCK too low for the buffer ring)" : "");
  }
  // Buffers the pool grows later are not registered: their I/O is plain READ/WRITE.
  buffers_registered_ = pool.count();
  return {};
}

std::string UringDriver::RegisterFiles(const std::vector<int>& fds) {
  assert(!fds.empty() && fds.size() <= 4096);
  const int r = ring_->RegisterFiles(fds.data(), static_cast<uint32_t>(fds.size()));
  if (r != 0) return std::string("IORING_REGISTER_FILES failed: ") + std::strerror(-r);
  // -1 entries are sparse slots (IORING_REGISTER_FILES_SKIP is -2; -1 is accepted as empty).
  const int max_fd = *std::max_element(fds.begin(), fds.end());
  fixed_index_by_fd_.assign(static_cast<size_t>(std::max(0, max_fd + 1)), -1);
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] >= 0) fixed_index_by_fd_[static_cast<size_t>(fds[i])] = static_cast<int>(i);
  }
  return {};
}

int UringDriver::FixedIndex(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= fixed_index_by_fd_.size()) return -1;
  return fixed_index_by_fd_[static_cast<size_t>(fd)];
}

void UringDriver::Submit(IoOp* op) {
  assert(op != nullptr && !op->queued && op->owner != nullptr);
  assert(op->fd >= 0 || op->kind == IoKind::kNop);
  op->queued = true;
  op->next = nullptr;
  if (fifo_tail_ != nullptr) {
    fifo_tail_->next = op;
  } else {
    fifo_head_ = op;
  }
  fifo_tail_ = op;
  ++fifo_count_;
}

uint32_t UringDriver::ChainLength(const IoOp* head) const {
  uint32_t length = 1;
  for (const IoOp* op = head; op->link_next; op = op->next) {
    // An open chain (its last op not submitted yet) waits for the rest.
    if (op->next == nullptr) return 0;
    ++length;
    assert(length <= kChainLengthMax);
  }
  return length;
}

void UringDriver::Flush() {
  PrepCancels();
  // Each pass places one whole chain or stops: bounded by fifo_count_.
  while (fifo_head_ != nullptr) {
    const uint32_t chain = ChainLength(fifo_head_);
    if (chain == 0 || ring_->sq_space() < chain) break;
    if (kernel_in_flight_ + chain > ring_->cq_entries()) break;
    for (uint32_t i = 0; i < chain; ++i) {
      IoOp* op = fifo_head_;
      fifo_head_ = op->next;
      if (fifo_head_ == nullptr) fifo_tail_ = nullptr;
      --fifo_count_;
      io_uring_sqe* sqe = ring_->GetSqe();
      assert(sqe != nullptr);
      Prep(*op, sqe);
      ++kernel_in_flight_;
    }
    if (!options_.batch_submissions) {
      // Ablation: one io_uring_enter per request (a chain travels together).
      ring_->SubmitAndWait(0, 0);
      ++submit_calls_;
    }
  }
}

void UringDriver::Prep(IoOp& op, io_uring_sqe* sqe) const {
  PrepFile(op, sqe);
  if (op.kind == IoKind::kRead || op.kind == IoKind::kWrite) {
    PrepTransfer(op, sqe);
  } else {
    PrepControl(op, sqe);
  }
  if (op.link_next) sqe->flags |= IOSQE_IO_LINK;
  sqe->user_data = reinterpret_cast<uint64_t>(&op);
}

// The descriptor: its index in the registered files where it has one.
void UringDriver::PrepFile(const IoOp& op, io_uring_sqe* sqe) const {
  const int fixed = FixedIndex(op.fd);
  if (fixed >= 0) {
    sqe->fd = fixed;
    sqe->flags |= IOSQE_FIXED_FILE;
  } else {
    sqe->fd = op.fd;
  }
}

// A read or a write: from a registered buffer where the op has one.
void UringDriver::PrepTransfer(const IoOp& op, io_uring_sqe* sqe) const {
  const bool fixed_buffer = op.buffer_index >= 0 && static_cast<uint32_t>(op.buffer_index) < buffers_registered_;
  if (op.kind == IoKind::kRead) {
    sqe->opcode = fixed_buffer ? IORING_OP_READ_FIXED : IORING_OP_READ;
  } else {
    sqe->opcode = fixed_buffer ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE;
  }
  sqe->addr = reinterpret_cast<uint64_t>(op.data);
  sqe->len = op.length;
  // -1: the file's current position; what a stream (a pipe) reads and writes at.
  sqe->off = op.positioned ? op.offset : ~0ull;
  if (fixed_buffer) sqe->buf_index = static_cast<uint16_t>(op.buffer_index);
  if (options_.idle_priority) sqe->ioprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0);
}

// Everything but a read or a write: syncs, zeroing, NOP, socket messages.
void UringDriver::PrepControl(const IoOp& op, io_uring_sqe* sqe) {
  switch (op.kind) {
    case IoKind::kFsync:
    case IoKind::kFdatasync:
      sqe->opcode = IORING_OP_FSYNC;
      sqe->fsync_flags = op.kind == IoKind::kFdatasync ? IORING_FSYNC_DATASYNC : 0;
      break;
    case IoKind::kPunchHole:
    case IoKind::kZeroRange:
      // PUNCH_HOLE: on a file a hole; on a block device REQ_OP_WRITE_ZEROES
      // that may unmap, failing (EOPNOTSUPP) rather than falling back to
      // writing. ZERO_RANGE: on a block device REQ_OP_WRITE_ZEROES without
      // unmap (BLKZEROOUT's), the kernel writing zero pages where the device
      // cannot. Zeroes are guaranteed either way.
      sqe->opcode = IORING_OP_FALLOCATE;
      sqe->off = op.offset;
      sqe->addr = op.length;
      sqe->len = static_cast<uint32_t>(FallocateMode(op.kind));
      break;
    case IoKind::kNop:
      sqe->opcode = IORING_OP_NOP;
      sqe->fd = -1;
      sqe->flags &= ~IOSQE_FIXED_FILE;
      break;
    case IoKind::kSendMsg:
    case IoKind::kRecv:
      PrepSocket(op, sqe);
      break;
    case IoKind::kRead:
    case IoKind::kWrite:
      assert(false);  // PrepTransfer's
      break;
  }
}

void UringDriver::PrepSocket(const IoOp& op, io_uring_sqe* sqe) {
  if (op.kind == IoKind::kSendMsg) {
    // MSG_WAITALL on a stream socket: the kernel retries a partial send
    // itself (5.19+); an older one returns it short, and the owner sends the rest.
    sqe->opcode = IORING_OP_SENDMSG;
    sqe->addr = reinterpret_cast<uint64_t>(op.msg);
  } else {
    sqe->opcode = IORING_OP_RECV;
    sqe->addr = reinterpret_cast<uint64_t>(op.data);
    sqe->len = op.length;
  }
  sqe->msg_flags = op.msg_flags;
}

void UringDriver::Cancel(IoOp* op) {
  assert(op != nullptr);
  if (!op->queued || !op->may_block) return;
  if (RemoveFromFifo(op)) {
    op->result = -ECANCELED;
    ready_.push_back(op);
    return;
  }
  if (std::find(cancels_.begin(), cancels_.end(), op) == cancels_.end()) cancels_.push_back(op);
}

bool UringDriver::RemoveFromFifo(IoOp* op) {
  IoOp* previous = nullptr;
  for (IoOp* at = fifo_head_; at != nullptr; previous = at, at = at->next) {
    if (at != op) continue;
    assert(!op->link_next && (previous == nullptr || !previous->link_next));  // streams are never linked
    if (previous != nullptr) {
      previous->next = op->next;
    } else {
      fifo_head_ = op->next;
    }
    if (fifo_tail_ == op) fifo_tail_ = previous;
    --fifo_count_;
    return true;
  }
  return false;
}

void UringDriver::PrepCancels() {
  size_t sent = 0;
  for (; sent < cancels_.size() && ring_->sq_space() > 0; ++sent) {
    io_uring_sqe* sqe = ring_->GetSqe();
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = reinterpret_cast<uint64_t>(cancels_[sent]);
    sqe->user_data = kInternalUserData;
  }
  cancels_.erase(cancels_.begin(), cancels_.begin() + static_cast<long>(sent));
}

SysError UringDriver::Enter(uint32_t wait_nr, uint64_t timeout_ns) {
  const int r = ring_->SubmitAndWait(wait_nr, timeout_ns);
  ++submit_calls_;
  // -ETIME: the wait timed out; -EINTR: a signal; -EAGAIN/-EBUSY: the kernel
  // is short of resources or the CQ backlog is full: reaping makes room.
  if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
    return SysError::Make(-r, "io_uring_enter");
  }
  return {};
}

SysError UringDriver::Poll(uint64_t timeout_ns) {
  Flush();
  SysError error;
  if (kernel_in_flight_ > 0 || ring_->pending_submissions() > 0) {
    const bool wait = timeout_ns > 0 && ready_.empty();
    error = Enter(wait ? 1 : 0, timeout_ns);
  }
  Reap();
  RunReady();
  return error;
}

void UringDriver::Reap() {
  io_uring_cqe cqe;
  while (ring_->PopCqe(&cqe)) {
    if (cqe.user_data == kInternalUserData) continue;  // an ASYNC_CANCEL's own answer
    IoOp* op = reinterpret_cast<IoOp*>(cqe.user_data);
    assert(op->queued && kernel_in_flight_ > 0);
    --kernel_in_flight_;
    op->result = cqe.res;
    ready_.push_back(op);
    // A cancel not sent yet must not reach the record's next use.
    cancels_.erase(std::remove(cancels_.begin(), cancels_.end(), op), cancels_.end());
  }
}

void UringDriver::RunReady() {
  // Handlers submit more work; it goes to the FIFO and waits for the next
  // Poll. The two lists trade places, so neither allocates after the first turns.
  running_.swap(ready_);
  for (IoOp* op : running_) DeliverCompletion(*op);
  running_.clear();
}

}  // namespace devmove
