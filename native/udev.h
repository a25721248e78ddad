// The udev objects the device manager uses, one RAII class per libudev object:
// Udev (the context), UdevDevice, UdevEnumerate, UdevMonitor. Each holds a
// reference on what it was made from (device → context → library), so they
// can be released in any order and the library is unloaded after the last.
// Pure C++ (no Node-API); single-threaded like libudev itself.
//
// Without a udev daemon (no /run/udev) libudev still reads sysfs: uevent
// properties (DEVNAME, DEVTYPE, MAJOR, MINOR, PARTN), sysattrs, the kernel's
// uevents; the udev database (ID_MODEL, ID_SERIAL, ID_WWN, DEVLINKS) is then
// absent and reported as absent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sys_error.h"
#include "udev_library.h"

namespace devmove {

class Udev;

// What the device manager reads from one udev_device: copied out, so the
// record outlives the device.
struct UdevDeviceRecord {
  std::string syspath;
  std::string sysname;
  std::string subsystem;
  std::string devnode;     // "" when none
  std::string devtype;     // "disk" | "partition" | "" ...
  std::string action;      // monitor events only: "add" | "remove" | "change" | ...
  uint64_t seqnum = 0;     // monitor events only (0 when unknown)
  bool has_devnum = false;
  uint32_t major = 0;
  uint32_t minor = 0;
  bool initialized = false;  // in the udev database (always false without a udev daemon)
  std::vector<std::pair<std::string, std::string>> properties;
  std::vector<std::string> devlinks;
  // Identity attributes of the whole disk (for a partition, its parent's),
  // by sysattr path ("device/model", "serial", ...), present ones only.
  std::vector<std::pair<std::string, std::string>> disk_sysattrs;
  std::string disk_sysname;  // partitions: the parent disk's kernel name
};

class Udev {
 public:
  static std::shared_ptr<Udev> New(std::shared_ptr<const UdevLibrary> library, SysError* error);
  ~Udev();
  Udev(const Udev&) = delete;
  Udev& operator=(const Udev&) = delete;

  udev* get() const { return udev_; }
  const UdevApi& api() const { return library_->api(); }

 private:
  Udev() = default;
  std::shared_ptr<const UdevLibrary> library_;
  udev* udev_ = nullptr;
};

class UdevDevice {
 public:
  // nullptr + error (ENODEV when there is no such device) on failure.
  static std::unique_ptr<UdevDevice> FromSyspath(std::shared_ptr<Udev> udev, const std::string& syspath,
                                                 SysError* error);
  static std::unique_ptr<UdevDevice> FromDevnum(std::shared_ptr<Udev> udev, char type, uint32_t major,
                                                uint32_t minor, SysError* error);
  static std::unique_ptr<UdevDevice> FromSubsystemSysname(std::shared_ptr<Udev> udev, const std::string& subsystem,
                                                          const std::string& sysname, SysError* error);
  // Takes ownership of a device libudev handed out (udev_monitor_receive_device).
  static std::unique_ptr<UdevDevice> Adopt(std::shared_ptr<Udev> udev, udev_device* device);

  ~UdevDevice();
  UdevDevice(const UdevDevice&) = delete;
  UdevDevice& operator=(const UdevDevice&) = delete;

  UdevDeviceRecord Describe() const;

 private:
  UdevDevice() = default;
  std::shared_ptr<Udev> udev_;
  udev_device* device_ = nullptr;
};

class UdevEnumerate {
 public:
  static std::unique_ptr<UdevEnumerate> New(std::shared_ptr<Udev> udev, SysError* error);
  ~UdevEnumerate();
  UdevEnumerate(const UdevEnumerate&) = delete;
  UdevEnumerate& operator=(const UdevEnumerate&) = delete;

  // Syspaths of every device of `subsystem` (devices without a udev database
  // entry included), in libudev's order.
  SysError ScanSubsystem(const std::string& subsystem, std::vector<std::string>* syspaths);

 private:
  UdevEnumerate() = default;
  std::shared_ptr<Udev> udev_;
  udev_enumerate* enumerate_ = nullptr;
};

class UdevMonitor {
 public:
  // source: "kernel" (raw uevents, no udev daemon needed) or "udev" (after the
  // udev daemon processed them). `subsystem`: "" for every subsystem. The
  // socket is non-blocking and bound (receiving) on return.
  static std::unique_ptr<UdevMonitor> New(std::shared_ptr<Udev> udev, const std::string& source,
                                          const std::string& subsystem, SysError* error);
  ~UdevMonitor();
  UdevMonitor(const UdevMonitor&) = delete;
  UdevMonitor& operator=(const UdevMonitor&) = delete;

  int fd() const;
  // The next queued device event, or nullptr when none is queued (or the
  // message was not one for us: libudev drops those silently).
  std::unique_ptr<UdevDevice> Receive();
  const std::string& source() const { return source_; }

 private:
  UdevMonitor() = default;
  std::shared_ptr<Udev> udev_;
  udev_monitor* monitor_ = nullptr;
  std::string source_;
};

}  // namespace devmove
