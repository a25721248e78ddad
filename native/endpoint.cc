// What every endpoint shares, and OpenEndpoint(): the one place that looks at
// a path (or standard input/output) and decides which kind of endpoint it is.
#include "endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>

#include "local_endpoint.h"

namespace devmove {
namespace {

// What a path is, for a refusal ("is a character device").
const char* TypeName(mode_t mode) {
  return S_ISDIR(mode)    ? "a directory"
         : S_ISCHR(mode)  ? "a character device"
         : S_ISFIFO(mode) ? "a pipe (FIFO)"
         : S_ISSOCK(mode) ? "a socket"
                          : "not a regular file";
}

}  // namespace

bool StorageIdentity::Same(const StorageIdentity& other) const {
  if (kind != other.kind) return false;
  if (kind == EndpointKind::kBlockDevice) return rdev == other.rdev;
  return dev == other.dev && ino == other.ino;
}

const char* Endpoint::kind_name() const {
  switch (kind_) {
    case EndpointKind::kBlockDevice: return "block";
    case EndpointKind::kRegularFile: return "file";
    case EndpointKind::kPipe: return "pipe";
    case EndpointKind::kSocket: return "socket";
    case EndpointKind::kCharacterDevice: return "character";
  }
  return "file";
}

void Endpoint::Complete(IoOp& op) {
  Finish(op);
  op.owner->Complete(op);
}

SysError Endpoint::Advance(uint64_t bytes, const CancelFlag& cancel) {
  (void)cancel;
  assert(caps_.seekable);
  (void)bytes;
  return {};
}

SysError Endpoint::Truncate(uint64_t size_bytes, bool by_open) {
  (void)size_bytes;
  (void)by_open;
  return SysError::Make(EINVAL, "ftruncate", path_, -1, std::string("cannot truncate ") + kind_name());
}

SysError Endpoint::Flush(bool metadata) {
  (void)metadata;
  return {};
}

std::string ParentDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::unique_ptr<Endpoint> OpenEndpoint(const OpenRequest& r, const CancelFlag& cancel, SysError* error) {
  (void)cancel;
  assert(r.fd == OpenRequest::kNoDescriptor);
  struct stat before {};
  const bool exists = stat(r.path.c_str(), &before) == 0;
  if (!exists && errno != ENOENT) {
    *error = SysError::Make(errno, "stat", r.path);
    return nullptr;
  }
  if (exists && !S_ISREG(before.st_mode) && !S_ISBLK(before.st_mode)) {
    // Before open(): opening a FIFO blocks until its other end opens, and
    // nothing (not even a signal to us) would end the wait.
    *error = SysError::Make(S_ISDIR(before.st_mode) ? EISDIR : EINVAL, "open", r.path, -1,
                            std::string("is ") + TypeName(before.st_mode) +
                                "; devmove copies block devices and regular files");
    return nullptr;
  }
  if (exists && S_ISBLK(before.st_mode)) return BlockEndpoint::Open(r, error);
  return FileEndpoint::Open(r, exists, error);
}

}  // namespace devmove
