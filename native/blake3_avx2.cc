// The BLAKE3 kernel for AVX2: 8 inputs at once, one input per 32-bit lane of
// a 256-bit register ("hash many" in the specification's section 5.3). The
// message words of 8 inputs are transposed into 16 registers, the 16 state
// words are 16 registers, and the rounds are the portable ones on vectors.
// Compiled for AVX2 by a target pragma; only called when the CPU has AVX2
// (blake3.cc, KernelSupported). No standard-library templates are
// instantiated in this file: code inside the pragma must never be picked by
// the linker for a caller on another CPU.
#include "blake3.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <cassert>

#pragma GCC push_options
#pragma GCC target("avx2")
#include <immintrin.h>

namespace devmove {
namespace blake3 {
namespace {

constexpr size_t kLanes = 8;
constexpr size_t kPrefetchBlocks = 4;
using V = __m256i;

inline V Add(V a, V b) { return _mm256_add_epi32(a, b); }
inline V Xor(V a, V b) { return _mm256_xor_si256(a, b); }
inline V Set(uint32_t w) { return _mm256_set1_epi32(static_cast<int>(w)); }

// Rotations by whole bytes are one byte shuffle; 12 and 7 need two shifts.
inline V Rotr16(V x) {
  const V bytes = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,  //
                                   2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  return _mm256_shuffle_epi8(x, bytes);
}
inline V Rotr8(V x) {
  const V bytes = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,  //
                                   1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
  return _mm256_shuffle_epi8(x, bytes);
}
inline V Rotr12(V x) { return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20)); }
inline V Rotr7(V x) { return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25)); }

#include "blake3_rounds.inc"

// Rows (8 words each) become columns: r[i][j] -> r[j][i].
inline void Transpose8x8(V* r) {
  // Pairs of rows interleaved by words, then by word pairs, then the 128-bit halves exchanged.
  const V t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const V t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const V t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const V t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const V u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const V u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const V u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const V u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

inline V Load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Message word w of every lane's block into m[w].
inline void LoadMessage(const uint8_t* const* lanes, size_t offset, V* m) {
  for (size_t i = 0; i < kLanes; ++i) {
    m[i] = Load(lanes[i] + offset);
    m[kLanes + i] = Load(lanes[i] + offset + 32);
    // 8 streams 1 KiB apart: ask for each lane's next blocks early (data fresh from a DMA is not in cache).
    _mm_prefetch(reinterpret_cast<const char*>(lanes[i] + offset + kPrefetchBlocks * kBlockBytes), _MM_HINT_T0);
  }
  Transpose8x8(m);
  Transpose8x8(m + kLanes);
}

// One pass over 8 inputs of `blocks` blocks each; only the first `count`
// CVs are stored (the other lanes repeat an input: valid memory, results dropped).
void HashPass(const uint8_t* const* lanes, size_t count, size_t blocks, const uint64_t* counters, uint8_t flags,
              uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  alignas(32) uint32_t counter_low[kLanes];
  alignas(32) uint32_t counter_high[kLanes];
  for (size_t i = 0; i < kLanes; ++i) {
    counter_low[i] = static_cast<uint32_t>(counters[i]);
    counter_high[i] = static_cast<uint32_t>(counters[i] >> 32);
  }
  V h[8];
  for (unsigned i = 0; i < 8; ++i) h[i] = Set(kIv[i]);
  V m[16];
  V v[16];
  for (size_t b = 0; b < blocks; ++b) {
    LoadMessage(lanes, b * kBlockBytes, m);
    uint8_t block_flags = flags;
    if (b == 0) block_flags |= flags_start;
    if (b + 1 == blocks) block_flags |= flags_end;
    for (unsigned i = 0; i < 8; ++i) v[i] = h[i];
    for (unsigned i = 0; i < 4; ++i) v[8 + i] = Set(kIv[i]);
    v[12] = _mm256_load_si256(reinterpret_cast<const __m256i*>(counter_low));
    v[13] = _mm256_load_si256(reinterpret_cast<const __m256i*>(counter_high));
    v[14] = Set(static_cast<uint32_t>(kBlockBytes));
    v[15] = Set(block_flags);
    Rounds(v, m);
    for (unsigned i = 0; i < 8; ++i) h[i] = Xor(v[i], v[i + 8]);
  }
  // h[w] holds word w of every lane's CV: lane i's CV is row i after the transpose.
  Transpose8x8(h);
  for (size_t i = 0; i < count; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * kCvBytes), h[i]);
}

}  // namespace

void HashManyAvx2(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter, bool increment,
                  uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  assert(blocks > 0);
  const uint8_t* lanes[kLanes];
  uint64_t counters[kLanes];
  for (size_t first = 0; first < count; first += kLanes) {
    const size_t n = count - first < kLanes ? count - first : kLanes;
    for (size_t i = 0; i < kLanes; ++i) {
      const size_t input = first + (i < n ? i : 0);
      lanes[i] = data + input * stride;
      counters[i] = counter + (increment ? input : 0);
    }
    HashPass(lanes, n, blocks, counters, flags, flags_start, flags_end, out + first * kCvBytes);
  }
}

}  // namespace blake3
}  // namespace devmove

#pragma GCC pop_options

#else  // not x86-64: never selected (KernelSupported says no)

namespace devmove {
namespace blake3 {
void HashManyAvx2(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter, bool increment,
                  uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  HashManyPortable(data, stride, count, blocks, counter, increment, flags, flags_start, flags_end, out);
}
}  // namespace blake3
}  // namespace devmove

#endif
