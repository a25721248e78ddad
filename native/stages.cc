#include "stages.h"

#include <cassert>
#include <cstring>

namespace devmove {

ZeroCheckStage::ZeroCheckStage(uint32_t block_bytes) : block_bytes_(block_bytes) { assert(block_bytes_ > 0); }

bool ZeroCheckStage::IsAllZero(const uint8_t* p, size_t n) {
  if (n < 16) {
    for (size_t i = 0; i < n; ++i)
      if (p[i] != 0) return false;
    return true;
  }
  uint64_t head;
  std::memcpy(&head, p, sizeof head);
  if (head != 0) return false;  // random data leaves here, on the first word
  return std::memcmp(p, p + 8, n - 8) == 0;
}

void ZeroCheckStage::OnRead(Slot& slot, std::vector<Slot*>* released) {
  (void)released;
  assert(slot.read_complete());
  slot.runs.clear();
  // Blocks are counted from the copy's start: the first one in this slot may be partial.
  const uint32_t head = static_cast<uint32_t>(slot.position % block_bytes_);
  for (uint32_t off = 0; off < slot.length;) {
    const uint32_t block_end = off == 0 && head != 0 ? block_bytes_ - head : off + block_bytes_;
    const uint32_t end = std::min<uint32_t>(slot.length, std::max(block_end, off + 1));
    const bool zero = IsAllZero(slot.buffer + off, end - off);
    if (!slot.runs.empty() && slot.runs.back().zero == zero) {
      slot.runs.back().length += end - off;
    } else {
      slot.runs.push_back({off, end - off, zero});
    }
    off = end;
  }
}

void HashStage::OnRead(Slot& slot, std::vector<Slot*>* released) {
  assert(slot.sequence >= next_sequence_ && waiting_.count(slot.sequence) == 0);
  waiting_[slot.sequence] = &slot;
  // Bounded by the number of waiting slots (at most the ring's depth).
  for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_sequence_; it = waiting_.begin()) {
    Slot* next = it->second;
    waiting_.erase(it);
    update_(next->buffer, next->length);
    hashed_bytes_ += next->length;
    ++next_sequence_;
    released->push_back(next);
  }
}

}  // namespace devmove
