#include "bad_block_locator.h"

#include <algorithm>
#include <cassert>

namespace devmove {

void BadBlockLocator::Start(uint32_t from, uint32_t to, uint32_t block_bytes, uint32_t retries) {
  assert(from < to && block_bytes > 0);
  block_bytes_ = block_bytes;
  retries_ = retries;
  pieces_.clear();
  index_ = 0;
  active_ = true;
  const uint32_t chunk = std::max(block_bytes, kChunkBytes);
  // Piece boundaries on chunk multiples of the buffer, so pieces stay aligned.
  for (uint32_t off = from; off < to;) {
    const uint32_t end = std::min<uint32_t>(to, (off / chunk + 1) * chunk);
    pieces_.push_back({off, end - off, 0});
    off = end;
  }
  assert(!pieces_.empty());
}

const BadBlockLocator::Piece& BadBlockLocator::piece() const {
  assert(active_ && index_ < pieces_.size());
  return pieces_[index_];
}

BadBlockLocator::Step BadBlockLocator::Next() {
  if (index_ < pieces_.size()) return Step::kRead;
  Stop();
  return Step::kDone;
}

BadBlockLocator::Step BadBlockLocator::OnRead(uint32_t bytes) {
  assert(active_ && bytes > 0);
  Piece& p = pieces_[index_];
  if (bytes < p.length) {
    p.offset += bytes;
    p.length -= bytes;
    return Step::kRead;
  }
  ++index_;
  return Next();
}

BadBlockLocator::Step BadBlockLocator::OnMediaError(bool aligned) {
  assert(active_);
  Piece& p = pieces_[index_];
  if (p.length > block_bytes_ && aligned) {
    // Split the failing piece into logical blocks, read one by one.
    std::vector<Piece> blocks;
    for (uint32_t off = p.offset; off < p.offset + p.length; off += block_bytes_)
      blocks.push_back({off, std::min(block_bytes_, p.offset + p.length - off), 0});
    pieces_.erase(pieces_.begin() + static_cast<long>(index_));
    pieces_.insert(pieces_.begin() + static_cast<long>(index_), blocks.begin(), blocks.end());
    return Step::kRead;
  }
  if (p.tries < retries_) {
    ++p.tries;
    return Step::kRetry;
  }
  return Step::kBad;
}

BadBlockLocator::Step BadBlockLocator::Skip() {
  assert(active_ && index_ < pieces_.size());
  ++index_;
  return Next();
}

void BadBlockLocator::Stop() {
  active_ = false;
  pieces_.clear();
  index_ = 0;
}

}  // namespace devmove
