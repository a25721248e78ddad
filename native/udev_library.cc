#include "udev_library.h"


namespace devmove {

std::shared_ptr<const UdevLibrary> UdevLibrary::Load(const std::string& name, SysError* error) {
  std::unique_ptr<SharedLibrary> so = SharedLibrary::Open(name, "libudev1", error);
  if (!so) return nullptr;
  std::shared_ptr<UdevLibrary> lib(new UdevLibrary());
  lib->so_ = std::move(so);
  const SharedLibrary& dl = *lib->so_;
  UdevApi& a = lib->api_;
  const char* missing = nullptr;
#define DEVMOVE_UDEV_RESOLVE(fn) \
  if (missing == nullptr && !dl.Resolve(#fn, &a.fn)) missing = #fn;
  DEVMOVE_UDEV_RESOLVE(udev_new)
  DEVMOVE_UDEV_RESOLVE(udev_unref)
  DEVMOVE_UDEV_RESOLVE(udev_enumerate_new)
  DEVMOVE_UDEV_RESOLVE(udev_enumerate_unref)
  DEVMOVE_UDEV_RESOLVE(udev_enumerate_add_match_subsystem)
  DEVMOVE_UDEV_RESOLVE(udev_enumerate_scan_devices)
  DEVMOVE_UDEV_RESOLVE(udev_enumerate_get_list_entry)
  DEVMOVE_UDEV_RESOLVE(udev_list_entry_get_next)
  DEVMOVE_UDEV_RESOLVE(udev_list_entry_get_name)
  DEVMOVE_UDEV_RESOLVE(udev_list_entry_get_value)
  DEVMOVE_UDEV_RESOLVE(udev_device_new_from_syspath)
  DEVMOVE_UDEV_RESOLVE(udev_device_new_from_devnum)
  DEVMOVE_UDEV_RESOLVE(udev_device_new_from_subsystem_sysname)
  DEVMOVE_UDEV_RESOLVE(udev_device_unref)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_devnode)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_sysname)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_syspath)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_subsystem)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_devtype)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_devnum)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_action)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_seqnum)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_is_initialized)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_property_value)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_sysattr_value)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_properties_list_entry)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_devlinks_list_entry)
  DEVMOVE_UDEV_RESOLVE(udev_device_get_parent_with_subsystem_devtype)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_new_from_netlink)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_unref)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_filter_add_match_subsystem_devtype)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_enable_receiving)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_get_fd)
  DEVMOVE_UDEV_RESOLVE(udev_monitor_receive_device)
#undef DEVMOVE_UDEV_RESOLVE
  if (missing != nullptr) {
    *error = dl.Lacks(missing, "install a current libudev1 package");
    return nullptr;
  }
  dl.Resolve("udev_monitor_set_receive_buffer_size", &a.udev_monitor_set_receive_buffer_size);
  return lib;
}

}  // namespace devmove
