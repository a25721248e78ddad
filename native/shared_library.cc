#include "shared_library.h"

#include <dlfcn.h>
#include <errno.h>

namespace devmove {

std::unique_ptr<SharedLibrary> SharedLibrary::Open(const std::string& name, const std::string& package,
                                                   SysError* error) {
  dlerror();  // clear
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    *error = SysError::Make(ELIBACC, "dlopen", name, -1,
                            name + " is not available: install the " + package + " package" +
                                (reason ? std::string(" (") + reason + ")" : std::string()));
    return nullptr;
  }
  return std::unique_ptr<SharedLibrary>(new SharedLibrary(handle, name));
}

SharedLibrary::~SharedLibrary() { dlclose(handle_); }

void* SharedLibrary::Symbol(const char* symbol) const { return dlsym(handle_, symbol); }

SysError SharedLibrary::Lacks(const std::string& symbol, const std::string& advice) const {
  return SysError::Make(ELIBACC, "dlsym", name_, -1, name_ + " lacks " + symbol + ": " + advice);
}

}  // namespace devmove
