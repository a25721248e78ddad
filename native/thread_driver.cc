#include "thread_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ioprio.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <chrono>

namespace devmove {
namespace {

int32_t Result(ssize_t r) { return r < 0 ? -errno : static_cast<int32_t>(r); }

// Whether an op moved everything it was asked to: a linked successor runs only then.
bool MovedEverything(const IoOp& op) {
  if (op.kind == IoKind::kRead || op.kind == IoKind::kWrite) return op.result == static_cast<int32_t>(op.length);
  return op.result >= 0;
}

}  // namespace

std::unique_ptr<ThreadDriver> ThreadDriver::Create(const DriverOptions& options, SysError* error) {
  assert(options.in_flight_max >= 1 && options.in_flight_max <= DriverOptions::kInFlightMax);
  std::unique_ptr<ThreadDriver> driver(new ThreadDriver(options));
  const uint32_t expected = options.in_flight_start > 0 ? options.in_flight_start : options.in_flight_max;
  const uint32_t count = std::min({kWorkersMax, expected, options.in_flight_max});
  // Workers never take the process's signals (SIGINT, SIGTERM are Node's):
  // they start with every signal blocked.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    for (uint32_t i = 0; i < count; ++i) {
      driver->workers_.push_back(std::make_unique<Worker>());
      Worker* worker = driver->workers_.back().get();
      worker->thread = std::thread([d = driver.get(), worker] { d->WorkerMain(worker); });
    }
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    *error = SysError::Make(e.code().value(), "pthread_create", {}, -1, "could not start the I/O worker threads");
    return nullptr;  // the destructor joins the ones that started
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return driver;
}

ThreadDriver::~ThreadDriver() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (auto& w : workers_) w->cancel.store(true);
  }
  work_ready_.notify_all();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

std::string ThreadDriver::RegisterBuffers(const BufferPool& pool) {
  (void)pool;
  return "not used by the threads I/O driver";
}

std::string ThreadDriver::RegisterFiles(const std::vector<int>& fds) {
  (void)fds;
  return "not used by the threads I/O driver";
}

void ThreadDriver::Submit(IoOp* op) {
  assert(op != nullptr && !op->queued && op->owner != nullptr && op->fd >= 0);
  op->queued = true;
  op->next = nullptr;
  pending_.push_back(op);
}

void ThreadDriver::HandOver() {
  // Under mutex_. Chains go to one worker as one unit, linked through next;
  // the engine submits a chain whole before it polls.
  for (size_t i = 0; i < pending_.size(); ++i) {
    IoOp* head = pending_[i];
    for (IoOp* at = head; at->link_next && i + 1 < pending_.size(); at = at->next) at->next = pending_[++i];
    queue_.push_back(head);
  }
  outstanding_ += static_cast<uint32_t>(pending_.size());
  pending_.clear();
}

void ThreadDriver::Cancel(IoOp* op) {
  assert(op != nullptr);
  if (!op->queued || !op->may_block) return;
  auto in_pending = std::find(pending_.begin(), pending_.end(), op);
  if (in_pending != pending_.end()) {
    pending_.erase(in_pending);
    op->result = -ECANCELED;
    cancelled_.push_back(op);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto in_queue = std::find(queue_.begin(), queue_.end(), op);
  if (in_queue != queue_.end()) {
    queue_.erase(in_queue);
    op->result = -ECANCELED;
    done_.push_back(op);
    return;
  }
  for (auto& w : workers_) {
    if (w->current == op) w->cancel.store(true);
  }
}

SysError ThreadDriver::Poll(uint64_t timeout_ns) {
  // The running list keeps its capacity from turn to turn: no allocation per Poll.
  std::vector<IoOp*>& ready = running_;
  ready.swap(cancelled_);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!pending_.empty()) {
      HandOver();
      work_ready_.notify_all();
    }
    if (done_.empty() && ready.empty() && outstanding_ > 0 && timeout_ns > 0) {
      // On the system clock, deliberately: libstdc++ waits on the steady clock with
      // pthread_cond_clockwait, which glibc has only since 2.30 (the prebuild needs
      // nothing above 2.28; package.test.ts). A clock step only moves this wake-up
      // (a finished op notifies at once); the engine's own timing is monotonic.
      const auto deadline = std::chrono::system_clock::now() + std::chrono::nanoseconds(timeout_ns);
      work_done_.wait_until(lock, deadline, [this] { return !done_.empty(); });
    }
    assert(done_.size() <= outstanding_);
    outstanding_ -= static_cast<uint32_t>(done_.size());
    ready.insert(ready.end(), done_.begin(), done_.end());
    done_.clear();
  }
  for (IoOp* op : ready) DeliverCompletion(*op);
  ready.clear();
  return {};
}

void ThreadDriver::WorkerMain(Worker* worker) {
  if (options_.idle_priority) {
    // Per thread: ioprio_set with IOPRIO_WHO_PROCESS and 0 means the calling thread.
    syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0));
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    IoOp* head = queue_.front();
    queue_.pop_front();
    worker->current = head;
    worker->cancel.store(false);
    lock.unlock();
    RunChain(*worker, head);
    lock.lock();
    worker->current = nullptr;
  }
}

