// BLAKE3 (hash mode, 32-byte digest), written from the published
// specification (O'Connor, Aumasson, Neves, Wilcox-O'Hearn: "BLAKE3 — one
// function, fast everywhere", 2020; section 2). The input is split into
// 1 KiB chunks; each chunk is compressed block by block into a 32-byte
// chaining value (CV); CVs are paired by parent nodes into a binary tree whose
// left subtrees are complete and as large as possible, and the root node is
// compressed once more with the ROOT flag.
//
// What this file gives the rest of devmove:
//  - kernels: the same "hash many inputs at once" operation compiled for the
//    portable C++ compiler target and, chosen at run time with
//    __builtin_cpu_supports, for AVX2 (8 lanes) and AVX-512F/VL (16 lanes);
//    the portable kernel is always available and always tested;
//  - HashSubtrees(): the CVs of the aligned power-of-two subtrees that make up
//    a run of whole chunks — the unit of work a worker thread does;
//  - the node functions the tree collector (blake3_tree.h) merges with.
// Only the default hash mode is implemented (no keyed hash, no key
// derivation, no extended output beyond 32 bytes): that is what b3sum prints.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace devmove {
namespace blake3 {

constexpr size_t kBlockBytes = 64;
constexpr size_t kChunkBytes = 1024;
constexpr size_t kBlocksPerChunk = kChunkBytes / kBlockBytes;
constexpr size_t kCvBytes = 32;
constexpr size_t kDigestBytes = 32;
// Subtree levels: a 2^64-byte input has 2^54 chunks, so a tree is at most 54 levels deep.
constexpr unsigned kLevelsMax = 54;

// Domain flags (specification, table 3).
enum Flag : uint8_t {
  kChunkStart = 1 << 0,
  kChunkEnd = 1 << 1,
  kParent = 1 << 2,
  kRoot = 1 << 3,
};

// The initialisation vector: the first 32 bits of the fractional parts of the
// square roots of the first 8 primes (the same constants as SHA-256's).
constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                             0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

// A chaining value as 8 little-endian words.
using Cv = std::array<uint32_t, 8>;

// The message word each step of round r reads. The specification permutes
// the 16 message words between rounds (word i of the next round is word
// kPermutation[i] of this one); every kernel indexes through this table
// instead of moving words.
constexpr uint8_t kPermutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
constexpr unsigned kRounds = 7;
struct MessageSchedule {
  uint8_t word[kRounds][16];
};
constexpr MessageSchedule MakeMessageSchedule() {
  MessageSchedule s{};
  for (unsigned i = 0; i < 16; ++i) s.word[0][i] = static_cast<uint8_t>(i);
  for (unsigned r = 1; r < kRounds; ++r)
    for (unsigned i = 0; i < 16; ++i) s.word[r][i] = s.word[r - 1][kPermutation[i]];
  return s;
}
constexpr MessageSchedule kSchedule = MakeMessageSchedule();

// The compression function (portable): 7 rounds over the 16-word state
// [cv, IV[0..3], counter (low, high), block_len, flags]. Writes all 16 output
// words: out[0..7] is the next chaining value, out[8..15] the rest of the
// root's extended output.
void Compress(const Cv& cv, const uint8_t block[kBlockBytes], uint32_t block_len, uint64_t counter, uint8_t flags,
              uint32_t out[16]);

// The kernel operation: hashes `count` inputs of `blocks` whole 64-byte blocks
// each, input i starting at data + i * stride, each from the IV. Input i's
// counter is counter + (increment ? i : 0); every block gets `flags`, the
// first also flags_start and the last also flags_end. Writes count CVs of 32
// bytes (little-endian words) to out, which must not overlap data.
// Chunks: stride 1024, blocks 16, increment, start/end = CHUNK_START/CHUNK_END.
// Parents: stride 64 (a left and a right CV), blocks 1, flags PARENT.
using HashManyFn = void (*)(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                            bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out);

enum class KernelId { kPortable, kAvx2, kAvx512 };
constexpr KernelId kKernelIds[] = {KernelId::kPortable, KernelId::kAvx2, KernelId::kAvx512};

struct Kernel {
  KernelId id;
  const char* name;  // 'portable' | 'avx2' | 'avx512'
  size_t lanes;      // inputs one SIMD pass hashes: 1, 8, 16
  HashManyFn hash_many;
};

// Whether this CPU (and this build) can run a kernel.
bool KernelSupported(KernelId id);
const Kernel& GetKernel(KernelId id);
// The widest supported kernel.
const Kernel& BestKernel();
// A kernel by name ('portable', 'avx2', 'avx512', or 'auto' = the best);
// nullptr when unknown or unsupported here.
const Kernel* FindKernel(const std::string& name);

// Each kernel's definition lives in its own file, compiled with the target
// attributes it needs; these are their entry points.
void HashManyPortable(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                      bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out);
void HashManyAvx2(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter, bool increment,
                  uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out);
void HashManyAvx512(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                    bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out);

// ---- Nodes ------------------------------------------------------------------

// The CV of one chunk of 1..1024 bytes (never the root: the caller knows
// there is more input). chunk_index is its position / 1024.
Cv ChunkCv(const uint8_t* data, size_t length, uint64_t chunk_index);
// The digest of an input of at most one chunk (0..1024 bytes): the chunk is the root.
void RootOfChunk(const uint8_t* data, size_t length, uint8_t digest[kDigestBytes]);
// A parent node's CV, or with root the digest of the whole input.
Cv ParentCv(const Cv& left, const Cv& right);
void RootOfParent(const Cv& left, const Cv& right, uint8_t digest[kDigestBytes]);

// One aligned power-of-two subtree: chunks [first_chunk, first_chunk + 2^level).
struct Subtree {
  uint64_t first_chunk = 0;
  uint32_t level = 0;
  Cv cv{};
  uint64_t end_chunk() const { return first_chunk + (uint64_t{1} << level); }
};

// The largest power of two p <= `chunks` with first_chunk % p == 0: the
// level of the next aligned subtree of a run starting at first_chunk.
uint32_t NextSubtreeLevel(uint64_t first_chunk, uint64_t chunks);
// How many subtrees HashSubtrees() emits for a run (at most 2 * 64).
size_t SubtreeCount(uint64_t first_chunk, uint64_t chunks);

// Hashes a run of whole chunks (data holds chunks * 1024 bytes, the first of
// them chunk number first_chunk of the input) into the CVs of the aligned
// subtrees that make it up, left to right, into out[0..SubtreeCount()).
// None of them is a root: the caller must not pass a run that could be the
// whole input (the tree collector never passes chunk 0).
size_t HashSubtrees(const Kernel& kernel, const uint8_t* data, uint64_t first_chunk, uint64_t chunks, Subtree* out);

std::string ToHex(const uint8_t* bytes, size_t length);

}  // namespace blake3
}  // namespace devmove
