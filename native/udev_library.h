// libudev, loaded at run time with dlopen("libudev.so.1"): building needs no
// libudev-dev and the addon loads without libudev; only the device manager
// needs it, and says so (ELIBACC) when it is missing.
//
// The few libudev functions the device manager uses are declared here, with
// the signatures of libudev.h (stable ABI since libudev.so.1, 2012). The
// library handle and its function table live in one immutable object shared
// by every udev object made from it, so dlclose runs after the last of them is
// released. No process-global state: each Node environment loads its own
// (dlopen reference-counts the mapping).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "shared_library.h"
#include "sys_error.h"

// libudev's opaque types (global namespace, as in libudev.h).
struct udev;
struct udev_device;
struct udev_enumerate;
struct udev_list_entry;
struct udev_monitor;

namespace devmove {

struct UdevApi {
  // struct udev: the library context
  udev* (*udev_new)(void);
  udev* (*udev_unref)(udev*);
  // udev_enumerate: a scan of /sys
  udev_enumerate* (*udev_enumerate_new)(udev*);
  udev_enumerate* (*udev_enumerate_unref)(udev_enumerate*);
  int (*udev_enumerate_add_match_subsystem)(udev_enumerate*, const char*);
  int (*udev_enumerate_scan_devices)(udev_enumerate*);
  udev_list_entry* (*udev_enumerate_get_list_entry)(udev_enumerate*);
  // udev_list_entry: name/value lists owned by their enumerate or device
  udev_list_entry* (*udev_list_entry_get_next)(udev_list_entry*);
  const char* (*udev_list_entry_get_name)(udev_list_entry*);
  const char* (*udev_list_entry_get_value)(udev_list_entry*);
  // udev_device
  udev_device* (*udev_device_new_from_syspath)(udev*, const char*);
  udev_device* (*udev_device_new_from_devnum)(udev*, char, dev_t);
  udev_device* (*udev_device_new_from_subsystem_sysname)(udev*, const char*, const char*);
  udev_device* (*udev_device_unref)(udev_device*);
  const char* (*udev_device_get_devnode)(udev_device*);
  const char* (*udev_device_get_sysname)(udev_device*);
  const char* (*udev_device_get_syspath)(udev_device*);
  const char* (*udev_device_get_subsystem)(udev_device*);
  const char* (*udev_device_get_devtype)(udev_device*);
  dev_t (*udev_device_get_devnum)(udev_device*);
  const char* (*udev_device_get_action)(udev_device*);
  unsigned long long (*udev_device_get_seqnum)(udev_device*);
  int (*udev_device_get_is_initialized)(udev_device*);
  const char* (*udev_device_get_property_value)(udev_device*, const char*);
  const char* (*udev_device_get_sysattr_value)(udev_device*, const char*);
  udev_list_entry* (*udev_device_get_properties_list_entry)(udev_device*);
  udev_list_entry* (*udev_device_get_devlinks_list_entry)(udev_device*);
  udev_device* (*udev_device_get_parent_with_subsystem_devtype)(udev_device*, const char*, const char*);
  // udev_monitor: a netlink socket ("kernel" or "udev" messages)
  udev_monitor* (*udev_monitor_new_from_netlink)(udev*, const char*);
  udev_monitor* (*udev_monitor_unref)(udev_monitor*);
  int (*udev_monitor_filter_add_match_subsystem_devtype)(udev_monitor*, const char*, const char*);
  int (*udev_monitor_enable_receiving)(udev_monitor*);
  int (*udev_monitor_get_fd)(udev_monitor*);
  udev_device* (*udev_monitor_receive_device)(udev_monitor*);
  // Optional (nullptr when absent): a larger socket buffer, so a burst of
  // events (a partition table with many entries) is not dropped.
  int (*udev_monitor_set_receive_buffer_size)(udev_monitor*, int);
};

class UdevLibrary {
 public:
  static constexpr const char* kDefaultName = "libudev.so.1";

  // dlopen(name) and resolve every function. On failure returns nullptr and
  // fills `error` (ELIBACC, syscall "dlopen" or "dlsym", path = name, and a
  // message saying which package to install).
  static std::shared_ptr<const UdevLibrary> Load(const std::string& name, SysError* error);

  UdevLibrary(const UdevLibrary&) = delete;
  UdevLibrary& operator=(const UdevLibrary&) = delete;

  const UdevApi& api() const { return api_; }
  const std::string& name() const { return so_->name(); }

 private:
  UdevLibrary() = default;
  std::unique_ptr<SharedLibrary> so_;
  UdevApi api_{};
};

}  // namespace devmove