void ThreadDriver::RunChain(Worker& worker, IoOp* head) {
  std::vector<IoOp*> finished;
  bool broken = false;
  for (IoOp* op = head; op != nullptr;) {
    IoOp* next = op->link_next ? op->next : nullptr;
    op->next = nullptr;
    op->result = broken ? -ECANCELED : Execute(worker, *op);
    broken = broken || !MovedEverything(*op);
    finished.push_back(op);
    op = next;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_.insert(done_.end(), finished.begin(), finished.end());
  }
  work_done_.notify_one();
}

int32_t ThreadDriver::Execute(Worker& worker, IoOp& op) {
  const off_t offset = static_cast<off_t>(op.offset);
  switch (op.kind) {
    case IoKind::kRead:
      if (!op.positioned) return ExecuteStream(worker, op);
      return Result(pread(op.fd, op.data, op.length, offset));
    case IoKind::kWrite:
      if (!op.positioned) return ExecuteStream(worker, op);
      return Result(pwrite(op.fd, op.data, op.length, offset));
    case IoKind::kFsync:
      return Result(fsync(op.fd));
    case IoKind::kFdatasync:
      return Result(fdatasync(op.fd));
    case IoKind::kPunchHole:
    case IoKind::kZeroRange:
      return Result(fallocate(op.fd, FallocateMode(op.kind), offset, op.length));
    case IoKind::kSendMsg:
    case IoKind::kRecv:
      return ExecuteSocket(worker, op);
    case IoKind::kNop:
      return 0;
  }
  return -EINVAL;
}

// A socket send or receive, never blocking in the call: MSG_DONTWAIT, then
// poll() in slices, so a cancel ends a wait for the peer. With MSG_WAITALL it
// returns only when everything moved (or the peer ended, or it failed).
int32_t ThreadDriver::ExecuteSocket(Worker& worker, IoOp& op) {
  const bool send = op.kind == IoKind::kSendMsg;
  const bool all = (op.msg_flags & MSG_WAITALL) != 0;
  const int flags = static_cast<int>(op.msg_flags & ~MSG_WAITALL) | MSG_DONTWAIT;
  // The caller's iovecs stay as they are: a partial send advances a copy.
  std::vector<iovec> iov;
  size_t total = op.length;
  if (send) {
    iov.assign(op.msg->msg_iov, op.msg->msg_iov + op.msg->msg_iovlen);
    total = 0;
    for (const iovec& v : iov) total += v.iov_len;
  }
  size_t done = 0, at = 0;
  while (done < total) {
    ssize_t n;
    if (send) {
      msghdr m{};
      m.msg_iov = iov.data() + at;
      m.msg_iovlen = iov.size() - at;
      n = sendmsg(op.fd, &m, flags);
    } else {
      n = recv(op.fd, op.data + done, total - done, flags);
    }
    if (n == 0 && !send) break;  // the peer's end
    if (n > 0) {
      done += static_cast<size_t>(n);
      for (size_t left = static_cast<size_t>(n); send && left > 0 && at < iov.size();) {
        const size_t take = std::min(left, iov[at].iov_len);
        iov[at].iov_base = static_cast<uint8_t*>(iov[at].iov_base) + take;
        iov[at].iov_len -= take;
        left -= take;
        if (iov[at].iov_len == 0) ++at;
      }
      if (!all) break;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return done > 0 ? static_cast<int32_t>(done) : -errno;
    for (;;) {
      if (worker.cancel.load()) return done > 0 ? static_cast<int32_t>(done) : -ECANCELED;
      pollfd p{op.fd, static_cast<short>(send ? POLLOUT : POLLIN), 0};
      const int ready = poll(&p, 1, kStreamWaitSliceMs);
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) return -errno;
    }
  }
  return static_cast<int32_t>(done);
}

int32_t ThreadDriver::ExecuteStream(Worker& worker, IoOp& op) {
  const bool read = op.kind == IoKind::kRead;
  iovec iov{op.data, op.length};
  int flags = RWF_NOWAIT;
  // Each pass moves bytes, fails, or waits one slice for the other end; a
  // cancel ends the waiting.
  for (;;) {
    const ssize_t n = read ? preadv2(op.fd, &iov, 1, -1, flags) : pwritev2(op.fd, &iov, 1, -1, flags);
    if (n >= 0) return static_cast<int32_t>(n);
    if (errno == EOPNOTSUPP && flags != 0) {
      flags = 0;  // no RWF_NOWAIT here: poll first, then a plain call
    } else if (errno != EAGAIN && errno != EINTR) {
      return -errno;
    }
    // Bounded by the cancel: each pass waits at most one slice.
    for (;;) {
      if (worker.cancel.load()) return -ECANCELED;
      pollfd p{op.fd, static_cast<short>(read ? POLLIN : POLLOUT), 0};
      const int ready = poll(&p, 1, kStreamWaitSliceMs);
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) return -errno;
    }
  }
}

}  // namespace devmove
