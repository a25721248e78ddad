// A source or target opened for a copy: a block device or a regular (image)
// file, with its geometry and up to two descriptors on it — one with O_DIRECT
// for aligned I/O and one without, used only for what O_DIRECT cannot do
// (an unaligned tail, an unaligned offset, a filesystem without O_DIRECT).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "sys_error.h"

namespace devmove {

enum class DirectMode { kAuto, kAlways, kNever };

// The directory a path's last component lives in ("." for a bare name).
std::string ParentDirectory(const std::string& path);
enum class Durability { kFdatasync, kFsync, kDsync, kSync, kNone };

struct OpenRequest {
  std::string path;
  bool for_write = false;
  bool read_back = false;          // target only: open read-write, to verify what was written
  DirectMode direct = DirectMode::kAuto;
  bool noatime = false;            // source only: O_NOATIME
  bool create = false;             // target only: create a regular file when missing
  bool exclusive_create = false;   // target only: fail if it exists (dd conv=excl)
  bool exclusive = true;           // target block devices: O_EXCL claim (off only when forced)
  Durability durability = Durability::kFdatasync;  // target only: dsync/sync open flags
};

class DeviceFile {
 public:
  enum class Kind { kBlockDevice, kRegularFile };

  static std::unique_ptr<DeviceFile> Open(const OpenRequest& request, SysError* error);
  ~DeviceFile();
  DeviceFile(const DeviceFile&) = delete;
  DeviceFile& operator=(const DeviceFile&) = delete;

  // Descriptor for an I/O at [offset, offset+length): the O_DIRECT one when
  // the range is aligned to direct_alignment(), else the buffered one.
  int FdFor(uint64_t offset, uint64_t length) const;
  bool DirectUsable(uint64_t offset, uint64_t length) const;

  // Regular files only: set the size (dd truncates the target at seek=).
  int Truncate(uint64_t size_bytes, SysError* error);
  // Refresh size_bytes() after a target file grew.
  void RefreshSize();
  // A failed copy that wrote nothing removes the file it created (and only that file).
  void UnlinkIfCreated();

  Kind kind() const { return kind_; }
  const char* kind_name() const { return kind_ == Kind::kBlockDevice ? "block" : "file"; }
  const std::string& path() const { return path_; }
  uint64_t size_bytes() const { return size_bytes_; }
  uint32_t logical_block_bytes() const { return logical_block_bytes_; }
  uint32_t physical_block_bytes() const { return physical_block_bytes_; }
  uint32_t direct_alignment() const { return direct_alignment_; }
  bool has_direct() const { return direct_fd_ >= 0; }
  const std::string& direct_note() const { return direct_note_; }
  int direct_fd() const { return direct_fd_; }
  int buffered_fd() const { return buffered_fd_; }
  dev_t st_dev() const { return st_dev_; }
  ino_t st_ino() const { return st_ino_; }
  dev_t st_rdev() const { return st_rdev_; }
  bool created() const { return created_; }

 private:
  DeviceFile() = default;
  std::string path_;
  Kind kind_ = Kind::kRegularFile;
  int buffered_fd_ = -1;
  int direct_fd_ = -1;
  uint64_t size_bytes_ = 0;
  uint32_t logical_block_bytes_ = 512;
  uint32_t physical_block_bytes_ = 512;
  uint32_t direct_alignment_ = 512;
  std::string direct_note_;
  dev_t st_dev_ = 0;
  ino_t st_ino_ = 0;
  dev_t st_rdev_ = 0;
  bool created_ = false;
};

}  // namespace devmove
