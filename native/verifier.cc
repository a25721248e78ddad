#include "verifier.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {
namespace {

// How long one wait for completions lasts: bounds cancellation and progress latency.
constexpr uint64_t kWaitTimeoutNs = 100ull * 1000 * 1000;
// With reads in flight and blocks on the hash pool: the driver does not watch
// the checks' eventfd, so a short wait picks up what the workers finish.
constexpr uint64_t kCheckWaitNs = 2ull * 1000 * 1000;

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
  // BLAKE3 (the fallback) hashes a 64 KiB block at about one core's read
  // rate, so its blocks go to the hash pool; XXH3 is ~10x faster, the pass
  // is bound by its reads, and it stays on this thread (on the pool it
  // measured no faster, within the noise of a shared 2-core machine).
  if (in_.digests && in_.digests->algorithm() == "blake3-128") {
    error = StartChecks();
    if (error.failed()) return error;
  }
  for (uint32_t t = 0; t < in_.targets.size(); ++t) {
    if (in_.targets[t] == nullptr) continue;
    error = CompareTarget(t, progress);
    if (error.failed()) return error;
  }
  if (in_.digests) report->digest_pages_spilled = in_.digests->table().pages_written();
  report->done = true;
  return {};
}

SysError Verifier::StartChecks() {
  check_sink_ = std::make_unique<DigestCheck>(in_.digests->table());
  ParallelDigest::Limits limits;
  limits.pieces_max = static_cast<uint32_t>(pairs_.size());  // one piece per pair at most
  limits.tasks_per_piece =
      std::min<uint32_t>(ParallelDigest::Limits::kTasksPerPieceMax, std::max(4u, in_.digests->pool().threads()));
  SysError error;
  checks_ = BlockDigests::Create(in_.digests->pool(), in_.digests->hash_fn(), in_.digests->block_bytes(),
                                 in_.length_bytes, check_sink_.get(), limits, &error);
  return checks_ ? SysError() : error;
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
  // complete (its reads, or its blocks' digests); it ends when the ranges
  // are compared (or on a failure) and nothing is in flight.
  for (;;) {
    if (!failure_.failed() && in_.cancel->load(std::memory_order_relaxed)) {
      Fail(SysError::Make(ECANCELED, "copy", in_.source->path(), -1, "the copy was cancelled while verifying"));
    }
    if (!failure_.failed()) StartPairs();
    const bool checking = checks_ && checks_->pieces_in_use() > 0;
    if (in_.driver->in_flight() == 0 && !checking) break;
    const SysError driver_error = Wait(checking);
    if (driver_error.failed()) return driver_error;
    CollectChecks();
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

// On this thread: whether each block's digest is the copy's.
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

// Waits for a completion, or for the workers to finish a pair's blocks.
SysError Verifier::Wait(bool checking) {
  if (in_.driver->in_flight() > 0) return in_.driver->Poll(checking ? kCheckWaitNs : kWaitTimeoutNs);
  pollfd p{checks_->wake_fd(), POLLIN, 0};
  poll(&p, 1, static_cast<int>(kWaitTimeoutNs / 1000000));
  return {};
}

// A pair of whole digest blocks whose target side is read: its blocks go to
// the hash pool; the pair stays busy until CollectChecks() reaps it.
void Verifier::HandToChecks(Pair& pair) {
  const uint32_t index = static_cast<uint32_t>(&pair - pairs_.data());
  // Never refused: at most one piece per pair, and pieces_max is the number of pairs.
  const bool taken = checks_->Submit(pair.position, target_buffers_->buffer(index), pair.length, index);
  assert(taken);
  (void)taken;
}

void Verifier::CollectChecks() {
  if (!checks_) return;
  tickets_.clear();
  checks_->Reap(&tickets_);
  const uint64_t block = in_.digests->block_bytes();
  for (uint64_t index : tickets_) {
    Pair& pair = pairs_[index];
    assert(pair.busy && !pair.wants_source);
    uint64_t lowest = 0;
    const uint64_t end = (pair.position + pair.length + block - 1) / block;
    const bool differs = check_sink_->TakeMismatch(pair.position / block, end, &lowest);
    if (!failure_.failed() && differs) {
      pair.digest_mismatch_at = static_cast<int64_t>(in_.absolute_base + lowest * block);
      ReadSource(pair);  // the pair stays busy: the source's bytes name the first difference
      continue;
    }
    if (!failure_.failed()) Compared(pair);
    pair.busy = false;
  }
}

void Verifier::DigestCheck::Put(uint64_t block, const Xxh128& digest) {
  Xxh128 want;
  if (table_.Get(block, &want) && want == digest) return;
  std::lock_guard<std::mutex> lock(mutex_);
  mismatched_.push_back(block);
}

bool Verifier::DigestCheck::TakeMismatch(uint64_t first, uint64_t end, uint64_t* lowest) {
  std::lock_guard<std::mutex> lock(mutex_);
  bool found = false;
  // Bounded by the blocks of the pairs still in the pool: a reaped pair's are taken here.
  for (size_t i = 0; i < mismatched_.size();) {
    const uint64_t b = mismatched_[i];
    if (b < first || b >= end) {
      ++i;
      continue;
    }
    *lowest = found ? std::min(*lowest, b) : b;
    found = true;
    mismatched_[i] = mismatched_.back();
    mismatched_.pop_back();
  }
  return found;
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
    if (!pair.wants_source && checks_) {
      HandToChecks(pair);  // the pair stays busy: its blocks are hashed on the pool
      return;
    }
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
