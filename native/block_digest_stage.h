// Verify with one read: while copying, a 128-bit digest of every block of
// what was read goes into a DigestTable (bounded memory, spilling to a
// file), computed on the hash pool's workers like --hash's digest
// (digest_stage.h); the verify pass then reads only the targets and compares
// their blocks' digests with these (verifier.h).
//
// The digest is XXH3-128 from libxxhash (loaded at run time) where it is
// installed, else BLAKE3 (built in) cut to its first 128 bits: BLAKE3 is
// always there, is a published hash an existing tool (b3sum) checks, and
// with AVX2 still hashes faster than the ram pair's one-core read rate
// (~4 GB/s) — the fallback is named in the report (verify.digest), never
// silent. DEVMOVE_VERIFY_DIGEST=blake3 asks for it even where libxxhash is
// installed (tests, benchmarks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "digest_stage.h"
#include "digest_table.h"

namespace devmove {

class BlockDigestStage final : public PoolDigestStage {
 public:
  struct Config {
    uint32_t block_bytes = 0;         // the digest's granularity
    uint64_t input_bytes = 0;         // the copy's length: its last block may be short
    uint64_t memory_max_bytes = 0;    // digests kept in memory; the rest spill to a file
    std::string spill_dir;
    uint32_t slots_max = 0;           // the ring's depth
  };
  // pool: the engine's hash pool (shared with --hash's digest); it must outlive this stage.
  static std::unique_ptr<BlockDigestStage> Create(const Config& config, HashPool& pool, SysError* error);
  ~BlockDigestStage() override;

  const char* name() const override { return "block-digest"; }
  // A hole (never read) is hashed as zeros here, without a buffer.
  bool NeedsHoleBytes() const override { return false; }
  void OnRead(Slot& slot, std::vector<Slot*>* released) override;
  void OnHole(const Slot& slot) override;

  // Waits for the workers: every digest handed over is in the table.
  void Finish();
  DigestTable& table() { return *table_; }
  uint32_t block_bytes() const { return config_.block_bytes; }
  // 'xxh3-128' or 'blake3-128'.
  const std::string& algorithm() const { return algorithm_; }
  // The digest of length bytes (for the verify pass).
  Xxh128 Hash(const uint8_t* data, size_t length) const { return hash_(data, length); }
  const BlockDigests::BlockHashFn& hash_fn() const { return hash_; }
  // The engine's hash pool: the verify pass hashes the targets' blocks on it too.
  HashPool& pool() const { return *pool_; }
  uint64_t input_bytes() const { return config_.input_bytes; }
  uint32_t slots_max() const { return config_.slots_max; }

 private:
  BlockDigestStage(const Config& config, HashPool& pool) : config_(config), pool_(&pool) {}
  SysError Start();

  Config config_;
  std::string algorithm_;
  BlockDigests::BlockHashFn hash_;
  std::vector<uint8_t> zeros_;  // one block of zeros: a hole's digest
  Xxh128 zero_block_digest_;
  HashPool* pool_;  // the engine's; outlives this stage
  // Destroyed in reverse: the digests drain first; the table outlives them.
  std::unique_ptr<DigestTable> table_;
  std::unique_ptr<BlockDigests> digests_;
};

}  // namespace devmove
