// A system library loaded at run time (dlopen), so that `npm ci` needs no
// -dev package and a machine without the library still runs everything that
// does not need it. libudev, libblkid and libxxhash are loaded through this;
// each wrapper resolves its own functions and names its Debian package in
// the error a missing library or symbol gives.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "sys_error.h"

namespace devmove {

class SharedLibrary final {
 public:
  // The loaded library, or nullptr and *error: ELIBACC from "dlopen", saying
  // "<name> is not available: install the <package> package (<dlerror>)".
  static std::unique_ptr<SharedLibrary> Open(const std::string& name, const std::string& package, SysError* error);

  ~SharedLibrary();  // dlclose
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;

  // *out = the function named `symbol`; false (and *out null) when absent.
  template <typename Fn>
  bool Resolve(const char* symbol, Fn* out) const {
    void* address = Symbol(symbol);
    // A function pointer from dlsym's void*: POSIX guarantees this conversion.
    *out = reinterpret_cast<Fn>(address);
    return address != nullptr;
  }

  // ELIBACC from "dlsym": "<name> lacks <symbol>: <advice>".
  SysError Lacks(const std::string& symbol, const std::string& advice) const;

  const std::string& name() const { return name_; }

 private:
  SharedLibrary(void* handle, std::string name) : handle_(handle), name_(std::move(name)) {}
  void* Symbol(const char* symbol) const;

  void* handle_;
  std::string name_;
};

}  // namespace devmove
