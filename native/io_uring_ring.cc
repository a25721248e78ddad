#include "io_uring_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cassert>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

// The layout we rely on is the kernel ABI; pin it so a header mismatch fails
// the build instead of corrupting the rings at run time.
static_assert(sizeof(io_uring_sqe) == 64, "io_uring_sqe must be 64 bytes");
static_assert(sizeof(io_uring_cqe) == 16, "io_uring_cqe must be 16 bytes");
static_assert(offsetof(io_uring_sqe, user_data) == 32, "io_uring_sqe.user_data offset");
static_assert(sizeof(io_uring_getevents_arg) == 24, "io_uring_getevents_arg size");

namespace devmove {
namespace {

int SysSetup(uint32_t entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}

int SysEnter(int fd, uint32_t to_submit, uint32_t min_complete, uint32_t flags, const void* arg,
             size_t arg_size) {
  return static_cast<int>(
      syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, arg_size));
}

int SysRegister(int fd, uint32_t opcode, const void* arg, uint32_t nr_args) {
  return static_cast<int>(syscall(__NR_io_uring_register, fd, opcode, arg, nr_args));
}

uint32_t LoadAcquire(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void StoreRelease(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

// The first line of a /proc/sys file. Plain read(2), not <fstream>: iostreams would pull the C++
// locale machinery (~0.9 MB) into the addon, whose C++ runtime is linked in statically.
std::string ReadSysctl(const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buffer[64];
  const ssize_t got = read(fd, buffer, sizeof buffer);
  close(fd);
  if (got <= 0) return "";
  std::string value(buffer, static_cast<size_t>(got));
  return value.substr(0, value.find('\n'));
}

}  // namespace

std::string IoUringRing::ExplainSetupFailure(int errno_value) {
  switch (errno_value) {
    case ENOSYS:
      return "io_uring is not available: the kernel lacks it (Linux >= 5.6 is needed) or a seccomp "
             "filter (container runtime default profiles block io_uring) answers ENOSYS";
    case EPERM: {
      const std::string disabled = ReadSysctl("/proc/sys/kernel/io_uring_disabled");
      if (disabled == "2")
        return "io_uring is disabled on this machine: sysctl kernel.io_uring_disabled=2 "
               "(set it to 0 to allow io_uring)";
      if (disabled == "1")
        return "io_uring is restricted: sysctl kernel.io_uring_disabled=1 allows it only to "
               "CAP_SYS_ADMIN and members of the group in kernel.io_uring_group";
      return "io_uring_setup was refused (EPERM): a seccomp filter or security module blocks "
             "io_uring for this process";
    }
    case ENOMEM: {
      rlimit rl{};
      getrlimit(RLIMIT_MEMLOCK, &rl);
      char buf[256];
      if (rl.rlim_cur == RLIM_INFINITY) {
        std::snprintf(buf, sizeof buf, "io_uring_setup ran out of memory (RLIMIT_MEMLOCK is unlimited)");
      } else {
        std::snprintf(buf, sizeof buf,
                      "io_uring_setup could not lock ring memory: RLIMIT_MEMLOCK is %llu KiB "
                      "(ulimit -l); raise it, or run with CAP_IPC_LOCK",
                      static_cast<unsigned long long>(rl.rlim_cur / 1024));
      }
      return buf;
    }
    case EMFILE:
    case ENFILE:
      return "io_uring_setup needs a file descriptor and the process or system has none left";
    case EINVAL:
      return "io_uring_setup rejected the parameters (kernel too old for the requested features)";
    default:
      return std::string("io_uring_setup failed: ") + std::strerror(errno_value);
  }
}

std::unique_ptr<IoUringRing> IoUringRing::Create(const RingOptions& options, SysError* error) {
  assert(options.sq_entries > 0 && options.sq_entries <= 4096);
  // Flags newest first; each step drops what an older kernel rejects with EINVAL.
  // SINGLE_ISSUER|DEFER_TASKRUN (6.1): completions are processed only when we
  // enter the kernel to wait, on our thread, instead of interrupting it.
  std::vector<uint32_t> attempts;
  if (options.sqpoll) {
    attempts = {IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_SQPOLL};
  } else {
    attempts = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
                IORING_SETUP_COOP_TASKRUN, 0};
  }
  int last_errno = EINVAL;
  for (uint32_t flags : attempts) {
    io_uring_params params;
    std::memset(&params, 0, sizeof params);
    params.flags = flags | IORING_SETUP_CLAMP;
    if (options.cq_entries) {
      params.flags |= IORING_SETUP_CQSIZE;
      params.cq_entries = options.cq_entries;
    }
    if (options.sqpoll) params.sq_thread_idle = options.sqpoll_idle_ms;
    const int fd = SysSetup(options.sq_entries, &params);
    if (fd < 0) {
      last_errno = errno;
      if (last_errno == EINVAL) continue;
      break;
    }
    std::unique_ptr<IoUringRing> ring(new IoUringRing());
    ring->ring_fd_ = fd;
    ring->features_ = params.features;
    ring->setup_flags_ = params.flags;
    const int map_result = ring->MapRings(params);
    if (map_result < 0) {
      *error = SysError::Make(-map_result, "mmap", {}, -1,
                              "could not map the io_uring rings: " + ExplainSetupFailure(-map_result));
      return nullptr;
    }
    ring->ProbeOps();
    return ring;
  }
  *error = SysError::Make(last_errno, "io_uring_setup", {}, -1, ExplainSetupFailure(last_errno));
  return nullptr;
}

int IoUringRing::MapRings(const io_uring_params& p) {
  sq_entries_ = p.sq_entries;
  cq_entries_ = p.cq_entries;
  sq_ring_bytes_ = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  cq_ring_bytes_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single_mmap = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single_mmap) sq_ring_bytes_ = cq_ring_bytes_ = std::max(sq_ring_bytes_, cq_ring_bytes_);

