// Durable checkpoints for a mapfile: every interval, the ranges finished so
// far are taken, every live target is flushed through the I/O driver
// (IORING_OP_FSYNC) while the copy goes on, and only when all those flushes
// have completed are the ranges reported. A flush covers every write that
// completed before it was issued: exactly the ranges taken.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "endpoint.h"
#include "io_driver.h"
#include "ranges.h"

namespace devmove {

class Checkpointer final : public IoCompletion {
 public:
  // Ranges (absolute source offsets) now durable on every remaining target.
  using EmitFn = std::function<void(const std::vector<ByteRange>& finished, const std::vector<ByteRange>& bad)>;
  // A target's flush failed (the round is then not reported): the target is
  // dropped, or the copy fails.
  using FlushFailedFn = std::function<void(uint32_t target, const SysError& error)>;

  // `absolute_base`: the source offset of the copy's position 0.
  Checkpointer(uint64_t absolute_base, uint32_t interval_ms, Durability durability, EmitFn emit,
               FlushFailedFn failed);

  bool enabled() const { return interval_seconds_ > 0 && static_cast<bool>(emit_); }
  // Kept only for a checkpoint callback, and merged with the previous range
  // when it continues it, so a long interval holds few ranges.
  void AddFinished(const ByteRange& relative) {
    if (emit_ && !frozen_) Append(&pending_finished_, relative);
  }
  void AddBad(const ByteRange& relative) {
    if (emit_ && !frozen_) Append(&pending_bad_, relative);
  }
  // A target was dropped: the checkpoints report only what is durable on
  // every target, the dropped one included, so nothing that was not yet in
  // a round is ever reported finished; a rerun brings the dropped target up
  // to date.
  void Freeze();

  // Seconds until the next round is due (for the loop's wait); < 0 when none.
  double SecondsUntilDue(double now) const;
  // Starts a round when one is due and none is running. targets[i] is null for a dropped target.
  void Tick(double now, IoDriver& driver, const std::vector<Endpoint*>& targets);
  bool round_running() const { return flushes_in_flight_ > 0; }
  void Complete(IoOp& op) override;
  // After the copy's final flush: everything finished so far is durable.
  void Final();
  uint64_t checkpoints() const { return checkpoints_; }

 private:
  void Emit();
  static void Append(std::vector<ByteRange>* ranges, const ByteRange& r) {
    if (!ranges->empty() && ranges->back().end() == r.offset) {
      ranges->back().length += r.length;
    } else {
      ranges->push_back(r);
    }
  }

  uint64_t absolute_base_;
  double interval_seconds_;
  Durability durability_;
  EmitFn emit_;
  FlushFailedFn failed_;
  double next_due_ = -1;
  std::vector<ByteRange> pending_finished_;  // relative, not yet in a round
  std::vector<ByteRange> pending_bad_;
  std::vector<ByteRange> round_finished_;    // in the round in flight
  std::vector<ByteRange> round_bad_;
  std::vector<IoOp> ops_;                    // one flush per target
  uint32_t flushes_in_flight_ = 0;
  bool round_failed_ = false;
  bool frozen_ = false;
  uint64_t checkpoints_ = 0;
};

}  // namespace devmove
