// The data movement operator: copies a byte range from one source to one or
// more targets through a ring of aligned buffers. Reads and writes are in
// flight at the same time; a freed buffer immediately takes the next
// sequential source position, and a buffer whose read completed is written at
// once, so both sides stream.
//
// The engine only schedules. Its parts, each in a file of its own:
//   endpoint.h           what a source or target is and can do; maps positions
//   io_driver.h          who performs the I/O: uring_driver.h, thread_driver.h
//   slot.h, stages.h     a buffer and the stages it passes (zero check, hash)
//   bad_block_locator.h  unreadable blocks located to the logical block
//   rate_pacer.h         the rate cap
//   checkpointer.h       durable checkpoints for the mapfile
//   verifier.h           the comparison after the copy, on the same driver
// copy_setup.cc opens and checks the endpoints, sizes the ring and chooses
// the driver; copy_engine.cc runs the copy.
//
// Pure C++ (no Node-API): the addon runs it on its own thread, the native
// tests drive it directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "behind_verifier.h"
#include "buffer_pool.h"
#include "checkpointer.h"
#include "copy_plan.h"
#include "endpoint.h"
#include "hash_pool.h"
#include "io_driver.h"
#include "rate_pacer.h"
#include "slot.h"
#include "stages.h"
#include "sys_error.h"
#include "write_mode_gate.h"

namespace devmove {

class BlockDigestStage;
class DigestStage;
class Hasher;

class CopyEngine final : public IoCompletion {
 public:
  // Called on the engine's thread at most once per progress_interval_ms, and
  // once at the start.
  using ProgressFn = std::function<void(const ProgressInfo&)>;
  // Ranges (absolute source offsets) that are now durable on every remaining
  // target: finished, and unreadable (zero-filled on the targets).
  using CheckpointFn = std::function<void(const std::vector<ByteRange>& finished, const std::vector<ByteRange>& bad)>;

  explicit CopyEngine(CopyPlan plan);
  ~CopyEngine();

  // Runs the whole job on the calling thread. Returns a failed SysError for
  // the first error (the job stops, in-flight I/O is drained and what was
  // written is flushed); errno ECANCELED after Cancel().
  SysError Run(const ProgressFn& progress, CopyReport* report, const CheckpointFn& checkpoint = {});

  // Safe from any thread: stop submitting, drain, flush, return.
  void Cancel() { cancel_requested_.store(true, std::memory_order_relaxed); }
  // Safe from any thread: hold new I/O (in-flight I/O completes) / go on.
  void Pause() { paused_.store(true, std::memory_order_relaxed); }
  void Resume() { paused_.store(false, std::memory_order_relaxed); }
  // Safe from any thread: bytes per second, 0 = unlimited.
  void SetRate(uint64_t bytes_per_second) { rate_.store(bytes_per_second, std::memory_order_relaxed); }
  // Safe from any thread: let the ring grow to `depth` buffers (never past the
  // plan's queue_depth_max, nor past what the copy can use; it never shrinks).
  void SetQueueDepth(uint32_t depth) { depth_wanted_.store(depth, std::memory_order_relaxed); }

  // Safe from any thread: bytes written to every target so far.
  uint64_t bytes_done() const { return bytes_done_public_.load(std::memory_order_relaxed); }

  // The one completion switch: every op of every slot comes back here.
  void Complete(IoOp& op) override;

 private:
  // kZero: one fallocate(ZERO_RANGE) / NBD_CMD_WRITE_ZEROES with NO_HOLE (a hole under the write policy).
  enum class WriteAction { kWrite, kPunch, kZero, kSkip };

  // ---- copy_setup.cc: before the first I/O ----
  SysError Prepare(const CheckpointFn& checkpoint);
  SysError OpenSource();
  SysError PlanDomain();
  SysError OpenTargets();
  SysError CheckTarget(size_t index);
  SysError CheckSameStorage(size_t index);
  SysError RefuseWhatStreamsCannotDo() const;
  SysError RefuseWhatOnlyChangedCannotDo(size_t index) const;
  SysError CutTargets();
  void PlanExtents();
  SysError PlanHoles();
  SysError SplitAtHoles(const ByteRange& extent, size_t* budget, std::vector<ByteRange>* pieces,
                        std::vector<uint8_t>* hole, bool* supported);
  SysError PlanHoleHandling();
  SysError SetupStages();
  SysError SetupBlockDigests();
  SysError SetupDigestStage(const char* threads);
  // The one hash pool of the copy, started by the first stage that needs it.
  HashPool* SharedHashPool(SysError* error);
  SysError SetupDriver();
  SysError CreateDriver(uint32_t in_flight_max, uint32_t in_flight_start);
  SysError SetupBehindVerifier(uint32_t buffer_bytes, uint32_t depth);
  void RegisterWithDriver();
  void PlanZeroHandling();
  void SetupSlots(uint32_t depth, uint32_t depth_max);
  // The buffers the ring may grow to: queue_depth_max within what the copy can use, except
  // where another part was sized for queue_depth (the digest's pool, the block digests,
  // --only-changed's read-backs).
  uint32_t DepthMax(uint32_t depth, uint64_t useful) const;