  sq_ring_ptr_ = mmap(nullptr, sq_ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      ring_fd_, IORING_OFF_SQ_RING);
  if (sq_ring_ptr_ == MAP_FAILED) {
    sq_ring_ptr_ = nullptr;
    return -errno;
  }
  if (single_mmap) {
    cq_ring_ptr_ = sq_ring_ptr_;
  } else {
    cq_ring_ptr_ = mmap(nullptr, cq_ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                        ring_fd_, IORING_OFF_CQ_RING);
    if (cq_ring_ptr_ == MAP_FAILED) {
      cq_ring_ptr_ = nullptr;
      return -errno;
    }
  }
  sqes_bytes_ = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = mmap(nullptr, sqes_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd_,
                    IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return -errno;
  sqes_ = static_cast<io_uring_sqe*>(sqes);

  auto* sq = static_cast<char*>(sq_ring_ptr_);
  sq_khead_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.head);
  sq_ktail_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.tail);
  sq_kflags_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.flags);
  sq_mask_ = *reinterpret_cast<uint32_t*>(sq + p.sq_off.ring_mask);
  sq_array_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.array);
  // SQE slot i is always published through array entry i.
  for (uint32_t i = 0; i < p.sq_entries; ++i) sq_array_[i] = i;

  auto* cq = static_cast<char*>(cq_ring_ptr_);
  cq_khead_ = reinterpret_cast<uint32_t*>(cq + p.cq_off.head);
  cq_ktail_ = reinterpret_cast<uint32_t*>(cq + p.cq_off.tail);
  cq_mask_ = *reinterpret_cast<uint32_t*>(cq + p.cq_off.ring_mask);
  cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  sqe_head_ = sqe_tail_ = *sq_ktail_;
  return 0;
}

void IoUringRing::ProbeOps() {
  constexpr uint32_t kOps = 256;
  std::vector<char> storage(sizeof(io_uring_probe) + kOps * sizeof(io_uring_probe_op), 0);
  auto* probe = reinterpret_cast<io_uring_probe*>(storage.data());
  if (SysRegister(ring_fd_, IORING_REGISTER_PROBE, probe, kOps) < 0) return;  // < 5.6: no probe
  probe_ok_ = true;
  for (uint32_t i = 0; i < probe->ops_len && i < kOps; ++i) {
    if (probe->ops[i].flags & IO_URING_OP_SUPPORTED) {
      const uint8_t op = probe->ops[i].op;
      supported_ops_[op / 8] |= static_cast<uint8_t>(1u << (op % 8));
    }
  }
}

bool IoUringRing::OpSupported(uint8_t opcode) const {
  if (!probe_ok_) return false;
  return (supported_ops_[opcode / 8] >> (opcode % 8)) & 1u;
}

