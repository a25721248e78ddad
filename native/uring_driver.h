// The io_uring I/O driver: IoOp records become SQEs (user_data = the record's
// address) through one prep switch; completions come back through one reap
// loop. Linked chains (IOSQE_IO_LINK) are always placed in the SQ whole, so a
// chain is never split across two io_uring_enter calls. What does not fit in
// the SQ (or would overrun the CQ) waits in a FIFO for the next Poll().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io_driver.h"
#include "io_uring_ring.h"

namespace devmove {

class UringDriver final : public IoDriver {
 public:
  // Limits of one ring, whatever the copy asks for.
  static constexpr uint32_t kSqEntriesMax = 4096;  // IoUringRing::Create's bound
  static constexpr uint32_t kSqEntriesMin = 8;
  static constexpr uint32_t kChainLengthMax = 8;   // longest IOSQE_IO_LINK chain accepted

  // Fails with io_uring_setup's errno and the reason (see IoUringRing::Create),
  // or ENOSYS when the kernel's io_uring lacks plain READ/WRITE (< 5.6).
  static std::unique_ptr<UringDriver> Create(const DriverOptions& options, SysError* error);
  ~UringDriver() override;

  const char* name() const override { return "io_uring"; }
  bool Supports(IoKind kind) const override;
  std::string RegisterBuffers(const BufferPool& pool) override;
  std::string RegisterFiles(const std::vector<int>& fds) override;
  void Submit(IoOp* op) override;
  void Cancel(IoOp* op) override;
  SysError Poll(uint64_t timeout_ns) override;
  uint32_t in_flight() const override {
    return fifo_count_ + kernel_in_flight_ + static_cast<uint32_t>(ready_.size());
  }
  uint64_t submit_calls() const override { return submit_calls_; }
  uint32_t ring_setup_flags() const override { return ring_->setup_flags(); }
  uint32_t ring_features() const override { return ring_->features(); }

 private:
  explicit UringDriver(const DriverOptions& options) : options_(options) {}
  // Moves whole chains from the FIFO into the SQ while the SQ and the CQ have room.
  void Flush();
  uint32_t ChainLength(const IoOp* head) const;
  // The one prep switch: an IoOp as an SQE.
  void Prep(IoOp& op, io_uring_sqe* sqe) const;
  void PrepFile(const IoOp& op, io_uring_sqe* sqe) const;
  void PrepTransfer(const IoOp& op, io_uring_sqe* sqe) const;
  static void PrepControl(const IoOp& op, io_uring_sqe* sqe);
  static void PrepSocket(const IoOp& op, io_uring_sqe* sqe);
  void PrepCancels();
  int FixedIndex(int fd) const;
  SysError Enter(uint32_t wait_nr, uint64_t timeout_ns);
  void Reap();
  void RunReady();
  bool RemoveFromFifo(IoOp* op);

  DriverOptions options_;
  std::unique_ptr<IoUringRing> ring_;
  IoOp* fifo_head_ = nullptr;
  IoOp* fifo_tail_ = nullptr;
  uint32_t fifo_count_ = 0;
  uint32_t kernel_in_flight_ = 0;     // in the SQ or the kernel, completion not reaped
  std::vector<IoOp*> ready_;          // completed, handlers not run yet
  std::vector<IoOp*> running_;        // whose handlers RunReady() is running
  std::vector<IoOp*> cancels_;        // IORING_OP_ASYNC_CANCEL to send for these
  std::vector<int> fixed_index_by_fd_;
  uint32_t buffers_registered_ = 0;  // buffers [0, n) of the pool are fixed buffers
  uint64_t submit_calls_ = 0;
};

}  // namespace devmove
