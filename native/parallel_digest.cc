#include "parallel_digest.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

namespace devmove {

// ---- ParallelDigest: buffers in, tickets out --------------------------------

ParallelDigest::ParallelDigest(HashPool& pool, const Limits& limits) : pool_(pool), limits_(limits) {
  assert(limits_.pieces_max >= 1 && limits_.pieces_max <= Limits::kPiecesMax);
  assert(limits_.tasks_per_piece >= 1 && limits_.tasks_per_piece <= Limits::kTasksPerPieceMax);
}

SysError ParallelDigest::Init() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return SysError::Make(errno, "eventfd");
  pieces_.reset(new Piece[limits_.pieces_max]);
  free_.reserve(limits_.pieces_max);
  done_.reserve(limits_.pieces_max);
  for (uint32_t i = limits_.pieces_max; i-- > 0;) {
    pieces_[i].index = i;
    for (PieceTask& t : pieces_[i].tasks) {
      t.owner = this;
      t.piece = &pieces_[i];
    }
    free_.push_back(i);
  }
  return {};
}

ParallelDigest::~ParallelDigest() {
  Drain();
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool ParallelDigest::Submit(uint64_t position, const uint8_t* data, size_t length, uint64_t ticket) {
  assert(pieces_ && planning_ == nullptr);
  if (free_.empty()) return false;
  Piece& piece = pieces_[free_.back()];
  free_.pop_back();
  piece.ticket = ticket;
  piece.task_count = 0;
  planning_ = &piece;
  Plan(position, data, length);
  planning_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(done_mutex_);
    ++submitted_;
  }
  if (piece.task_count == 0) {
    Finished(piece);  // everything was copied: the buffer is free already
    return true;
  }
  // Every task is counted before the first can finish.
  piece.pending.store(piece.task_count, std::memory_order_relaxed);
  Dispatch(piece.tasks, piece.task_count);
  return true;
}

void ParallelDigest::Dispatch(PieceTask* tasks, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) pool_.Submit(&tasks[i]);
}

void ParallelDigest::AddTask(uint64_t position, const uint8_t* data, size_t length) {
  assert(planning_ != nullptr && planning_->task_count < limits_.tasks_per_piece);
  PieceTask& task = planning_->tasks[planning_->task_count++];
  task.position = position;
  task.data = data;
  task.length = length;
}

void ParallelDigest::PieceTask::Run() {
  owner->Hash(position, data, length);
  owner->TaskDone(*piece);  // the last use of this record: the owner may reuse it at once
}

void ParallelDigest::TaskDone(Piece& piece) {
  if (piece.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) Finished(piece);
}

void ParallelDigest::Finished(Piece& piece) {
  std::lock_guard<std::mutex> lock(done_mutex_);
  done_.push_back(piece.index);
  ++finished_;
  // Still under the lock: Drain() may return (and the owner destroy this)
  // as soon as the lock is released.
  const uint64_t one = 1;
  const ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;  // cannot fail: the counter is far below its limit
  all_done_.notify_all();
}

size_t ParallelDigest::Reap(std::vector<uint64_t>* tickets) {
  std::lock_guard<std::mutex> lock(done_mutex_);
  const size_t count = done_.size();
  for (uint32_t index : done_) {
    tickets->push_back(pieces_[index].ticket);
    free_.push_back(index);
  }
  done_.clear();
  // Empty again: reset the eventfd (it is written only under this lock).
  uint64_t value;
  const ssize_t n = read(wake_fd_, &value, sizeof value);
  (void)n;  // EAGAIN when nothing was written
  assert(free_.size() <= limits_.pieces_max);
  return count;
}

void ParallelDigest::Drain() {
  std::unique_lock<std::mutex> lock(done_mutex_);
  all_done_.wait(lock, [this] { return finished_ == submitted_; });
}

// ---- BLAKE3: subtrees in parallel, one digest -------------------------------

std::unique_ptr<Blake3ParallelDigest> Blake3ParallelDigest::Create(HashPool& pool, const blake3::Kernel& kernel,
                                                                   const Limits& limits, SysError* error) {
  std::unique_ptr<Blake3ParallelDigest> digest(new Blake3ParallelDigest(pool, kernel, limits));
  *error = digest->Init();
  if (error->failed()) return nullptr;
  return digest;
}

Blake3ParallelDigest::~Blake3ParallelDigest() { Drain(); }  // no Hash() may run on a half-destroyed object

// The run of whole chunks is cut at multiples of a power-of-two number of
// chunks, so every task but the edge ones is one aligned subtree.
void Blake3ParallelDigest::Plan(uint64_t position, const uint8_t* data, size_t length) {
  const Blake3Tree::Run run = tree_.Add(position, data, length);
  if (run.chunks == 0) return;
  const uint64_t first = run.first_chunk;
  const uint64_t end = first + run.chunks;
  uint64_t step = 1;
  while (step * blake3::kChunkBytes < limits_.task_bytes_min) step *= 2;
  while ((end + step - 1) / step - first / step > limits_.tasks_per_piece) step *= 2;
  for (uint64_t at = first; at < end;) {
    const uint64_t stop = std::min(end, (at / step + 1) * step);
    AddTask(at * blake3::kChunkBytes, run.data + (at - first) * blake3::kChunkBytes,
            (stop - at) * blake3::kChunkBytes);
    at = stop;
  }
}

void Blake3ParallelDigest::Hash(uint64_t position, const uint8_t* data, size_t length) {
  blake3::Subtree subtrees[2 * 64];
  const size_t n = blake3::HashSubtrees(tree_.kernel(), data, position / blake3::kChunkBytes,
                                        length / blake3::kChunkBytes, subtrees);
  tree_.Deliver(subtrees, n);
}

