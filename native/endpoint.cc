// What every endpoint shares, and OpenEndpoint(): the one place that looks at
// a path (or standard input/output) and decides which kind of endpoint it is.
#include "endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>

#include "local_endpoint.h"
#include "nbd_endpoint.h"
#include "stream_endpoint.h"

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

// Standard input or output: a stream as it is, or — when the shell gave us a
// regular file or a block device (`devmove of=/dev/sdc < disk.img`) — that
// object opened again through /proc, with random access and O_DIRECT, from
// the descriptor's current position (as dd continues from it). Append mode
// keeps it a stream (every write goes to the end).
std::unique_ptr<Endpoint> OpenStandardStream(const OpenRequest& r, const CancelFlag& cancel, SysError* error) {
  assert(r.fd == 0 || r.fd == 1);
  struct stat st {};
  if (fstat(r.fd, &st) != 0) {
    *error = SysError::Make(errno, "fstat", r.path, -1,
                            r.fd == 0 ? "standard input is not open" : "standard output is not open");
    return nullptr;
  }
  const int status = fcntl(r.fd, F_GETFL);
  const bool append = status >= 0 && (status & O_APPEND);
  if ((S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) && !append) {
    OpenRequest again = r;
    again.path = "/proc/self/fd/" + std::to_string(r.fd);
    again.fd = OpenRequest::kNoDescriptor;
    again.create = false;
    again.exclusive_create = false;
    std::unique_ptr<Endpoint> local = S_ISBLK(st.st_mode) ? BlockEndpoint::Open(again, error)
                                                          : FileEndpoint::Open(again, /*exists=*/true, error);
    if (!local) {
      error->path = r.path;
      return nullptr;
    }
    local->RenameForReports(r.path);
    const off_t at = lseek(r.fd, 0, SEEK_CUR);
    local->set_base_offset(at > 0 ? static_cast<uint64_t>(at) : 0);
    local->ShareOffsetWith(r.fd);
    return local;
  }
  (void)cancel;
  return StreamEndpoint::FromDescriptor(r, st, error);
}

}  // namespace

bool StorageIdentity::Same(const StorageIdentity& other) const {
  if (kind != other.kind) return false;
  if (kind == EndpointKind::kBlockDevice) return rdev == other.rdev;
  if (kind == EndpointKind::kNbd) return name == other.name;
  return dev == other.dev && ino == other.ino;
}

const char* Endpoint::kind_name() const {
  switch (kind_) {
    case EndpointKind::kBlockDevice: return "block";
    case EndpointKind::kRegularFile: return "file";
    case EndpointKind::kPipe: return "pipe";
    case EndpointKind::kSocket: return "socket";
    case EndpointKind::kCharacterDevice: return "character";
    case EndpointKind::kNbd: return "nbd";
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

void Endpoint::LeaveSharedOffsetAt(uint64_t position) const {
  // Best effort: an lseek on a regular file or block device does not fail
  // for an offset that was just read or written.
  if (shared_fd_ >= 0) (void)lseek(shared_fd_, static_cast<off_t>(base_offset_ + position), SEEK_SET);
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

SysError Endpoint::DataExtents(uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                               bool* supported) {
  (void)max_extents;
  *supported = false;
  answer->data.assign(1, {from, to - from});
  answer->answered_to = to;
  return {};
}

std::string ParentDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::unique_ptr<Endpoint> OpenEndpoint(const OpenRequest& r, const CancelFlag& cancel, SysError* error) {
  if (r.nbd.enabled) return NbdEndpoint::Open(r, cancel, error);
  if (r.fd != OpenRequest::kNoDescriptor) return OpenStandardStream(r, cancel, error);
  struct stat before {};
  const bool exists = stat(r.path.c_str(), &before) == 0;
  if (!exists && errno != ENOENT) {
    *error = SysError::Make(errno, "stat", r.path);
    return nullptr;
  }
  if (exists && S_ISFIFO(before.st_mode)) return StreamEndpoint::OpenFifo(r, cancel, error);
  if (exists && S_ISBLK(before.st_mode)) return BlockEndpoint::Open(r, error);
  if (exists && !S_ISREG(before.st_mode)) {
    // Character devices and sockets named by path are not storage (/dev/zero
    // never ends, /dev/null keeps nothing); through standard input or output
    // they are streams like a pipe.
    *error = SysError::Make(S_ISDIR(before.st_mode) ? EISDIR : EINVAL, "open", r.path, -1,
                            std::string("is ") + TypeName(before.st_mode) +
                                "; devmove copies block devices, regular files and pipes");
    return nullptr;
  }
  return FileEndpoint::Open(r, exists, error);
}

}  // namespace devmove
