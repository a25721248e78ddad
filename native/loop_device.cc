#include "loop_device.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cassert>
#include <cstring>

namespace devmove {

// The kernel encodes the backing file's device numbers with
// huge_encode_dev(): the new 64-bit dev_t layout, which makedev() decodes.
static_assert(sizeof(loop_info64::lo_device) == 8 && sizeof(loop_info64::lo_rdevice) == 8,
              "LOOP_GET_STATUS64 carries 64-bit device numbers");

bool ReadLoopStatus(const std::string& path, LoopStatus* status, SysError* error) {
  assert(status != nullptr && error != nullptr);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *error = SysError::Make(errno, "open", path);
    return false;
  }
  loop_info64 info{};
  const int r = ioctl(fd, LOOP_GET_STATUS64, &info);
  const int saved = errno;
  close(fd);
  if (r != 0) {
    *error = SysError::Make(saved, "ioctl", path, -1, "LOOP_GET_STATUS64");
    return false;
  }
  status->backing_dev = static_cast<dev_t>(info.lo_device);
  status->backing_inode = info.lo_inode;
  status->backing_rdev = static_cast<dev_t>(info.lo_rdevice);
  status->offset_bytes = info.lo_offset;
  status->size_limit_bytes = info.lo_sizelimit;
  const char* name = reinterpret_cast<const char*>(info.lo_file_name);
  status->file_name.assign(name, strnlen(name, sizeof info.lo_file_name));
  return true;
}

}  // namespace devmove
