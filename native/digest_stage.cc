#include "digest_stage.h"

#include <errno.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>

#include "blake3.h"
#include "hasher.h"

namespace devmove {

std::unique_ptr<DigestStage> DigestStage::Create(const std::string& algorithm, HashPool& pool, uint32_t slots_max,
                                                 SysError* error) {
  std::unique_ptr<DigestStage> stage(new DigestStage(pool));
  *error = stage->Start(algorithm, slots_max);
  if (error->failed()) return nullptr;
  return stage;
}

DigestStage::DigestStage(HashPool& pool) : pool_(&pool) {}

DigestStage::~DigestStage() {
  // Buffers still in the digest when the copy stopped: wait until no worker
  // touches them, before the engine frees its buffers.
  blake3_.reset();
  serial_.reset();
}

SysError DigestStage::Start(const std::string& algorithm, uint32_t slots_max) {
  assert(slots_max >= 1 && slots_max <= ParallelDigest::Limits::kPiecesMax);
  algorithm_ = algorithm;
  SysError error;
  ParallelDigest::Limits limits;
  limits.pieces_max = slots_max;
  // Enough tasks per buffer to use every worker on one buffer.
  limits.tasks_per_piece = std::min<uint32_t>(ParallelDigest::Limits::kTasksPerPieceMax, std::max(4u, pool_->threads()));
  HoldSlots(slots_max);
  if (algorithm == "blake3") {
    const char* wanted = std::getenv("DEVMOVE_BLAKE3_KERNEL");
    const blake3::Kernel* kernel = blake3::FindKernel(wanted ? wanted : "auto");
    if (kernel == nullptr) {
      return SysError::Make(EINVAL, "hash", {}, -1,
                            std::string("DEVMOVE_BLAKE3_KERNEL=") + wanted +
                                ": not a BLAKE3 kernel this CPU runs (portable, avx2, avx512, auto)");
    }
    implementation_ = kernel->name;
    blake3_ = Blake3ParallelDigest::Create(*pool_, *kernel, limits, &error);
    digest_ = blake3_.get();
  } else {
    hasher_ = Hasher::Create(algorithm, &error);
    if (!hasher_) return error;
    implementation_ = hasher_->implementation();
    Hasher* hasher = hasher_.get();
    serial_ = SerialDigest::Create(
        *pool_, [hasher](const uint8_t* data, size_t length) { hasher->Update(data, length); }, limits, &error);
    digest_ = serial_.get();
  }
  return digest_ ? SysError() : error;
}

void DigestStage::OnRead(Slot& slot, std::vector<Slot*>* released) {
  (void)released;  // released later, by Collect()
  assert(slot.length <= slot.capacity);
  if (slot.length == 0) return;
  Hand(slot, slot.position, slot.buffer, slot.length);
  bytes_ = std::max<uint64_t>(bytes_, slot.position + slot.length);
}

void PoolDigestStage::HoldSlots(uint32_t slots_max) {
  held_.assign(slots_max, nullptr);
  tickets_.reserve(slots_max);
}

void PoolDigestStage::Hand(Slot& slot, uint64_t position, const uint8_t* data, uint32_t length) {
  assert(slot.index < held_.size() && held_[slot.index] == nullptr);
  // Never refused: at most one piece per slot, and the limit is the ring's depth.
  const bool taken = digest_->Submit(position, data, length, slot.index);
  assert(taken);
  (void)taken;
  held_[slot.index] = &slot;
}

bool PoolDigestStage::Busy(uint64_t before) const {
  if (digest_->pieces_in_use() == 0) return false;
  // Bounded by the ring's depth.
  for (const Slot* slot : held_) {
    if (slot != nullptr && slot->position < before) return true;
  }
  // Only buffers past `before` are held; a finished one may still wait in Reap().
  return false;
}

void PoolDigestStage::Collect(std::vector<Slot*>* released) {
  tickets_.clear();
  digest_->Reap(&tickets_);
  for (uint64_t index : tickets_) {
    assert(index < held_.size() && held_[index] != nullptr);
    released->push_back(held_[index]);
    held_[index] = nullptr;
  }
}

bool DigestStage::Finish(std::string* hex, std::string* why) {
  if (blake3_) return blake3_->Finish(bytes_, hex, why);
  if (!serial_->Finish(bytes_, why)) return false;
  *hex = hasher_->FinalHex();
  return true;
}

}  // namespace devmove
