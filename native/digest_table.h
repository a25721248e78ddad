// The per-block digests of what a copy read, kept so that --verify can read
// only the targets and compare (verify with one read). 16 bytes (XXH3-128)
// per block: a 2 TiB copy in 512 KiB blocks needs 64 MiB.
//
// Bounded memory for any copy size: the digests live in pages of
// kEntriesPerPage; at most memory_max_bytes of pages stay in memory, the
// others are written to an unlinked temporary file (O_TMPFILE in spill_dir,
// which should be on disk: /var/tmp by default, not a tmpfs) and read back
// when needed. Pages are evicted least recently used first; the copy puts
// digests roughly in order and verify reads them in order, so each page is
// normally written once and read once. Which blocks have a digest is a bit
// per block, always in memory (a 16 TiB copy in 512 KiB blocks: 4 MiB).
//
// Thread-safe: the hashing pool's workers Put() while the I/O thread may Get().
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "parallel_digest.h"
#include "sys_error.h"
#include "xxhash_library.h"

namespace devmove {

class DigestTable final : public BlockDigestSink {
 public:
  static constexpr uint32_t kEntriesPerPage = 4096;  // 64 KiB of digests
  static constexpr uint64_t kPageBytes = uint64_t{kEntriesPerPage} * sizeof(Xxh128);
  // At least two pages in memory, whatever the limit says: one being filled, one being read.
  static constexpr uint64_t kMemoryMinBytes = 2 * kPageBytes;
  // A limit on everything: 2^40 blocks is 16 PiB at 16 KiB per block.
  static constexpr uint64_t kBlocksMax = uint64_t{1} << 40;

  // blocks: how many blocks the copy has. Fails only when the spill file
  // cannot be made (the error names spill_dir) — and only when it is needed.
  static std::unique_ptr<DigestTable> Create(uint64_t blocks, uint64_t memory_max_bytes, const std::string& spill_dir,
                                             SysError* error);
  ~DigestTable();
  DigestTable(const DigestTable&) = delete;
  DigestTable& operator=(const DigestTable&) = delete;

  // Records block's digest (a later Put for the same block replaces it).
  void Put(uint64_t block, const Xxh128& digest) override;
  // The digest of a block, if one was put. false also when the spill file
  // failed (error() then says why).
  bool Get(uint64_t block, Xxh128* digest);
  bool Has(uint64_t block) const;

  uint64_t blocks() const { return blocks_; }
  // The first spill file error, if any (a Put that could not be kept is lost: Get says false).
  SysError error() const;
  // For reports and tests.
  bool spills() const { return spill_fd_ >= 0; }
  uint64_t pages_in_memory() const;
  uint64_t pages_written() const;
  uint64_t pages_read() const;

 private:
  struct Page {
    std::vector<Xxh128> entries;
    bool dirty = false;
    std::list<uint64_t>::iterator lru;  // position in lru_ (front: most recent)
  };

  DigestTable(uint64_t blocks, uint64_t pages_max) : blocks_(blocks), pages_max_(pages_max) {}
  Page* PageLocked(uint64_t page_index);
  bool EvictOneLocked();
  void FailLocked(const SysError& error);

  const uint64_t blocks_;
  const uint64_t pages_max_;
  int spill_fd_ = -1;
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, std::unique_ptr<Page>> pages_;
  std::list<uint64_t> lru_;
  std::vector<uint64_t> present_;   // one bit per block
  std::vector<uint64_t> on_disk_;   // one bit per page: written to the spill file
  uint64_t pages_written_ = 0;
  uint64_t pages_read_ = 0;
  SysError error_;
};

}  // namespace devmove
