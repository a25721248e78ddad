// Byte ranges and the few set operations the engine needs on them (sorted,
// merged lists: what to copy, what was finished, what is unreadable).
#pragma once

#include <cstdint>
#include <vector>

namespace devmove {

// A byte range. In plans and reports: absolute offsets in the source.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
};

// Sorts and merges ranges in place; empty ranges are dropped.
void Normalize(std::vector<ByteRange>* ranges);

// `ranges` minus `holes`, both normalized.
std::vector<ByteRange> Subtract(const std::vector<ByteRange>& ranges, const std::vector<ByteRange>& holes);

// The parts of `ranges` inside [lo, hi), moved so that lo becomes 0; normalized.
std::vector<ByteRange> ClipAndRebase(const std::vector<ByteRange>& ranges, uint64_t lo, uint64_t hi);

// The sum of the lengths.
uint64_t TotalLength(const std::vector<ByteRange>& ranges);

}  // namespace devmove