  // ---- copy_engine.cc: the copy ----
  SysError Loop(const ProgressFn& progress);
  SysError Conclude(const ProgressFn& progress);
  void StartSlots(double now, uint64_t rate, uint64_t* wait_ns);
  // Takes the buffers SetQueueDepth allowed into the ring.
  void GrowSlots();
  void StartSlot(Slot& slot);
  // The next range to start is a hole that needs no buffer of zeros (no I/O, no pacing).
  bool NextIsFreeHole() const { return extent_hole_[extent_index_] && !hole_needs_bytes_; }
  bool HasMoreWork() const { return !source_ended_ && extent_index_ < extents_.size(); }
  bool MoreToStart() const { return !stopping_ && halt_position_ == UINT64_MAX && HasMoreWork(); }
  void SubmitRead(Slot& slot, bool link);
  void SubmitPieceRead(Slot& slot);
  void SubmitWrite(Slot& slot, uint32_t target, WriteAction action);
  // Bytes the next write of the target's current run takes: the run's rest,
  // or one zero buffer's worth for a hole slot that has no buffer of zeros.
  uint32_t NextWriteLength(const Slot& slot, uint32_t target) const;
  bool WritesFromZeros(const Slot& slot) const { return slot.hole && !hole_needs_bytes_; }
  // --only-changed: read the slot's range back from a target, then keep only
  // the blocks that differ as that target's runs.
  void SubmitCompareRead(Slot& slot, uint32_t target);
  void OnCompareRead(Slot& slot, uint32_t target, int32_t result);
  void CompareWithTarget(Slot& slot, uint32_t target);
  void OnRead(Slot& slot, int32_t result);
  void OnPieceRead(Slot& slot, int32_t result);
  void OnLocatorStep(Slot& slot, BadBlockLocator::Step step, int error);
  void OnWrite(Slot& slot, uint32_t target, int32_t result);
  void ReadFailed(Slot& slot, int error, uint64_t offset);
  // Moves a slot on after any completion: continue a short read, write a
  // complete buffer, free the buffer when every target has it (or on stop).
  void Advance(Slot& slot);
  void AdvanceWrite(Slot& slot, uint32_t target);
  WriteAction ActionFor(const Slot& slot, const ZeroRun& run, uint32_t target) const;
  WriteAction DiscardAction(const Slot& slot, const ZeroRun& run, uint32_t target) const;
  WriteAction HoleZeroAction(const Slot& slot, const ZeroRun& run, uint32_t target) const;
  bool ZeroRunAligned(const Slot& slot, const ZeroRun& run, uint32_t target) const;
  void ZeroOpRefused(uint32_t target, IoKind kind, int32_t result);
  void Examine(Slot& slot);
  void FinishIfDone(Slot& slot);
  void Retire(Slot& slot);
  void WakeStreamWriter(uint32_t target);
  // A target's writes of one mode drained: the writes that waited for that go on.
  void WakeWaitingWriters(uint32_t target);
  void Fail(SysError error);
  // Stop at an unreadable block [position, position + length): everything
  // before it is still copied.
  void Halt(SysError error, uint64_t position, uint32_t length);
  bool WrittenThrough(const Slot& slot, uint32_t target) const;
  bool Halted(const Slot& slot) const { return stopping_ || slot.position >= halt_position_; }
  void StopStreams();
  // Stages working off this thread: any slot still with them; wait for one
  // to finish (at most wait_ns); take back the slots they finished.
  bool StagesBusy(uint64_t before) const;  // holding a slot that starts before `before`
  void WaitForStages(uint64_t wait_ns);
  void CollectStages();
  void AbortSilentPeers(double now);
  // Endpoints whose peer went silent past its limit give up on it (an NBD server: --nbd-timeout).
  void WatchPeers(double now);
  uint32_t LiveTargets() const;
  std::vector<Endpoint*> LiveTargetList() const;
  void WriteFailed(uint32_t target, SysError error);
  void FlushFailed(uint32_t target, const SysError& error);
  SysError FinishTargets();
  SysError MakeDurable();
  SysError Verify(const ProgressFn& progress);
  void EmitProgress(const ProgressFn& progress, bool paused, bool verifying = false, uint64_t verify_done = 0,
                    uint64_t verify_total = 0) const;
  void FillReport(const SysError& error);
  // Standard input/output given as a regular file or device: their shell descriptors end where dd's would.
  void LeaveSharedOffsets(const SysError& error);
  // seek= on a named FIFO target: refused before its open waits for a reader.
  SysError RefuseSeekOnFifo(const std::string& path, uint64_t offset_bytes) const;
  uint64_t Absolute(uint64_t position) const { return plan_.source_offset_bytes + position; }

