// The digest of the bytes read (--hash), computed on the hash pool's worker
// threads instead of the engine's I/O thread: a slot's buffer is handed to
// the digest when its read completes and held (Holds()) until a worker is
// done with it, while the I/O thread goes on reading and writing other
// buffers. BLAKE3 hashes a buffer's subtrees on every worker at once and
// merges them in source order (blake3_tree.h); an OpenSSL digest must see
// the bytes in order, so it runs on one worker at a time (SerialDigest) —
// still off the I/O thread, so a copy runs at min(device, one core's rate)
// instead of the sum of both times.
//
// Positions are the copy's: the slots must cover [0, n) without gaps (no
// extents plan; holes pass as zeros), which SetupStages() checks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hash_pool.h"
#include "parallel_digest.h"
#include "stages.h"
#include "sys_error.h"

namespace devmove {

class Hasher;

// A stage whose work runs on the hash pool: a slot handed to the digest is
// held until a worker is done with it, and handed back by Collect().
class PoolDigestStage : public SlotStage {
 public:
  bool Holds(const Slot& slot) const override { return slot.index < held_.size() && held_[slot.index] != nullptr; }
  bool Busy(uint64_t before) const override;
  int wake_fd() const override { return digest_->wake_fd(); }
  void Collect(std::vector<Slot*>* released) override;

 protected:
  void HoldSlots(uint32_t slots_max);
  // Hands [position, position + length) of the slot's buffer to digest_; the slot is held until done.
  void Hand(Slot& slot, uint64_t position, const uint8_t* data, uint32_t length);

  ParallelDigest* digest_ = nullptr;

 private:
  std::vector<Slot*> held_;  // by slot index: handed to the digest, not yet collected
  std::vector<uint64_t> tickets_;
};

class DigestStage final : public PoolDigestStage {
 public:
  // algorithm: 'blake3' or an OpenSSL digest name. pool: the engine's hash
  // pool (shared with other stages; it must outlive this stage). slots_max:
  // the ring's depth (every slot may be in the digest at once).
  static std::unique_ptr<DigestStage> Create(const std::string& algorithm, HashPool& pool, uint32_t slots_max,
                                             SysError* error);
  ~DigestStage() override;

  const char* name() const override { return "digest"; }
  void OnRead(Slot& slot, std::vector<Slot*>* released) override;

  // Waits for the workers; the hex digest of [0, bytes handed over), or false and why.
  bool Finish(std::string* hex, std::string* why);
  const std::string& algorithm() const { return algorithm_; }
  // 'avx512' | 'avx2' | 'portable' (BLAKE3's kernel) or 'openssl'.
  const std::string& implementation() const { return implementation_; }
  uint32_t threads() const { return pool_->threads(); }

 private:
  explicit DigestStage(HashPool& pool);
  SysError Start(const std::string& algorithm, uint32_t slots_max);

  std::string algorithm_;
  std::string implementation_;
  HashPool* pool_;  // the engine's; outlives this stage
  // Destroyed in reverse: the digests drain first, then the hasher they feed.
  std::unique_ptr<Hasher> hasher_;
  std::unique_ptr<Blake3ParallelDigest> blake3_;
  std::unique_ptr<SerialDigest> serial_;
  uint64_t bytes_ = 0;       // end of the input handed over
};

}  // namespace devmove
