// Rate pacing as a small state machine of its own (no clock, no kernel: the
// caller passes the time), so it can be tested with made-up times.
//
// Bytes started may not run ahead of rate × (time since the base) by more
// than one buffer. The base moves when the rate changes or the copy resumes
// from a pause, and allowance not used during a stall (a slow device, a busy
// CPU) is kept only up to a small bucket, so a stall is never paid back as a
// burst above the cap (measured: without the bucket, 149 then 189 MiB in
// consecutive seconds at a 170 MiB/s cap after a stall).
#pragma once

#include <cstdint>

namespace devmove {

class RatePacer {
 public:
  // The bucket: at most this much unused time is kept, or two buffers.
  static constexpr double kBucketSeconds = 0.05;

  explicit RatePacer(double now = 0) : base_time_(now) {}

  // Every loop turn, before Delay(): a changed rate or a resume after a pause
  // starts a new base at `now`.
  void Observe(double now, uint64_t rate, bool paused, uint64_t bytes_started);

  // Seconds until a buffer of `next_bytes` may start (0: now), at `rate`
  // bytes per second (0: unlimited), with `bytes_started` already started.
  double Delay(double now, uint64_t rate, uint64_t bytes_started, uint64_t next_bytes, uint32_t buffer_bytes);

 private:
  double base_time_ = 0;
  uint64_t base_bytes_ = 0;
  uint64_t rate_seen_ = 0;
  bool was_paused_ = false;
};

}  // namespace devmove
