// Digests computed on the hash pool's workers while the I/O thread goes on:
// the interface the engine's pipeline uses to hash a buffer without waiting.
//
// The I/O thread hands over a buffer's bytes — (position, data, length) and a
// ticket of its own (the slot number) — with Submit(), which never blocks.
// The buffer must stay untouched until Reap() returns that ticket; Reap()
// never blocks either, and wake_fd() (an eventfd) becomes readable when it
// has something, so the I/O thread can wait for "a buffer is free again"
// together with its other completions (io_uring can read an eventfd like any
// other descriptor). Buffers may be handed over in any order.
//
// Bounded: at most limits.pieces_max buffers are in the pool at once
// (Submit() says false beyond that and the caller keeps the buffer until a
// Reap()); each is split into at most limits.tasks_per_piece tasks, so one
// large buffer still uses several cores; the task records live in the piece
// records, allocated once. Submit(), Reap(), Drain() and Finish() are for one
// thread (the I/O thread); the workers only hash and hand back.
//
// Three digests:
//  - Blake3ParallelDigest: the BLAKE3 digest of the whole input, in input
//    order, from subtrees hashed in parallel (blake3_tree.h) — what
//    `--hash=blake3` prints and `b3sum` checks;
//  - SerialDigest: any digest that must see the input in order (OpenSSL's
//    SHA-256…), on one worker at a time, so it overlaps the I/O instead of
//    stopping it: a copy runs at min(device, one core's hash rate);
//  - BlockDigests: one 128-bit digest per block of block_bytes, for verifying
//    a target against what was read (verify with one read).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blake3_tree.h"
#include "hash_pool.h"
#include "sys_error.h"
#include "xxhash_library.h"

namespace devmove {

class ParallelDigest {
 public:
  struct Limits {
    static constexpr uint32_t kPiecesMax = 4096;
    static constexpr uint32_t kTasksPerPieceMax = 16;
    uint32_t pieces_max = 64;           // buffers in the pool at once (≥ the engine's queue depth)
    uint32_t tasks_per_piece = 4;       // 1..kTasksPerPieceMax
    uint64_t task_bytes_min = 128 * 1024;  // a task is never smaller (a task costs ~2 µs to hand over)
  };

  virtual ~ParallelDigest();
  ParallelDigest(const ParallelDigest&) = delete;
  ParallelDigest& operator=(const ParallelDigest&) = delete;

  // Hands [position, position + length) of the input over, in data. false:
  // limits.pieces_max buffers are still in the pool; nothing was taken.
  bool Submit(uint64_t position, const uint8_t* data, size_t length, uint64_t ticket);
  // Appends the tickets of buffers the digest no longer needs (any order).
  size_t Reap(std::vector<uint64_t>* tickets);
  // Readable while Reap() has tickets to return.
  int wake_fd() const { return wake_fd_; }
  // Blocks until every buffer handed over has been hashed (tickets stay for Reap()).
  void Drain();
  // Handed over and not yet reaped.
  uint32_t pieces_in_use() const { return limits_.pieces_max - static_cast<uint32_t>(free_.size()); }
  const Limits& limits() const { return limits_; }

 protected:
  ParallelDigest(HashPool& pool, const Limits& limits);
  // Opens the eventfd and the piece records: call once from Create().
  SysError Init();
  // The subclass splits a buffer: what it needs hashed goes to AddTask()
  // (pointers into the buffer); what it keeps it copies before returning.
  virtual void Plan(uint64_t position, const uint8_t* data, size_t length) = 0;
  void AddTask(uint64_t position, const uint8_t* data, size_t length);
  // On a worker: one task's bytes.
  virtual void Hash(uint64_t position, const uint8_t* data, size_t length) = 0;

  struct PieceTask;
  // Hands a planned piece's tasks to the pool; a digest that needs order may hold them back.
  virtual void Dispatch(PieceTask* tasks, uint32_t count);

  HashPool& pool_;
  const Limits limits_;

  struct Piece;
  struct PieceTask final : HashPool::Task {
    ParallelDigest* owner = nullptr;
    Piece* piece = nullptr;
    uint64_t position = 0;
    const uint8_t* data = nullptr;
    size_t length = 0;
    void Run() override;
  };
  struct Piece {
    uint32_t index = 0;
    uint64_t ticket = 0;
    uint32_t task_count = 0;
    std::atomic<uint32_t> pending{0};
    PieceTask tasks[Limits::kTasksPerPieceMax];
  };

  // One task of the piece is done (or will never run): the last one frees the buffer.
  void TaskDone(Piece& piece);

 private:
  void Finished(Piece& piece);

  std::unique_ptr<Piece[]> pieces_;
  std::vector<uint32_t> free_;   // piece records not in use (the I/O thread's)
  Piece* planning_ = nullptr;    // the piece Plan() is filling
  int wake_fd_ = -1;

