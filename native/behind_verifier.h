// Verify behind the copy (--verify=behind): a range is read back from each
// target as soon as every target has it (the engine retires its buffer),
// while the copy goes on, and its blocks' digests are compared with the
// copy's per-block digests of what it read (block_digest_stage.h). The
// reads share the copy's I/O driver and thread, with a small ring of their
// own buffers, so on a device that is not saturated by the copy they cost
// little time.
//
// It only ever confirms: a range is marked verified on a target when every
// digest block of it read back equal. Everything else — a target read with
// the page cache in the way (no O_DIRECT descriptor, an offset off the 4 KiB
// grid), a block without a digest, a short last block, a read error, a
// digest that differs — is left to the verify pass after the copy
// (verifier.h), which reads it again and gives the verdict, naming the first
// differing byte or the read's error exactly as it always does.
//
// What it does not see: a block changed on the target by somebody else
// after it was read back here (the after-copy pass would). That is the
// trade the option names.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "block_digest_stage.h"
#include "buffer_pool.h"
#include "endpoint.h"
#include "io_driver.h"
#include "ranges.h"

namespace devmove {

class BehindVerifier final : public IoCompletion {
 public:
  // O_DIRECT reads need whole pages here: the buffers' alignment.
  static constexpr uint64_t kReadAlignment = BufferPool::kAlignment;

  struct Inputs {
    IoDriver* driver = nullptr;
    std::vector<Endpoint*> targets;        // every target of the copy
    const std::vector<uint8_t>* dropped = nullptr;  // per target: dropped by the copy (not read any more)
    BlockDigestStage* digests = nullptr;   // the copy's per-block digests
    uint64_t length_bytes = 0;             // the copy's length
    uint32_t buffer_bytes = 0;             // the copy's buffer size: the most one read asks
    uint32_t depth = 0;                    // reads in flight at most
  };
  static std::unique_ptr<BehindVerifier> Create(Inputs inputs, SysError* error);

  // A range (relative) every live target now holds: queued to be read back.
  void Add(const ByteRange& relative);
  // Starts reads while buffers are free and ranges are queued.
  void Pump();
  // Reads in flight.
  uint32_t in_flight() const { return in_flight_; }
  // Ranges (relative) verified on every target that is live now: the
  // after-copy pass leaves them out.
  std::vector<ByteRange> VerifiedOnAll() const;

  void Complete(IoOp& op) override;

 private:
  struct Read {
    IoOp op;
    bool busy = false;
    uint32_t target = 0;
    uint64_t position = 0;  // relative
    uint32_t length = 0;
    uint32_t done = 0;
  };

  explicit BehindVerifier(Inputs inputs) : in_(std::move(inputs)) {}
  // Whether this target's reads go around the page cache on the 4 KiB grid.
  bool Readable(uint32_t target) const;
  // The next piece to read from queued ranges: whole digest blocks that all
  // have a digest; pieces that cannot be verified here are dropped (left to
  // the after-copy pass). false when nothing is queued.
  bool NextPiece(uint64_t* position, uint32_t* length);
  void Submit(Read& read);
  void Compared(Read& read);

  Inputs in_;
  std::unique_ptr<BufferPool> buffers_;
  std::vector<Read> reads_;            // one per buffer
  std::vector<uint32_t> free_;         // indices into reads_
  std::vector<uint8_t> readable_;      // per target
  std::deque<ByteRange> queued_;       // relative, retired, not yet cut into reads
  // The piece being read from every readable target: the next read takes
  // the next target that still needs it.
  uint64_t piece_position_ = 0;
  uint32_t piece_length_ = 0;
  uint32_t piece_next_target_ = 0;
  uint32_t in_flight_ = 0;
  std::vector<std::vector<ByteRange>> verified_;  // per target, relative
};

}  // namespace devmove
