#include "checkpointer.h"

#include <cassert>

namespace devmove {

Checkpointer::Checkpointer(uint64_t absolute_base, uint32_t interval_ms, Durability durability, EmitFn emit,
                           FlushFailedFn failed)
    : absolute_base_(absolute_base),
      interval_seconds_(interval_ms / 1000.0),
      durability_(durability),
      emit_(std::move(emit)),
      failed_(std::move(failed)) {}

double Checkpointer::SecondsUntilDue(double now) const {
  if (!enabled() || round_running()) return -1;
  if (next_due_ < 0) return interval_seconds_;
  return next_due_ > now ? next_due_ - now : 0;
}

void Checkpointer::Tick(double now, IoDriver& driver, const std::vector<Endpoint*>& targets) {
  if (!enabled() || round_running()) return;
  if (next_due_ < 0) next_due_ = now + interval_seconds_;
  if (now < next_due_) return;
  next_due_ = now + interval_seconds_;
  if (pending_finished_.empty() && pending_bad_.empty()) return;
  round_finished_.swap(pending_finished_);
  round_bad_.swap(pending_bad_);
  pending_finished_.clear();
  pending_bad_.clear();
  round_failed_ = false;
  if (durability_ == Durability::kDsync || durability_ == Durability::kSync) {
    Emit();  // every completed write is already durable
    return;
  }
  if (ops_.size() != targets.size()) ops_.resize(targets.size());
  for (uint32_t t = 0; t < targets.size(); ++t) {
    if (targets[t] == nullptr || !targets[t]->caps().durable_flush) continue;
    IoOp& op = ops_[t];
    assert(!op.queued);
    op.kind = durability_ == Durability::kFsync ? IoKind::kFsync : IoKind::kFdatasync;
    op.owner = this;
    op.target = t;
    op.position = 0;
    op.length = 0;
    targets[t]->Submit(driver, op);
    ++flushes_in_flight_;
  }
  if (flushes_in_flight_ == 0) Emit();
}

void Checkpointer::Complete(IoOp& op) {
  assert(flushes_in_flight_ > 0);
  --flushes_in_flight_;
  if (op.result < 0) {
    // Not durable on this target: the round reports nothing (and the target
    // is dropped, or the copy fails).
    failed_(op.target, SysError::Make(-op.result, IoKindSyscall(op.kind), {}));
    round_failed_ = true;
  }
  if (flushes_in_flight_ > 0) return;
  if (round_failed_) {
    round_finished_.clear();
    round_bad_.clear();
    return;
  }
  Emit();
}

void Checkpointer::Freeze() {
  frozen_ = true;
  pending_finished_.clear();
  pending_bad_.clear();
}

void Checkpointer::Final() {
  assert(!round_running());
  if (!emit_) return;
  for (const ByteRange& r : pending_finished_) round_finished_.push_back(r);
  for (const ByteRange& r : pending_bad_) round_bad_.push_back(r);
  pending_finished_.clear();
  pending_bad_.clear();
  Emit();
}

void Checkpointer::Emit() {
  std::vector<ByteRange> finished, bad;
  for (const ByteRange& r : round_finished_) finished.push_back({absolute_base_ + r.offset, r.length});
  for (const ByteRange& r : round_bad_) bad.push_back({absolute_base_ + r.offset, r.length});
  round_finished_.clear();
  round_bad_.clear();
  Normalize(&finished);
  Normalize(&bad);
  if (finished.empty() && bad.empty()) return;
  ++checkpoints_;
  emit_(finished, bad);
}

}  // namespace devmove
