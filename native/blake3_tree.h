// A BLAKE3 digest assembled from pieces of the input that arrive in any order
// and are hashed on any thread: the copy engine's buffers complete out of
// order, and worker threads hash them in parallel, yet the digest is the one
// b3sum computes over the input in order.
//
// Why this works: in BLAKE3's tree every aligned power-of-two run of chunks
// that does not reach the end of the input is a node, whose CV depends only
// on its own bytes and its chunk numbers. So a piece's whole chunks become
// the CVs of its aligned subtrees (blake3::HashSubtrees, on a worker), and
// this collector merges those CVs in input order, as a binary counter: a
// stack holding one subtree per set bit of the chunks merged so far.
//
// Only the root is special (it is compressed with the ROOT flag), and whether
// a node is the root depends on the total length, which a stream does not
// know in advance. So the collector never lets a node that starts at chunk 0
// be finished before it knows there is input beyond it: chunk 0 is always
// copied here (it is the root of an input of at most 1 KiB), and a merge that
// would make a node starting at chunk 0 waits until input past its end has
// been seen. The partial chunks at a piece's edges are copied here too (at
// most 1 KiB each), so the caller's buffer is needed only until the whole
// chunks are hashed.
//
// Memory: the stack (at most 54 levels), subtrees waiting for their left
// neighbour and partial chunks waiting for the rest of their bytes — both
// bounded by the number of pieces in flight, which the caller bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blake3.h"

namespace devmove {

class Blake3Tree {
 public:
  explicit Blake3Tree(const blake3::Kernel& kernel);
  Blake3Tree(const Blake3Tree&) = delete;
  Blake3Tree& operator=(const Blake3Tree&) = delete;

  // Whole chunks of a piece, still in the caller's buffer: hash them with
  // blake3::HashSubtrees (on any thread) and Deliver() the result.
  struct Run {
    const uint8_t* data = nullptr;
    uint64_t first_chunk = 0;
    uint64_t chunks = 0;
  };

  // Takes the bytes [position, position + length) of the input. Pieces must
  // not overlap; they may come in any order. Copies what it keeps (partial
  // chunks, chunk 0) before it returns. Thread-safe.
  Run Add(uint64_t position, const uint8_t* data, size_t length);
  // The subtrees of a run (or part of one), left to right. Thread-safe.
  void Deliver(const blake3::Subtree* subtrees, size_t count);
  // Once every byte of [0, total_bytes) was added and every run delivered:
  // the digest. false (and why) when bytes are missing or the total differs
  // from what was added. Call once.
  bool Finish(uint64_t total_bytes, uint8_t digest[blake3::kDigestBytes], std::string* why);

  const blake3::Kernel& kernel() const { return kernel_; }
  // For tests and assertions: what is held, waiting.
  size_t partial_chunks() const;
  size_t waiting_subtrees() const;
  size_t stack_depth() const;

 private:
  struct PartialChunk {
    uint8_t bytes[blake3::kChunkBytes];
    uint32_t filled = 0;
  };

  void CopyPartialLocked(uint64_t position, const uint8_t* data, size_t length);
  void CompleteChunkLocked(uint64_t chunk);
  void InsertLocked(const blake3::Subtree& subtree);
  void MergeLocked();
  std::string MissingLocked(uint64_t total_bytes) const;

  const blake3::Kernel& kernel_;
  mutable std::mutex mutex_;
  uint64_t seen_end_ = 0;    // the largest end of a piece added: input exists up to here
  uint64_t next_chunk_ = 0;  // chunks [0, next_chunk_) are in stack_
  std::map<uint64_t, std::unique_ptr<PartialChunk>> partial_;  // by chunk number
  std::map<uint64_t, blake3::Subtree> waiting_;                // by first chunk, right of a gap
  std::vector<blake3::Subtree> stack_;                         // levels strictly decreasing, but for a held top pair
  bool finished_ = false;
};

// The digest of an input that arrives in order on one thread (the engine's
// in-order hash stage), on the chosen kernel: the tree, without a pool.
class Blake3Stream {
 public:
  explicit Blake3Stream(const blake3::Kernel& kernel) : tree_(kernel) {}
  void Update(const uint8_t* data, size_t length);
  void Final(uint8_t digest[blake3::kDigestBytes]);
  std::string FinalHex();
  const blake3::Kernel& kernel() const { return tree_.kernel(); }

 private:
  Blake3Tree tree_;
  uint64_t position_ = 0;
};

}  // namespace devmove
