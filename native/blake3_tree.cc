#include "blake3_tree.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {

using blake3::kChunkBytes;
using blake3::Subtree;

Blake3Tree::Blake3Tree(const blake3::Kernel& kernel) : kernel_(kernel) { stack_.reserve(blake3::kLevelsMax + 2); }

Blake3Tree::Run Blake3Tree::Add(uint64_t position, const uint8_t* data, size_t length) {
  std::lock_guard<std::mutex> lock(mutex_);
  assert(!finished_);
  Run run;
  if (length == 0) return run;
  const uint64_t end = position + length;
  const bool grew_past_chunk0 = seen_end_ <= kChunkBytes && end > kChunkBytes;
  seen_end_ = std::max(seen_end_, end);
  uint64_t at = position;
  // Head: up to the first chunk boundary, and all of chunk 0 (it may be the root).
  if (at % kChunkBytes != 0 || at < kChunkBytes) {
    const uint64_t stop = std::min(end, (at / kChunkBytes + 1) * kChunkBytes);
    CopyPartialLocked(at, data, stop - at);
    at = stop;
  }
  const uint64_t whole = (end - at) / kChunkBytes;
  if (whole > 0) {
    run.data = data + (at - position);
    run.first_chunk = at / kChunkBytes;
    run.chunks = whole;
    at += whole * kChunkBytes;
  }
  if (at < end) CopyPartialLocked(at, data + (at - position), end - at);
  // A full chunk 0 waits for proof that it is not the whole input.
  if (grew_past_chunk0) {
    auto it = partial_.find(0);
    if (it != partial_.end() && it->second->filled == kChunkBytes) CompleteChunkLocked(0);
  }
  return run;
}

void Blake3Tree::CopyPartialLocked(uint64_t position, const uint8_t* data, size_t length) {
  const uint64_t chunk = position / kChunkBytes;
  const size_t offset = position % kChunkBytes;
  assert(length > 0 && offset + length <= kChunkBytes);
  std::unique_ptr<PartialChunk>& slot = partial_[chunk];
  if (!slot) slot.reset(new PartialChunk());
  std::memcpy(slot->bytes + offset, data, length);
  slot->filled += static_cast<uint32_t>(length);
  assert(slot->filled <= kChunkBytes);  // pieces do not overlap
  if (slot->filled == kChunkBytes && (chunk != 0 || seen_end_ > kChunkBytes)) CompleteChunkLocked(chunk);
}

void Blake3Tree::CompleteChunkLocked(uint64_t chunk) {
  auto it = partial_.find(chunk);
  assert(it != partial_.end() && it->second->filled == kChunkBytes);
  Subtree s;
  s.first_chunk = chunk;
  s.level = 0;
  s.cv = blake3::ChunkCv(it->second->bytes, kChunkBytes, chunk);
  partial_.erase(it);
  InsertLocked(s);
}

void Blake3Tree::Deliver(const Subtree* subtrees, size_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  assert(!finished_);
  for (size_t i = 0; i < count; ++i) InsertLocked(subtrees[i]);
}

void Blake3Tree::InsertLocked(const Subtree& subtree) {
  assert(subtree.first_chunk >= next_chunk_ && waiting_.count(subtree.first_chunk) == 0);
  waiting_[subtree.first_chunk] = subtree;
  // Everything now contiguous with the stack joins it, in order.
  for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_chunk_; it = waiting_.begin()) {
    const Subtree next = it->second;
    waiting_.erase(it);
    MergeLocked();  // input exists past the stack's top: its held pair may merge now
    stack_.push_back(next);
    next_chunk_ = next.end_chunk();
    MergeLocked();
  }
}

