// CopyEngine, the copy itself: the scheduling loop, the completion switch and
// the slot state machine (read, pass the stages, write to every target,
// retire), then the final flush and the verify pass.
#include "copy_engine.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "block_digest_stage.h"
#include "digest_stage.h"
#include "hasher.h"
#include "verifier.h"

namespace devmove {
namespace {

// How long one wait for completions may last: bounds cancellation and progress latency.
constexpr uint64_t kWaitTimeoutNs = 100ull * 1000 * 1000;
// --only-changed compares and writes in blocks of this many bytes (at least
// the target's logical block): a page, the unit filesystems and SSDs track.
constexpr uint32_t kCompareBlockBytes = 4096;
// A hole nothing needs as zeros goes in slots of up to this many bytes
// (ZeroRun and IoOp lengths are 32-bit).
constexpr uint64_t kHoleSlotBytesMax = 1ull << 30;
// How long a wait for I/O may last while the digest's workers hold buffers
// (they finish one in ~0.1-0.5 ms): the buffer goes back to work soon after.
constexpr uint64_t kStageWaitNs = 2ull * 1000 * 1000;
// How long a stopping copy waits for a network peer's replies before giving up on it.
constexpr double kPeerGraceSeconds = 5.0;
constexpr size_t kBadRangesReported = 1000;

double NowSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void SleepNs(uint64_t ns) {
  const timespec ts{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
  nanosleep(&ts, nullptr);
}

// Errors a failing medium or transport produces (the block layer's
// BLK_STS_* mapped to errno): worth locating and, with no_error, skipping.
// Anything else (EINVAL, EBADF, ENOMEM...) is a bug or a setup problem.
bool IsMediaError(int error) {
  switch (error) {
    case EIO: case ENODATA: case EREMOTEIO: case EILSEQ: case ETIMEDOUT: case ENOLINK: case EBADE: case EBADMSG:
      return true;
    default:
      return false;
  }
}

}  // namespace

CopyEngine::CopyEngine(CopyPlan plan) : plan_(std::move(plan)) { rate_.store(plan_.rate_bytes_per_second); }
CopyEngine::~CopyEngine() = default;

SysError CopyEngine::Run(const ProgressFn& progress, CopyReport* report, const CheckpointFn& checkpoint) {
  report_ = report;
  const double start = NowSeconds();
  pacer_ = RatePacer(start);
  SysError error = Prepare(checkpoint);
  if (!error.failed()) error = Loop(progress);
  if (!error.failed()) error = Conclude(progress);
  if (!error.failed() && plan_.verify) error = Verify(progress);
  if (error.errno_value == ECANCELED && error.syscall == "copy") report->cancelled = true;
  FillReport(error);
  LeaveSharedOffsets(error);
  report->seconds = NowSeconds() - start;
  // Release everything now, not when the JS object is collected: the driver
  // first (nothing is in flight any more), then the stages (the digest's
  // workers may still read buffers of a stopped copy) and the hash pool they
  // share, then buffers, then descriptors.
  digest_stage_ = nullptr;
  block_digests_ = nullptr;
  stages_.clear();
  hash_pool_.reset();
  slots_.clear();
  driver_.reset();
  behind_.reset();
  pool_.reset();
  compare_pool_.reset();
  targets_.clear();
  source_.reset();
  return error;
}

void CopyEngine::FillReport(const SysError& error) {
  CopyReport* report = report_;
  report->bytes_copied = bytes_completed_;
  report->bytes_read = bytes_read_;
  report->bad_bytes = bad_bytes_;
  if (!length_known_) {
    // A stream source: the domain is what it held.
    report->bytes_total = bytes_completed_;
    report->domain_length = bytes_completed_;
  }
  std::vector<ByteRange> bad = bad_all_;
  Normalize(&bad);
  report->bad_range_count = bad.size();
  for (size_t i = 0; i < bad.size() && i < kBadRangesReported; ++i)
    report->bad_ranges.push_back({Absolute(bad[i].offset), bad[i].length});
  if (hasher_ && !error.failed()) {
    report->hash_algorithm = hasher_->algorithm();
    report->hash_hex = hasher_->FinalHex();
    report->hash_implementation = hasher_->implementation();
  }
  std::string hex, why;
  if (digest_stage_ && !error.failed() && digest_stage_->Finish(&hex, &why)) {
    report->hash_algorithm = digest_stage_->algorithm();
    report->hash_hex = hex;
    report->hash_implementation = digest_stage_->implementation();
    report->hash_threads = digest_stage_->threads();
  }
  report->rate_bytes_per_second = rate_.load();
  if (halt_error_.failed()) report->stopped_at_bad_block = {Absolute(halt_position_), halt_length_};
  if (checkpointer_) report->checkpoints = checkpointer_->checkpoints();
  if (driver_) report->submit_calls = driver_->submit_calls();
  uint64_t accepted = 0;
  for (uint64_t bytes : bytes_written_) accepted += bytes;
  if (plan_.only_changed) {
    for (size_t t = 0; t < bytes_written_.size(); ++t) report->targets[t].changed_bytes_written = bytes_written_[t];
  }
  if (error.failed() && accepted == 0) {
    // Nothing reached any target: leave no new empty file behind.
    for (auto& t : targets_) t->UnlinkIfCreated();
    for (FileReport& t : report->targets) t.created = false;
  }
}

void CopyEngine::LeaveSharedOffsets(const SysError& error) {
  // Only a copy that got as far as its first I/O moved anything: a refused
  // one leaves standard input and output where they were.
  if (!driver_) return;
  if (source_) source_->LeaveSharedOffsetAt(bytes_completed_);
  for (size_t i = 0; i < targets_.size(); ++i) {
    targets_[i]->LeaveSharedOffsetAt(error.failed() ? bytes_written_[i] : bytes_completed_);
  }
}

SysError CopyEngine::Loop(const ProgressFn& progress) {
  const double interval = plan_.progress_interval_ms / 1000.0;
  double last_progress = NowSeconds();
  EmitProgress(progress, false);
  // Each turn starts what it may, then waits at most kWaitTimeoutNs (or the
  // pacer's delay) for completions; the loop ends when nothing is in flight
  // and nothing is left to start.
  for (;;) {
    const double now = NowSeconds();
    if (!stopping_ && cancel_requested_.load(std::memory_order_relaxed)) {
      report_->cancelled = true;
      stopping_ = true;
      StopStreams();
    }
    AbortSilentPeers(now);
    WatchPeers(now);
    const bool paused = paused_.load(std::memory_order_relaxed);
    const uint64_t rate = rate_.load(std::memory_order_relaxed);
    pacer_.Observe(now, rate, paused, bytes_started_);
    uint64_t wait_ns = kWaitTimeoutNs;
    GrowSlots();
    if (!paused) StartSlots(now, rate, &wait_ns);
    if (behind_ && !stopping_ && halt_position_ == UINT64_MAX) behind_->Pump();
    if (checkpointer_->enabled()) {
      checkpointer_->Tick(now, *driver_, LiveTargetList());
      const double due = checkpointer_->SecondsUntilDue(now);
      if (due >= 0) wait_ns = std::min<uint64_t>(wait_ns, static_cast<uint64_t>(due * 1e9) + 1);
    }
    // Buffers the digest's workers hold come back through the stages'
    // descriptors. A stopped copy does not wait for them (Run() does), nor a
    // halted one for buffers past the halt: an in-order digest never gets
    // past the gap it leaves.
    const bool stages_busy = !stopping_ && StagesBusy(halt_position_);
    if (driver_->in_flight() == 0) {
      if (!MoreToStart() && !stages_busy) break;
      if (stages_busy) {
        WaitForStages(wait_ns);
      } else {
        SleepNs(wait_ns);  // paused or held back by the rate: nothing to wait for in the kernel
      }
    } else {
      // The driver does not watch the stages' descriptors: a bounded wait
      // picks up buffers the workers finish while I/O is in flight.
      if (stages_busy) wait_ns = std::min(wait_ns, kStageWaitNs);
      const SysError error = driver_->Poll(wait_ns);
      // The driver itself failed: nothing in flight can be reaped any more.
      if (error.failed()) {
        Fail(error);
        break;
      }
    }
    CollectStages();
    if (progress && NowSeconds() - last_progress >= interval) {
      last_progress = NowSeconds();
      EmitProgress(progress, paused);
    }
  }
  assert(driver_->in_flight() == 0 || first_error_.failed());
  // Buffers waiting for their turn (in the digest, on a stream) when the job stopped.
  for (Slot& s : slots_) FinishIfDone(s);
  return {};
}

SysError CopyEngine::Conclude(const ProgressFn& progress) {
  const bool failed = first_error_.failed() || report_->cancelled || halt_error_.failed();
  SysError finish;
  if (!failed) finish = FinishTargets();
  const SysError durable = MakeDurable();
  if (!durable.failed() && !finish.failed() && !first_error_.failed()) {
    // Everything that completed is durable now: the last checkpoint.
    checkpointer_->Final();
  }
  report_->checkpoints = checkpointer_->checkpoints();
  if (first_error_.failed()) return first_error_;
  if (finish.failed()) return finish;
  if (durable.failed()) return durable;
  if (halt_error_.failed()) return halt_error_;
  if (report_->cancelled) return SysError::Make(ECANCELED, "copy", source_->path(), -1, "the copy was cancelled");
  EmitProgress(progress, false);
  return {};
}

void CopyEngine::EmitProgress(const ProgressFn& progress, bool paused, bool verifying, uint64_t verify_done,
                              uint64_t verify_total) const {
  if (!progress) return;
  ProgressInfo info;
  info.domain_offset = plan_.source_offset_bytes;
  info.domain_length = length_known_ ? length_bytes_ : 0;
  info.bytes_done = bytes_completed_;
  info.bytes_total = length_known_ ? planned_bytes_ : 0;
  info.size_known = length_known_;
  info.bad_bytes = bad_bytes_;
  info.queue_depth = pool_ ? pool_->count() : plan_.queue_depth;
  info.zero_bytes = report_->zero_bytes;
  info.paused = paused;
  info.verifying = verifying;
  info.verify_done = verify_done;
  info.verify_total = verify_total;
  progress(info);
}

void CopyEngine::GrowSlots() {
  const uint32_t wanted = std::min<uint32_t>(depth_wanted_.load(std::memory_order_relaxed), pool_->capacity());
  const uint32_t have = pool_->count();
  if (wanted <= have || stopping_) return;
  pool_->Grow(wanted);
  for (uint32_t i = have; i < wanted; ++i) free_slots_.push_back(i);
  report_->queue_depth = std::max(report_->queue_depth, wanted);
}

void CopyEngine::StartSlots(double now, uint64_t rate, uint64_t* wait_ns) {
  // Bounded by the free buffers; a stream source reads one buffer at a time.
  while (MoreToStart() && !free_slots_.empty() && !(source_stream_ && stream_reading_)) {
    const ByteRange& extent = extents_[extent_index_];
    const uint64_t next = std::min<uint64_t>(pool_->buffer_bytes(), extent.length - extent_done_);
    // A hole that needs no zeros costs no I/O: the rate does not hold it back.
    const double delay = NextIsFreeHole() ? 0 : pacer_.Delay(now, rate, bytes_started_, next, pool_->buffer_bytes());
    if (delay > 0) {
      *wait_ns = std::min<uint64_t>(*wait_ns, static_cast<uint64_t>(delay * 1e9) + 1);
      return;
    }
    Slot& slot = slots_[free_slots_.back()];
    free_slots_.pop_back();
    StartSlot(slot);
  }
}

void CopyEngine::StartSlot(Slot& slot) {
  assert(!slot.busy && HasMoreWork());
  const ByteRange& extent = extents_[extent_index_];
  const bool hole = extent_hole_[extent_index_] != 0;
  // A hole no stage or target needs as zeros is one slot of up to
  // kHoleSlotBytesMax without a buffer; otherwise a buffer of zeros.
  const uint64_t most = hole && !hole_needs_bytes_ ? kHoleSlotBytesMax : pool_->buffer_bytes();
  slot.busy = true;
  slot.sequence = next_sequence_++;
  slot.position = extent.offset + extent_done_;
  slot.length = static_cast<uint32_t>(std::min<uint64_t>(most, extent.length - extent_done_));
  extent_done_ += slot.length;
  if (extent_done_ == extent.length) {
    ++extent_index_;
    extent_done_ = 0;
  }
  if (!hole || hole_needs_bytes_) bytes_started_ += slot.length;  // what the rate pacer counts
  slot.hole = hole;
  slot.read_done = 0;
  slot.read_in_flight = false;
  slot.examined = slot.discarded = false;
  slot.runs.assign(1, {0, slot.length, hole});
  slot.locator.Stop();
  slot.bad.clear();
  for (TargetWrite& w : slot.writes) {
    w.run = w.run_done = 0;
    w.in_flight = w.done = false;
    w.accepted = 0;
    w.compare_done = 0;
    w.compare_in_flight = w.compare_ended = w.compared = false;
    w.runs.clear();
  }
  if (plan_.only_changed) {
    // The targets' bytes are read while the source's are: both sides stream.
    for (uint32_t t = 0; t < targets_.size(); ++t) {
      if (!dropped_[t]) SubmitCompareRead(slot, t);
    }
  }
  if (hole) {
    // Never read: the slot is complete as it starts, and goes on at once.
    if (hole_needs_bytes_) std::memset(slot.buffer, 0, slot.length);
    slot.read_done = slot.length;
    Advance(slot);
    return;
  }
  stream_reading_ = source_stream_;
  // A write that has to wait for the other write mode (write_mode_gate.h)
  // cannot be linked to its read: it is submitted once its turn comes.
  if (link_ && write_modes_.MayStart(0, targets_[0]->WritesDirect(slot.position, slot.length))) {
    // The write waits in the kernel for its read; a short or failed read
    // cancels it (-ECANCELED) and Advance() resubmits it once the data is in.
    SubmitRead(slot, /*link=*/true);
    SubmitWrite(slot, 0, WriteAction::kWrite);
  } else {
    SubmitRead(slot, /*link=*/false);
  }
}

void CopyEngine::SubmitRead(Slot& slot, bool link) {
  IoOp& op = slot.read_op;
  op.kind = IoKind::kRead;
  op.position = slot.position + slot.read_done;
  op.data = slot.buffer + slot.read_done;
  op.length = slot.length - slot.read_done;
  op.capacity = slot.capacity - slot.read_done;
  op.buffer_index = static_cast<int32_t>(slot.index);
  op.link_next = link;
  op.owner = this;
  op.slot = slot.index;
  slot.read_in_flight = true;
  source_->Submit(*driver_, op);
  ++report_->reads;
  if (!op.direct) ++report_->buffered_ios;
}

void CopyEngine::SubmitPieceRead(Slot& slot) {
  const BadBlockLocator::Piece& p = slot.locator.piece();
  IoOp& op = slot.read_op;
  op.kind = IoKind::kRead;
  op.position = slot.position + p.offset;
  op.data = slot.buffer + p.offset;
  op.length = p.length;
  op.capacity = p.length;  // exactly the piece: never into the next one
  op.buffer_index = static_cast<int32_t>(slot.index);
  op.link_next = false;
  op.owner = this;
  op.slot = slot.index;
  slot.read_in_flight = true;
  source_->Submit(*driver_, op);
  ++report_->reads;
  if (!op.direct) ++report_->buffered_ios;
}

void CopyEngine::SubmitCompareRead(Slot& slot, uint32_t target) {
  TargetWrite& w = slot.writes[target];
  assert(!w.compare_in_flight && w.compare_done < slot.length && w.compare != nullptr);
  IoOp& op = w.compare_op;
  op.kind = IoKind::kRead;
  op.position = slot.position + w.compare_done;
  op.data = w.compare + w.compare_done;
  op.length = slot.length - w.compare_done;
  op.capacity = slot.capacity - w.compare_done;
  // As LocalEndpoint::Submit decides: O_DIRECT when the offset is aligned and
  // the length rounds up within the buffer; else through the page cache.
  const uint32_t align = targets_[target]->caps().direct_alignment;
  const uint64_t at = targets_[target]->base_offset() + op.position;
  const bool buffered =
      align != 0 && (at % align != 0 || (static_cast<uint64_t>(op.length) + align - 1) / align * align > op.capacity);
  // Retried by Advance() or, once the O_DIRECT writes drained, WakeWaitingWriters().
  if (buffered && !write_modes_.MayStart(target, /*direct=*/false)) return;
  if (buffered) write_modes_.Started(target, /*direct=*/false);
  w.compare_gated = buffered;
  op.buffer_index = -1;  // only the ring is registered
  op.link_next = false;
  op.owner = this;
  op.slot = slot.index;
  op.target = target;
  w.compare_in_flight = true;
  targets_[target]->Submit(*driver_, op);
  ++report_->target_reads;
  if (!op.direct) ++report_->buffered_ios;
}

void CopyEngine::OnCompareRead(Slot& slot, uint32_t target, int32_t result) {
  TargetWrite& w = slot.writes[target];
  assert(w.compare_in_flight);
  w.compare_in_flight = false;
  if (dropped_[target]) return;
  if (result == -ECANCELED && stopping_) return;
  if (result == -EAGAIN || result == -EINTR) {
    ++report_->requeues;
    return;  // Advance() reads the rest again
  }
  if (result < 0) {
    const int64_t offset = static_cast<int64_t>(w.compare_op.offset);
    WriteFailed(target, SysError::Make(-result, "read", targets_[target]->path(), offset,
                                       "reading the target back to compare (--only-changed) failed"));
    return;
  }
  if (result == 0) {
    w.compare_ended = true;  // a file shorter than the copy: the rest differs
    return;
  }
  w.compare_done += std::min<uint32_t>(w.compare_op.length, static_cast<uint32_t>(result));
  if (w.compare_done < slot.length) ++report_->short_transfers;
}

namespace {

// Appends [at, end) of the slot to runs, merged with the run before it when they touch.
void AppendRun(std::vector<ZeroRun>* runs, uint32_t at, uint32_t end, bool zero) {
  ZeroRun* last = runs->empty() ? nullptr : &runs->back();
  if (last && last->offset + last->length == at && last->zero == zero) {
    last->length += end - at;
  } else {
    runs->push_back({at, end - at, zero});
  }
}

// Calls piece(a, b) for each part of [at, end) of the slot outside its
// unreadable blocks: under --only-changed the target keeps what it holds
// there (GNU ddrescue's rule: a block that could not be read is not written;
// it is reported bad), instead of the zeros the buffer has in their place.
template <typename PieceFn>
void ForReadable(const Slot& slot, uint32_t at, uint32_t end, PieceFn piece) {
  // Bounded by the slot's bad ranges: few, and in order (the locator walks the buffer forward).
  for (const ByteRange& bad : slot.bad) {
    assert(bad.offset >= slot.position);
    const uint64_t bad_at = bad.offset - slot.position;
    if (bad_at >= end) break;
    if (bad_at + bad.length <= at) continue;
    if (bad_at > at) piece(at, static_cast<uint32_t>(bad_at));
    at = static_cast<uint32_t>(std::min<uint64_t>(end, bad_at + bad.length));
  }
  if (at < end) piece(at, end);
}

}  // namespace

// Splits the slot's runs at compare blocks (counted from the slot's position,
// so they line up with the buffers and the target's sectors) and keeps the
// blocks whose bytes differ from what the target holds, merged.
void CopyEngine::CompareWithTarget(Slot& slot, uint32_t target) {
  TargetWrite& w = slot.writes[target];
  assert(slot.examined && slot.compare_complete(target) && !w.compared);
  const uint32_t block = std::max(kCompareBlockBytes, targets_[target]->caps().logical_block_bytes);
  const uint32_t held = std::min(w.compare_done, slot.length);  // bytes of the target to compare with
  w.runs.clear();
  for (const ZeroRun& run : slot.runs) {
    const uint32_t end = run.offset + run.length;
    // Bounded by the run's blocks: each turn moves to the next block boundary.
    for (uint32_t at = run.offset; at < end;) {
      const uint32_t next = std::min<uint32_t>(end, (at / block + 1) * block);
      bool same = next <= held;
      ForReadable(slot, at, next, [&](uint32_t a, uint32_t b) {
        same = same && std::memcmp(slot.buffer + a, w.compare + a, b - a) == 0;
      });
      if (!same) ForReadable(slot, at, next, [&](uint32_t a, uint32_t b) { AppendRun(&w.runs, a, b, run.zero); });
      at = next;
    }
  }
  w.compared = true;
  report_->targets[target].compared_bytes += slot.length;
}

uint32_t CopyEngine::NextWriteLength(const Slot& slot, uint32_t target) const {
  const TargetWrite& w = slot.writes[target];
  const uint32_t rest = slot.RunsFor(target)[w.run].length - w.run_done;
  return WritesFromZeros(slot) ? std::min(rest, zeros_->buffer_bytes()) : rest;
}

void CopyEngine::SubmitWrite(Slot& slot, uint32_t target, WriteAction action) {
  TargetWrite& w = slot.writes[target];
  const ZeroRun& run = slot.RunsFor(target)[w.run];
  assert(!w.in_flight && w.run_done < run.length && action != WriteAction::kSkip);
  const bool punch = action != WriteAction::kWrite;
  // A hole slot without a buffer of zeros (hole_needs_bytes_ false) is
  // written, where it has to be, a zero buffer at a time.
  const bool from_zeros = !punch && WritesFromZeros(slot);
  assert(!from_zeros || zeros_ != nullptr);
  IoOp& op = w.op;
  op.kind = action == WriteAction::kPunch ? IoKind::kPunchHole
            : action == WriteAction::kZero ? IoKind::kZeroRange
                                           : IoKind::kWrite;
  op.position = slot.position + run.offset + w.run_done;
  op.data = from_zeros ? zeros_->buffer(0) : slot.buffer + run.offset + w.run_done;
  op.length = punch ? run.length - w.run_done : NextWriteLength(slot, target);
  op.capacity = op.length;
  op.buffer_index = from_zeros ? -1 : static_cast<int32_t>(slot.index);
  op.link_next = false;
  op.owner = this;
  op.slot = slot.index;
  op.target = target;
  w.in_flight = true;
  const bool direct = targets_[target]->WritesDirect(op.position, op.length);
  if (!punch) write_modes_.Started(target, direct);
  targets_[target]->Submit(*driver_, op);
  assert(punch || op.direct == direct);
  if (punch) {
    ++report_->discards;
  } else {
    ++report_->writes;
    if (!op.direct) ++report_->buffered_ios;
  }
}

void CopyEngine::Complete(IoOp& op) {
  assert(op.slot < slots_.size());
  Slot& slot = slots_[op.slot];
  assert(slot.busy);
  if (&op == &slot.read_op) {
    if (slot.locator.active()) {
      OnPieceRead(slot, op.result);
    } else {
      OnRead(slot, op.result);
    }
    Advance(slot);
    return;
  }
  if (op.target < targets_.size() && &op == &slot.writes[op.target].compare_op) {
    const bool drained = slot.writes[op.target].compare_gated && write_modes_.Finished(op.target, /*direct=*/false);
    slot.writes[op.target].compare_gated = false;
    OnCompareRead(slot, op.target, op.result);
    Advance(slot);
    if (drained) WakeWaitingWriters(op.target);
    return;
  }
  assert(op.target < targets_.size() && &op == &slot.writes[op.target].op);
  const bool drained = op.kind == IoKind::kWrite && write_modes_.Finished(op.target, op.direct);
  OnWrite(slot, op.target, op.result);
  Advance(slot);
  if (drained) WakeWaitingWriters(op.target);
}

void CopyEngine::OnRead(Slot& slot, int32_t result) {
  assert(slot.read_in_flight);
  slot.read_in_flight = false;
  if (result == -ECANCELED && stopping_) return;  // ended by StopStreams()
  if (result == -EAGAIN || result == -EINTR) {
    ++report_->requeues;
    return;
  }
  const uint64_t offset = Absolute(slot.position + slot.read_done);
  if (result < 0) {
    ReadFailed(slot, -result, offset);
  } else if (result == 0 && !length_known_) {
    // A stream's end (or a count= beyond it): the copy ends with this buffer.
    slot.length = slot.read_done;
    source_ended_ = true;
  } else if (result == 0) {
    Fail(SysError::Make(ENODATA, "read", source_->path(), static_cast<int64_t>(offset),
                        "the source ended at byte " + std::to_string(offset) + ", before the planned end at byte " +
                            std::to_string(Absolute(length_bytes_))));
  } else {
    const uint32_t n = std::min<uint32_t>(slot.length - slot.read_done, static_cast<uint32_t>(result));
    slot.read_done += n;
    bytes_read_ += n;
    if (slot.read_done < slot.length) ++report_->short_transfers;
  }
}

void CopyEngine::ReadFailed(Slot& slot, int error, uint64_t offset) {
  ++report_->read_errors;
  if (!IsMediaError(error) || source_stream_) {
    Fail(source_->Describe(slot.read_op, SysError::Make(error, "read", source_->path(), static_cast<int64_t>(offset))));
    return;
  }
  // Find exactly which blocks are unreadable: the rest of the buffer in
  // pieces, then a failing piece block by block.
  slot.locator.Start(slot.read_done, slot.length, scrape_block_, plan_.retries);
}

void CopyEngine::OnPieceRead(Slot& slot, int32_t result) {
  assert(slot.read_in_flight);
  slot.read_in_flight = false;
  if (result == -EAGAIN || result == -EINTR) {
    ++report_->requeues;
    return;
  }
  const BadBlockLocator::Piece p = slot.locator.piece();
  const uint64_t offset = Absolute(slot.position + p.offset);
  if (result == 0) {
    slot.locator.Stop();
    Fail(SysError::Make(ENODATA, "read", source_->path(), static_cast<int64_t>(offset),
                        "the source ended at byte " + std::to_string(offset) + ", before the planned end at byte " +
                            std::to_string(Absolute(length_bytes_))));
    return;
  }
  if (result < 0) {
    ++report_->read_errors;
    if (!IsMediaError(-result)) {
      slot.locator.Stop();
      Fail(source_->Describe(slot.read_op, SysError::Make(-result, "read", source_->path(), static_cast<int64_t>(offset))));
      return;
    }
    OnLocatorStep(slot, slot.locator.OnMediaError(offset % scrape_block_ == 0), -result);
    return;
  }
  const uint32_t n = std::min<uint32_t>(p.length, static_cast<uint32_t>(result));
  bytes_read_ += n;
  if (n < p.length) ++report_->short_transfers;
  OnLocatorStep(slot, slot.locator.OnRead(n), 0);
}

void CopyEngine::OnLocatorStep(Slot& slot, BadBlockLocator::Step step, int error) {
  if (step == BadBlockLocator::Step::kRetry) ++report_->retried_reads;
  if (step == BadBlockLocator::Step::kBad) {
    const BadBlockLocator::Piece p = slot.locator.piece();
    const uint64_t offset = Absolute(slot.position + p.offset);
    if (!plan_.no_error) {
      // Stop here: the buffer keeps only what precedes the bad block, and is
      // written; later buffers are abandoned.
      Halt(source_->Describe(slot.read_op, SysError::Make(error, "read", source_->path(), static_cast<int64_t>(offset))),
           slot.position + p.offset,
           p.length);
      slot.locator.Stop();
      slot.length = p.offset;
      slot.read_done = slot.length;
      return;
    }
    std::memset(slot.buffer + p.offset, 0, p.length);
    slot.bad.push_back({slot.position + p.offset, p.length});
    bad_bytes_ += p.length;
    step = slot.locator.Skip();
  }
  if (step == BadBlockLocator::Step::kDone) slot.read_done = slot.length;
}

void CopyEngine::OnWrite(Slot& slot, uint32_t target, int32_t result) {
  TargetWrite& w = slot.writes[target];
  assert(w.in_flight);
  w.in_flight = false;
  const bool punch = w.op.kind == IoKind::kPunchHole || w.op.kind == IoKind::kZeroRange;
  const ZeroRun& run = slot.RunsFor(target)[w.run];
  const int64_t offset = static_cast<int64_t>(w.op.offset);
  if (dropped_[target]) return;  // a dropped target's late completions change nothing
  if (result == -ECANCELED && stopping_ && !link_) return;  // ended by StopStreams()
  if (result == -ECANCELED && link_) {
    ++report_->broken_links;
  } else if (result == -EAGAIN || result == -EINTR) {
    ++report_->requeues;
  } else if (punch && (result == -EOPNOTSUPP || result == -EINVAL || result == -ENODEV)) {
    ZeroOpRefused(target, w.op.kind, result);
  } else if (result < 0) {
    WriteFailed(target, targets_[target]->Describe(
                            w.op, SysError::Make(-result, IoKindSyscall(w.op.kind), targets_[target]->path(), offset)));
  } else if (!punch && result == 0) {
    WriteFailed(target, SysError::Make(EIO, "write", targets_[target]->path(), offset, "the target accepted no bytes"));
  } else {
    const uint32_t n = punch ? run.length - w.run_done : static_cast<uint32_t>(result);
    assert(n <= run.length - w.run_done);
    if (punch) slot.discarded = true;
    if (!punch) {
      bytes_written_[target] += n;
      w.accepted += n;
    }
    w.run_done += n;
    // A write of one zero buffer's worth of a larger hole is not short.
    if (!punch && n < w.op.length) ++report_->short_transfers;
    if (w.run_done == run.length) {
      ++w.run;
      w.run_done = 0;
    }
  }
}

// No hole punching / write-zeroes on this target after all: from here on its
// zeros are written (the run that was refused too), and the note says why.
void CopyEngine::ZeroOpRefused(uint32_t target, IoKind kind, int32_t result) {
  const std::string why = std::strerror(-result);
  if (kind == IoKind::kPunchHole) {
    punch_ok_[target] = 0;
    report_->targets[target].zero_note = "fallocate(PUNCH_HOLE) failed: " + why + "; zero blocks are written";
  } else {
    zero_range_ok_[target] = 0;
    const bool nbd = targets_[target]->kind() == EndpointKind::kNbd;
    report_->targets[target].zero_note = std::string(nbd ? "NBD_CMD_WRITE_ZEROES" : "fallocate(ZERO_RANGE)") +
                                         " failed: " + why + "; the source's holes are written as zeros";
  }
}

void CopyEngine::Advance(Slot& slot) {
  if (!slot.busy) return;
  const bool halted = Halted(slot);
  if (!halted && slot.read_done < slot.length && !slot.read_in_flight) {
    if (slot.locator.active()) {
      SubmitPieceRead(slot);
    } else {
      SubmitRead(slot, /*link=*/false);
    }
  }
  if (plan_.only_changed && !halted && !stopping_) {
    // A short read-back continues (the slot's length may have shrunk since: a stream's end, a bad block).
    for (uint32_t t = 0; t < targets_.size(); ++t) {
      const TargetWrite& w = slot.writes[t];
      if (!dropped_[t] && !w.compare_in_flight && !w.compare_ended && w.compare_done < slot.length) {
        SubmitCompareRead(slot, t);
      }
    }
  }
  if (slot.read_complete() && !halted) {
    if (!slot.examined) Examine(slot);
    for (uint32_t t = 0; t < targets_.size(); ++t) AdvanceWrite(slot, t);
  }
  FinishIfDone(slot);
}

void CopyEngine::Examine(Slot& slot) {
  assert(slot.read_complete() && !slot.examined);
  slot.examined = true;
  if (source_stream_) stream_reading_ = false;
  // The length may have changed since the start (a stream's end, a bad block).
  if (!zero_stage_ && !slot.hole) slot.runs.assign(slot.length > 0 ? 1 : 0, {0, slot.length, false});
  std::vector<Slot*> released;
  for (const auto& stage : stages_) {
    if (!slot.hole || stage->NeedsHoleBytes()) {
      stage->OnRead(slot, &released);
    } else {
      stage->OnHole(slot);
    }
  }
  for (Slot* other : released) {
    if (other != &slot) FinishIfDone(*other);
  }
}

CopyEngine::WriteAction CopyEngine::ActionFor(const Slot& slot, const ZeroRun& run, uint32_t target) const {
  if (slot.hole && hole_keep_[target]) return WriteAction::kSkip;
  if (!run.zero || !targets_[target]->caps().seekable) return WriteAction::kWrite;
  switch (plan_.zero_mode) {
    case ZeroMode::kWrite:
      return slot.hole ? HoleZeroAction(slot, run, target) : WriteAction::kWrite;
    case ZeroMode::kSkip:
      return WriteAction::kSkip;
    case ZeroMode::kSparse: {
      const uint64_t at = targets_[target]->base_offset() + slot.position + run.offset;
      if (!plan_.sparse_exact || at >= existing_end_[target]) return WriteAction::kSkip;
      return DiscardAction(slot, run, target);
    }
    case ZeroMode::kDiscard:
      return DiscardAction(slot, run, target);
  }
  return WriteAction::kWrite;
}

// A zero run made to read zeros on the target: a hole or write-zeroes where
// the target can and the run is aligned and untouched, else written.
CopyEngine::WriteAction CopyEngine::DiscardAction(const Slot& slot, const ZeroRun& run, uint32_t target) const {
  return punch_ok_[target] && ZeroRunAligned(slot, run, target) ? WriteAction::kPunch : WriteAction::kWrite;
}

// A source's hole under the write policy: zeroed in place and left allocated
// where the target can (one op for the whole hole), else written.
CopyEngine::WriteAction CopyEngine::HoleZeroAction(const Slot& slot, const ZeroRun& run, uint32_t target) const {
  return zero_range_ok_[target] && ZeroRunAligned(slot, run, target) ? WriteAction::kZero : WriteAction::kWrite;
}

// On the target's logical blocks, and nothing of it written yet.
bool CopyEngine::ZeroRunAligned(const Slot& slot, const ZeroRun& run, uint32_t target) const {
  const uint32_t block = targets_[target]->caps().logical_block_bytes;
  const uint64_t at = targets_[target]->base_offset() + slot.position + run.offset;
  return at % block == 0 && run.length % block == 0 && slot.writes[target].run_done == 0;
}

void CopyEngine::AdvanceWrite(Slot& slot, uint32_t target) {
  TargetWrite& w = slot.writes[target];
  if (dropped_[target] || w.in_flight || w.done) return;
  const bool stream = !targets_[target]->caps().seekable;
  // A stream takes the buffers in the order they were started, one at a time.
  if (stream && slot.sequence != next_write_sequence_[target]) return;
  if (plan_.only_changed && !w.compared) {
    if (!w.compare_in_flight && !w.compare_ended && w.compare_done < slot.length) SubmitCompareRead(slot, target);
    if (!slot.compare_complete(target)) return;  // its read-back completes later
    CompareWithTarget(slot, target);
  }
  const std::vector<ZeroRun>& runs = slot.RunsFor(target);
  // Bounded by the slot's runs: each pass submits one or moves to the next run.
  while (w.run < runs.size()) {
    const WriteAction action = ActionFor(slot, runs[w.run], target);
    if (action == WriteAction::kWrite) {
      const uint64_t at = slot.position + runs[w.run].offset + w.run_done;
      // Waits for the other mode's writes to drain: WakeWaitingWriters() comes back here.
      if (!write_modes_.MayStart(target, targets_[target]->WritesDirect(at, NextWriteLength(slot, target)))) return;
    }
    if (action != WriteAction::kSkip) {
      SubmitWrite(slot, target, action);
      return;
    }
    ++w.run;
    w.run_done = 0;
  }
  w.done = true;
  if (stream) {
    ++next_write_sequence_[target];
    WakeStreamWriter(target);
  }
}

void CopyEngine::WakeStreamWriter(uint32_t target) {
  for (Slot& other : slots_) {
    if (other.busy && other.sequence == next_write_sequence_[target] && other.examined && !Halted(other)) {
      AdvanceWrite(other, target);
      FinishIfDone(other);
      return;
    }
  }
}

void CopyEngine::WakeWaitingWriters(uint32_t target) {
  // Bounded by the ring: each slot gets one chance; one that still cannot
  // start marks the gate waiting again.
  for (Slot& other : slots_) {
    if (!other.busy || !other.examined || Halted(other) || !other.read_complete()) continue;
    AdvanceWrite(other, target);
    FinishIfDone(other);
  }
}

// A halted slot submits nothing more and is not examined (Advance stops), so
// a write that completed its last run after the halt was never marked done:
// with two buffers' writes in flight (each linked to its read), the later one
// failing first (EFBIG) left the earlier, whole one counted as unfinished and
// out of the checkpoints. It is on the target if what is left of its runs
// needs no I/O (an unexamined slot's one run needs a write, so only a write
// that covered it all counts).
bool CopyEngine::WrittenThrough(const Slot& slot, uint32_t target) const {
  const TargetWrite& w = slot.writes[target];
  if (!slot.read_complete() || w.run_done != 0) return false;
  if (plan_.only_changed && !w.compared) return false;
  const std::vector<ZeroRun>& runs = slot.RunsFor(target);
  for (size_t r = w.run; r < runs.size(); ++r) {
    if (ActionFor(slot, runs[r], target) != WriteAction::kSkip) return false;
  }
  return true;
}

void CopyEngine::FinishIfDone(Slot& slot) {
  if (!slot.busy || slot.read_in_flight) return;
  const bool halted = Halted(slot);
  // A halted slot is never examined; a write linked to its read may still have landed.
  bool all_written = slot.read_complete() && (slot.examined || halted);
  for (uint32_t t = 0; t < targets_.size(); ++t) {
    // A read-back in flight fills this slot's compare buffer, even on a dropped target.
    if (slot.writes[t].in_flight || slot.writes[t].compare_in_flight) return;
    if (!dropped_[t]) all_written = all_written && (slot.writes[t].done || (halted && WrittenThrough(slot, t)));
  }
  if (!all_written && !halted) return;  // more to do (resubmitted by Advance)
  if (all_written && !halted) {
    for (const auto& stage : stages_) {
      if (stage->Holds(slot)) return;  // waits for its turn (the digest follows source order)
    }
  }
  if (all_written) {
    Retire(slot);
  } else {
    // Abandoned: the job stopped with this buffer unfinished. Its bad blocks
    // were already counted; they stay out of the checkpoints.
    assert(stopping_ || halted);
    // What its writes did put on the targets (a write cut short by EFBIG or
    // ENOSPC is continued, then fails): dd counts it as a partial record.
    for (uint32_t t = 0; t < targets_.size(); ++t) report_->targets[t].unfinished_bytes_written += slot.writes[t].accepted;
  }
  slot.busy = false;
  free_slots_.push_back(slot.index);
}

void CopyEngine::Retire(Slot& slot) {
  if (slot.length == 0) return;
  bytes_completed_ += slot.length;
  bytes_done_public_.store(bytes_completed_, std::memory_order_relaxed);
  // Finished = the buffer's range minus its unreadable blocks (which are
  // zero-filled on the targets and reported as bad).
  if (slot.bad.empty()) {
    checkpointer_->AddFinished({slot.position, slot.length});
    if (behind_) behind_->Add({slot.position, slot.length});
  } else {
    const std::vector<ByteRange> whole{{slot.position, slot.length}};
    for (const ByteRange& r : Subtract(whole, slot.bad)) {
      checkpointer_->AddFinished(r);
      if (behind_) behind_->Add(r);
    }
  }
  for (const ByteRange& r : slot.bad) {
    checkpointer_->AddBad(r);
    bad_all_.push_back(r);
  }
  if (slot.hole) report_->hole_bytes += slot.length;
  // Holes count as zero blocks too where a zero-block policy was asked for
  // (they went through it, or stayed holes: not written either way).
  if (slot.hole && plan_.zero_mode == ZeroMode::kWrite) return;
  const uint64_t zero = slot.zero_bytes();
  report_->zero_bytes += zero;
  if (plan_.zero_mode == ZeroMode::kSkip || (plan_.zero_mode == ZeroMode::kSparse && !slot.discarded)) {
    report_->zero_bytes_skipped += zero;
  } else if (slot.discarded) {
    report_->zero_bytes_discarded += zero;
  }
}

void CopyEngine::Fail(SysError error) {
  if (!first_error_.failed()) first_error_ = std::move(error);
  if (!stopping_) {
    stopping_ = true;
    StopStreams();
  }
}

void CopyEngine::Halt(SysError error, uint64_t position, uint32_t length) {
  if (position < halt_position_) {
    halt_position_ = position;
    halt_length_ = length;
    halt_error_ = std::move(error);
  }
}

// A stopping copy waits for what is in flight; a network peer that stopped
// answering (an NBD server stopped, a tunnel gone quiet) gets kPeerGraceSeconds,
// then the endpoints give up on it, so a cancel or a failure never hangs.
void CopyEngine::AbortSilentPeers(double now) {
  if (!stopping_ || peers_aborted_) return;
  if (stop_started_ < 0) {
    stop_started_ = now;
    return;
  }
  if (now - stop_started_ < kPeerGraceSeconds) return;
  peers_aborted_ = true;
  source_->Abort();
  for (const auto& t : targets_) t->Abort();
}

void CopyEngine::WatchPeers(double now) {
  source_->Watch(now);
  for (const auto& t : targets_) t->Watch(now);
}

void CopyEngine::StopStreams() {
  // A read or write on a pipe can wait for the other end forever: end it.
  for (Slot& slot : slots_) {
    if (slot.read_op.queued) driver_->Cancel(&slot.read_op);
    for (TargetWrite& w : slot.writes) {
      if (w.op.queued) driver_->Cancel(&w.op);
      if (w.compare_op.queued) driver_->Cancel(&w.compare_op);
    }
  }
}

bool CopyEngine::StagesBusy(uint64_t before) const {
  for (const auto& stage : stages_) {
    if (stage->Busy(before)) return true;
  }
  return false;
}

void CopyEngine::WaitForStages(uint64_t wait_ns) {
  std::vector<pollfd> fds;
  for (const auto& stage : stages_) {
    if (stage->wake_fd() >= 0) fds.push_back({stage->wake_fd(), POLLIN, 0});
  }
  const int ms = static_cast<int>(std::min<uint64_t>((wait_ns + 999999) / 1000000, 1000));
  poll(fds.data(), fds.size(), ms);  // EINTR or a timeout: the loop looks again
}

void CopyEngine::CollectStages() {
  std::vector<Slot*> released;
  for (const auto& stage : stages_) stage->Collect(&released);
  for (Slot* slot : released) FinishIfDone(*slot);
}

uint32_t CopyEngine::LiveTargets() const {
  uint32_t n = 0;
  for (uint8_t d : dropped_) n += d ? 0 : 1;
  return n;
}

std::vector<Endpoint*> CopyEngine::LiveTargetList() const {
  std::vector<Endpoint*> live(targets_.size(), nullptr);
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (!dropped_[i]) live[i] = targets_[i].get();
  }
  return live;
}

void CopyEngine::WriteFailed(uint32_t target, SysError error) {
  if (dropped_[target]) return;
  if (plan_.on_target_error == TargetErrorPolicy::kDrop && LiveTargets() > 1) {
    dropped_[target] = 1;
    report_->targets[target].dropped = true;
    report_->targets[target].error = std::move(error);
    checkpointer_->Freeze();
    return;
  }
  Fail(std::move(error));
}

void CopyEngine::FlushFailed(uint32_t target, const SysError& error) {
  SysError named = error;
  named.path = targets_[target]->path();
  WriteFailed(target, named);
}

SysError CopyEngine::FinishTargets() {
  // Zero blocks that were skipped or punched at the end leave a file target
  // short, and so do ranges the copy leaves out (a domain mapfile, a resume)
  // and holes kept at the end: extend it to the copy's end, as dd conv=sparse
  // does. The end is where the source's data ended: a stream source's domain
  // (kUnboundedBytes, or a count= it may fall short of) is no length.
  bool kept = false;  // holes at the end left unwritten
  for (uint8_t k : hole_keep_) kept = kept || k;
  if (plan_.zero_mode == ZeroMode::kWrite && !plan_.has_extents && !(kept && report_->hole_bytes > 0)) return {};
  const uint64_t copied = length_known_ ? length_bytes_ : bytes_completed_;
  assert(copied <= length_bytes_);
  for (size_t i = 0; i < targets_.size(); ++i) {
    Endpoint& t = *targets_[i];
    if (dropped_[i] || !t.caps().grows) continue;
    const uint64_t end = t.base_offset() + copied;
    t.RefreshSize();
    if (t.size_bytes() < end) {
      const SysError error = t.Truncate(end);
      if (error.failed()) return error;
    }
  }
  return {};
}

SysError CopyEngine::MakeDurable() {
  const Durability mode = plan_.targets.front().open.durability;
  bool storage = false;
  for (const auto& t : targets_) storage = storage || t->caps().durable_flush;
  bool nbd = false;
  for (const auto& t : targets_) nbd = nbd || t->kind() == EndpointKind::kNbd;
  if (!storage) {
    // Only streams (the bytes were handed to a reader), or NBD servers that offer no flush.
    report_->durability = nbd ? "none (the NBD server offers no flush)" : "none (the target is a stream)";
    return {};
  }
  // Over NBD the same words mean the server's: a flush answered on every connection, or FUA writes.
  switch (mode) {
    case Durability::kNone: report_->durability = "none"; return {};
    case Durability::kDsync: report_->durability = nbd ? "O_DSYNC writes (NBD: FUA writes)" : "O_DSYNC writes"; return {};
    case Durability::kSync: report_->durability = nbd ? "O_SYNC writes (NBD: FUA writes)" : "O_SYNC writes"; return {};
    case Durability::kFdatasync: report_->durability = nbd ? "fdatasync (NBD: NBD_CMD_FLUSH on every connection)" : "fdatasync"; break;
    case Durability::kFsync: report_->durability = nbd ? "fsync (NBD: NBD_CMD_FLUSH on every connection)" : "fsync"; break;
  }
  SysError first;
  for (size_t i = 0; i < targets_.size(); ++i) {
    Endpoint& t = *targets_[i];
    if (dropped_[i] || !t.caps().durable_flush) continue;
    const SysError e = t.Flush(mode == Durability::kFsync);
    if (e.failed()) {
      if (plan_.on_target_error == TargetErrorPolicy::kDrop && LiveTargets() > 1) {
        WriteFailed(static_cast<uint32_t>(i), e);
      } else if (!first.failed()) {
        first = e;
      }
    }
    t.SyncDirectoryEntry();
    t.RefreshSize();
    report_->targets[i].size_bytes = t.size_bytes();
  }
  return first;
}

SysError CopyEngine::Verify(const ProgressFn& progress) {
  Verifier::Inputs in;
  in.driver = driver_.get();
  in.source = source_.get();
  in.targets = LiveTargetList();
  in.source_buffers = pool_.get();
  in.compare_block_bytes = scrape_block_;
  in.absolute_base = plan_.source_offset_bytes;
  std::vector<ByteRange> skip = ClipAndRebase(plan_.verify_skip, plan_.source_offset_bytes,
                                              plan_.source_offset_bytes + length_bytes_);
  for (const ByteRange& r : bad_all_) skip.push_back(r);
  Normalize(&skip);
  std::vector<ByteRange> whole;
  if (length_bytes_ > 0) whole.push_back({0, length_bytes_});
  in.ranges = Subtract(whole, skip);
  // What behind the copy confirmed on every live target is not read again.
  uint64_t behind_bytes = 0;
  if (behind_) {
    const std::vector<ByteRange> confirmed = behind_->VerifiedOnAll();
    const std::vector<ByteRange> before = in.ranges;
    in.ranges = Subtract(before, confirmed);
    behind_bytes = (TotalLength(before) - TotalLength(in.ranges)) * LiveTargets();
  }
  in.cancel = &cancel_requested_;
  in.progress_interval_seconds = plan_.progress_interval_ms / 1000.0;
  in.digests = block_digests_;
  in.length_bytes = length_bytes_;
  Verifier verifier(std::move(in));
  VerifyReport& v = report_->verify;
  const SysError error = verifier.Run(
      [&](uint64_t done, uint64_t total) { EmitProgress(progress, false, true, done, total); }, &v);
  v.behind_bytes = behind_bytes;
  v.bytes_compared += behind_bytes;
  if (error.failed()) return error;
  if (v.mismatched_blocks == 0) return {};
  const size_t t = static_cast<size_t>(v.first_mismatch_target);
  const uint64_t target_offset =
      targets_[t]->base_offset() + (static_cast<uint64_t>(v.first_mismatch_offset) - plan_.source_offset_bytes);
  return SysError::Make(EILSEQ, "verify", targets_[t]->path(), static_cast<int64_t>(target_offset),
                        "the target differs from the source: first at byte " + std::to_string(target_offset) +
                            " of the target, " + std::to_string(v.mismatched_blocks) + " block(s) of " +
                            std::to_string(v.compare_block_bytes) + " bytes differ");
}

}  // namespace devmove
