#include "verifier.h"

#include <errno.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {
namespace {

// How long one wait for completions lasts: bounds cancellation and progress latency.
constexpr uint64_t kWaitTimeoutNs = 100ull * 1000 * 1000;

double NowSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

Verifier::Verifier(Inputs inputs) : in_(std::move(inputs)) {
  assert(in_.driver && in_.source && in_.source_buffers && in_.cancel);
  assert(in_.compare_block_bytes > 0);
}

SysError Verifier::Run(const ProgressFn& progress, VerifyReport* report) {
  report_ = report;
  report->compare_block_bytes = in_.compare_block_bytes;
  SysError error;
  target_buffers_ = BufferPool::Create(in_.source_buffers->count(), in_.source_buffers->buffer_bytes(), &error);
  if (!target_buffers_) return error;
  pairs_ = std::vector<Pair>(in_.source_buffers->count());
  in_.source->DropCache();
  for (uint32_t t = 0; t < in_.targets.size(); ++t) {
    if (in_.targets[t] == nullptr) continue;
    error = CompareTarget(t, progress);
    if (error.failed()) return error;
  }
  report->done = true;
  return {};
}

SysError Verifier::CompareTarget(uint32_t target, const ProgressFn& progress) {
  target_ = target;
  range_index_ = 0;
  range_done_ = 0;
  in_.targets[target]->DropCache();
  const uint64_t live = static_cast<uint64_t>(std::count_if(in_.targets.begin(), in_.targets.end(),
                                                            [](const Endpoint* e) { return e != nullptr; }));
  const uint64_t total = TotalLength(in_.ranges) * live;
  double last_progress = NowSeconds();
  // Each turn either starts pairs or waits up to kWaitTimeoutNs for one to
  // complete; it ends when the ranges are compared (or on a failure) and
  // nothing is in flight.
  for (;;) {
    if (!failure_.failed() && in_.cancel->load(std::memory_order_relaxed)) {
      Fail(SysError::Make(ECANCELED, "copy", in_.source->path(), -1, "the copy was cancelled while verifying"));
    }
    if (!failure_.failed()) StartPairs();
    if (in_.driver->in_flight() == 0) break;
    const SysError driver_error = in_.driver->Poll(kWaitTimeoutNs);
    if (driver_error.failed()) return driver_error;
    const double now = NowSeconds();
    if (progress && now - last_progress >= in_.progress_interval_seconds) {
      last_progress = now;
      progress(compared_all_, total);
    }
  }
  return failure_;
}

void Verifier::StartPairs() {
  const uint32_t block = in_.source_buffers->buffer_bytes();
  for (uint32_t i = 0; i < pairs_.size() && range_index_ < in_.ranges.size(); ++i) {
    Pair& pair = pairs_[i];
    if (pair.busy) continue;
    const ByteRange& r = in_.ranges[range_index_];
    pair.busy = true;
    pair.position = r.offset + range_done_;
    pair.length = static_cast<uint32_t>(std::min<uint64_t>(block, r.length - range_done_));
    pair.done[kSource] = pair.done[kTarget] = 0;
    range_done_ += pair.length;
    if (range_done_ == r.length) {
      ++range_index_;
      range_done_ = 0;
    }
    Submit(pair, kSource);
    Submit(pair, kTarget);
  }
}

void Verifier::Submit(Pair& pair, Side side) {
  const uint32_t index = static_cast<uint32_t>(&pair - pairs_.data());
  IoOp& op = pair.ops[side];
  op.kind = IoKind::kRead;
  op.position = pair.position + pair.done[side];
  BufferPool* pool = side == kSource ? in_.source_buffers : target_buffers_.get();
  op.data = pool->buffer(index) + pair.done[side];
  op.length = pair.length - pair.done[side];
  op.capacity = pool->buffer_bytes() - pair.done[side];
  op.buffer_index = side == kSource ? static_cast<int32_t>(index) : -1;  // only the ring is registered
  op.link_next = false;
  op.owner = this;
  op.slot = index;
  op.target = side;
  Endpoint* endpoint = side == kSource ? in_.source : in_.targets[target_];
  endpoint->Submit(*in_.driver, op);
}

void Verifier::Complete(IoOp& op) {
  Pair& pair = pairs_[op.slot];
  const Side side = op.target == kSource ? kSource : kTarget;
  assert(pair.busy && &op == &pair.ops[side]);
  const Endpoint* endpoint = side == kSource ? in_.source : in_.targets[target_];
  const int64_t offset = static_cast<int64_t>(endpoint->base_offset() + pair.position + pair.done[side]);
  if (op.result == -EAGAIN || op.result == -EINTR) {
    if (!failure_.failed()) Submit(pair, side);
  } else if (op.result < 0) {
    Fail(endpoint->Describe(op, SysError::Make(-op.result, "read", endpoint->path(), offset, "while verifying")));
  } else if (op.result == 0) {
    Fail(SysError::Make(ENODATA, "read", endpoint->path(), offset, "ended early while verifying"));
  } else {
    pair.done[side] = std::min(pair.length, pair.done[side] + static_cast<uint32_t>(op.result));
    if (pair.done[side] < pair.length && !failure_.failed()) Submit(pair, side);
  }
  if (pair.ops[kSource].queued || pair.ops[kTarget].queued) return;
  if (!failure_.failed() && pair.done[kSource] == pair.length && pair.done[kTarget] == pair.length) Compare(pair);
  pair.busy = false;
}

void Verifier::Compare(Pair& pair) {
  const uint32_t index = static_cast<uint32_t>(&pair - pairs_.data());
  const uint8_t* a = in_.source_buffers->buffer(index);
  const uint8_t* b = target_buffers_->buffer(index);
  const uint32_t block = in_.compare_block_bytes;
  if (std::memcmp(a, b, pair.length) != 0) {
    for (uint32_t off = 0; off < pair.length; off += block) {
      const uint32_t n = std::min(block, pair.length - off);
      if (std::memcmp(a + off, b + off, n) == 0) continue;
      ++report_->mismatched_blocks;
      if (report_->first_mismatch_offset >= 0) continue;
      uint32_t k = 0;
      while (a[off + k] == b[off + k]) ++k;  // bounded: the block differs somewhere below n
      report_->first_mismatch_offset = static_cast<int64_t>(in_.absolute_base + pair.position + off + k);
      report_->first_mismatch_target = static_cast<int32_t>(target_);
    }
  }
  report_->bytes_compared += pair.length;
  compared_all_ += pair.length;
}

void Verifier::Fail(SysError error) {
  if (!failure_.failed()) failure_ = std::move(error);
}

}  // namespace devmove
