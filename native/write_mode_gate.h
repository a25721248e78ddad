// Keeps a target's O_DIRECT writes and its page-cache writes apart in time.
//
// A local target has two descriptors: O_DIRECT for aligned writes, and one
// through the page cache for what O_DIRECT cannot take (a partial last
// sector, an unaligned extent or zero run). When a page-cache write of a few
// bytes runs while an O_DIRECT write covers another part of the same page (or
// folio), the page is read in with the old bytes under the O_DIRECT write and
// dirtied; the O_DIRECT write then cannot invalidate it ("Page cache
// invalidation failure on direct I/O. Possible data corruption due to
// collision with buffered I/O!"), the kernel records EIO for the next
// fdatasync, and the page's writeback may put the old bytes back over the new
// ones. Measured on 6.18 with bs=512 count=1000001B, 10 runs each: EIO from
// fdatasync in 9/10 (ext4 file, io_uring) and 8/10 (loop device, threads).
//
// Never concurrent, the kernel orders them itself: an O_DIRECT write first
// writes back and drops the cached pages it covers, and a page-cache write
// after an O_DIRECT write completed reads the new bytes in. So a write of one
// mode waits while writes of the other mode are in flight on that target
// (the whole target, not the page: folios can be large). Unaligned writes are
// rare (the tail, unaligned boundaries), so the waiting costs nothing
// measurable; a copy that is all one mode never waits.
#pragma once

#include <cassert>
#include <cstdint>
#include <vector>

namespace devmove {

class WriteModeGate {
 public:
  void Reset(size_t targets) {
    in_flight_.assign(targets, {});
    waiting_.assign(targets, 0);
  }

  // May a write of this mode start on the target now? If not, the caller
  // waits for Finished() to return true and tries again.
  bool MayStart(uint32_t target, bool direct) {
    assert(target < in_flight_.size());
    if (in_flight_[target].count[direct ? 0 : 1] == 0) return true;
    waiting_[target] = 1;
    return false;
  }

  void Started(uint32_t target, bool direct) {
    assert(target < in_flight_.size() && in_flight_[target].count[direct ? 0 : 1] == 0);
    ++in_flight_[target].count[direct ? 1 : 0];
  }

  // A write of this mode completed. True when a waiting write may try again.
  bool Finished(uint32_t target, bool direct) {
    assert(target < in_flight_.size() && in_flight_[target].count[direct ? 1 : 0] > 0);
    if (--in_flight_[target].count[direct ? 1 : 0] > 0 || !waiting_[target]) return false;
    waiting_[target] = 0;
    return true;
  }

 private:
  struct InFlight {
    uint32_t count[2] = {0, 0};  // [0] page-cache writes, [1] O_DIRECT writes
  };
  std::vector<InFlight> in_flight_;
  std::vector<uint8_t> waiting_;
};

}  // namespace devmove
