// A message digest of the bytes a copy reads, computed on the engine's thread
// in source order. The algorithms come from the OpenSSL that the host process
// already carries: Node exports libcrypto's EVP interface, so the addon
// resolves it at run time (dlsym) and neither links libcrypto nor needs
// libssl-dev to build. Without a host OpenSSL (the standalone native test)
// Create() fails with a clear message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sys_error.h"

namespace devmove {

class Hasher {
 public:
  // `algorithm` is an OpenSSL digest name: sha256, sha512, sha1, md5,
  // blake2b512, sha3-256, ...
  static std::unique_ptr<Hasher> Create(const std::string& algorithm, SysError* error);
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void Update(const uint8_t* data, size_t length);
  // Lower-case hex digest; the hasher cannot be updated afterwards.
  std::string FinalHex();
  const std::string& algorithm() const { return algorithm_; }

 private:
  Hasher() = default;
  std::string algorithm_;
  void* ctx_ = nullptr;  // EVP_MD_CTX*
  bool finished_ = false;
};

}  // namespace devmove
