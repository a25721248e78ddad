// What a loop device is attached to, straight from the driver
// (LOOP_GET_STATUS64): the backing file's identity (device and inode of the
// file, and its rdev when the backing "file" is itself a block device), and
// the window of it the loop device shows (offset, size limit). sysfs has the
// backing file's *path* only, which goes stale when the file is renamed or
// deleted; the identity here does not. The storage-identity model (src/storage/
// identity.ts) maps a loop device down to what its bytes live on with this.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "sys_error.h"

namespace devmove {

struct LoopStatus {
  dev_t backing_dev = 0;       // st_dev of the backing file
  uint64_t backing_inode = 0;  // st_ino of the backing file
  dev_t backing_rdev = 0;      // st_rdev of the backing file: nonzero when it is a device node
  uint64_t offset_bytes = 0;
  uint64_t size_limit_bytes = 0;  // 0 = to the end of the backing file
  std::string file_name;       // as the driver keeps it (at most 63 bytes, may be truncated)
};

// Reads the status of the loop device at `path` (opened read-only, never
// written). ENXIO: a loop device with nothing attached; ENOTTY/EINVAL: not a
// loop device.
bool ReadLoopStatus(const std::string& path, LoopStatus* status, SysError* error);

}  // namespace devmove
