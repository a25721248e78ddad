#include "blake3.h"

#include <cassert>
#include <cstring>
#include <utility>

namespace devmove {
namespace blake3 {
namespace {

inline uint32_t Load32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

inline void Store32(uint8_t* p, uint32_t w) {
  p[0] = static_cast<uint8_t>(w);
  p[1] = static_cast<uint8_t>(w >> 8);
  p[2] = static_cast<uint8_t>(w >> 16);
  p[3] = static_cast<uint8_t>(w >> 24);
}

// The portable kernel's words: the shared rounds on uint32_t.
using V = uint32_t;
inline V Add(V a, V b) { return a + b; }
inline V Xor(V a, V b) { return a ^ b; }
inline V Rotr16(V x) { return (x >> 16) | (x << 16); }
inline V Rotr12(V x) { return (x >> 12) | (x << 20); }
inline V Rotr8(V x) { return (x >> 8) | (x << 24); }
inline V Rotr7(V x) { return (x >> 7) | (x << 25); }
#include "blake3_rounds.inc"

void StoreCv(const Cv& cv, uint8_t* out) {
  for (unsigned i = 0; i < 8; ++i) Store32(out + 4 * i, cv[i]);
}

Cv LoadCv(const uint8_t* in) {
  Cv cv;
  for (unsigned i = 0; i < 8; ++i) cv[i] = Load32(in + 4 * i);
  return cv;
}

Cv IvCv() {
  Cv cv;
  for (unsigned i = 0; i < 8; ++i) cv[i] = kIv[i];
  return cv;
}

// A node before its last compression: what makes it a CV, or with ROOT the digest.
struct NodeOutput {
  Cv cv;
  uint8_t block[kBlockBytes];
  uint32_t block_len;
  uint64_t counter;
  uint8_t flags;
};

NodeOutput ChunkOutput(const uint8_t* data, size_t length, uint64_t chunk_index) {
  assert(length <= kChunkBytes);
  NodeOutput node{};
  node.cv = IvCv();
  node.counter = chunk_index;
  const size_t blocks = length == 0 ? 1 : (length + kBlockBytes - 1) / kBlockBytes;
  uint32_t words[16];
  for (size_t b = 0; b + 1 < blocks; ++b) {
    Compress(node.cv, data + b * kBlockBytes, kBlockBytes, chunk_index, b == 0 ? kChunkStart : 0, words);
    std::memcpy(node.cv.data(), words, sizeof node.cv);
  }
  // The last block, zero-padded, keeps its real length.
  const size_t last = (blocks - 1) * kBlockBytes;
  node.block_len = static_cast<uint32_t>(length - last);
  if (node.block_len > 0) std::memcpy(node.block, data + last, node.block_len);
  node.flags = static_cast<uint8_t>(kChunkEnd | (blocks == 1 ? kChunkStart : 0));
  return node;
}

NodeOutput ParentOutput(const Cv& left, const Cv& right) {
  NodeOutput node{};
  node.cv = IvCv();
  StoreCv(left, node.block);
  StoreCv(right, node.block + kCvBytes);
  node.block_len = kBlockBytes;
  node.counter = 0;
  node.flags = kParent;
  return node;
}

Cv NodeCv(const NodeOutput& node) {
  uint32_t words[16];
  Compress(node.cv, node.block, node.block_len, node.counter, node.flags, words);
  Cv cv;
  std::memcpy(cv.data(), words, sizeof cv);
  return cv;
}

// Only the first 32 bytes of the root's output (counter 0): the default digest length.
void NodeRoot(const NodeOutput& node, uint8_t digest[kDigestBytes]) {
  uint32_t words[16];
  Compress(node.cv, node.block, node.block_len, 0, static_cast<uint8_t>(node.flags | kRoot), words);
  for (unsigned i = 0; i < 8; ++i) Store32(digest + 4 * i, words[i]);
}

// A subtree of up to this many chunks is hashed flat: all its chunk CVs in
// kernel passes, then level by level. Its scratch (1.5 × 32 B per chunk,
// 12 KiB) lives on the stack; larger subtrees recurse into halves.
constexpr uint64_t kFlatChunksMax = 256;

Cv SubtreeCv(const Kernel& kernel, const uint8_t* data, uint64_t first_chunk, uint32_t level) {
  const uint64_t chunks = uint64_t{1} << level;
  if (chunks > kFlatChunksMax) {
    const uint64_t half = chunks / 2;
    const Cv left = SubtreeCv(kernel, data, first_chunk, level - 1);
    const Cv right = SubtreeCv(kernel, data + half * kChunkBytes, first_chunk + half, level - 1);
    return ParentCv(left, right);
  }
  uint8_t level_cvs[kFlatChunksMax * kCvBytes];
  uint8_t parent_cvs[kFlatChunksMax / 2 * kCvBytes];
  kernel.hash_many(data, kChunkBytes, chunks, kBlocksPerChunk, first_chunk, true, 0, kChunkStart, kChunkEnd,
                   level_cvs);
  uint8_t* in = level_cvs;
  uint8_t* out = parent_cvs;
  for (uint64_t n = chunks; n > 1; n /= 2) {
    kernel.hash_many(in, 2 * kCvBytes, n / 2, 1, 0, false, kParent, 0, 0, out);
    std::swap(in, out);
  }
  return LoadCv(in);
}

}  // namespace

void Compress(const Cv& cv, const uint8_t block[kBlockBytes], uint32_t block_len, uint64_t counter, uint8_t flags,
              uint32_t out[16]) {
  uint32_t m[16];
  for (unsigned i = 0; i < 16; ++i) m[i] = Load32(block + 4 * i);
  uint32_t v[16] = {cv[0],  cv[1],  cv[2],  cv[3],  cv[4],  cv[5],  cv[6],  cv[7],
                    kIv[0], kIv[1], kIv[2], kIv[3], static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                    block_len, flags};
  Rounds(v, m);
  for (unsigned i = 0; i < 8; ++i) {
    out[i] = v[i] ^ v[i + 8];
    out[i + 8] = v[i + 8] ^ cv[i];
  }
}

void HashManyPortable(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                      bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  assert(blocks > 0);
  uint32_t words[16];
  for (size_t i = 0; i < count; ++i) {
    Cv cv = IvCv();
    const uint8_t* input = data + i * stride;
    for (size_t b = 0; b < blocks; ++b) {
      uint8_t block_flags = flags;
      if (b == 0) block_flags |= flags_start;
      if (b + 1 == blocks) block_flags |= flags_end;
      Compress(cv, input + b * kBlockBytes, kBlockBytes, counter + (increment ? i : 0), block_flags, words);
      std::memcpy(cv.data(), words, sizeof cv);
    }
    StoreCv(cv, out + i * kCvBytes);
  }
}

bool KernelSupported(KernelId id) {
  switch (id) {
    case KernelId::kPortable:
      return true;
#if defined(__x86_64__) && defined(__GNUC__)
    case KernelId::kAvx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2");
    case KernelId::kAvx512:
      // libgcc also checks that the OS saves the ZMM registers (XCR0).
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

const Kernel& GetKernel(KernelId id) {
  static constexpr Kernel kPortableKernel{KernelId::kPortable, "portable", 1, HashManyPortable};
  static constexpr Kernel kAvx2Kernel{KernelId::kAvx2, "avx2", 8, HashManyAvx2};
  static constexpr Kernel kAvx512Kernel{KernelId::kAvx512, "avx512", 16, HashManyAvx512};
  switch (id) {
    case KernelId::kAvx2:
      return kAvx2Kernel;
    case KernelId::kAvx512:
      return kAvx512Kernel;
    case KernelId::kPortable:
    default:
      return kPortableKernel;
  }
}

const Kernel& BestKernel() {
  if (KernelSupported(KernelId::kAvx512)) return GetKernel(KernelId::kAvx512);
  if (KernelSupported(KernelId::kAvx2)) return GetKernel(KernelId::kAvx2);
  return GetKernel(KernelId::kPortable);
}

const Kernel* FindKernel(const std::string& name) {
  if (name.empty() || name == "auto") return &BestKernel();
  for (KernelId id : kKernelIds) {
    const Kernel& k = GetKernel(id);
    if (name == k.name) return KernelSupported(id) ? &k : nullptr;
  }
  return nullptr;
}

Cv ChunkCv(const uint8_t* data, size_t length, uint64_t chunk_index) {
  assert(length > 0 && length <= kChunkBytes);
  return NodeCv(ChunkOutput(data, length, chunk_index));
}

void RootOfChunk(const uint8_t* data, size_t length, uint8_t digest[kDigestBytes]) {
  NodeRoot(ChunkOutput(data, length, 0), digest);
}

Cv ParentCv(const Cv& left, const Cv& right) { return NodeCv(ParentOutput(left, right)); }

void RootOfParent(const Cv& left, const Cv& right, uint8_t digest[kDigestBytes]) {
  NodeRoot(ParentOutput(left, right), digest);
}

uint32_t NextSubtreeLevel(uint64_t first_chunk, uint64_t chunks) {
  assert(chunks > 0);
  uint32_t level = 63 - static_cast<uint32_t>(__builtin_clzll(chunks));
  if (first_chunk != 0) level = std::min(level, static_cast<uint32_t>(__builtin_ctzll(first_chunk)));
  return level;
}

size_t SubtreeCount(uint64_t first_chunk, uint64_t chunks) {
  size_t count = 0;
  while (chunks > 0) {
    const uint64_t size = uint64_t{1} << NextSubtreeLevel(first_chunk, chunks);
    first_chunk += size;
    chunks -= size;
    ++count;
  }
  return count;
}

size_t HashSubtrees(const Kernel& kernel, const uint8_t* data, uint64_t first_chunk, uint64_t chunks, Subtree* out) {
  size_t count = 0;
  while (chunks > 0) {
    const uint32_t level = NextSubtreeLevel(first_chunk, chunks);
    const uint64_t size = uint64_t{1} << level;
    out[count].first_chunk = first_chunk;
    out[count].level = level;
    out[count].cv = SubtreeCv(kernel, data, first_chunk, level);
    ++count;
    data += size * kChunkBytes;
    first_chunk += size;
    chunks -= size;
  }
  // Runs grow then shrink in alignment: at most one subtree per level each way.
  assert(count <= 2 * 64);
  return count;
}

std::string ToHex(const uint8_t* bytes, size_t length) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (size_t i = 0; i < length; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

}  // namespace blake3
}  // namespace devmove
