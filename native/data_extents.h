// Where a regular file's data is, so a copy never reads a hole: lseek(2) with
// SEEK_DATA and SEEK_HOLE (Linux 3.1; ext4, xfs, btrfs, tmpfs, f2fs, nfs 4.2
// and more answer exactly). A filesystem without its own answer gets the
// kernel's generic one — all data up to the end of the file — which is
// correct, just not useful; a kernel without SEEK_DATA at all answers EINVAL,
// and the file is then read whole ("holes: none" in the report).
//
// Bounded: a query looks at most max_extents data extents ahead and reports
// what lies beyond as unknown, so a file fragmented into millions of extents
// costs memory for one window at a time, not for the whole file.
//
// The answer is a snapshot: data written into a hole after the query is not
// seen (as with qemu-img and cp --sparse). A copy of a file that is being
// written is not a consistent copy anyway.
#pragma once

#include <cstdint>
#include <vector>

#include "sys_error.h"

namespace devmove {

struct DataExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct DataExtentsAnswer {
  // The data extents within [from, answered_to), sorted, disjoint, merged;
  // everything else in that window is a hole (reads as zeros).
  std::vector<DataExtent> data;
  // How far the answer goes: `to`, or less when max_extents stopped it.
  uint64_t answered_to = 0;
};

// Queries fd over [from, to) (to at most the file's size as the caller knows
// it). Returns EINVAL-class errors as "not supported" through *supported =
// false (the caller reads everything); any other error fails with the lseek.
SysError QueryDataExtents(int fd, uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                          bool* supported);

}  // namespace devmove
