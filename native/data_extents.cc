#include "data_extents.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

namespace devmove {

SysError QueryDataExtents(int fd, uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                          bool* supported) {
  assert(from <= to && max_extents > 0);
  answer->data.clear();
  answer->answered_to = to;
  *supported = true;
  uint64_t at = from;
  // Each turn finds one data extent and moves past it: at most max_extents turns.
  while (at < to) {
    if (answer->data.size() == max_extents) {
      answer->answered_to = at;  // the rest is for the next query
      break;
    }
    const off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0) {
      // ENXIO: no data from `at` to the end of the file — a hole to the end.
      if (errno == ENXIO) break;
      if (errno == EINVAL || errno == EOPNOTSUPP) {
        *supported = false;
        answer->data.assign(1, {from, to - from});
        return {};
      }
      return SysError::Make(errno, "lseek", {}, static_cast<int64_t>(at), "SEEK_DATA");
    }
    if (static_cast<uint64_t>(data) >= to) break;
    const off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return SysError::Make(errno, "lseek", {}, static_cast<int64_t>(data), "SEEK_HOLE");
    // The file may have grown or shrunk since `to` was known: clip to it, and
    // stop where it now ends.
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), to);
    if (end <= static_cast<uint64_t>(data)) break;
    answer->data.push_back({static_cast<uint64_t>(data), end - static_cast<uint64_t>(data)});
    at = end;
  }
  return {};
}

}  // namespace devmove
