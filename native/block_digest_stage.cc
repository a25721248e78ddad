#include "block_digest_stage.h"

#include <cassert>
#include <cstdlib>
#include <cstring>

#include "blake3_tree.h"
#include "xxhash_library.h"

namespace devmove {
namespace {

// The first 8 bytes at p as a big-endian number.
uint64_t BigEndian64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}

// BLAKE3 of the block, its first 128 bits as the two halves (big-endian, as printed).
Xxh128 Blake3Block(const blake3::Kernel& kernel, const uint8_t* data, size_t length) {
  Blake3Stream stream(kernel);
  stream.Update(data, length);
  uint8_t bytes[blake3::kDigestBytes];
  stream.Final(bytes);
  Xxh128 digest;
  digest.high64 = BigEndian64(bytes);
  digest.low64 = BigEndian64(bytes + 8);
  return digest;
}

}  // namespace

std::unique_ptr<BlockDigestStage> BlockDigestStage::Create(const Config& config, HashPool& pool, SysError* error) {
  assert(config.block_bytes > 0 && config.slots_max >= 1);
  std::unique_ptr<BlockDigestStage> stage(new BlockDigestStage(config, pool));
  *error = stage->Start();
  if (error->failed()) return nullptr;
  return stage;
}

BlockDigestStage::~BlockDigestStage() { digests_.reset(); }

SysError BlockDigestStage::Start() {
  const char* wanted = std::getenv("DEVMOVE_VERIFY_DIGEST");
  SysError error;
  std::shared_ptr<const XxhashLibrary> library;
  if (wanted == nullptr || std::strcmp(wanted, "blake3") != 0) {
    library = XxhashLibrary::Load(XxhashLibrary::kDefaultName, &error);  // a missing library is not an error here
  }
  if (library) {
    algorithm_ = "xxh3-128";
    hash_ = [library](const uint8_t* data, size_t length) { return library->Hash128(data, length); };
  } else {
    algorithm_ = "blake3-128";
    const blake3::Kernel* kernel = &blake3::BestKernel();
    hash_ = [kernel](const uint8_t* data, size_t length) { return Blake3Block(*kernel, data, length); };
  }
  const uint64_t blocks = (config_.input_bytes + config_.block_bytes - 1) / config_.block_bytes;
  table_ = DigestTable::Create(blocks, config_.memory_max_bytes, config_.spill_dir, &error);
  if (!table_) return error;
  ParallelDigest::Limits limits;
  limits.pieces_max = config_.slots_max;
  limits.tasks_per_piece = std::min<uint32_t>(ParallelDigest::Limits::kTasksPerPieceMax, std::max(4u, pool_->threads()));
  digests_ = BlockDigests::Create(*pool_, hash_, config_.block_bytes, config_.input_bytes, table_.get(), limits, &error);
  if (!digests_) return error;
  digest_ = digests_.get();
  HoldSlots(config_.slots_max);
  zeros_.assign(config_.block_bytes, 0);
  zero_block_digest_ = hash_(zeros_.data(), zeros_.size());
  return {};
}

void BlockDigestStage::OnHole(const Slot& slot) {
  uint64_t first = 0;
  uint64_t end = 0;
  digests_->WholeBlocks(slot.position, slot.length, &first, &end);
  for (uint64_t b = first; b < end; ++b) {
    const uint64_t length = std::min<uint64_t>(config_.block_bytes, config_.input_bytes - b * config_.block_bytes);
    table_->Put(b, length == config_.block_bytes ? zero_block_digest_ : hash_(zeros_.data(), length));
  }
}

void BlockDigestStage::OnRead(Slot& slot, std::vector<Slot*>* released) {
  (void)released;  // released later, by Collect()
  assert(slot.length <= slot.capacity);
  uint64_t first = 0;
  uint64_t end = 0;
  digests_->WholeBlocks(slot.position, slot.length, &first, &end);
  if (first == end) return;  // no whole block in this slot: verify reads the source for it
  Hand(slot, slot.position, slot.buffer, slot.length);
}

void BlockDigestStage::Finish() { digests_->Drain(); }

}  // namespace devmove
