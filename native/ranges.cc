#include "ranges.h"

#include <algorithm>
#include <cassert>

namespace devmove {

void Normalize(std::vector<ByteRange>* ranges) {
  std::sort(ranges->begin(), ranges->end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> out;
  out.reserve(ranges->size());
  for (const ByteRange& r : *ranges) {
    if (r.length == 0) continue;
    if (!out.empty() && r.offset <= out.back().end()) {
      out.back().length = std::max(out.back().end(), r.end()) - out.back().offset;
    } else {
      out.push_back(r);
    }
  }
  ranges->swap(out);
}

std::vector<ByteRange> Subtract(const std::vector<ByteRange>& ranges, const std::vector<ByteRange>& holes) {
  std::vector<ByteRange> out;
  size_t h = 0;
  for (ByteRange r : ranges) {
    while (h < holes.size() && holes[h].end() <= r.offset) ++h;
    // Each hole is passed at most once per range: the loop is bounded by holes.size().
    for (size_t k = h; r.length > 0 && k < holes.size() && holes[k].offset < r.end(); ++k) {
      if (holes[k].offset > r.offset) out.push_back({r.offset, holes[k].offset - r.offset});
      const uint64_t end = r.end();
      const uint64_t next = std::min(end, holes[k].end());
      r.offset = next;
      r.length = end - next;
    }
    if (r.length > 0) out.push_back(r);
  }
  return out;
}

std::vector<ByteRange> ClipAndRebase(const std::vector<ByteRange>& ranges, uint64_t lo, uint64_t hi) {
  assert(lo <= hi);
  std::vector<ByteRange> out;
  for (const ByteRange& r : ranges) {
    const uint64_t from = std::max(r.offset, lo);
    const uint64_t to = std::min(r.end(), hi);
    if (to > from) out.push_back({from - lo, to - from});
  }
  Normalize(&out);
  return out;
}

uint64_t TotalLength(const std::vector<ByteRange>& ranges) {
  uint64_t sum = 0;
  for (const ByteRange& r : ranges) sum += r.length;
  return sum;
}

}  // namespace devmove
