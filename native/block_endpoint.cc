// A block device as a source or target.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>

#include "local_endpoint.h"

namespace devmove {
namespace {

constexpr const char* kReadOnlyDevice =
    "the device is read-only (blockdev --setrw clears the flag, if that is intended)";

// A block device's exclusive claim can outlive its last user for a while: a
// process killed with SIGKILL releases its io_uring (and the descriptors the
// ring holds) asynchronously, in a kernel worker, tens of milliseconds later
// and longer on a loaded machine. Mounts and holders were refused before we
// got here, so an EBUSY now is most likely that: retry, bounded.
constexpr int kExclusiveBusyRetryMs = 3000;
constexpr int kExclusiveBusyPauseMaxMs = 100;

int OpenExclusiveBlock(const std::string& path, int flags) {
  assert(flags & O_EXCL);
  int waited_ms = 0;
  int pause_ms = 5;
  // Bounded: waited_ms grows by at least 5 per pass up to kExclusiveBusyRetryMs.
  for (;;) {
    const int fd = open(path.c_str(), flags);
    if (fd >= 0 || errno != EBUSY || waited_ms >= kExclusiveBusyRetryMs) return fd;
    const timespec pause{0, static_cast<long>(pause_ms) * 1000 * 1000};
    nanosleep(&pause, nullptr);
    waited_ms += pause_ms;
    pause_ms = std::min(pause_ms * 2, kExclusiveBusyPauseMaxMs);
  }
}

// A block device's capacity to write zeroes (what fallocate(PUNCH_HOLE)
// turns into): queue/write_zeroes_max_bytes, on the disk for a partition.
uint64_t WriteZeroesMaxBytes(dev_t rdev) {
  for (const char* rel : {"queue/write_zeroes_max_bytes", "../queue/write_zeroes_max_bytes"}) {
    const std::string path = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)) +
                             "/" + rel;
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    unsigned long long value = 0;
    const int n = std::fscanf(f, "%llu", &value);
    std::fclose(f);
    if (n == 1) return value;
  }
  return 0;
}

// Why opening failed, in words, where the errno alone misleads.
std::string ExplainOpenFailure(const OpenRequest& r, int err, bool exclusive) {
  if (err == EBUSY && exclusive)
    return "device is busy: mounted, or in use by LVM/md/dm or another exclusive opener (still after " +
           std::to_string(kExclusiveBusyRetryMs) + " ms)";
  if ((err == EPERM || err == EROFS || err == EACCES) && r.for_write) {
    // The kernel answers EPERM for a read-only block device; say so.
    const int probe = open(r.path.c_str(), O_RDONLY | O_CLOEXEC);
    int read_only = 0;
    if (probe >= 0) {
      if (ioctl(probe, BLKROGET, &read_only) != 0) read_only = 0;
      close(probe);
    }
    if (read_only) return kReadOnlyDevice;
  }
  return {};
}

}  // namespace

std::unique_ptr<Endpoint> BlockEndpoint::Open(const OpenRequest& r, SysError* error) {
  std::unique_ptr<BlockEndpoint> e(new BlockEndpoint());
  e->path_ = e->open_path_ = r.path;
  e->kind_ = EndpointKind::kBlockDevice;
  int flags = AccessFlags(r);
  // Exclusive claim: fails with EBUSY while the device is mounted or held by
  // device-mapper, md or another exclusive opener.
  const bool exclusive = r.for_write && r.exclusive;
  if (exclusive) flags |= O_EXCL;
  e->buffered_fd_ = exclusive ? OpenExclusiveBlock(r.path, flags) : open(r.path.c_str(), flags);
  if (e->buffered_fd_ < 0) {
    const int err = errno;
    *error = SysError::Make(err, "open", r.path, -1, ExplainOpenFailure(r, err, exclusive));
    return nullptr;
  }
  struct stat st {};
  *error = e->Identify(&st);
  if (error->failed()) return nullptr;
  if (!S_ISBLK(st.st_mode)) {
    *error = SysError::Make(ESTALE, "open", r.path, -1, "path changed while it was being opened");
    return nullptr;
  }
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0;
  if (ioctl(e->buffered_fd_, BLKGETSIZE64, &size) != 0) {
    *error = SysError::Make(errno, "ioctl", r.path, -1, "BLKGETSIZE64 failed");
    return nullptr;
  }
  if (ioctl(e->buffered_fd_, BLKSSZGET, &logical) != 0 || logical <= 0) logical = 512;
  if (ioctl(e->buffered_fd_, BLKPBSZGET, &physical) != 0 || physical == 0) physical = static_cast<unsigned>(logical);
  int read_only = 0;
  // Linux 6.x lets O_WRONLY open a read-only block device and fails each
  // write with EPERM; refuse before the first write instead.
  if (r.for_write && ioctl(e->buffered_fd_, BLKROGET, &read_only) == 0 && read_only) {
    *error = SysError::Make(EROFS, "open", r.path, -1, kReadOnlyDevice);
    return nullptr;
  }
  e->size_bytes_ = size;
  EndpointCaps& caps = e->caps_;
  caps.logical_block_bytes = static_cast<uint32_t>(logical);
  caps.physical_block_bytes = physical;
  caps.durable_flush = true;
  caps.rereadable = true;
  caps.zero_ranges = r.for_write && WriteZeroesMaxBytes(st.st_rdev) > 0;
  if (!caps.zero_ranges) {
    e->zero_ranges_note_ =
        "the device cannot guarantee zeroes after a discard (queue/write_zeroes_max_bytes is 0): zero blocks are "
        "written";
  }
  *error = e->OpenDirectTwin(r, static_cast<uint32_t>(logical));
  if (error->failed()) return nullptr;
  return e;
}

}  // namespace devmove
