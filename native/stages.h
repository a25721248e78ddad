// The slot pipeline's stages: every buffer passes through each of them once
// its read is complete, before its writes are decided. Today: the zero check
// (which parts of the buffer are all zeros, at a granularity of its own —
// dd's obs= for conv=sparse) and the digest of the data read (in source
// order), the per-block digests of verify with one read (block_digest_stage.h).
// Next: decompression.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "slot.h"

namespace devmove {

class SlotStage {
 public:
  virtual ~SlotStage() = default;
  virtual const char* name() const = 0;
  // The slot's data is complete (called in completion order, once per slot).
  // `released`: slots this call made free to retire.
  virtual void OnRead(Slot& slot, std::vector<Slot*>* released) = 0;
  // Whether the slot's buffer must stay until this stage is done with it.
  virtual bool Holds(const Slot& slot) const = 0;
  // Whether a hole of the source (never read) must pass through this stage
  // as a buffer of zeros; the engine then zeroes the buffer for it.
  virtual bool NeedsHoleBytes() const { return true; }
  // A hole passed without bytes (NeedsHoleBytes() false): its range, for a
  // stage that records something about it all the same.
  virtual void OnHole(const Slot& slot) { (void)slot; }
  // Stages that work off the engine's thread (digest_stage.h): whether a
  // slot that starts before `before` is still in its hands; a descriptor
  // readable when some are done; and Collect(), which hands those back
  // (never blocks).
  virtual bool Busy(uint64_t before) const { (void)before; return false; }
  virtual int wake_fd() const { return -1; }
  virtual void Collect(std::vector<Slot*>* released) { (void)released; }
};

// Splits a buffer into runs of all-zero and data blocks of `block_bytes`,
// counted from the slot's position (so blocks line up with dd's output
// blocks when the copy starts at one).
class ZeroCheckStage final : public SlotStage {
 public:
  explicit ZeroCheckStage(uint32_t block_bytes);
  const char* name() const override { return "zero-check"; }
  void OnRead(Slot& slot, std::vector<Slot*>* released) override;
  bool Holds(const Slot& slot) const override { (void)slot; return false; }
  bool NeedsHoleBytes() const override { return false; }  // a hole is one zero run already

  static bool IsAllZero(const uint8_t* data, size_t length);

 private:
  uint32_t block_bytes_;
};

// Feeds the data read to a digest in source order: buffers complete out of
// order, so a buffer is hashed once every buffer started before it has been,
// and held until then.
class HashStage final : public SlotStage {
 public:
  using UpdateFn = std::function<void(const uint8_t* data, size_t length)>;
  explicit HashStage(UpdateFn update) : update_(std::move(update)) {}
  const char* name() const override { return "hash"; }
  void OnRead(Slot& slot, std::vector<Slot*>* released) override;
  bool Holds(const Slot& slot) const override { return slot.sequence >= next_sequence_; }
  uint64_t hashed_bytes() const { return hashed_bytes_; }

 private:
  UpdateFn update_;
  std::map<uint64_t, Slot*> waiting_;  // by sequence; at most one entry per buffer
  uint64_t next_sequence_ = 0;
  uint64_t hashed_bytes_ = 0;
};

}  // namespace devmove
