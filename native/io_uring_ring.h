// One io_uring instance driven through the raw kernel interface
// (io_uring_setup / io_uring_enter / io_uring_register and the mmap'd rings),
// as libuv does, so building needs no liburing. Single-threaded by design: the
// thread that creates the ring is the only one that submits to it, which lets
// us ask the kernel for IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN.
#pragma once

#include <linux/io_uring.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>

#include "sys_error.h"

namespace devmove {

struct RingOptions {
  uint32_t sq_entries = 64;    // rounded up to a power of two by the kernel
  uint32_t cq_entries = 0;     // 0 = 2 × sq_entries
  bool sqpoll = false;         // kernel thread polls the SQ (ablation; needs privileges on old kernels)
  uint32_t sqpoll_idle_ms = 50;
};

class IoUringRing {
 public:
  // Creates a ring. On failure returns nullptr and fills `error` with the
  // errno of io_uring_setup and, in error->message, the most likely reason
  // (kernel.io_uring_disabled, seccomp, RLIMIT_MEMLOCK, old kernel).
  static std::unique_ptr<IoUringRing> Create(const RingOptions& options, SysError* error);

  ~IoUringRing();
  IoUringRing(const IoUringRing&) = delete;
  IoUringRing& operator=(const IoUringRing&) = delete;

  // Next free SQE, zeroed, or nullptr when the SQ is full. It is handed to the
  // kernel by the next Submit*().
  io_uring_sqe* GetSqe();

  // SQEs prepared but not yet consumed by the kernel.
  uint32_t pending_submissions() const { return sqe_tail_ - __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE); }
  // SQEs GetSqe() can hand out now.
  uint32_t sq_space() const { return sq_entries_ - pending_submissions(); }

  // Submits the prepared SQEs and waits until at least `wait_nr` completions
  // are available or `timeout_ns` passes (0 = no timeout). Returns the number
  // submitted (≥0), or -errno; -ETIME means the timeout passed, -EINTR a signal.
  int SubmitAndWait(uint32_t wait_nr, uint64_t timeout_ns);

  // Copies the oldest completion into *cqe and consumes it. False when none.
  bool PopCqe(io_uring_cqe* cqe);

  int RegisterBuffers(const iovec* iovecs, uint32_t count);  // 0 or -errno
  int RegisterFiles(const int* fds, uint32_t count);         // 0 or -errno

  bool OpSupported(uint8_t opcode) const;
  uint32_t features() const { return features_; }
  uint32_t setup_flags() const { return setup_flags_; }
  uint32_t sq_entries() const { return sq_entries_; }
  uint32_t cq_entries() const { return cq_entries_; }
  int fd() const { return ring_fd_; }

  // Human reason for an io_uring_setup failure; exposed for unit tests.
  static std::string ExplainSetupFailure(int errno_value);

 private:
  IoUringRing() = default;
  int MapRings(const io_uring_params& params);
  void ProbeOps();

  int ring_fd_ = -1;
  uint32_t features_ = 0;
  uint32_t setup_flags_ = 0;
  uint32_t sq_entries_ = 0;
  uint32_t cq_entries_ = 0;

  // SQ ring (kernel-shared words)
  void* sq_ring_ptr_ = nullptr;
  size_t sq_ring_bytes_ = 0;
  uint32_t* sq_khead_ = nullptr;
  uint32_t* sq_ktail_ = nullptr;
  uint32_t* sq_kflags_ = nullptr;
  uint32_t sq_mask_ = 0;
  uint32_t* sq_array_ = nullptr;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqes_bytes_ = 0;
  uint32_t sqe_head_ = 0;  // first prepared SQE not yet published to the kernel
  uint32_t sqe_tail_ = 0;  // next SQE to hand out

  // CQ ring
  void* cq_ring_ptr_ = nullptr;  // == sq_ring_ptr_ with IORING_FEAT_SINGLE_MMAP
  size_t cq_ring_bytes_ = 0;
  uint32_t* cq_khead_ = nullptr;
  uint32_t* cq_ktail_ = nullptr;
  uint32_t cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;

  bool buffers_registered_ = false;
  bool files_registered_ = false;
  uint8_t supported_ops_[256 / 8] = {};
  bool probe_ok_ = false;
};

}  // namespace devmove
