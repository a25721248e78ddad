// A failed system call, kept as the kernel reported it (positive errno), with
// enough context for JS to build a Node-style fs error: which call, on which
// path, at which byte offset.
#pragma once

#include <cstdint>
#include <string>

namespace devmove {

struct SysError {
  int errno_value = 0;          // positive errno; 0 = no error
  std::string syscall;          // 'open', 'read', 'write', 'fdatasync', 'io_uring_setup', ...
  std::string path;             // device or file the call was about ('' when none)
  int64_t offset = -1;          // byte offset of the failed I/O on `path`; -1 when not an I/O
  std::string message;          // extra human detail, e.g. why io_uring is unavailable

  bool failed() const { return errno_value != 0; }

  static SysError Make(int errno_value, std::string syscall, std::string path = {},
                       int64_t offset = -1, std::string message = {}) {
    SysError e;
    e.errno_value = errno_value;
    e.syscall = std::move(syscall);
    e.path = std::move(path);
    e.offset = offset;
    e.message = std::move(message);
    return e;
  }
};

}  // namespace devmove