// Merges the top two subtrees while they are siblings (equal levels: the
// stack counts in binary). A merge whose node would start at chunk 0 and end
// where the input seen so far ends is held: that node may be the root.
void Blake3Tree::MergeLocked() {
  while (stack_.size() >= 2) {
    const Subtree& left = stack_[stack_.size() - 2];
    const Subtree& right = stack_.back();
    if (left.level != right.level) break;
    assert(left.end_chunk() == right.first_chunk && left.first_chunk % (uint64_t{2} << left.level) == 0);
    if (left.first_chunk == 0 && seen_end_ <= right.end_chunk() * kChunkBytes) break;
    Subtree parent;
    parent.first_chunk = left.first_chunk;
    parent.level = left.level + 1;
    parent.cv = blake3::ParentCv(left.cv, right.cv);
    stack_.pop_back();
    stack_.back() = parent;
  }
  assert(stack_.size() <= blake3::kLevelsMax + 1);
}

bool Blake3Tree::Finish(uint64_t total_bytes, uint8_t digest[blake3::kDigestBytes], std::string* why) {
  std::lock_guard<std::mutex> lock(mutex_);
  assert(!finished_);
  finished_ = true;
  if (seen_end_ != total_bytes) {
    *why = "the input added ends at byte " + std::to_string(seen_end_) + ", not at " + std::to_string(total_bytes);
    return false;
  }
  if (total_bytes <= kChunkBytes) {
    auto it = partial_.find(0);
    const uint32_t filled = it == partial_.end() ? 0 : it->second->filled;
    if (filled != total_bytes || partial_.size() > (it == partial_.end() ? 0u : 1u)) {
      *why = MissingLocked(total_bytes);
      return false;
    }
    blake3::RootOfChunk(filled ? it->second->bytes : nullptr, filled, digest);
    return true;
  }
  // The last chunk, when partial, is complete now that the input ends.
  const uint64_t last_chunk = (total_bytes - 1) / kChunkBytes;
  auto last = partial_.find(last_chunk);
  if (last != partial_.end() && last->second->filled == total_bytes - last_chunk * kChunkBytes) {
    Subtree s;
    s.first_chunk = last_chunk;
    s.cv = blake3::ChunkCv(last->second->bytes, last->second->filled, last_chunk);
    partial_.erase(last);
    InsertLocked(s);
  }
  if (!partial_.empty() || !waiting_.empty() || next_chunk_ != last_chunk + 1) {
    *why = MissingLocked(total_bytes);
    return false;
  }
  // The stack is the left-balanced tree's spine: fold it from the right.
  assert(stack_.size() >= 2);
  blake3::Cv right = stack_.back().cv;
  for (size_t i = stack_.size() - 2; i >= 1; --i) right = blake3::ParentCv(stack_[i].cv, right);
  blake3::RootOfParent(stack_[0].cv, right, digest);
  return true;
}

std::string Blake3Tree::MissingLocked(uint64_t total_bytes) const {
  // The first chunk that is not in the stack: waiting for bytes or for a left neighbour.
  uint64_t chunk = next_chunk_;
  if (!partial_.empty()) chunk = std::min(chunk, partial_.begin()->first);
  return "bytes missing from the digest's input near byte " + std::to_string(chunk * kChunkBytes) + " of " +
         std::to_string(total_bytes);
}

size_t Blake3Tree::partial_chunks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return partial_.size();
}

size_t Blake3Tree::waiting_subtrees() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size();
}

size_t Blake3Tree::stack_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stack_.size();
}

void Blake3Stream::Update(const uint8_t* data, size_t length) {
  const Blake3Tree::Run run = tree_.Add(position_, data, length);
  position_ += length;
  // Runs of any size: a 64-bit run has at most 2 × 64 aligned subtrees.
  blake3::Subtree subtrees[2 * 64];
  if (run.chunks > 0) {
    const size_t n = blake3::HashSubtrees(tree_.kernel(), run.data, run.first_chunk, run.chunks, subtrees);
    tree_.Deliver(subtrees, n);
  }
}

void Blake3Stream::Final(uint8_t digest[blake3::kDigestBytes]) {
  std::string why;
  const bool ok = tree_.Finish(position_, digest, &why);
  assert(ok);  // in-order updates leave no gap
  (void)ok;
}

std::string Blake3Stream::FinalHex() {
  uint8_t digest[blake3::kDigestBytes];
  Final(digest);
  return blake3::ToHex(digest, sizeof digest);
}

}  // namespace devmove
