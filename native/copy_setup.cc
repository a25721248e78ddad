// CopyEngine, before the first I/O: open and check the endpoints, plan what
// to copy, size the buffer ring, choose and set up the I/O driver. Every
// refusal happens here, before anything is written; targets are cut (dd's
// truncation) only once every check has passed.
#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>

#include "copy_engine.h"
#include "block_digest_stage.h"
#include "digest_stage.h"
#include "hasher.h"
#include "thread_driver.h"
#include "uring_driver.h"

namespace devmove {
namespace {

// Data/hole pieces a source's holes are planned in, at most (then the rest is read).
constexpr size_t kDataExtentPiecesMax = 1u << 20;

uint64_t RoundUp(uint64_t value, uint64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

std::string Bytes(uint64_t n) { return std::to_string(n) + " bytes"; }

// The domain of a stream source copied to its end: effectively unbounded.
constexpr uint64_t kUnboundedBytes = 1ull << 62;

FileReport Describe(const Endpoint& e) {
  FileReport r;
  r.path = e.path();
  r.kind = e.kind_name();
  r.size_bytes = e.size_bytes();
  r.size_known = e.caps().size_known;
  r.sequential = !e.caps().seekable;
  r.logical_block_bytes = e.caps().logical_block_bytes;
  r.physical_block_bytes = e.caps().physical_block_bytes;
  r.direct = e.direct();
  r.direct_note = e.direct_note();
  r.created = e.created();
  return r;
}

// O_DIRECT required (iflag=direct / oflag=direct): every I/O must be aligned.
SysError RequireDirectAlignment(const Endpoint& e, DirectMode mode, uint32_t block_bytes, uint64_t offset,
                                const char* offset_name) {
  if (mode != DirectMode::kAlways) return {};
  const uint32_t align = e.caps().direct_alignment;
  assert(align > 0);  // the endpoint refused to open without O_DIRECT
  if (block_bytes % align != 0)
    return SysError::Make(EINVAL, "open", e.path(), -1,
                          "direct I/O needs the block size (" + std::to_string(block_bytes) +
                              ") to be a multiple of the logical block size (" + std::to_string(align) + ")");
  if (offset % align != 0)
    return SysError::Make(EINVAL, "open", e.path(), -1,
                          std::string("direct I/O needs the ") + offset_name + " (" + std::to_string(offset) +
                              ") to be a multiple of the logical block size (" + std::to_string(align) + ")");
  return {};
}

}  // namespace

SysError CopyEngine::Prepare(const CheckpointFn& checkpoint) {
  assert(!plan_.targets.empty() && plan_.targets.size() <= CopyPlan::kTargetsMax);
  assert(plan_.queue_depth >= 1 && plan_.queue_depth <= CopyPlan::kQueueDepthMax);
  assert(plan_.block_bytes >= 1 && plan_.block_bytes <= CopyPlan::kBlockBytesMax);
  SysError error = OpenSource();
  if (!error.failed()) error = PlanDomain();
  if (!error.failed()) error = OpenTargets();
  if (!error.failed()) error = RefuseWhatStreamsCannotDo();
  if (!error.failed()) error = CutTargets();
  if (error.failed()) return error;
  PlanExtents();
  error = PlanHoles();
  if (!error.failed()) error = SetupStages();
  if (error.failed()) return error;
  checkpointer_ = std::make_unique<Checkpointer>(
      plan_.source_offset_bytes, plan_.checkpoint_interval_ms, plan_.targets.front().open.durability, checkpoint,
      [this](uint32_t target, const SysError& e) { FlushFailed(target, e); });
  report_->block_bytes = plan_.block_bytes;
  report_->queue_depth = plan_.queue_depth;
  report_->only_changed = plan_.only_changed;
  return SetupDriver();
}

SysError CopyEngine::OpenSource() {
  SysError error;
  source_ = OpenEndpoint(plan_.source, cancel_requested_, &error);
  if (!source_) return error;
  report_->source = Describe(*source_);
  source_stream_ = !source_->caps().seekable;
  scrape_block_ = std::max<uint32_t>(512, source_->caps().logical_block_bytes);
  if (source_stream_) {
    // dd's skip= on a pipe: read and thrown away.
    error = source_->Advance(plan_.source_offset_bytes, cancel_requested_);
    if (error.failed()) return error;
  } else {
    // Added to where the endpoint starts (standard input continues from its position).
    source_->set_base_offset(source_->base_offset() + plan_.source_offset_bytes);
  }
  return RequireDirectAlignment(*source_, plan_.source.direct, plan_.block_bytes, plan_.source_offset_bytes,
                                "source offset");
}

SysError CopyEngine::PlanDomain() {
  if (!source_->caps().size_known) {
    // A stream: as long as asked, or to its end.
    length_bytes_ = plan_.has_length ? plan_.length_bytes : kUnboundedBytes;
    length_known_ = plan_.has_length && !plan_.length_is_max;
    report_->domain_offset = plan_.source_offset_bytes;
    return {};
  }
  const uint64_t source_size = source_->size_bytes();
  const uint64_t start = source_->base_offset();  // the plan's offset (+ standard input's position)
  if (start > source_size) {
    return SysError::Make(EINVAL, "read", source_->path(), -1,
                          "source offset " + Bytes(start) + " is past the end of the source (" + Bytes(source_size) + ")");
  }
  const uint64_t available = source_size - start;
  length_bytes_ = available;
  if (plan_.has_length) {
    if (plan_.length_bytes > available && !plan_.length_is_max) {
      return SysError::Make(EINVAL, "read", source_->path(), -1,
                            "length " + Bytes(plan_.length_bytes) + " runs past the end of the source: only " +
                                Bytes(available) + " after offset " + std::to_string(start));
    }
    length_bytes_ = std::min(plan_.length_bytes, available);
  }
  report_->domain_offset = plan_.source_offset_bytes;
  report_->domain_length = length_bytes_;
  return {};
}

SysError CopyEngine::OpenTargets() {
  for (size_t i = 0; i < plan_.targets.size(); ++i) {
    OpenRequest open = plan_.targets[i].open;
    open.read_back = open.read_back || plan_.verify || plan_.only_changed;
    SysError error = RefuseSeekOnFifo(open.path, plan_.targets[i].offset_bytes);
    if (error.failed()) return error;
    std::unique_ptr<Endpoint> opened = OpenEndpoint(open, cancel_requested_, &error);
    if (!opened && plan_.only_changed && (error.errno_value == EACCES || error.errno_value == EPERM)) {
      error.message = "--only-changed reads the target back to compare, and it cannot be opened for reading and "
                      "writing: " + std::string(std::strerror(error.errno_value));
    }
    if (!opened) return error;
    // Owned by targets_ from here on: a refusal below removes a file it created (Run()).
    targets_.push_back(std::move(opened));
    error = CheckTarget(i);
    if (!error.failed()) error = RefuseWhatOnlyChangedCannotDo(i);
    if (error.failed()) return error;
  }
  dropped_.assign(targets_.size(), 0);
  bytes_written_.assign(targets_.size(), 0);
  next_write_sequence_.assign(targets_.size(), 0);
  write_modes_.Reset(targets_.size());
  for (const auto& t : targets_) report_->targets.push_back(Describe(*t));
  return {};
}

SysError CopyEngine::RefuseSeekOnFifo(const std::string& path, uint64_t offset_bytes) const {
  // seek= on a stream fails (CheckTarget), but a FIFO's open waits for a
  // reader first, which may never come (dd opens it read-write and reads
  // seek= blocks out of it instead): fail before the wait.
  struct stat st {};
  if (offset_bytes == 0 || stat(path.c_str(), &st) != 0 || !S_ISFIFO(st.st_mode)) return {};
  return SysError::Make(ESPIPE, "lseek", path, -1, "cannot seek on a pipe (seek= needs a seekable target)");
}

SysError CopyEngine::CheckTarget(size_t i) {
  const TargetPlan& plan = plan_.targets[i];
  Endpoint& target = *targets_[i];
  SysError error = CheckSameStorage(i);
  if (error.failed()) return error;
  if (!target.caps().seekable) {
    // A stream cannot seek (dd: "cannot seek: Illegal seek").
    return target.Advance(plan.offset_bytes, cancel_requested_);
  }
  target.set_base_offset(target.base_offset() + plan.offset_bytes);
  error = RequireDirectAlignment(target, plan.open.direct, plan_.block_bytes, plan.offset_bytes, "target offset");
  if (error.failed()) return error;
  const uint64_t end = target.base_offset() + length_bytes_;
  if (!target.caps().grows && target.caps().size_known && length_known_ && end > target.size_bytes()) {
    return SysError::Make(ENOSPC, "write", target.path(), -1,
                          "target too small: the copy needs " + Bytes(end) + " (offset " +
                              std::to_string(plan.offset_bytes) + " + length " + std::to_string(length_bytes_) +
                              ") but the device has " + Bytes(target.size_bytes()));
  }
  return {};
}

SysError CopyEngine::CheckSameStorage(size_t i) {
  const TargetPlan& plan = plan_.targets[i];
  const Endpoint& target = *targets_[i];
  const StorageIdentity id = target.identity();
  if (id.kind == EndpointKind::kBlockDevice && id.Same(source_->identity())) {
    return SysError::Make(EINVAL, "open", target.path(), -1,
                          "target is the same device as the source (" + source_->path() + ")");
  }
  for (size_t j = 0; j < i; ++j) {
    if (id.Same(targets_[j]->identity())) {
      return SysError::Make(EINVAL, "open", target.path(), -1,
                            "the same target is given twice (also as " + targets_[j]->path() + ")");
    }
  }
  if (id.kind != EndpointKind::kRegularFile || !id.Same(source_->identity())) return {};
  // One file as both source and target: only disjoint ranges are safe,
  // and cutting the file must not reach into what is still to be read.
  const uint64_t source_end = plan_.source_offset_bytes + length_bytes_;
  const uint64_t target_end = plan.offset_bytes + length_bytes_;
  if (length_bytes_ > 0 && plan_.source_offset_bytes < target_end && plan.offset_bytes < source_end) {
    return SysError::Make(EINVAL, "open", target.path(), -1,
                          "target is the same file as the source (" + source_->path() + ") and the byte ranges overlap");
  }
  if (plan.truncate_to >= 0 && static_cast<uint64_t>(plan.truncate_to) < source_end) {
    return SysError::Make(EINVAL, "open", target.path(), -1,
                          "target is the same file as the source (" + source_->path() + "): truncating it at byte " +
                              std::to_string(plan.truncate_to) + " would destroy source data (use conv=notrunc)");
  }
  return {};
}

SysError CopyEngine::RefuseWhatStreamsCannotDo() const {
  std::vector<const Endpoint*> sides{source_.get()};
  for (const auto& t : targets_) sides.push_back(t.get());
  for (const Endpoint* e : sides) {
    if (e->caps().seekable) continue;
    const std::string what = e->path() + " is a " + e->kind_name() + ": ";
    if (plan_.verify) {
      return SysError::Make(EINVAL, "verify", e->path(), -1,
                            what + "verify reads source and target again, and a stream cannot be read twice");
    }
    if (plan_.checkpoint_interval_ms > 0 || plan_.has_extents) {
      return SysError::Make(EINVAL, "open", e->path(), -1,
                            what + "a mapfile records positions to resume from, and a stream has none");
    }
  }
  return {};
}

SysError CopyEngine::RefuseWhatOnlyChangedCannotDo(size_t i) const {
  if (!plan_.only_changed) return {};
  const Endpoint& t = *targets_[i];
  const TargetPlan& plan = plan_.targets[i];
  if (!t.caps().seekable) {
    return SysError::Make(EINVAL, "open", t.path(), -1,
                          t.path() + " is a " + t.kind_name() +
                              ": --only-changed reads the target back to compare, and a stream cannot be read back");
  }
  // Cutting a file that existed would leave nothing to compare with.
  if (plan.truncate_to >= 0 && plan.open.fd < 0 && t.kind() == EndpointKind::kRegularFile && !t.created()) {
    return SysError::Make(EINVAL, "open", t.path(), -1,
                          "--only-changed compares with what the target holds, and truncating it first would leave "
                          "nothing to compare (dd: add conv=notrunc)");
  }
  return {};
}

SysError CopyEngine::CutTargets() {
  // Only once every target has been opened and checked: cut regular files
  // (dd without conv=notrunc), so a refusal leaves all targets untouched.
  for (size_t i = 0; i < targets_.size(); ++i) {
    const TargetPlan& t = plan_.targets[i];
    // Standard output is never cut (dd does not truncate it; the shell's > did).
    if (t.truncate_to < 0 || t.open.fd >= 0 || targets_[i]->kind() != EndpointKind::kRegularFile) continue;
    const bool by_open = t.truncate_at_open && t.truncate_to == 0;
    const SysError error = targets_[i]->Truncate(static_cast<uint64_t>(t.truncate_to), by_open);
    if (error.failed()) return error;
  }
  return {};
}

void CopyEngine::PlanExtents() {
  // What this run copies: the plan's extents within the domain, or all of it.
  extents_.clear();
  if (plan_.has_extents) {
    extents_ = ClipAndRebase(plan_.extents, plan_.source_offset_bytes, plan_.source_offset_bytes + length_bytes_);
  } else if (length_bytes_ > 0) {
    extents_.push_back({0, length_bytes_});
  }
  planned_bytes_ = TotalLength(extents_);
  report_->bytes_total = length_known_ ? planned_bytes_ : 0;
}

SysError CopyEngine::PlanHoles() {
  extent_hole_.assign(extents_.size(), 0);
  if (plan_.hole_mode == HoleMode::kRead) {
    report_->holes_note = "read like data (holes: read)";
    return {};
  }
  if (!source_->caps().data_extents) {
    report_->holes_note = std::string("the source (a ") + source_->kind_name() + ") cannot say where its data is";
    return {};
  }
  // A limit on everything: a file fragmented beyond this many pieces has the
  // rest of it read whole (16 bytes a piece: 16 MiB at most).
  size_t budget = kDataExtentPiecesMax;
  const bool nbd = source_->kind() == EndpointKind::kNbd;
  std::vector<ByteRange> pieces;
  std::vector<uint8_t> hole;
  for (const ByteRange& extent : extents_) {
    bool supported = true;
    const SysError error = SplitAtHoles(extent, &budget, &pieces, &hole, &supported);
    if (error.failed()) return error;
    if (!supported) {
      report_->holes_note = nbd ? "the server could not say where the data is (NBD_CMD_BLOCK_STATUS): the source is read whole"
                                : "the filesystem cannot say where the data is (lseek SEEK_DATA): the source is read whole";
      return {};
    }
  }
  extents_ = std::move(pieces);
  extent_hole_ = std::move(hole);
  report_->holes_note = nbd ? "NBD_CMD_BLOCK_STATUS" : "SEEK_DATA/SEEK_HOLE";
  return {};
}

// Appends `extent` cut into data and hole pieces (in order) to *pieces.
SysError CopyEngine::SplitAtHoles(const ByteRange& extent, size_t* budget, std::vector<ByteRange>* pieces,
                                  std::vector<uint8_t>* hole, bool* supported) {
  uint64_t at = extent.offset;
  // Each turn answers up to *budget data ranges and moves past them.
  while (at < extent.end()) {
    DataExtentsAnswer answer;
    if (*budget > 0) {
      const SysError error = source_->DataExtents(at, extent.end(), *budget, &answer, supported);
      if (error.failed() || !*supported) return error;
    }
    if (*budget == 0 || (answer.data.empty() && answer.answered_to == at)) {
      pieces->push_back({at, extent.end() - at});  // out of budget: the rest is read
      hole->push_back(0);
      return {};
    }
    for (const DataExtent& d : answer.data) {
      if (d.offset > at) {
        pieces->push_back({at, d.offset - at});
        hole->push_back(1);
      }
      pieces->push_back({d.offset, d.length});
      hole->push_back(0);
      at = d.offset + d.length;
    }
    if (answer.answered_to > at) {
      pieces->push_back({at, answer.answered_to - at});
      hole->push_back(1);
      at = answer.answered_to;
    }
    *budget -= std::min(*budget, answer.data.size());
  }
  return {};
}

SysError CopyEngine::SetupStages() {
  if (plan_.zero_mode != ZeroMode::kWrite) {
    const uint32_t block = plan_.zero_block_bytes ? plan_.zero_block_bytes : plan_.block_bytes;
    assert(plan_.block_bytes % block == 0);  // validated in JS and in the addon
    stages_.push_back(std::make_unique<ZeroCheckStage>(block));
    zero_stage_ = true;
  }
  // DEVMOVE_HASH_THREADS: the hash pool's workers (a number; unset: one per
  // CPU), or 'io' for --hash's digest on the engine's thread (the measured baseline).
  const char* threads = std::getenv("DEVMOVE_HASH_THREADS");
  hash_threads_wanted_ = threads ? static_cast<uint32_t>(std::strtoul(threads, nullptr, 10)) : 0;
  if (plan_.verify && !plan_.verify_strict) {
    const SysError error = SetupBlockDigests();
    if (error.failed()) return error;
  }
  if (!plan_.hash_algorithm.empty()) return SetupDigestStage(threads);
  return {};
}

// One pool for every stage that hashes off the engine's thread: --hash's
// digest and verify's per-block digests share its workers (two pools would
// run twice as many hashing threads as there are CPUs, each pool's workers
// competing with the other's). Each digest keeps its own order (parallel_digest.h).
HashPool* CopyEngine::SharedHashPool(SysError* error) {
  if (!hash_pool_) hash_pool_ = HashPool::Create(hash_threads_wanted_, error);
  return hash_pool_.get();
}

SysError CopyEngine::SetupDigestStage(const char* threads) {
  SysError error;
  // On the hash pool's workers, unless DEVMOVE_HASH_THREADS=io asks for the
  // engine's thread, or the copy has gaps (a resume, a domain) the pool's
  // positions cannot express.
  const bool on_io_thread = plan_.has_extents || (threads != nullptr && std::string(threads) == "io");
  if (!on_io_thread) {
    HashPool* pool = SharedHashPool(&error);
    if (!pool) return error;
    std::unique_ptr<DigestStage> stage = DigestStage::Create(plan_.hash_algorithm, *pool, plan_.queue_depth, &error);
    if (!stage) return error;
    digest_stage_ = stage.get();
    stages_.push_back(std::move(stage));
    return {};
  }
  hasher_ = Hasher::Create(plan_.hash_algorithm, &error);
  if (!hasher_) return error;
  Hasher* hasher = hasher_.get();
  stages_.push_back(std::make_unique<HashStage>(
      [hasher](const uint8_t* data, size_t length) { hasher->Update(data, length); }));
  return {};
}

// Verify with one read: a digest per block of what the copy reads. The
// block is the largest power of two that divides the buffer size, at most
// 64 KiB, so the verify pass's buffers hold whole digest blocks, and a block
// split between two of the copy's buffers (a range that starts off the grid:
// a domain, a mapfile's gaps) costs the verify pass at most 64 KiB of source
// per buffer. 16 bytes per 64 KiB is 256 MiB for a 1 TiB copy: kept in memory
// up to the plan's limit (64 MiB), spilled to a file beyond it. Below 4 KiB (an odd bs=) the table would
// be too large for what it saves: the verify pass is strict then, and the
// report says so (verify.mode).
SysError CopyEngine::SetupBlockDigests() {
  constexpr uint32_t kDigestBlockMax = 64 * 1024;
  constexpr uint32_t kDigestBlockMin = 4096;
  const uint32_t block = std::min<uint32_t>(kDigestBlockMax, plan_.block_bytes & (~plan_.block_bytes + 1));
  if (block < kDigestBlockMin || length_bytes_ == 0 || !length_known_) return {};
  BlockDigestStage::Config config;
  config.block_bytes = block;
  config.input_bytes = length_bytes_;
  // For tests and odd machines: DEVMOVE_VERIFY_DIGEST_MEMORY (bytes kept in
  // memory, at least two 64 KiB pages) and DEVMOVE_VERIFY_SPILL_DIR.
  const char* memory = std::getenv("DEVMOVE_VERIFY_DIGEST_MEMORY");
  const char* spill_dir = std::getenv("DEVMOVE_VERIFY_SPILL_DIR");
  config.memory_max_bytes = memory ? std::strtoull(memory, nullptr, 10) : plan_.verify_digest_memory_bytes;
  config.spill_dir = spill_dir ? spill_dir : plan_.verify_spill_dir;
  config.slots_max = plan_.queue_depth;
  SysError error;
  HashPool* pool = SharedHashPool(&error);
  if (!pool) return error;
  std::unique_ptr<BlockDigestStage> stage = BlockDigestStage::Create(config, *pool, &error);
  if (!stage) return error;
  block_digests_ = stage.get();
  stages_.push_back(std::move(stage));
  return {};
}

SysError CopyEngine::SetupDriver() {
  // Buffer memory follows the copy: never more buffers than it can use at
  // once, and never a buffer larger than its largest extent (rounded up to
  // the pool's alignment). bs=1G for a 64 MiB copy maps 64 MiB, and a copy of
  // nothing (count=0) maps a single page, as dd allocates nothing then.
  uint64_t useful = 0;
  uint64_t largest_extent = 0;
  for (const ByteRange& e : extents_) {
    useful += RoundUp(e.length, plan_.block_bytes) / plan_.block_bytes;
    largest_extent = std::max(largest_extent, e.length);
  }
  useful = std::max<uint64_t>(1, useful);
  const uint32_t depth = static_cast<uint32_t>(std::min<uint64_t>(plan_.queue_depth, useful));
  const uint64_t needed = std::max<uint64_t>(BufferPool::kAlignment, RoundUp(largest_extent, BufferPool::kAlignment));
  const uint32_t buffer_bytes = static_cast<uint32_t>(std::min<uint64_t>(plan_.block_bytes, needed));
  assert(buffer_bytes >= 1 && buffer_bytes <= plan_.block_bytes);
  SysError error;
  const uint32_t depth_max = DepthMax(depth, useful);
  pool_ = BufferPool::Create(depth, depth_max, buffer_bytes, &error);
  if (!pool_) return error;

  const uint32_t targets = static_cast<uint32_t>(targets_.size());
  if (plan_.only_changed) {
    // Bounded like the ring: one buffer per slot and target, 1 GiB at most.
    if (static_cast<uint64_t>(depth) * targets * buffer_bytes > BufferPool::kTotalBytesMax) {
      return SysError::Make(EINVAL, "mmap", {}, -1,
                            "--only-changed reads each target back into buffers of its own: queue depth × block size "
                            "× targets must stay within 1 GiB");
    }
    compare_pool_ = BufferPool::Create(depth * targets, buffer_bytes, &error);
    if (!compare_pool_) return error;
  }
  // With only_changed a write waits for the comparison, never linked to the read.
  link_ = plan_.link_read_write && targets == 1 && plan_.zero_mode == ZeroMode::kWrite && !source_stream_ &&
          targets_[0]->caps().seekable && source_->caps().linkable && targets_[0]->caps().linkable &&
          !plan_.only_changed;
  // Each slot has at most one read or one write per target in flight (a
  // read and its linked write with links; with only_changed the source's read
  // and one read-back or write per target), plus one flush per target for a
  // checkpoint.
  const uint32_t per_slot = plan_.only_changed ? 1 + targets : link_ ? 2 : std::max<uint32_t>(1, targets);
  // An NBD endpoint keeps a send and a recv per connection in the driver too.
  uint32_t endpoint_ops = source_->driver_ops_max();
  for (const auto& t : targets_) endpoint_ops += t->driver_ops_max();
  const uint32_t behind = plan_.verify_behind && block_digests_ != nullptr ? depth : 0;  // its reads, one each
  const uint32_t in_flight_max = depth_max * per_slot + targets + endpoint_ops + behind;
  error = CreateDriver(in_flight_max, depth * per_slot + targets + endpoint_ops + behind);
  if (!error.failed() && behind > 0) error = SetupBehindVerifier(buffer_bytes, behind);
  if (error.failed()) return error;
  if (plan_.checkpoint_interval_ms > 0 && !driver_->Supports(IoKind::kFdatasync)) {
    return SysError::Make(ENOSYS, "io_uring_setup", {}, -1, "this kernel's io_uring lacks IORING_OP_FSYNC");
  }
  RegisterWithDriver();
  PlanZeroHandling();
  error = PlanHoleHandling();
  if (error.failed()) return error;
  SetupSlots(depth, depth_max);
  return {};
}

// --verify=behind: the targets read back while the copy goes on, through
// this driver, `depth` reads of a buffer each (behind_verifier.h).
SysError CopyEngine::SetupBehindVerifier(uint32_t buffer_bytes, uint32_t depth) {
  BehindVerifier::Inputs in;
  in.driver = driver_.get();
  for (const auto& t : targets_) in.targets.push_back(t.get());
  in.dropped = &dropped_;
  in.digests = block_digests_;
  in.length_bytes = length_bytes_;
  in.buffer_bytes = buffer_bytes;
  in.depth = depth;
  SysError error;
  behind_ = BehindVerifier::Create(std::move(in), &error);
  return behind_ ? SysError{} : error;
}

uint32_t CopyEngine::DepthMax(uint32_t depth, uint64_t useful) const {
  if (plan_.only_changed || digest_stage_ != nullptr || block_digests_ != nullptr) return depth;
  const uint64_t wanted = std::max(plan_.queue_depth_max, plan_.queue_depth);
  const uint64_t fits = BufferPool::kTotalBytesMax / plan_.block_bytes;
  return static_cast<uint32_t>(std::max<uint64_t>(depth, std::min({wanted, useful, fits})));
}

SysError CopyEngine::CreateDriver(uint32_t in_flight_max, uint32_t in_flight_start) {
  DriverOptions options;
  options.in_flight_max = in_flight_max;
  options.in_flight_start = in_flight_start;
  options.sqpoll = plan_.sqpoll;
  options.batch_submissions = plan_.batch_submissions;
  options.idle_priority = plan_.idle_priority;
  SysError error;
  if (plan_.io_engine != IoEngineChoice::kThreads) {
    driver_ = UringDriver::Create(options, &error);
    // Where io_uring is forbidden (EPERM: seccomp, kernel.io_uring_disabled;
    // ENOSYS: no io_uring, or a filter answering so; ENOMEM: RLIMIT_MEMLOCK)
    // the automatic choice falls back, visibly; anything else is an error.
    const int e = error.errno_value;
    const bool forbidden = e == EPERM || e == ENOSYS || e == ENOMEM || e == EACCES;
    if (!driver_ && (plan_.io_engine == IoEngineChoice::kIoUring || !forbidden)) return error;
    if (!driver_) report_->io_engine_note = error.message.empty() ? std::strerror(e) : error.message;
  }
  if (!driver_) {
    driver_ = ThreadDriver::Create(options, &error);
    if (!driver_) return error;
  }
  report_->io_engine = driver_->name();
  report_->ring_setup_flags = driver_->ring_setup_flags();
  report_->ring_features = driver_->ring_features();
  report_->sqpoll = (driver_->ring_setup_flags() & IORING_SETUP_SQPOLL) != 0;
  return {};
}

void CopyEngine::RegisterWithDriver() {
  if (!plan_.fixed_buffers) {
    report_->fixed_buffers_note = "disabled by option";
  } else {
    report_->fixed_buffers_note = driver_->RegisterBuffers(*pool_);
    report_->fixed_buffers = report_->fixed_buffers_note.empty();
  }
  if (!plan_.fixed_files) {
    report_->fixed_files_note = "disabled by option";
  } else {
    // Streams stay unregistered: a registered file is let go only by the
    // ring's teardown, which the kernel defers to a worker after the process
    // is gone, so a FIFO kept a reader for a moment after kill -9 and the
    // next writer connected to the dead copy (measured: 5 of 10 runs; none
    // with the streams unregistered). Their I/O is one op at a time anyway.
    std::vector<int> fds;
    std::vector<const Endpoint*> sides{source_.get()};
    for (const auto& t : targets_) sides.push_back(t.get());
    for (const Endpoint* e : sides) {
      if (!e->caps().seekable) continue;
      const std::vector<int> more = e->descriptors();
      fds.insert(fds.end(), more.begin(), more.end());
    }
    // Streams are not registered (above), and NBD endpoints have no descriptors the engine's ops use
    // (their sockets are the connections').
    report_->fixed_files_note = fds.empty() ? "no descriptors to register (streams, NBD endpoints)" : driver_->RegisterFiles(fds);
    report_->fixed_files = report_->fixed_files_note.empty();
  }
  report_->linked = link_;
  report_->batched = plan_.batch_submissions;
}

void CopyEngine::PlanZeroHandling() {
  punch_ok_.assign(targets_.size(), 0);
  zero_range_ok_.assign(targets_.size(), 0);
  existing_end_.assign(targets_.size(), UINT64_MAX);
  const bool exact_sparse = plan_.zero_mode == ZeroMode::kSparse && plan_.sparse_exact;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const Endpoint& t = *targets_[i];
    // After the cut: a file reads zeros past its end, a device has no such end.
    if (t.caps().grows) existing_end_[i] = t.size_bytes();
    // The write policy keeps a target allocated: a source's hole is zeroed in
    // place (write-zeroes without unmap), not written from memory. Not with
    // only_changed: it compares holes in buffers anyway, and its bytesWritten
    // counts what was written where the target differed.
    zero_range_ok_[i] = plan_.zero_mode == ZeroMode::kWrite && !plan_.only_changed && t.caps().seekable &&
                        t.caps().zero_ranges && driver_->Supports(IoKind::kZeroRange);
    if (plan_.zero_mode == ZeroMode::kWrite) continue;
    if (!t.caps().seekable) {
      report_->targets[i].zero_note = t.zero_ranges_note();
    } else if (plan_.zero_mode != ZeroMode::kDiscard && !exact_sparse) {
      continue;
    } else if (!t.caps().zero_ranges) {
      report_->targets[i].zero_note = t.zero_ranges_note();
    } else if (!driver_->Supports(IoKind::kPunchHole)) {
      report_->targets[i].zero_note = "this kernel's io_uring lacks IORING_OP_FALLOCATE";
    } else {
      punch_ok_[i] = 1;
    }
  }
}

SysError CopyEngine::PlanHoleHandling() {
  hole_keep_.assign(targets_.size(), 0);
  bool zeroed_in_place = false;
  hole_needs_bytes_ = false;
  for (const auto& stage : stages_) hole_needs_bytes_ = hole_needs_bytes_ || stage->NeedsHoleBytes();
  // A hole is compared with the target like data: a buffer of zeros.
  if (plan_.only_changed) hole_needs_bytes_ = true;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const Endpoint& t = *targets_[i];
    const TargetPlan& plan = plan_.targets[i];
    // A file this copy created, or cut at or before where the copy starts on
    // it, reads zeros wherever a hole would go.
    const bool cut_before = plan.truncate_to >= 0 && plan.open.fd < 0 &&
                            static_cast<uint64_t>(plan.truncate_to) <= plan.offset_bytes;
    hole_keep_[i] = plan_.hole_mode == HoleMode::kAuto && t.kind() == EndpointKind::kRegularFile &&
                    (t.created() || cut_before);
    report_->targets[i].holes_kept = hole_keep_[i] != 0;
    // Skip and sparse never need the zeros; discard may fall back to writing
    // them, and so may an exact sparse copy below the target's end.
    const bool sparse_skips = plan_.zero_mode == ZeroMode::kSparse && !plan_.sparse_exact;
    const bool skipped = t.caps().seekable && (plan_.zero_mode == ZeroMode::kSkip || sparse_skips);
    // One write-zeroes or punch per hole where the target takes it (a buffer
    // of zeros per 512 KiB cost 4x nbdcopy's time on a 93 %-hole source).
    const bool in_place = zero_range_ok_[i] || punch_ok_[i];
    if (!dropped_[i] && !hole_keep_[i] && !skipped && !in_place) hole_needs_bytes_ = true;
    zeroed_in_place = zeroed_in_place || (!hole_keep_[i] && !skipped && in_place);
  }
  if (hole_needs_bytes_ || !zeroed_in_place) return {};
  // Where a target refuses after all (EOPNOTSUPP), its holes are written from this.
  SysError error;
  zeros_ = BufferPool::Create(1, pool_->buffer_bytes(), &error);
  return zeros_ ? SysError{} : error;
}

void CopyEngine::SetupSlots(uint32_t depth, uint32_t depth_max) {
  // Every slot the ring may grow to exists from the start (Slot records are
  // small); only the first `depth` have a usable buffer and are free.
  slots_ = std::vector<Slot>(depth_max);
  free_slots_.clear();
  for (uint32_t i = 0; i < depth_max; ++i) {
    slots_[i].index = i;
    slots_[i].buffer = static_cast<uint8_t*>(pool_->iovecs()[i].iov_base);
    slots_[i].capacity = pool_->buffer_bytes();
    slots_[i].writes = std::vector<TargetWrite>(targets_.size());
    if (compare_pool_) {
      for (size_t t = 0; t < targets_.size(); ++t) {
        slots_[i].writes[t].compare = compare_pool_->buffer(static_cast<uint32_t>(i * targets_.size() + t));
      }
    }
  }
  // Refill takes from the back: push in reverse so buffer 0 goes first.
  for (uint32_t i = depth; i-- > 0;) free_slots_.push_back(i);
}

}  // namespace devmove
