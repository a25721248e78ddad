#include "xxhash_library.h"

namespace devmove {

std::shared_ptr<const XxhashLibrary> XxhashLibrary::Load(const std::string& name, SysError* error) {
  std::unique_ptr<SharedLibrary> so = SharedLibrary::Open(name, "libxxhash0", error);
  if (!so) return nullptr;
  std::shared_ptr<XxhashLibrary> lib(new XxhashLibrary());
  lib->so_ = std::move(so);
  const SharedLibrary& dl = *lib->so_;
  // The dispatching entry point first: it uses the widest vectors this CPU has.
  for (const char* symbol : {"XXH3_128bits_dispatch", "XXH3_128bits"}) {
    if (dl.Resolve(symbol, &lib->hash128_)) {
      lib->entry_point_ = symbol;
      break;
    }
  }
  if (lib->hash128_ == nullptr) {
    *error = dl.Lacks("XXH3_128bits", "install libxxhash0 0.8 or later");
    return nullptr;
  }
  return lib;
}

std::string XxhashLibrary::CanonicalHex(const Xxh128& digest) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (uint64_t half : {digest.high64, digest.low64}) {
    for (int shift = 60; shift >= 0; shift -= 4) out.push_back(kHex[(half >> shift) & 15]);
  }
  return out;
}

}  // namespace devmove