bool Blake3ParallelDigest::Finish(uint64_t total_bytes, std::string* hex, std::string* why) {
  Drain();
  uint8_t digest[blake3::kDigestBytes];
  if (!tree_.Finish(total_bytes, digest, why)) return false;
  *hex = blake3::ToHex(digest, sizeof digest);
  return true;
}

// ---- In order, off the I/O thread --------------------------------------------

std::unique_ptr<SerialDigest> SerialDigest::Create(HashPool& pool, UpdateFn update, const Limits& limits,
                                                   SysError* error) {
  std::unique_ptr<SerialDigest> digest(new SerialDigest(pool, std::move(update), limits));
  *error = digest->Init();
  if (error->failed()) return nullptr;
  return digest;
}

SerialDigest::~SerialDigest() {
  ReleaseStuck();
  Drain();
}

void SerialDigest::ReleaseStuck() {
  std::vector<PieceTask*> stuck;
  {
    std::unique_lock<std::mutex> lock(order_mutex_);
    // Not running: nothing that waits can start, so everything that waits is stuck.
    idle_.wait(lock, [this] { return !running_; });
    for (auto& entry : waiting_) stuck.push_back(entry.second);
    waiting_.clear();
  }
  for (PieceTask* task : stuck) TaskDone(*task->piece);
}

void SerialDigest::Plan(uint64_t position, const uint8_t* data, size_t length) {
  if (length > 0) AddTask(position, data, length);  // one task: the whole buffer, in its turn
}

void SerialDigest::Dispatch(PieceTask* tasks, uint32_t count) {
  assert(count == 1);
  (void)count;
  std::lock_guard<std::mutex> lock(order_mutex_);
  assert(tasks[0].position >= next_position_ && waiting_.count(tasks[0].position) == 0);
  waiting_[tasks[0].position] = &tasks[0];
  if (!running_) StartNextLocked();
}

// The buffer that continues the input, if it is here: into the pool.
void SerialDigest::StartNextLocked() {
  auto it = waiting_.find(next_position_);
  if (it == waiting_.end()) return;
  PieceTask* task = it->second;
  waiting_.erase(it);
  running_ = true;
  pool_.Submit(task);
}

void SerialDigest::Hash(uint64_t position, const uint8_t* data, size_t length) {
  update_(data, length);
  std::lock_guard<std::mutex> lock(order_mutex_);
  assert(position == next_position_ && running_);
  next_position_ = position + length;
  running_ = false;
  StartNextLocked();
  if (!running_) idle_.notify_all();
}

bool SerialDigest::Finish(uint64_t total_bytes, std::string* why) {
  ReleaseStuck();
  Drain();
  const uint64_t fed = fed_bytes();
  if (fed == total_bytes) return true;
  *why = "the digest saw bytes [0, " + std::to_string(fed) + ") in order, not all " + std::to_string(total_bytes);
  return false;
}

uint64_t SerialDigest::fed_bytes() const {
  std::lock_guard<std::mutex> lock(order_mutex_);
  return next_position_;
}

// ---- A digest per block -----------------------------------------------------

std::unique_ptr<BlockDigests> BlockDigests::Create(HashPool& pool, BlockHashFn hash, uint32_t block_bytes,
                                                   uint64_t input_bytes, BlockDigestSink* sink, const Limits& limits,
                                                   SysError* error) {
  assert(hash && sink != nullptr && block_bytes > 0);
  std::unique_ptr<BlockDigests> digests(
      new BlockDigests(pool, std::move(hash), block_bytes, input_bytes, sink, limits));
  *error = digests->Init();
  if (error->failed()) return nullptr;
  return digests;
}

BlockDigests::~BlockDigests() { Drain(); }

void BlockDigests::WholeBlocks(uint64_t position, uint64_t length, uint64_t* first, uint64_t* end) const {
  const uint64_t stop = position + length;
  assert(stop <= input_bytes_);
  *first = (position + block_bytes_ - 1) / block_bytes_;
  *end = stop == input_bytes_ ? (stop + block_bytes_ - 1) / block_bytes_ : stop / block_bytes_;
  if (*end < *first) *end = *first;
}

void BlockDigests::Plan(uint64_t position, const uint8_t* data, size_t length) {
  uint64_t first = 0;
  uint64_t end = 0;
  WholeBlocks(position, length, &first, &end);
  const uint64_t blocks = end - first;
  if (blocks == 0) return;
  uint64_t per_task = std::max<uint64_t>(1, (limits_.task_bytes_min + block_bytes_ - 1) / block_bytes_);
  per_task = std::max<uint64_t>(per_task, (blocks + limits_.tasks_per_piece - 1) / limits_.tasks_per_piece);
  const uint64_t stop = std::min<uint64_t>(position + length, end * block_bytes_);
  for (uint64_t b = first; b < end; b += per_task) {
    const uint64_t at = b * block_bytes_;
    AddTask(at, data + (at - position), std::min<uint64_t>(stop - at, per_task * block_bytes_));
  }
}

void BlockDigests::Hash(uint64_t position, const uint8_t* data, size_t length) {
  assert(position % block_bytes_ == 0);
  for (size_t offset = 0; offset < length; offset += block_bytes_) {
    const size_t n = std::min<size_t>(block_bytes_, length - offset);
    sink_->Put((position + offset) / block_bytes_, hash_(data + offset, n));
  }
}

}  // namespace devmove
