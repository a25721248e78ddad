// One buffer of the ring and everything the engine knows about the range it
// carries: its read, the pipeline stages' findings (zero runs), the
// unreadable blocks found in it, and each target's write progress. Every
// I/O on a slot is one of its IoOp records, which live as long as the slot.
#pragma once

#include <cstdint>
#include <vector>

#include "bad_block_locator.h"
#include "io_driver.h"
#include "ranges.h"

namespace devmove {

// A stretch of a slot's data that is all zeros or not (zero check stage);
// a slot without a zero check has one run of data.
struct ZeroRun {
  uint32_t offset = 0;
  uint32_t length = 0;
  bool zero = false;
};

// One target's progress through a slot's runs, one op at a time.
struct TargetWrite {
  IoOp op;
  uint32_t run = 0;        // index into Slot::runs
  uint32_t run_done = 0;   // bytes of that run on the target
  bool in_flight = false;
  bool done = false;       // every run handled (written, skipped or punched)
  uint64_t accepted = 0;   // bytes the target took for this slot (partial writes count)

  // --only-changed: the target's bytes at the slot's range, read back into
  // `compare` while the source's read is in flight; then `runs` holds only the
  // blocks that differ, and the writes follow them instead of Slot::runs.
  IoOp compare_op;
  uint8_t* compare = nullptr;   // a buffer of the slot's capacity
  uint32_t compare_done = 0;    // bytes read back
  bool compare_in_flight = false;
  bool compare_ended = false;   // the target ended first: everything after compare_done differs
  bool compared = false;        // `runs` is decided
  // The read-back goes through the page cache (unaligned) while the target
  // takes O_DIRECT writes: it holds the write-mode gate like a page-cache
  // write (write_mode_gate.h), so it never fills a page an O_DIRECT write covers.
  bool compare_gated = false;
  std::vector<ZeroRun> runs;
};

struct Slot {
  uint32_t index = 0;
  uint8_t* buffer = nullptr;
  uint32_t capacity = 0;   // bytes of buffer
  bool busy = false;
  uint64_t sequence = 0;   // start order (the hash and stream targets follow it)
  uint64_t position = 0;   // relative to the copy's start
  uint32_t length = 0;

  IoOp read_op;
  uint32_t read_done = 0;
  bool read_in_flight = false;
  bool examined = false;   // read complete and passed through the stages
  bool hole = false;       // a hole of the source: never read, one zero run
  std::vector<ZeroRun> runs;

  // Locating unreadable blocks: the rest of the buffer, piece by piece.
  BadBlockLocator locator;
  std::vector<ByteRange> bad;  // relative positions, zero-filled in the buffer
  std::vector<TargetWrite> writes;  // per target
  bool discarded = false;  // a zero run was punched on some target

  bool read_complete() const { return read_done == length && !read_in_flight; }
  // The runs target `t` is written from: what differs from it (only_changed), else all of them.
  const std::vector<ZeroRun>& RunsFor(uint32_t t) const { return writes[t].compared ? writes[t].runs : runs; }
  bool compare_complete(uint32_t t) const {
    const TargetWrite& w = writes[t];
    return !w.compare_in_flight && (w.compare_ended || w.compare_done >= length);
  }
  uint64_t zero_bytes() const {
    uint64_t sum = 0;
    for (const ZeroRun& r : runs) sum += r.zero ? r.length : 0;
    return sum;
  }
};

}  // namespace devmove
