#include "udev_library.h"

#include <dlfcn.h>
#include <errno.h>

namespace devmove {

namespace {

template <typename Fn>
bool Resolve(void* handle, const char* symbol, Fn* out) {
  void* address = dlsym(handle, symbol);
  // A function pointer from dlsym's void*: POSIX guarantees this conversion.
  *out = reinterpret_cast<Fn>(address);
  return address != nullptr;
}

}  // namespace

std::shared_ptr<const UdevLibrary> UdevLibrary::Load(const std::string& name, SysError* error) {
  dlerror();  // clear
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    *error = SysError::Make(ELIBACC, "dlopen", name, -1,
                            name + " is not available: install the libudev1 package" +
                                (reason ? std::string(" (") + reason + ")" : std::string()));
    return nullptr;
  }
  std::shared_ptr<UdevLibrary> lib(new UdevLibrary());
  lib->handle_ = handle;
  lib->name_ = name;
  UdevApi& a = lib->api_;
  const char* missing = nullptr;
#define DEVMOVE_UDEV_RESOLVE(fn) \
  if (missing == nullptr && !Resolve(handle, #fn, &a.fn)) missing = #fn;
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
    // lib's destructor dlcloses the handle.
    *error = SysError::Make(ELIBACC, "dlsym", name, -1,
                            name + " lacks " + missing + ": install a current libudev1 package");
    return nullptr;
  }
  Resolve(handle, "udev_monitor_set_receive_buffer_size", &a.udev_monitor_set_receive_buffer_size);
  return lib;
}

UdevLibrary::~UdevLibrary() {
  if (handle_ != nullptr) dlclose(handle_);
}

}  // namespace devmove
