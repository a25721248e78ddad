#include "rate_pacer.h"

#include <algorithm>
#include <cassert>

namespace devmove {

void RatePacer::Observe(double now, uint64_t rate, bool paused, uint64_t bytes_started) {
  assert(bytes_started >= base_bytes_);  // bytes only ever start
  if (rate != rate_seen_ || (was_paused_ && !paused)) {
    rate_seen_ = rate;
    base_time_ = now;
    base_bytes_ = bytes_started;
  }
  was_paused_ = paused;
}

double RatePacer::Delay(double now, uint64_t rate, uint64_t bytes_started, uint64_t next_bytes,
                        uint32_t buffer_bytes) {
  assert(buffer_bytes > 0 && next_bytes <= buffer_bytes);
  if (rate == 0) return 0;
  const double r = static_cast<double>(rate);
  const double bucket = std::max(2.0 * buffer_bytes, r * kBucketSeconds);
  const double earned = static_cast<double>(base_bytes_) + r * (now - base_time_);
  if (earned - static_cast<double>(bytes_started) > bucket) {
    base_bytes_ = bytes_started;
    base_time_ = now - bucket / r;
  }
  const double allowed = static_cast<double>(base_bytes_) + r * (now - base_time_) + buffer_bytes;
  const double wanted = static_cast<double>(bytes_started + next_bytes);
  return wanted > allowed ? (wanted - allowed) / r : 0;
}

}  // namespace devmove
