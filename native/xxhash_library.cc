#include "xxhash_library.h"

#include <dlfcn.h>
#include <errno.h>

namespace devmove {

std::shared_ptr<const XxhashLibrary> XxhashLibrary::Load(const std::string& name, SysError* error) {
  dlerror();  // clear
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    *error = SysError::Make(ELIBACC, "dlopen", name, -1,
                            name + " is not available: install the libxxhash0 package" +
                                (reason ? std::string(" (") + reason + ")" : std::string()));
    return nullptr;
  }
  std::shared_ptr<XxhashLibrary> lib(new XxhashLibrary());
  lib->handle_ = handle;
  lib->name_ = name;
  // The dispatching entry point first: it uses the widest vectors this CPU has.
  for (const char* symbol : {"XXH3_128bits_dispatch", "XXH3_128bits"}) {
    void* address = dlsym(handle, symbol);
    if (address != nullptr) {
      // A function pointer from dlsym's void*: POSIX guarantees this conversion.
      lib->hash128_ = reinterpret_cast<Hash128Fn>(address);
      lib->entry_point_ = symbol;
      break;
    }
  }
  if (lib->hash128_ == nullptr) {
    // lib's destructor dlcloses the handle.
    *error = SysError::Make(ELIBACC, "dlsym", name, -1,
                            name + " lacks XXH3_128bits: install libxxhash0 0.8 or later");
    return nullptr;
  }
  return lib;
}

XxhashLibrary::~XxhashLibrary() {
  if (handle_ != nullptr) dlclose(handle_);
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
