// Local random-access endpoints: a block device or a regular (image) file,
// with its geometry and up to two descriptors on the same object — one with
// O_DIRECT for aligned I/O and one without, used only for what O_DIRECT
// cannot do (an unaligned tail or offset, a filesystem without O_DIRECT).
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "endpoint.h"

namespace devmove {

class LocalEndpoint : public Endpoint {
 public:
  ~LocalEndpoint() override;

  void Submit(IoDriver& driver, IoOp& op) override;
  bool WritesDirect(uint64_t position, uint64_t length) const override {
    return DirectUsable(base_offset_ + position, length);
  }
  std::vector<int> descriptors() const override { return {buffered_fd_, direct_fd_}; }
  SysError Flush(bool metadata) override;
  void DropCache() override;
  SysError DataExtents(uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                       bool* supported) override;

 protected:
  LocalEndpoint() = default;
  // O_RDONLY / O_WRONLY / O_RDWR and the flags the request implies (O_DSYNC,
  // O_SYNC, O_NOATIME), without O_CREAT, O_EXCL or O_DIRECT.
  static int AccessFlags(const OpenRequest& r);
  // fstat of the buffered descriptor, kept as the identity.
  SysError Identify(struct stat* st);
  // Opens the O_DIRECT descriptor on the same object, as the request's direct
  // mode allows. `alignment` is what O_DIRECT needs here (0: the filesystem
  // said no). Fails only when direct I/O was required and is not possible.
  SysError OpenDirectTwin(const OpenRequest& r, uint32_t alignment);
  bool DirectUsable(uint64_t offset, uint64_t length) const;

  std::string open_path_;  // what open(2) was given (path_ may be '-')
  int buffered_fd_ = -1;
  int direct_fd_ = -1;
};

class BlockEndpoint final : public LocalEndpoint {
 public:
  // Opens a block device; a target with O_EXCL (refused while mounted or held),
  // retrying EBUSY for a bounded time, and never when the device is read-only.
  static std::unique_ptr<Endpoint> Open(const OpenRequest& r, SysError* error);
};

class FileEndpoint final : public LocalEndpoint {
 public:
  // Opens (or creates) a regular file. `exists`: stat() found it just before.
  static std::unique_ptr<Endpoint> Open(const OpenRequest& r, bool exists, SysError* error);

  SysError Truncate(uint64_t size_bytes, bool by_open) override;
  void SyncDirectoryEntry() override;
  void RefreshSize() override;
  void UnlinkIfCreated() override;

 private:
  // Geometry from fstat and statx(STATX_DIOALIGN); returns the O_DIRECT alignment (0: none).
  uint32_t ReadGeometry(const struct stat& st);
};

}  // namespace devmove
