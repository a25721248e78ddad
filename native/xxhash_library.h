// libxxhash (Debian package libxxhash0), loaded at run time with
// dlopen("libxxhash.so.0"), as libudev is (udev_library.h): building needs no
// libxxhash-dev and the addon loads without it; only the per-block digests of
// a verified copy need it, and say so (ELIBACC) when it is missing.
//
// Only XXH3-128 is used: a 128-bit non-cryptographic digest per block, at
// tens of GB/s, so a copy can remember what it read in 16 bytes per block and
// verify the target without reading the source again. Debian builds
// libxxhash with run-time dispatch: the XXH3_128bits_dispatch entry point
// picks SSE2/AVX2/AVX-512 itself; without it (other builds) the portable
// entry point XXH3_128bits is used. The signatures are xxhash.h's (stable
// since 0.8.0, 2020): XXH128_hash_t is returned by value, low half first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "shared_library.h"
#include "sys_error.h"

namespace devmove {

// XXH128_hash_t, field for field.
struct Xxh128 {
  uint64_t low64 = 0;
  uint64_t high64 = 0;
  bool operator==(const Xxh128& o) const { return low64 == o.low64 && high64 == o.high64; }
  bool operator!=(const Xxh128& o) const { return !(*this == o); }
};

class XxhashLibrary {
 public:
  static constexpr const char* kDefaultName = "libxxhash.so.0";

  // dlopen(name) and resolve XXH3-128. On failure returns nullptr and fills
  // `error` (ELIBACC, syscall 'dlopen' or 'dlsym', path = name, and which
  // package to install).
  static std::shared_ptr<const XxhashLibrary> Load(const std::string& name, SysError* error);
  XxhashLibrary(const XxhashLibrary&) = delete;
  XxhashLibrary& operator=(const XxhashLibrary&) = delete;

  // XXH3-128 with seed 0 (what `xxhsum -H2` prints). Thread-safe.
  Xxh128 Hash128(const void* data, size_t length) const { return hash128_(data, length); }
  // The canonical form xxhsum prints: big-endian, high half first.
  static std::string CanonicalHex(const Xxh128& digest);
  // 'XXH3_128bits_dispatch' or 'XXH3_128bits': which entry point is in use.
  const std::string& entry_point() const { return entry_point_; }
  const std::string& name() const { return so_->name(); }

 private:
  using Hash128Fn = Xxh128 (*)(const void*, size_t);
  XxhashLibrary() = default;
  std::unique_ptr<SharedLibrary> so_;
  std::string entry_point_;
  Hash128Fn hash128_ = nullptr;
};

}  // namespace devmove
