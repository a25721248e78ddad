#include "stream_endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <vector>

namespace devmove {
namespace {

const char* StreamName(EndpointKind kind) {
  switch (kind) {
    case EndpointKind::kSocket: return "a socket";
    case EndpointKind::kCharacterDevice: return "a character device";
    default: return "a pipe";
  }
}

// io_uring returns -EAGAIN for a non-blocking descriptor instead of waiting
// for the other end, so streams are driven blocking (io_uring then waits by
// polling, without a thread). A FIFO gets a description of its own through
// /proc; anything else has its shared flag cleared.
int BlockingDescriptor(int fd, bool for_write, bool fifo) {
  if (fifo) {
    const std::string again = "/proc/self/fd/" + std::to_string(fd);
    const int own = open(again.c_str(), (for_write ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
    if (own >= 0) {
      fcntl(own, F_SETFL, fcntl(own, F_GETFL) & ~O_NONBLOCK);
      return own;
    }
  }
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return -1;
  const int flags = fcntl(copy, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK)) fcntl(copy, F_SETFL, flags & ~O_NONBLOCK);
  return copy;
}

// A pipe holds 64 KiB by default, so filling one 512 KiB buffer took 8 reads,
// each a round trip through the driver (measured: zstd -dc | devmove ran at
// 0.18 GB/s where dd managed 0.53). Grown to fs.pipe-max-size (1 MiB by
// default; unprivileged processes may go that far), one read fills a buffer.
// Best effort: a pipe that cannot grow keeps working at its size.
void GrowPipe(int fd) {
  long max = 1 << 20;
  if (FILE* f = std::fopen("/proc/sys/fs/pipe-max-size", "r")) {
    if (std::fscanf(f, "%ld", &max) != 1) max = 1 << 20;
    std::fclose(f);
  }
  const long current = fcntl(fd, F_GETPIPE_SZ);
  if (current > 0 && current < max) fcntl(fd, F_SETPIPE_SZ, static_cast<int>(std::min<long>(max, StreamEndpoint::kPipeBytesMax)));
}

void SleepMs(int ms) {
  const timespec pause{0, static_cast<long>(ms) * 1000 * 1000};
  nanosleep(&pause, nullptr);
}

}  // namespace

StreamEndpoint::~StreamEndpoint() {
  if (fd_ >= 0) close(fd_);
}

SysError StreamEndpoint::Describe(const OpenRequest& r, const struct stat& st) {
  kind_ = S_ISSOCK(st.st_mode) ? EndpointKind::kSocket
          : S_ISCHR(st.st_mode) ? EndpointKind::kCharacterDevice
                                : EndpointKind::kPipe;
  for_write_ = r.for_write;
  caps_.seekable = false;
  caps_.size_known = false;
  caps_.logical_block_bytes = 1;
  caps_.physical_block_bytes = 1;
  identity_.kind = kind_;
  identity_.dev = st.st_dev;
  identity_.ino = st.st_ino;
  identity_.rdev = st.st_rdev;
  direct_note_ = std::string(StreamName(kind_)) + " has no O_DIRECT";
  zero_ranges_note_ = std::string(StreamName(kind_)) + " cannot skip or punch zero blocks: they are written";
  if (r.direct == DirectMode::kAlways) {
    return SysError::Make(EINVAL, "open", path_, -1, "direct I/O was required but " + direct_note_);
  }
  return {};
}

std::unique_ptr<Endpoint> StreamEndpoint::FromDescriptor(const OpenRequest& r, const struct stat& st,
                                                         SysError* error) {
  assert(r.fd == 0 || r.fd == 1);
  if (S_ISDIR(st.st_mode)) {
    *error = SysError::Make(EISDIR, "read", r.path, -1, "standard input is a directory");
    return nullptr;
  }
  std::unique_ptr<StreamEndpoint> e(new StreamEndpoint());
  e->path_ = r.path;
  *error = e->Describe(r, st);
  if (error->failed()) return nullptr;
  e->fd_ = BlockingDescriptor(r.fd, r.for_write, S_ISFIFO(st.st_mode));
  if (e->fd_ < 0) {
    *error = SysError::Make(errno, "fcntl", r.path, -1, "could not take over the descriptor");
    return nullptr;
  }
  if (S_ISFIFO(st.st_mode)) GrowPipe(e->fd_);
  return e;
}

std::unique_ptr<Endpoint> StreamEndpoint::OpenFifo(const OpenRequest& r, const CancelFlag& cancel, SysError* error) {
  std::unique_ptr<StreamEndpoint> e(new StreamEndpoint());
  e->path_ = r.path;
  // A reader's non-blocking open succeeds at once; a writer's fails with
  // ENXIO until a reader is there. Each pass waits one slice.
  const int flags = (r.for_write ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC;
  while ((e->fd_ = open(r.path.c_str(), flags)) < 0) {
    if (errno != ENXIO || !r.for_write) {
      *error = SysError::Make(errno, "open", r.path);
      return nullptr;
    }
    if (cancel.load(std::memory_order_relaxed)) {
      *error = SysError::Make(ECANCELED, "copy", r.path, -1, "cancelled while waiting for a reader on the FIFO");
      return nullptr;
    }
    SleepMs(kPeerWaitSliceMs);
  }
  struct stat st {};
  if (fstat(e->fd_, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    *error = SysError::Make(ESTALE, "open", r.path, -1, "path changed while it was being opened");
    return nullptr;
  }
  *error = e->Describe(r, st);
  // A reader must not take "no writer yet" for the end of the data.
  if (!error->failed() && !r.for_write) *error = e->WaitReady(POLLIN, cancel);
  if (error->failed()) return nullptr;
  fcntl(e->fd_, F_SETFL, fcntl(e->fd_, F_GETFL) & ~O_NONBLOCK);
  GrowPipe(e->fd_);
  return e;
}

SysError StreamEndpoint::WaitReady(short events, const CancelFlag& cancel) const {
  // A FIFO whose writer never came reports nothing (Linux reports POLLHUP
  // only once a writer has come and gone): wait until data, a hang-up or a cancel.
  for (;;) {
    pollfd p{fd_, events, 0};
    const int n = poll(&p, 1, kPeerWaitSliceMs);
    if (n < 0 && errno != EINTR) return SysError::Make(errno, "poll", path_);
    if (n > 0 && (p.revents & (events | POLLHUP | POLLERR))) return {};
    if (cancel.load(std::memory_order_relaxed)) {
      return SysError::Make(ECANCELED, "copy", path_, -1, "cancelled while waiting for the other end of the pipe");
    }
  }
}

SysError StreamEndpoint::Advance(uint64_t bytes, const CancelFlag& cancel) {
  if (bytes == 0) return {};
  if (for_write_) {
    return SysError::Make(ESPIPE, "lseek", path_, -1,
                          std::string("cannot seek on ") + StreamName(kind_) + " (seek= needs a seekable target)");
  }
  std::vector<uint8_t> scratch(kSkipChunkBytes);
  uint64_t skipped = 0;
  while (skipped < bytes) {
    SysError error = WaitReady(POLLIN, cancel);
    if (error.failed()) return error;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(scratch.size(), bytes - skipped));
    const ssize_t n = read(fd_, scratch.data(), want);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return SysError::Make(errno, "read", path_, static_cast<int64_t>(skipped));
    if (n == 0) {
      return SysError::Make(EINVAL, "read", path_, -1,
                            "source offset " + std::to_string(bytes) + " bytes is past the end of the source (" +
                                std::to_string(skipped) + " bytes)");
    }
    skipped += static_cast<uint64_t>(n);
  }
  return {};
}

void StreamEndpoint::Submit(IoDriver& driver, IoOp& op) {
  // One op at a time, each where the last one ended: the engine keeps a
  // stream's I/O in order, this checks it.
  assert(op.kind == IoKind::kRead || op.kind == IoKind::kWrite);
  assert(op.kind == (for_write_ ? IoKind::kWrite : IoKind::kRead));
  assert(op.position == position_ && op.length > 0);
  op.fd = fd_;
  op.offset = 0;
  op.positioned = false;
  op.direct = false;
  op.may_block = true;
  op.finisher = this;
  driver.Submit(&op);
}

void StreamEndpoint::Finish(IoOp& op) {
  if (op.result > 0) position_ += static_cast<uint64_t>(op.result);
}

}  // namespace devmove
