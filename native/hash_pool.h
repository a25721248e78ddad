// A bounded set of worker threads that run hashing tasks off the I/O thread.
//
// Tasks are caller-owned records (as the I/O driver's IoOp records are): the
// pool allocates nothing per task and keeps them in an intrusive FIFO, so the
// memory it holds is bounded by the records its callers own. Submit() never
// blocks. A task's Run() executes on one worker; what it hands back, and how
// the submitter learns of it, is the task's business (parallel_digest.h hands
// finished buffers back through a queue and an eventfd).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sys_error.h"

namespace devmove {

class HashPool {
 public:
  // A limit on everything: more workers than this buys nothing on any
  // machine devmove targets and only costs stacks.
  static constexpr uint32_t kThreadsMax = 64;
  // Every worker's name (at most 15 characters: the kernel's comm).
  static constexpr const char* kThreadName = "devmove-hash";

  class Task {
   public:
    virtual void Run() = 0;

   protected:
    ~Task() = default;

   private:
    friend class HashPool;
    Task* next_ = nullptr;
  };

  // threads == 0: one per CPU this process may run on (sched_getaffinity),
  // at most kThreadsMax. Fails (EAGAIN from pthread_create) when the
  // threads cannot be started.
  static std::unique_ptr<HashPool> Create(uint32_t threads, SysError* error);
  // CPUs this process may run on.
  static uint32_t UsableCpus();
  // Runs every task still queued, then joins the workers.
  ~HashPool();
  HashPool(const HashPool&) = delete;
  HashPool& operator=(const HashPool&) = delete;

  // Queues a task; it must stay alive until its Run() has returned. Never blocks.
  void Submit(Task* task);
  uint32_t threads() const { return static_cast<uint32_t>(workers_.size()); }
  // Tasks queued and not yet started (for tests and reports).
  uint32_t queued() const;

 private:
  HashPool() = default;
  void Work();

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  Task* head_ = nullptr;
  Task* tail_ = nullptr;
  uint32_t queued_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace devmove
