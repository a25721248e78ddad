// A regular (image) file as a source or target.
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

#include "buffer_pool.h"
#include "local_endpoint.h"

namespace devmove {
namespace {

// True when `path` would be created on the filesystem that holds /dev itself
// (devtmpfs), where a mistyped device name must not become a regular file.
// Separate mounts below /dev (such as /dev/shm) are ordinary filesystems.
bool WouldCreateInDevtmpfs(const std::string& path) {
  struct stat dir {}, dev {};
  if (stat(ParentDirectory(path).c_str(), &dir) != 0 || stat("/dev", &dev) != 0) return false;
  return dir.st_dev == dev.st_dev;
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

// Refusals before creating a file: never through a dangling link, never in /dev.
SysError CheckCreation(const std::string& path) {
  struct stat link {};
  if (lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    // A dangling symbolic link: creating through it would put the file
    // wherever the link points (into /dev, say) unchecked.
    char to[4096];
    const ssize_t n = readlink(path.c_str(), to, sizeof to - 1);
    const std::string where = n > 0 ? std::string(to, static_cast<size_t>(n)) : std::string("?");
    return SysError::Make(ENOENT, "open", path, -1,
                          "is a dangling symbolic link (to " + where + "); devmove does not create a target through a link");
  }
  if (WouldCreateInDevtmpfs(path)) {
    // dd would create a regular file in /dev for a mistyped device name; a
    // migration tool must not silently copy a disk into RAM-backed devtmpfs.
    return SysError::Make(ENOENT, "open", path, -1, "no such device (devmove does not create files under /dev)");
  }
  return {};
}

}  // namespace

std::unique_ptr<Endpoint> FileEndpoint::Open(const OpenRequest& r, bool exists, SysError* error) {
  std::unique_ptr<FileEndpoint> e(new FileEndpoint());
  e->path_ = e->open_path_ = r.path;
  e->kind_ = EndpointKind::kRegularFile;
  const bool creating = !exists && r.for_write && r.create;
  if (creating && (*error = CheckCreation(r.path)).failed()) return nullptr;
  int flags = AccessFlags(r);
  if (r.for_write && r.create) {
    flags |= O_CREAT;
    // A file that did not exist a moment ago is created exclusively: never
    // through a link planted since, never someone else's new file.
    if (r.exclusive_create || !exists) flags |= O_EXCL;
  }
  e->buffered_fd_ = open(r.path.c_str(), flags, 0644);
  if (e->buffered_fd_ < 0) {
    *error = SysError::Make(errno, "open", r.path);
    return nullptr;
  }
  e->created_ = !exists;
  struct stat st {};
  *error = e->Identify(&st);
  if (error->failed()) return nullptr;
  if (!S_ISREG(st.st_mode)) {
    *error = SysError::Make(S_ISDIR(st.st_mode) ? EISDIR : ESTALE, "open", r.path, -1,
                            "is no longer a regular file (it changed while being opened)");
    return nullptr;
  }
  if (const char* pseudo = PseudoFilesystem(e->buffered_fd_)) {
    *error = SysError::Make(EINVAL, "open", r.path, -1, std::string("is on ") + pseudo + " (a kernel interface, not storage)");
    e->UnlinkIfCreated();
    return nullptr;
  }
  const uint32_t alignment = e->ReadGeometry(st);
  *error = e->OpenDirectTwin(r, alignment);
  if (error->failed()) return nullptr;
  return e;
}

uint32_t FileEndpoint::ReadGeometry(const struct stat& st) {
  size_bytes_ = static_cast<uint64_t>(st.st_size);
  caps_.physical_block_bytes = static_cast<uint32_t>(st.st_blksize);
  caps_.durable_flush = true;
  caps_.rereadable = true;
  caps_.grows = true;
  // Hole punching; a filesystem without it answers EOPNOTSUPP and zeros are written.
  caps_.zero_ranges = true;
  uint32_t alignment = 0;
  struct statx sx {};
  if (statx(buffered_fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    // 0, or a memory alignment above the pool's: the filesystem says no O_DIRECT on this file.
    if (sx.stx_dio_offset_align != 0 && sx.stx_dio_mem_align <= BufferPool::kAlignment) alignment = sx.stx_dio_offset_align;
  } else {
    // No DIOALIGN answer (older kernel, or a filesystem such as tmpfs that
    // does not report it): assume the filesystem block size.
    alignment = std::max<uint32_t>(512, static_cast<uint32_t>(st.st_blksize));
  }
  caps_.logical_block_bytes = alignment ? alignment : 512;
  return alignment;
}

SysError FileEndpoint::Truncate(uint64_t size_bytes, bool by_open) {
  assert(!by_open || size_bytes == 0);
  if (by_open) {
    // Cut to nothing as GNU dd does, with O_TRUNC on an open (coreutils
    // tests/dd/misc.sh): some files take that and refuse ftruncate. Opened
    // through /proc/self/fd it is this very file, whatever its path names now
    // (reopening the path could truncate a file swapped in meanwhile); only
    // without /proc does ftruncate do it.
    const std::string self = "/proc/self/fd/" + std::to_string(buffered_fd_);
    const int fd = open(self.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
      close(fd);
      size_bytes_ = 0;
      return {};
    }
    if (ftruncate(buffered_fd_, 0) != 0) return SysError::Make(errno, "ftruncate", path_);
  } else if (ftruncate(buffered_fd_, static_cast<off_t>(size_bytes)) != 0) {
    return SysError::Make(errno, "ftruncate", path_);
  }
  size_bytes_ = size_bytes;
  return {};
}

void FileEndpoint::SyncDirectoryEntry() {
  if (!created_) return;
  // A new file's directory entry must be durable too.
  const int dfd = open(ParentDirectory(open_path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  fsync(dfd);
  close(dfd);
}

void FileEndpoint::RefreshSize() {
  struct stat st {};
  if (fstat(buffered_fd_, &st) == 0) size_bytes_ = static_cast<uint64_t>(st.st_size);
}

void FileEndpoint::UnlinkIfCreated() {
  if (!created_) return;
  struct stat now {};
  // Only the file this object created: the same inode still at the path.
  if (stat(open_path_.c_str(), &now) == 0 && now.st_dev == identity_.dev && now.st_ino == identity_.ino) {
    unlink(open_path_.c_str());
  }
  created_ = false;
}

}  // namespace devmove
