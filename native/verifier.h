// Verify after the copy: each target is read again through the copy's own
// I/O driver and endpoints (O_DIRECT wherever the range allows, so the page
// cache cannot answer for the device; what has to go through the cache is
// dropped from it first) and compared block by block. One pair of reads per
// buffer of the ring, several pairs in flight.
//
// With the copy's per-block digests (verify with one read,
// block_digest_stage.h), a buffer whose blocks all have a digest is checked
// against them and the source is not read; with the BLAKE3 fallback its
// blocks are hashed on the engine's hash pool (as the copy's were), not on
// the I/O thread, which one core's BLAKE3 rate would hold back.
// Buffers are cut on the digest
// blocks' grid, so the source is read only for blocks without a digest (a
// range's partial edge blocks, a block split between two of the copy's
// buffers, ranges an earlier run copied) and for a buffer whose digest
// differs, so that a mismatch names its first differing byte exactly as the
// strict pass does. Without digests (strict mode) every buffer reads both sides.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "block_digest_stage.h"
#include "buffer_pool.h"
#include "copy_plan.h"
#include "endpoint.h"
#include "io_driver.h"

namespace devmove {

class Verifier final : public IoCompletion {
 public:
  // Bytes compared so far and in all; called at most every progress interval.
  using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

  struct Inputs {
    IoDriver* driver = nullptr;
    Endpoint* source = nullptr;
    std::vector<Endpoint*> targets;     // null: dropped, not compared
    BufferPool* source_buffers = nullptr;  // the copy's ring, reused for the source side
    uint32_t compare_block_bytes = 512;
    uint64_t absolute_base = 0;         // source offset of the copy's position 0
    std::vector<ByteRange> ranges;      // relative positions to compare, normalized
    const CancelFlag* cancel = nullptr;
    double progress_interval_seconds = 0.1;
    BlockDigestStage* digests = nullptr;  // null: strict, the source is read again
    uint64_t length_bytes = 0;            // the copy's length (its last digest block may be short)
  };

  explicit Verifier(Inputs inputs);
  // Compares every live target in turn. A read error or a cancel is returned;
  // differences are counted in the report (the caller turns them into EILSEQ).
  SysError Run(const ProgressFn& progress, VerifyReport* report);
  void Complete(IoOp& op) override;

 private:
  enum Side { kSource = 0, kTarget = 1 };
  struct Pair {
    IoOp ops[2];
    bool busy = false;
    uint64_t position = 0;
    uint32_t length = 0;
    uint32_t done[2] = {0, 0};
    bool wants_source = true;   // false: checked against the copy's digests alone
    int64_t digest_mismatch_at = -1;  // absolute offset of the first block whose digest differs
  };

  // The digests of a target's blocks, computed on the hash pool, each
  // compared with the copy's there: the blocks that differ (or have no
  // digest any more: a spill file error) are kept until their pair is reaped.
  class DigestCheck final : public BlockDigestSink {
   public:
    explicit DigestCheck(DigestTable& table) : table_(table) {}
    void Put(uint64_t block, const Xxh128& digest) override;
    // The lowest block of [first, end) that differed, if any; forgets those.
    bool TakeMismatch(uint64_t first, uint64_t end, uint64_t* lowest);

   private:
    DigestTable& table_;
    std::mutex mutex_;
    std::vector<uint64_t> mismatched_;  // blocks of pairs still in the pool, any order
  };

  SysError StartChecks();
  SysError CompareTarget(uint32_t target, const ProgressFn& progress);
  SysError Wait(bool checking);
  void StartPairs();
  void Submit(Pair& pair, Side side);
  void Compared(Pair& pair);
  void ReadSource(Pair& pair);
  uint32_t NextChunk(uint64_t position, uint64_t most, bool* covered) const;
  bool DigestsMatch(Pair& pair);
  void HandToChecks(Pair& pair);
  void CollectChecks();
  bool Compare(Pair& pair);
  void CountMismatch(int64_t offset);
  void Fail(SysError error);

  Inputs in_;
  std::unique_ptr<BufferPool> target_buffers_;
  // Declared after the buffers: destroyed first, waiting for the workers that read them.
  std::unique_ptr<DigestCheck> check_sink_;
  std::unique_ptr<BlockDigests> checks_;
  std::vector<uint64_t> tickets_;  // reaped from checks_
  std::vector<Pair> pairs_;
  VerifyReport* report_ = nullptr;
  uint32_t target_ = 0;
  size_t range_index_ = 0;
  uint64_t range_done_ = 0;
  uint64_t compared_all_ = 0;
  bool source_cache_dropped_ = false;
  SysError failure_;
};

}  // namespace devmove
