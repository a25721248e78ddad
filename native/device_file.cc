#include "device_file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "buffer_pool.h"

namespace devmove {
namespace {

int OpenFlags(const OpenRequest& r) {
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

constexpr const char* kReadOnlyDevice =
    "the device is read-only (blockdev --setrw clears the flag, if that is intended)";

// True when `path` would be created on the filesystem that holds /dev itself
// (devtmpfs), where a mistyped device name must not become a regular file.
// Separate mounts below /dev (such as /dev/shm) are ordinary filesystems.
bool WouldCreateInDevtmpfs(const std::string& path) {
  struct stat dir {}, dev {};
  if (stat(ParentDirectory(path).c_str(), &dir) != 0 || stat("/dev", &dev) != 0) return false;
  return dir.st_dev == dev.st_dev;
}

// What a path is, for a refusal ("is a character device").
const char* TypeName(mode_t mode) {
  return S_ISDIR(mode)    ? "a directory"
         : S_ISCHR(mode)  ? "a character device"
         : S_ISFIFO(mode) ? "a pipe (FIFO)"
         : S_ISSOCK(mode) ? "a socket"
                          : "not a regular file";
}

// Kernel interfaces that look like regular files but are not storage:
// writing an image to /proc/sysrq-trigger or a sysfs attribute must never
// happen, and reading one "copies" a few bytes of text.
const char* PseudoFilesystem(int fd) {
  struct statfs fs {};
  if (fstatfs(fd, &fs) != 0) return nullptr;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC: return "procfs";
    case SYSFS_MAGIC: return "sysfs";
    case DEBUGFS_MAGIC: return "debugfs";
    case TRACEFS_MAGIC: return "tracefs";
    case SECURITYFS_MAGIC: return "securityfs";
    case CGROUP_SUPER_MAGIC: return "cgroupfs";
    case CGROUP2_SUPER_MAGIC: return "cgroup2fs";
    case BPF_FS_MAGIC: return "bpffs";
    case EFIVARFS_MAGIC: return "efivarfs";
    case 0x62656570UL: return "configfs";  // CONFIGFS_MAGIC
    default: return nullptr;
  }
}

// A block device's exclusive claim can outlive its last user for a while: a
// process killed with SIGKILL releases its io_uring (and the descriptors the
// ring holds) asynchronously, in a kernel worker, tens of milliseconds later
// and longer on a loaded machine. Mounts and holders were refused before we
// got here, so an EBUSY now is most likely that: retry, bounded.
constexpr int kExclusiveBusyRetryMs = 3000;

int OpenExclusiveBlock(const std::string& path, int flags) {
  assert(flags & O_EXCL);
  int waited_ms = 0;
  int pause_ms = 5;
  for (;;) {
    const int fd = open(path.c_str(), flags);
    if (fd >= 0 || errno != EBUSY || waited_ms >= kExclusiveBusyRetryMs) return fd;
    const timespec pause{0, static_cast<long>(pause_ms) * 1000 * 1000};
    nanosleep(&pause, nullptr);
    waited_ms += pause_ms;
    pause_ms = std::min(pause_ms * 2, 100);
  }
}

}  // namespace

std::string ParentDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::unique_ptr<DeviceFile> DeviceFile::Open(const OpenRequest& r, SysError* error) {
  std::unique_ptr<DeviceFile> f(new DeviceFile());
  f->path_ = r.path;
  int flags = OpenFlags(r);

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
  struct stat link {};
  if (!exists && r.for_write && r.create && lstat(r.path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    // A dangling symbolic link: creating through it would put the file
    // wherever the link points (into /dev, say) unchecked.
    char to[4096];
    const ssize_t n = readlink(r.path.c_str(), to, sizeof to - 1);
    const std::string where = n > 0 ? std::string(to, static_cast<size_t>(n)) : std::string("?");
    *error = SysError::Make(ENOENT, "open", r.path, -1,
                            "is a dangling symbolic link (to " + where + "); devmove does not create a target through a link");
    return nullptr;
  }
  if (!exists && r.for_write && r.create && WouldCreateInDevtmpfs(r.path)) {
    // dd would create a regular file in /dev for a mistyped device name; a
    // migration tool must not silently copy a disk into RAM-backed devtmpfs.
    *error = SysError::Make(ENOENT, "open", r.path, -1,
                            "no such device (devmove does not create files under /dev)");
    return nullptr;
  }
  if (exists && r.for_write && S_ISBLK(before.st_mode)) {
    // Exclusive claim: fails with EBUSY while the device is mounted or held
    // by device-mapper, md or another exclusive opener.
    if (r.exclusive) flags |= O_EXCL;
  } else if (r.for_write && r.create) {
    flags |= O_CREAT;
    // A file that did not exist a moment ago is created exclusively: never
    // through a link planted since, never someone else's new file.
    if (r.exclusive_create || !exists) flags |= O_EXCL;
  }

  const bool exclusive_block = (flags & O_EXCL) && exists && S_ISBLK(before.st_mode);
  f->buffered_fd_ = exclusive_block ? OpenExclusiveBlock(r.path, flags) : open(r.path.c_str(), flags, 0644);
  if (f->buffered_fd_ < 0) {
    const int err = errno;
    std::string message;
    if (err == EBUSY && exclusive_block)
      message = "device is busy: mounted, or in use by LVM/md/dm or another exclusive opener (still after " +
                std::to_string(kExclusiveBusyRetryMs) + " ms)";
    if ((err == EPERM || err == EROFS || err == EACCES) && r.for_write && exists && S_ISBLK(before.st_mode)) {
      // The kernel answers EPERM for a read-only block device; say so.
      const int probe = open(r.path.c_str(), O_RDONLY | O_CLOEXEC);
      int read_only = 0;
      if (probe >= 0) {
        if (ioctl(probe, BLKROGET, &read_only) != 0) read_only = 0;
        close(probe);
      }
      if (read_only) message = kReadOnlyDevice;
    }
    *error = SysError::Make(err, "open", r.path, -1, message);
    return nullptr;
  }
  f->created_ = !exists;

  struct stat st {};
  if (fstat(f->buffered_fd_, &st) != 0) {
    *error = SysError::Make(errno, "fstat", r.path);
    return nullptr;
  }
  f->st_dev_ = st.st_dev;
  f->st_ino_ = st.st_ino;
  f->st_rdev_ = st.st_rdev;

  if (S_ISBLK(st.st_mode)) {
    f->kind_ = Kind::kBlockDevice;
    uint64_t size = 0;
    int logical = 0;
    unsigned int physical = 0;
    if (ioctl(f->buffered_fd_, BLKGETSIZE64, &size) != 0) {
      *error = SysError::Make(errno, "ioctl", r.path, -1, "BLKGETSIZE64 failed");
      return nullptr;
    }
    if (ioctl(f->buffered_fd_, BLKSSZGET, &logical) != 0 || logical <= 0) logical = 512;
    if (ioctl(f->buffered_fd_, BLKPBSZGET, &physical) != 0 || physical == 0) physical = logical;
    if (r.for_write) {
      // Linux 6.x lets O_WRONLY open a read-only block device and fails each
      // write with EPERM; refuse before the first write instead.
      int read_only = 0;
      if (ioctl(f->buffered_fd_, BLKROGET, &read_only) == 0 && read_only) {
        *error = SysError::Make(EROFS, "open", r.path, -1, kReadOnlyDevice);
        return nullptr;
      }
    }
    f->size_bytes_ = size;
    f->logical_block_bytes_ = static_cast<uint32_t>(logical);
    f->physical_block_bytes_ = physical;
    f->direct_alignment_ = static_cast<uint32_t>(logical);
  } else if (S_ISREG(st.st_mode)) {
    f->kind_ = Kind::kRegularFile;
    if (const char* pseudo = PseudoFilesystem(f->buffered_fd_)) {
      *error = SysError::Make(EINVAL, "open", r.path, -1,
                              std::string("is on ") + pseudo + " (a kernel interface, not storage)");
      if (f->created_) unlink(r.path.c_str());
      return nullptr;
    }
    f->size_bytes_ = static_cast<uint64_t>(st.st_size);
    f->physical_block_bytes_ = static_cast<uint32_t>(st.st_blksize);
    struct statx sx {};
    if (statx(f->buffered_fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN)) {
      if (sx.stx_dio_offset_align == 0 || sx.stx_dio_mem_align > BufferPool::kAlignment) {
        f->direct_alignment_ = 0;  // the filesystem says: no O_DIRECT on this file
      } else {
        f->direct_alignment_ = sx.stx_dio_offset_align;
      }
    } else {
      // No DIOALIGN answer (older kernel, or a filesystem such as tmpfs that
      // does not report it): assume the filesystem block size.
      f->direct_alignment_ = std::max<uint32_t>(512, static_cast<uint32_t>(st.st_blksize));
    }
    f->logical_block_bytes_ = f->direct_alignment_ ? f->direct_alignment_ : 512;
  } else {
    *error = SysError::Make(S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "open", r.path, -1,
                            std::string("is ") + TypeName(st.st_mode) +
                                "; devmove copies block devices and regular files");
    return nullptr;
  }

  if (r.direct == DirectMode::kNever) {
    f->direct_note_ = "direct I/O not requested";
    return f;
  }
  if (f->direct_alignment_ == 0) {
    f->direct_note_ = "the filesystem does not support O_DIRECT for this file";
  } else {
    // A second descriptor on the same object: never O_CREAT/O_TRUNC, and the
    // exclusive block-device claim is already held by the first one.
    const int direct_flags = OpenFlags(r) | O_DIRECT;
    const int fd = open(r.path.c_str(), direct_flags);
    if (fd < 0) {
      f->direct_note_ = std::string("open with O_DIRECT failed: ") + std::strerror(errno);
    } else {
      struct stat again {};
      if (fstat(fd, &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
        close(fd);
        *error = SysError::Make(ESTALE, "open", r.path, -1, "path changed while it was being opened");
        return nullptr;
      }
      f->direct_fd_ = fd;
    }
  }
  if (f->direct_fd_ < 0 && r.direct == DirectMode::kAlways) {
    f->UnlinkIfCreated();
    *error = SysError::Make(EINVAL, "open", r.path, -1, "direct I/O was required but " + f->direct_note_);
    return nullptr;
  }
  return f;
}

bool DeviceFile::DirectUsable(uint64_t offset, uint64_t length) const {
  if (direct_fd_ < 0) return false;
  return offset % direct_alignment_ == 0 && length % direct_alignment_ == 0;
}

int DeviceFile::FdFor(uint64_t offset, uint64_t length) const {
  return DirectUsable(offset, length) ? direct_fd_ : buffered_fd_;
}

int DeviceFile::Truncate(uint64_t size_bytes, SysError* error) {
  assert(kind_ == Kind::kRegularFile);
  if (size_bytes == 0) {
    // Cut to nothing as GNU dd does, with O_TRUNC on an open (coreutils
    // tests/dd/misc.sh): some files take that and refuse ftruncate. Opened
    // through /proc/self/fd, it is this very file, whatever its path names
    // now; only without /proc does ftruncate do it.
    const std::string self = "/proc/self/fd/" + std::to_string(buffered_fd_);
    const int fd = open(self.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
      close(fd);
      size_bytes_ = 0;
      return 0;
    }
  }
  if (ftruncate(buffered_fd_, static_cast<off_t>(size_bytes)) != 0) {
    *error = SysError::Make(errno, "ftruncate", path_);
    return -1;
  }
  size_bytes_ = size_bytes;
  return 0;
}

void DeviceFile::UnlinkIfCreated() {
  if (!created_ || kind_ != Kind::kRegularFile) return;
  struct stat now {};
  // Only the file this object created: the same inode still at the path.
  if (stat(path_.c_str(), &now) == 0 && now.st_dev == st_dev_ && now.st_ino == st_ino_) unlink(path_.c_str());
  created_ = false;
}

void DeviceFile::RefreshSize() {
  if (kind_ != Kind::kRegularFile) return;
  struct stat st {};
  if (fstat(buffered_fd_, &st) == 0) size_bytes_ = static_cast<uint64_t>(st.st_size);
}

DeviceFile::~DeviceFile() {
  if (direct_fd_ >= 0) close(direct_fd_);
  if (buffered_fd_ >= 0) close(buffered_fd_);
}

}  // namespace devmove