  std::mutex done_mutex_;        // guards what follows; workers take it once per buffer
  std::condition_variable all_done_;
  std::vector<uint32_t> done_;   // finished pieces, not yet reaped
  uint64_t submitted_ = 0;
  uint64_t finished_ = 0;
};

class Blake3ParallelDigest final : public ParallelDigest {
 public:
  static std::unique_ptr<Blake3ParallelDigest> Create(HashPool& pool, const blake3::Kernel& kernel,
                                                      const Limits& limits, SysError* error);
  ~Blake3ParallelDigest() override;
  // Waits for every buffer, then the digest of [0, total_bytes) as hex.
  // false (and why) when bytes of it never came.
  bool Finish(uint64_t total_bytes, std::string* hex, std::string* why);
  const blake3::Kernel& kernel() const { return tree_.kernel(); }
  const Blake3Tree& tree() const { return tree_; }

 private:
  Blake3ParallelDigest(HashPool& pool, const blake3::Kernel& kernel, const Limits& limits)
      : ParallelDigest(pool, limits), tree_(kernel) {}
  void Plan(uint64_t position, const uint8_t* data, size_t length) override;
  void Hash(uint64_t position, const uint8_t* data, size_t length) override;

  Blake3Tree tree_;
};

// A digest fed in input order (an OpenSSL hash), off the I/O thread: buffers
// may be handed over in any order; each is fed when every byte before it has
// been, by one worker at a time. Buffers that arrive early wait (at most
// limits.pieces_max of them); if the bytes before them never come (the copy
// stopped), Finish() and the destructor hand them back unhashed.
class SerialDigest final : public ParallelDigest {
 public:
  using UpdateFn = std::function<void(const uint8_t* data, size_t length)>;
  static std::unique_ptr<SerialDigest> Create(HashPool& pool, UpdateFn update, const Limits& limits, SysError* error);
  ~SerialDigest() override;
  // Waits for every buffer; false (and why) when [0, total_bytes) was not
  // all fed — then the digest must not be reported.
  bool Finish(uint64_t total_bytes, std::string* why);
  uint64_t fed_bytes() const;

 private:
  SerialDigest(HashPool& pool, UpdateFn update, const Limits& limits)
      : ParallelDigest(pool, limits), update_(std::move(update)) {}
  void Plan(uint64_t position, const uint8_t* data, size_t length) override;
  void Hash(uint64_t position, const uint8_t* data, size_t length) override;
  void Dispatch(PieceTask* tasks, uint32_t count) override;
  void StartNextLocked();
  // Buffers waiting behind a gap that will never be filled (the copy
  // stopped): handed back unhashed, so nothing waits for them forever.
  void ReleaseStuck();

  UpdateFn update_;
  mutable std::mutex order_mutex_;
  std::condition_variable idle_;            // running_ became false
  std::map<uint64_t, PieceTask*> waiting_;  // by position
  uint64_t next_position_ = 0;              // everything before it was fed (or is being fed)
  bool running_ = false;                    // a task is in the pool
};

// Where the per-block digests go: called from the workers, each block once.
class BlockDigestSink {
 public:
  virtual void Put(uint64_t block, const Xxh128& digest) = 0;

 protected:
  ~BlockDigestSink() = default;
};

// One 128-bit digest per block of block_bytes, counted from position 0 of
// the input: what verify with one read compares a target against. The hash
// is the caller's (XXH3-128 from libxxhash, or BLAKE3 cut to 128 bits where
// libxxhash is missing). Only whole blocks inside a buffer are hashed, and
// the short last block where a buffer reaches input_bytes: a block a buffer
// only partly covers (a range that starts or ends inside it) gets no digest,
// and verify reads the source for it instead.
class BlockDigests final : public ParallelDigest {
 public:
  using BlockHashFn = std::function<Xxh128(const uint8_t* data, size_t length)>;
  static std::unique_ptr<BlockDigests> Create(HashPool& pool, BlockHashFn hash, uint32_t block_bytes,
                                              uint64_t input_bytes, BlockDigestSink* sink, const Limits& limits,
                                              SysError* error);
  ~BlockDigests() override;
  uint32_t block_bytes() const { return block_bytes_; }
  // The whole blocks (and the input's short last block) inside [position, position + length).
  void WholeBlocks(uint64_t position, uint64_t length, uint64_t* first, uint64_t* end) const;

 private:
  BlockDigests(HashPool& pool, BlockHashFn hash, uint32_t block_bytes, uint64_t input_bytes, BlockDigestSink* sink,
               const Limits& limits)
      : ParallelDigest(pool, limits), hash_(std::move(hash)), block_bytes_(block_bytes), input_bytes_(input_bytes),
        sink_(sink) {}
  void Plan(uint64_t position, const uint8_t* data, size_t length) override;
  void Hash(uint64_t position, const uint8_t* data, size_t length) override;

  BlockHashFn hash_;
  const uint32_t block_bytes_;
  const uint64_t input_bytes_;
  BlockDigestSink* sink_;
};

}  // namespace devmove
