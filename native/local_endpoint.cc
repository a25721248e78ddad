#include "local_endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cassert>
#include <cstring>

namespace devmove {

LocalEndpoint::~LocalEndpoint() {
  if (direct_fd_ >= 0) close(direct_fd_);
  if (buffered_fd_ >= 0) close(buffered_fd_);
}

int LocalEndpoint::AccessFlags(const OpenRequest& r) {
  int flags = O_CLOEXEC;
  if (r.for_write) {
    flags |= r.read_back ? O_RDWR : O_WRONLY;
    if (r.durability == Durability::kDsync) flags |= O_DSYNC;
    if (r.durability == Durability::kSync) flags |= O_SYNC;
  } else {
    flags |= O_RDONLY;
    if (r.noatime) flags |= O_NOATIME;
  }
  return flags;
}

SysError LocalEndpoint::Identify(struct stat* st) {
  assert(buffered_fd_ >= 0);
  if (fstat(buffered_fd_, st) != 0) return SysError::Make(errno, "fstat", path_);
  identity_.kind = kind_;
  identity_.dev = st->st_dev;
  identity_.ino = st->st_ino;
  identity_.rdev = st->st_rdev;
  return {};
}

SysError LocalEndpoint::OpenDirectTwin(const OpenRequest& r, uint32_t alignment) {
  assert(buffered_fd_ >= 0 && direct_fd_ < 0);
  if (r.direct == DirectMode::kNever) {
    direct_note_ = "direct I/O not requested";
    return {};
  }
  if (alignment == 0) {
    direct_note_ = "the filesystem does not support O_DIRECT for this file";
  } else {
    // A second descriptor on the same object: never O_CREAT/O_TRUNC, and the
    // exclusive block-device claim is already held by the first one.
    const int fd = open(open_path_.c_str(), AccessFlags(r) | O_DIRECT);
    if (fd < 0) {
      direct_note_ = std::string("open with O_DIRECT failed: ") + std::strerror(errno);
    } else {
      struct stat again {};
      if (fstat(fd, &again) != 0 || again.st_dev != identity_.dev || again.st_ino != identity_.ino) {
        close(fd);
        return SysError::Make(ESTALE, "open", path_, -1, "path changed while it was being opened");
      }
      direct_fd_ = fd;
      caps_.direct_alignment = alignment;
    }
  }
  if (direct_fd_ < 0 && r.direct == DirectMode::kAlways) {
    UnlinkIfCreated();
    return SysError::Make(EINVAL, "open", path_, -1, "direct I/O was required but " + direct_note_);
  }
  return {};
}

bool LocalEndpoint::DirectUsable(uint64_t offset, uint64_t length) const {
  if (direct_fd_ < 0) return false;
  return offset % caps_.direct_alignment == 0 && length % caps_.direct_alignment == 0;
}

void LocalEndpoint::Submit(IoDriver& driver, IoOp& op) {
  assert(op.owner != nullptr && !op.queued);
  op.offset = base_offset_ + op.position;
  op.positioned = true;
  op.may_block = false;
  op.finisher = this;
  op.direct = false;
  op.fd = buffered_fd_;
  if (op.kind == IoKind::kRead || op.kind == IoKind::kWrite) {
    assert(op.length > 0 && op.length <= op.capacity);
    const uint32_t align = caps_.direct_alignment;
    // An unaligned read tail can still go through O_DIRECT by reading up to
    // the next block boundary: the buffer has room, a block device's size is
    // a multiple of its block size and a regular file returns short at EOF.
    if (op.kind == IoKind::kRead && direct_fd_ >= 0 && op.offset % align == 0) {
      const uint64_t rounded = (static_cast<uint64_t>(op.length) + align - 1) / align * align;
      if (rounded <= op.capacity) op.length = static_cast<uint32_t>(rounded);
    }
    op.direct = DirectUsable(op.offset, op.length);
    if (op.direct) op.fd = direct_fd_;
  }
  driver.Submit(&op);
}

SysError LocalEndpoint::Flush(bool metadata) {
  // On a block device either call flushes the device's volatile write cache.
  const int r = metadata ? fsync(buffered_fd_) : fdatasync(buffered_fd_);
  if (r != 0) return SysError::Make(errno, metadata ? "fsync" : "fdatasync", path_);
  return {};
}

void LocalEndpoint::DropCache() { posix_fadvise(buffered_fd_, 0, 0, POSIX_FADV_DONTNEED); }

}  // namespace devmove
