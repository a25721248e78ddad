// The threads I/O driver: worker threads doing positioned reads and writes
// (pread/pwrite on the same O_DIRECT descriptors, fdatasync, fallocate) for
// the same IoOp records and the same buffer ring as the io_uring driver. Used
// where io_uring cannot be set up (a seccomp profile — Docker >= 25,
// containerd 2.0's RuntimeDefault — or kernel.io_uring_disabled), or when
// asked for. Completions are handed back to the engine's thread and run there,
// so the engine sees no difference but speed.
//
// A linked chain (read -> write) runs on one worker, in order: the write runs
// only if the read moved every byte, else it completes with -ECANCELED, as
// IOSQE_IO_LINK does. Streams (pipes) are read and written with RWF_NOWAIT
// and waited for with poll() in slices, so Cancel() ends a wait for the
// other end.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io_driver.h"

namespace devmove {

class ThreadDriver final : public IoDriver {
 public:
  // Workers at most, whatever the copy keeps in flight.
  static constexpr uint32_t kWorkersMax = 64;
  // A stream op waits for the other end in slices this long: bounds how late a cancel takes effect.
  static constexpr int kStreamWaitSliceMs = 100;

  static std::unique_ptr<ThreadDriver> Create(const DriverOptions& options, SysError* error);
  // Stops and joins the workers. The owner drains first.
  ~ThreadDriver() override;

  const char* name() const override { return "threads"; }
  bool Supports(IoKind kind) const override { (void)kind; return true; }
  std::string RegisterBuffers(const BufferPool& pool) override;
  std::string RegisterFiles(const std::vector<int>& fds) override;
  void Submit(IoOp* op) override;
  void Cancel(IoOp* op) override;
  SysError Poll(uint64_t timeout_ns) override;
  uint32_t in_flight() const override {
    return static_cast<uint32_t>(pending_.size() + cancelled_.size()) + outstanding_;
  }
  uint64_t submit_calls() const override { return 0; }
  uint32_t workers() const { return static_cast<uint32_t>(workers_.size()); }

 private:
  struct Worker {
    std::thread thread;
    IoOp* current = nullptr;        // the chain it runs (under mutex_)
    std::atomic<bool> cancel{false};
  };

  explicit ThreadDriver(const DriverOptions& options) : options_(options) {}
  void WorkerMain(Worker* worker);
  void RunChain(Worker& worker, IoOp* head);
  // The one execute switch: an IoOp as a system call. Returns bytes or -errno.
  int32_t Execute(Worker& worker, IoOp& op);
  int32_t ExecuteStream(Worker& worker, IoOp& op);
  int32_t ExecuteSocket(Worker& worker, IoOp& op);
  void HandOver();

  DriverOptions options_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::deque<IoOp*> queue_;   // chain heads waiting for a worker (under mutex_)
  std::vector<IoOp*> done_;   // completed, handlers not run yet (under mutex_)
  bool stopping_ = false;     // under mutex_
  std::vector<std::unique_ptr<Worker>> workers_;
  // Engine thread only:
  std::vector<IoOp*> pending_;    // submitted since the last Poll
  std::vector<IoOp*> cancelled_;  // cancelled before a worker saw them
  std::vector<IoOp*> running_;    // whose handlers Poll() is running
  uint32_t outstanding_ = 0;      // handed to workers, not yet delivered
};

}  // namespace devmove
