#include "hash_pool.h"

#include <errno.h>
#include <sched.h>
#include <sys/prctl.h>

#include <cassert>
#include <system_error>

namespace devmove {

uint32_t HashPool::UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  const int count = CPU_COUNT(&set);
  return count > 0 ? static_cast<uint32_t>(count) : 1;
}

std::unique_ptr<HashPool> HashPool::Create(uint32_t threads, SysError* error) {
  if (threads == 0) threads = UsableCpus();
  if (threads > kThreadsMax) threads = kThreadsMax;
  std::unique_ptr<HashPool> pool(new HashPool());
  pool->workers_.reserve(threads);
  try {
    for (uint32_t i = 0; i < threads; ++i) pool->workers_.emplace_back([p = pool.get()] { p->Work(); });
  } catch (const std::system_error& e) {
    // The destructor stops and joins the workers that did start.
    *error = SysError::Make(e.code().value() ? e.code().value() : EAGAIN, "pthread_create", {}, -1,
                            "could not start " + std::to_string(threads) + " hashing threads (" +
                                std::to_string(pool->workers_.size()) + " started)");
    return nullptr;
  }
  return pool;
}

HashPool::~HashPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : workers_) t.join();
  assert(head_ == nullptr && queued_ == 0);
}

void HashPool::Submit(Task* task) {
  assert(task != nullptr && task->next_ == nullptr);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    assert(!stopping_);
    if (tail_ != nullptr) {
      tail_->next_ = task;
    } else {
      head_ = task;
    }
    tail_ = task;
    ++queued_;
  }
  ready_.notify_one();
}

uint32_t HashPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_;
}

void HashPool::Work() {
  // Named so a copy's hashing threads can be told apart (top -H, /proc/PID/task/*/comm; tests count them).
  // prctl, not pthread_setname_np: that is GLIBC_2.34 where the addon is
  // built, and the binary loads on glibc 2.28 (glibc_compat.cc).
  prctl(PR_SET_NAME, kThreadName);
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ready_.wait(lock, [this] { return head_ != nullptr || stopping_; });
    // Stopping still drains the queue: a submitted task always runs.
    if (head_ == nullptr) return;
    Task* task = head_;
    head_ = task->next_;
    if (head_ == nullptr) tail_ = nullptr;
    task->next_ = nullptr;
    --queued_;
    lock.unlock();
    task->Run();
    lock.lock();
  }
}

}  // namespace devmove
