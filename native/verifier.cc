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
  report->mode = in_.digests ? "digest" : "strict";
  if (in_.digests) {
    in_.digests->Finish();  // every digest of the copy is in the table
    report->digest = in_.digests->algorithm();
    report->digest_block_bytes = in_.digests->block_bytes();
  }
  SysError error;
  target_buffers_ = BufferPool::Create(in_.source_buffers->count(), in_.source_buffers->buffer_bytes(), &error);
  if (!target_buffers_) return error;
  pairs_ = std::vector<Pair>(in_.source_buffers->count());
  for (uint32_t t = 0; t < in_.targets.size(); ++t) {
    if (in_.targets[t] == nullptr) continue;
    error = CompareTarget(t, progress);
    if (error.failed()) return error;
  }
  if (in_.digests) report->digest_pages_spilled = in_.digests->table().pages_written();
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
    in_.source->Watch(now);  // a silent NBD server fails what it owes (--nbd-timeout)
    in_.targets[target]->Watch(now);
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
    bool covered = false;
    pair.length = NextChunk(pair.position, std::min<uint64_t>(block, r.length - range_done_), &covered);
    pair.done[kSource] = pair.done[kTarget] = 0;
    range_done_ += pair.length;
    if (range_done_ == r.length) {
      ++range_index_;
      range_done_ = 0;
    }
    pair.digest_mismatch_at = -1;
    pair.wants_source = !covered;
    if (pair.wants_source) ReadSource(pair);
    Submit(pair, kTarget);
  }
}

// The source's side of a pair: for a strict pair, or a digest that differs.
void Verifier::ReadSource(Pair& pair) {
  if (!source_cache_dropped_) {
    in_.source->DropCache();
    source_cache_dropped_ = true;
  }
  pair.wants_source = true;
  pair.done[kSource] = 0;
  Submit(pair, kSource);
}

// The next buffer at `position`, at most `most` bytes: a run of whole digest
// blocks that all have a digest of what the copy read (covered), or a run of
// bytes that lack one (a range's partial edge blocks, blocks split between
// two of the copy's buffers, ranges an earlier run copied) — so the source is
// read only where no digest answers.
uint32_t Verifier::NextChunk(uint64_t position, uint64_t most, bool* covered) const {
  *covered = false;
  if (in_.digests == nullptr) return static_cast<uint32_t>(most);
  const uint64_t block = in_.digests->block_bytes();
  const uint64_t end = position + most;
  uint64_t at = position;
  while (at < end) {
    const uint64_t piece_end = std::min(end, (at / block + 1) * block);
    const bool whole = at % block == 0 && (piece_end % block == 0 || piece_end == in_.length_bytes);
    const bool has = whole && in_.digests->table().Has(at / block);
    if (at == position) {
      *covered = has;
    } else if (has != *covered) {
      break;
    }
    at = piece_end;
  }
  assert(at > position && at - position <= most);
  return static_cast<uint32_t>(at - position);
}

bool Verifier::DigestsMatch(Pair& pair) {
  const uint32_t index = static_cast<uint32_t>(&pair - pairs_.data());
  const uint8_t* data = target_buffers_->buffer(index);
  const uint32_t block = in_.digests->block_bytes();
  for (uint32_t off = 0; off < pair.length; off += block) {
    const uint32_t n = std::min(block, pair.length - off);
    Xxh128 want;
    const bool known = in_.digests->table().Get((pair.position + off) / block, &want);
    if (!known || in_.digests->Hash(data + off, n) != want) {
      pair.digest_mismatch_at = static_cast<int64_t>(in_.absolute_base + pair.position + off);
      return false;
    }
  }
  return true;
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
  const bool read = pair.done[kTarget] == pair.length && (!pair.wants_source || pair.done[kSource] == pair.length);
  if (!failure_.failed() && read) {
    if (!pair.wants_source && !DigestsMatch(pair)) {
      ReadSource(pair);  // the pair stays busy: the source's bytes name the first difference
      return;
    }
    Compared(pair);
  }
  pair.busy = false;
}

void Verifier::Compared(Pair& pair) {
  if (pair.wants_source) {
    report_->source_bytes_read += pair.length;
    // The target differs from what the copy read, yet equals the source now:
    // the source changed since. The copy did not write what is there now.
    if (!Compare(pair) && pair.digest_mismatch_at >= 0) CountMismatch(pair.digest_mismatch_at);
  }
  report_->bytes_compared += pair.length;
  compared_all_ += pair.length;
}

void Verifier::CountMismatch(int64_t offset) {
  ++report_->mismatched_blocks;
  // The lowest offset of the first target that differs (pairs complete in any order).
  const bool earlier = report_->first_mismatch_target < 0 ||
                       (report_->first_mismatch_target == static_cast<int32_t>(target_) &&
                        offset < report_->first_mismatch_offset);
  if (!earlier) return;
  report_->first_mismatch_offset = offset;
  report_->first_mismatch_target = static_cast<int32_t>(target_);
}

// Byte for byte: counts the blocks that differ; whether any did.
bool Verifier::Compare(Pair& pair) {
  const uint32_t index = static_cast<uint32_t>(&pair - pairs_.data());
  const uint8_t* a = in_.source_buffers->buffer(index);
  const uint8_t* b = target_buffers_->buffer(index);
  const uint32_t block = in_.compare_block_bytes;
  if (std::memcmp(a, b, pair.length) == 0) return false;
  for (uint32_t off = 0; off < pair.length; off += block) {
    const uint32_t n = std::min(block, pair.length - off);
    if (std::memcmp(a + off, b + off, n) == 0) continue;
    uint32_t k = 0;
    while (a[off + k] == b[off + k]) ++k;  // bounded: the block differs somewhere below n
    CountMismatch(static_cast<int64_t>(in_.absolute_base + pair.position + off + k));
  }
  return true;
}

void Verifier::Fail(SysError error) {
  if (!failure_.failed()) failure_ = std::move(error);
}

}  // namespace devmove