  CopyPlan plan_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> paused_{false};
  std::atomic<uint64_t> rate_{0};
  std::atomic<uint32_t> depth_wanted_{0};
  std::atomic<uint64_t> bytes_done_public_{0};
  CopyReport* report_ = nullptr;

  std::unique_ptr<Endpoint> source_;
  std::vector<std::unique_ptr<Endpoint>> targets_;
  std::vector<uint8_t> dropped_;         // per target
  std::vector<uint8_t> punch_ok_;        // per target: zero runs may be punched
  std::vector<uint8_t> zero_range_ok_;   // per target: holes may be zeroed in place (write policy)
  std::vector<uint64_t> existing_end_;   // per target: below this it may hold old bytes (sparse_exact)
  std::vector<uint64_t> next_write_sequence_;  // per stream target: the slot whose write comes next
  std::vector<uint64_t> bytes_written_;  // per target: bytes it accepted
  WriteModeGate write_modes_;            // per target: O_DIRECT and page-cache writes never at once
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<BufferPool> compare_pool_;  // only_changed: one buffer per slot and target
  std::unique_ptr<BufferPool> zeros_;   // one buffer of zeros: a hole slot's writes where a target refused to zero it in place
  std::unique_ptr<IoDriver> driver_;
  std::unique_ptr<Hasher> hasher_;       // a digest on this thread (HashStage)
  // The workers of --hash's digest and of verify's per-block digests: one
  // pool for both (declared before stages_, so it outlives them).
  std::unique_ptr<HashPool> hash_pool_;
  uint32_t hash_threads_wanted_ = 0;     // DEVMOVE_HASH_THREADS; 0: one per CPU
  DigestStage* digest_stage_ = nullptr;  // or on the hash pool (in stages_)
  BlockDigestStage* block_digests_ = nullptr;  // verify with one read: what was read, per block (in stages_)
  std::unique_ptr<BehindVerifier> behind_;     // --verify=behind: targets read back while copying
  std::vector<std::unique_ptr<SlotStage>> stages_;
  bool zero_stage_ = false;
  std::unique_ptr<Checkpointer> checkpointer_;
  RatePacer pacer_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  bool link_ = false;
  bool source_stream_ = false;          // read strictly in order, one read at a time
  bool stream_reading_ = false;         // a stream source's current slot is still reading
  bool source_ended_ = false;           // a stream source returned end of data
  uint32_t scrape_block_ = 512;         // smallest piece an unreadable range is read in
  uint64_t length_bytes_ = 0;           // the domain: [0, length) relative to source_offset
  bool length_known_ = true;            // false: a stream source without a length
  std::vector<ByteRange> extents_;      // relative, sorted, merged, within the domain
  std::vector<uint8_t> extent_hole_;    // per extent: a hole of the source (never read)
  std::vector<uint8_t> hole_keep_;      // per target: holes stay holes (skipped)
  bool hole_needs_bytes_ = false;       // a hole passes a stage or some target as zeros in a buffer
  size_t extent_index_ = 0;
  uint64_t extent_done_ = 0;            // bytes of extents_[extent_index_] already started
  uint64_t planned_bytes_ = 0;
  uint64_t bytes_started_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t next_sequence_ = 0;          // start order of slots
  uint64_t bytes_completed_ = 0;        // written to every target
  uint64_t bad_bytes_ = 0;
  std::vector<ByteRange> bad_all_;      // relative, this run
  bool stopping_ = false;
  double stop_started_ = -1;    // when stopping_ was first seen by the loop
  bool peers_aborted_ = false;  // AbortSilentPeers gave up on them
  uint64_t halt_position_ = UINT64_MAX;
  uint32_t halt_length_ = 0;
  SysError first_error_;
  SysError halt_error_;
};

}  // namespace devmove