IoUringRing::~IoUringRing() {
  // Ring teardown after close() is asynchronous in the kernel and keeps the
  // registered files open meanwhile; unregistering waits for them, so a
  // device is really closed (and e.g. a loop device detachable) when we return.
  if (ring_fd_ >= 0 && files_registered_) SysRegister(ring_fd_, IORING_UNREGISTER_FILES, nullptr, 0);
  if (ring_fd_ >= 0 && buffers_registered_) SysRegister(ring_fd_, IORING_UNREGISTER_BUFFERS, nullptr, 0);
  if (sqes_) munmap(sqes_, sqes_bytes_);
  if (cq_ring_ptr_ && cq_ring_ptr_ != sq_ring_ptr_) munmap(cq_ring_ptr_, cq_ring_bytes_);
  if (sq_ring_ptr_) munmap(sq_ring_ptr_, sq_ring_bytes_);
  if (ring_fd_ >= 0) close(ring_fd_);
}

io_uring_sqe* IoUringRing::GetSqe() {
  const uint32_t head = LoadAcquire(sq_khead_);
  if (sqe_tail_ - head >= sq_entries_) return nullptr;
  io_uring_sqe* sqe = &sqes_[sqe_tail_ & sq_mask_];
  ++sqe_tail_;
  std::memset(sqe, 0, sizeof *sqe);
  return sqe;
}

int IoUringRing::SubmitAndWait(uint32_t wait_nr, uint64_t timeout_ns) {
  if (sqe_tail_ != sqe_head_) {
    StoreRelease(sq_ktail_, sqe_tail_);
    sqe_head_ = sqe_tail_;
  }
  // Counted from the kernel's head so SQEs a previous enter left unconsumed
  // (it may submit fewer than asked) are submitted now.
  const uint32_t to_submit = sqe_tail_ - LoadAcquire(sq_khead_);
  uint32_t flags = 0;
  if (setup_flags_ & IORING_SETUP_SQPOLL) {
    // The poller thread picks up the new tail by itself unless it went idle.
    // Full barrier between the tail store and the flags load (liburing's
    // io_uring_smp_mb()): release/acquire alone lets the load pass the store,
    // and a poller going idle at that moment would miss both the new tail and
    // our wakeup.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(sq_kflags_, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP)
      flags |= IORING_ENTER_SQ_WAKEUP;
    if (wait_nr == 0 && !(flags & IORING_ENTER_SQ_WAKEUP)) return static_cast<int>(to_submit);
  }
  if (wait_nr) flags |= IORING_ENTER_GETEVENTS;
  // With DEFER_TASKRUN completions only post when we ask for events.
  if (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) flags |= IORING_ENTER_GETEVENTS;

  __kernel_timespec ts{};
  io_uring_getevents_arg arg{};
  const void* argp = nullptr;
  size_t arg_size = 0;
  if (wait_nr && timeout_ns && (features_ & IORING_FEAT_EXT_ARG)) {
    ts.tv_sec = static_cast<int64_t>(timeout_ns / 1000000000ull);
    ts.tv_nsec = static_cast<long long>(timeout_ns % 1000000000ull);
    arg.ts = reinterpret_cast<uint64_t>(&ts);
    flags |= IORING_ENTER_EXT_ARG;
    argp = &arg;
    arg_size = sizeof arg;
  }
  const uint32_t kernel_submit = (setup_flags_ & IORING_SETUP_SQPOLL) ? 0 : to_submit;
  const int r = SysEnter(ring_fd_, kernel_submit, wait_nr, flags, argp, arg_size);
  if (r < 0) return -errno;
  return (setup_flags_ & IORING_SETUP_SQPOLL) ? static_cast<int>(to_submit) : r;
}

bool IoUringRing::PopCqe(io_uring_cqe* out) {
  const uint32_t head = *cq_khead_;
  if (head == LoadAcquire(cq_ktail_)) return false;
  *out = cqes_[head & cq_mask_];
  StoreRelease(cq_khead_, head + 1);
  return true;
}

int IoUringRing::RegisterBuffers(const iovec* iovecs, uint32_t count) {
  if (SysRegister(ring_fd_, IORING_REGISTER_BUFFERS, iovecs, count) < 0) return -errno;
  buffers_registered_ = true;
  return 0;
}

int IoUringRing::RegisterFiles(const int* fds, uint32_t count) {
  if (SysRegister(ring_fd_, IORING_REGISTER_FILES, fds, count) < 0) return -errno;
  files_registered_ = true;
  return 0;
}

}  // namespace devmove
