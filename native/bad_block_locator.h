// Locating unreadable blocks, as a state machine without I/O of its own:
// the rest of a buffer whose read failed is read again in pieces
// (kChunkBytes), a failing piece block by block (the source's logical
// block), and a failing block `retries` more times before it counts as bad —
// ddrescue's trimming and scraping, in short. The engine submits the reads
// the locator asks for and feeds it their results; tests feed it made-up
// results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace devmove {

class BadBlockLocator {
 public:
  // The first split of a failed buffer.
  static constexpr uint32_t kChunkBytes = 64 * 1024;

  struct Piece {
    uint32_t offset = 0;  // in the buffer
    uint32_t length = 0;
    uint32_t tries = 0;   // extra reads so far
  };

  enum class Step {
    kRead,   // read piece()
    kRetry,  // read piece() once more (a retry of a failing block)
    kBad,    // piece() stays unreadable: zero-fill it and Skip(), or stop there
    kDone,   // every piece has been read
  };

  // The buffer's [from, to) is to be located. block_bytes: the smallest
  // piece; retries: extra reads of a failing block.
  void Start(uint32_t from, uint32_t to, uint32_t block_bytes, uint32_t retries);
  bool active() const { return active_; }
  const Piece& piece() const;

  // piece() read `bytes` (> 0; fewer than asked continues the piece).
  Step OnRead(uint32_t bytes);
  // piece() failed with a media error; `aligned`: its absolute offset is a
  // multiple of the block size (only then is it split into blocks).
  Step OnMediaError(bool aligned);
  // After kBad, with the piece zero-filled: go on.
  Step Skip();
  // Abandon (the copy stops at the bad piece, or altogether).
  void Stop();

 private:
  Step Next();

  std::vector<Piece> pieces_;
  size_t index_ = 0;
  uint32_t block_bytes_ = 512;
  uint32_t retries_ = 0;
  bool active_ = false;
};

}  // namespace devmove
