// The BLAKE3 kernel for AVX-512F/VL: 16 inputs at once, one per 32-bit lane of
// a 512-bit register. A 64-byte block is exactly one register, so each lane's
// block is one load and a 16×16 transpose gives the message words; rotations
// are single instructions (vprord). Compiled for AVX-512 by a target pragma;
// only called when the CPU and the OS support it (blake3.cc, KernelSupported).
// No standard-library templates are instantiated in this file: code inside
// the pragma must never be picked by the linker for a caller on another CPU.
#include "blake3.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <cassert>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl")
// GCC 12's AVX-512 headers start results from _mm512_undefined_epi32(), a
// self-initialised variable that -Wmaybe-uninitialized reports at every use
// (GCC bug 105593, fixed in GCC 13); binding.gyp builds with -Werror.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

namespace devmove {
namespace blake3 {
namespace {

constexpr size_t kLanes = 16;
constexpr size_t kPrefetchBlocks = 4;
using V = __m512i;

inline V Add(V a, V b) { return _mm512_add_epi32(a, b); }
inline V Xor(V a, V b) { return _mm512_xor_si512(a, b); }
inline V Set(uint32_t w) { return _mm512_set1_epi32(static_cast<int>(w)); }

inline V Rotr16(V x) { return _mm512_ror_epi32(x, 16); }
inline V Rotr12(V x) { return _mm512_ror_epi32(x, 12); }
inline V Rotr8(V x) { return _mm512_ror_epi32(x, 8); }
inline V Rotr7(V x) { return _mm512_ror_epi32(x, 7); }

#include "blake3_rounds.inc"

// r[i][j] -> r[j][i] for 16 rows of 16 words. Words are first interleaved
// within each 128-bit quarter (a 4×4 transpose per group of four rows), then
// the quarters are gathered across the four groups.
inline void Transpose16x16(V* r) {
  V t[16];
  for (unsigned j = 0; j < 8; ++j) {
    t[2 * j] = _mm512_unpacklo_epi32(r[2 * j], r[2 * j + 1]);
    t[2 * j + 1] = _mm512_unpackhi_epi32(r[2 * j], r[2 * j + 1]);
  }
  // a[4 * g + k], quarter q: word 4q + k of rows 4g .. 4g + 3.
  V a[16];
  for (unsigned g = 0; g < 4; ++g) {
    a[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    a[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    a[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    a[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (unsigned k = 0; k < 4; ++k) {
    const V p0 = _mm512_shuffle_i32x4(a[k], a[4 + k], 0x44);       // groups 0,1: quarters 0,1
    const V p1 = _mm512_shuffle_i32x4(a[k], a[4 + k], 0xEE);       // groups 0,1: quarters 2,3
    const V q0 = _mm512_shuffle_i32x4(a[8 + k], a[12 + k], 0x44);  // groups 2,3: quarters 0,1
    const V q1 = _mm512_shuffle_i32x4(a[8 + k], a[12 + k], 0xEE);  // groups 2,3: quarters 2,3
    r[0 + k] = _mm512_shuffle_i32x4(p0, q0, 0x88);
    r[4 + k] = _mm512_shuffle_i32x4(p0, q0, 0xDD);
    r[8 + k] = _mm512_shuffle_i32x4(p1, q1, 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(p1, q1, 0xDD);
  }
}

void HashPass(const uint8_t* const* lanes, size_t count, size_t blocks, const uint64_t* counters, uint8_t flags,
              uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  alignas(64) uint32_t counter_low[kLanes];
  alignas(64) uint32_t counter_high[kLanes];
  for (size_t i = 0; i < kLanes; ++i) {
    counter_low[i] = static_cast<uint32_t>(counters[i]);
    counter_high[i] = static_cast<uint32_t>(counters[i] >> 32);
  }
  V h[8];
  for (unsigned i = 0; i < 8; ++i) h[i] = Set(kIv[i]);
  V m[16];
  V v[16];
  for (size_t b = 0; b < blocks; ++b) {
    for (size_t i = 0; i < kLanes; ++i) {
      m[i] = _mm512_loadu_si512(lanes[i] + b * kBlockBytes);
      // 16 streams 1 KiB apart: ask for each lane's next blocks early (data fresh from a DMA is not in cache).
      _mm_prefetch(reinterpret_cast<const char*>(lanes[i] + (b + kPrefetchBlocks) * kBlockBytes), _MM_HINT_T0);
    }
    Transpose16x16(m);
    uint8_t block_flags = flags;
    if (b == 0) block_flags |= flags_start;
    if (b + 1 == blocks) block_flags |= flags_end;
    for (unsigned i = 0; i < 8; ++i) v[i] = h[i];
    for (unsigned i = 0; i < 4; ++i) v[8 + i] = Set(kIv[i]);
    v[12] = _mm512_load_si512(counter_low);
    v[13] = _mm512_load_si512(counter_high);
    v[14] = Set(static_cast<uint32_t>(kBlockBytes));
    v[15] = Set(block_flags);
    Rounds(v, m);
    for (unsigned i = 0; i < 8; ++i) h[i] = Xor(v[i], v[i + 8]);
  }
  // h[w] holds word w of every lane's CV; after a transpose (the upper 8
  // rows empty) row i holds lane i's CV in its low 256 bits.
  V rows[16];
  for (unsigned w = 0; w < 8; ++w) {
    rows[w] = h[w];
    rows[8 + w] = _mm512_setzero_si512();
  }
  Transpose16x16(rows);
  for (size_t i = 0; i < count; ++i)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * kCvBytes), _mm512_castsi512_si256(rows[i]));
}

}  // namespace

void HashManyAvx512(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                    bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  assert(blocks > 0);
  const uint8_t* lanes[kLanes];
  uint64_t counters[kLanes];
  for (size_t first = 0; first < count; first += kLanes) {
    const size_t n = count - first < kLanes ? count - first : kLanes;
    // Lanes past n repeat input `first` (valid memory; their results are dropped).
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

#pragma GCC diagnostic pop
#pragma GCC pop_options

#else  // not x86-64: never selected (KernelSupported says no)

namespace devmove {
namespace blake3 {
void HashManyAvx512(const uint8_t* data, size_t stride, size_t count, size_t blocks, uint64_t counter,
                    bool increment, uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t* out) {
  HashManyPortable(data, stride, count, blocks, counter, increment, flags, flags_start, flags_end, out);
}
}  // namespace blake3
}  // namespace devmove

#endif
