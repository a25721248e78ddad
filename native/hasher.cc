#include "hasher.h"

#include <dlfcn.h>
#include <errno.h>

#include <cstdlib>
#include <mutex>

#include "blake3_tree.h"

namespace devmove {
namespace {

// The few EVP entry points used, resolved once from the process's symbols.
struct Evp {
  void* (*get_digestbyname)(const char*) = nullptr;
  void* (*ctx_new)() = nullptr;
  void (*ctx_free)(void*) = nullptr;
  int (*init_ex)(void*, const void*, void*) = nullptr;
  int (*update)(void*, const void*, size_t) = nullptr;
  int (*final_ex)(void*, unsigned char*, unsigned int*) = nullptr;
  bool ok = false;
};

template <typename T>
bool Resolve(T* fn, const char* name) {
  *fn = reinterpret_cast<T>(dlsym(RTLD_DEFAULT, name));
  return *fn != nullptr;
}

const Evp& GetEvp() {
  static Evp evp;
  static std::once_flag once;
  std::call_once(once, [] {
    evp.ok = Resolve(&evp.get_digestbyname, "EVP_get_digestbyname") && Resolve(&evp.ctx_new, "EVP_MD_CTX_new") &&
             Resolve(&evp.ctx_free, "EVP_MD_CTX_free") && Resolve(&evp.init_ex, "EVP_DigestInit_ex") &&
             Resolve(&evp.update, "EVP_DigestUpdate") && Resolve(&evp.final_ex, "EVP_DigestFinal_ex");
  });
  return evp;
}

}  // namespace

Hasher::Hasher() = default;

std::unique_ptr<Hasher> Hasher::CreateBlake3(SysError* error) {
  const char* wanted = std::getenv("DEVMOVE_BLAKE3_KERNEL");
  const blake3::Kernel* kernel = blake3::FindKernel(wanted ? wanted : "auto");
  if (kernel == nullptr) {
    *error = SysError::Make(EINVAL, "hash", {}, -1,
                            std::string("DEVMOVE_BLAKE3_KERNEL=") + wanted +
                                ": not a BLAKE3 kernel this CPU runs (portable, avx2, avx512, auto)");
    return nullptr;
  }
  std::unique_ptr<Hasher> h(new Hasher());
  h->algorithm_ = "blake3";
  h->implementation_ = kernel->name;
  h->blake3_.reset(new Blake3Stream(*kernel));
  return h;
}

std::unique_ptr<Hasher> Hasher::Create(const std::string& algorithm, SysError* error) {
  if (algorithm == "blake3") return CreateBlake3(error);
  const Evp& evp = GetEvp();
  if (!evp.ok) {
    *error = SysError::Make(ENOSYS, "hash", {}, -1,
                            "no OpenSSL in this process to compute '" + algorithm + "' (Node provides it)");
    return nullptr;
  }
  const void* md = evp.get_digestbyname(algorithm.c_str());
  if (md == nullptr) {
    *error = SysError::Make(EINVAL, "hash", {}, -1, "unknown digest algorithm '" + algorithm + "'");
    return nullptr;
  }
  std::unique_ptr<Hasher> h(new Hasher());
  h->algorithm_ = algorithm;
  h->implementation_ = "openssl";
  h->ctx_ = evp.ctx_new();
  if (h->ctx_ == nullptr || evp.init_ex(h->ctx_, md, nullptr) != 1) {
    *error = SysError::Make(ENOMEM, "hash", {}, -1, "could not start a '" + algorithm + "' digest");
    return nullptr;
  }
  return h;
}

Hasher::~Hasher() {
  if (ctx_ != nullptr) GetEvp().ctx_free(ctx_);
}

void Hasher::Update(const uint8_t* data, size_t length) {
  if (finished_ || length == 0) return;
  if (blake3_) {
    blake3_->Update(data, length);
  } else {
    GetEvp().update(ctx_, data, length);
  }
}

std::string Hasher::FinalHex() {
  if (blake3_) {
    if (finished_) return {};
    finished_ = true;
    return blake3_->FinalHex();
  }
  unsigned char digest[64 + 16];
  unsigned int length = 0;
  if (finished_ || GetEvp().final_ex(ctx_, digest, &length) != 1) return {};
  finished_ = true;
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

}  // namespace devmove
