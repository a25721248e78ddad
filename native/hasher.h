// A message digest of the bytes a copy reads, computed on the engine's thread
// in source order. The OpenSSL algorithms come from the OpenSSL that the host
// process already carries: Node exports libcrypto's EVP interface, so the
// addon resolves it at run time (dlsym) and neither links libcrypto nor needs
// libssl-dev to build. Without a host OpenSSL (the standalone native test)
// Create() fails with a clear message. 'blake3' is devmove's own (blake3.h),
// on the widest SIMD kernel this CPU has, or the one DEVMOVE_BLAKE3_KERNEL
// names (portable, avx2, avx512: for tests and measurements).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sys_error.h"

namespace devmove {

class Blake3Stream;

class Hasher {
 public:
  // `algorithm` is 'blake3' or an OpenSSL digest name: sha256, sha512, sha1,
  // md5, blake2b512, sha3-256, ...
  static std::unique_ptr<Hasher> Create(const std::string& algorithm, SysError* error);
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void Update(const uint8_t* data, size_t length);
  // Lower-case hex digest; the hasher cannot be updated afterwards.
  std::string FinalHex();
  const std::string& algorithm() const { return algorithm_; }
  // Which code computes it: 'openssl', or the BLAKE3 kernel ('avx512', 'avx2', 'portable').
  const std::string& implementation() const { return implementation_; }

 private:
  Hasher();
  static std::unique_ptr<Hasher> CreateBlake3(SysError* error);
  std::string algorithm_;
  std::string implementation_;
  void* ctx_ = nullptr;  // EVP_MD_CTX*
  std::unique_ptr<Blake3Stream> blake3_;
  bool finished_ = false;
};

}  // namespace devmove
