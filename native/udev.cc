#include "udev.h"

#include <errno.h>
#include <sys/sysmacros.h>

namespace devmove {

namespace {

// libudev reports failures of pointer-returning calls through errno.
int ErrnoOr(int fallback) { return errno != 0 ? errno : fallback; }

std::string OrEmpty(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

// Identity attributes read from the whole disk's sysfs directory (udev's
// database is preferred by the JS side; these are the kernel's own values).
constexpr const char* kDiskSysattrs[] = {"device/model", "device/vendor", "device/serial",
                                         "serial",       "wwid",          "device/wwid"};

}  // namespace

// ---- Udev -------------------------------------------------------------------

std::shared_ptr<Udev> Udev::New(std::shared_ptr<const UdevLibrary> library, SysError* error) {
  errno = 0;
  udev* u = library->api().udev_new();
  if (u == nullptr) {
    *error = SysError::Make(ErrnoOr(ENOMEM), "udev_new");
    return nullptr;
  }
  std::shared_ptr<Udev> self(new Udev());
  self->library_ = std::move(library);
  self->udev_ = u;
  return self;
}

Udev::~Udev() {
  if (udev_ != nullptr) library_->api().udev_unref(udev_);
}

// ---- UdevDevice -------------------------------------------------------------

std::unique_ptr<UdevDevice> UdevDevice::Adopt(std::shared_ptr<Udev> udev, udev_device* device) {
  if (device == nullptr) return nullptr;
  std::unique_ptr<UdevDevice> self(new UdevDevice());
  self->udev_ = std::move(udev);
  self->device_ = device;
  return self;
}

std::unique_ptr<UdevDevice> UdevDevice::FromSyspath(std::shared_ptr<Udev> udev, const std::string& syspath,
                                                    SysError* error) {
  errno = 0;
  udev_device* d = udev->api().udev_device_new_from_syspath(udev->get(), syspath.c_str());
  if (d == nullptr) {
    *error = SysError::Make(ErrnoOr(ENODEV), "udev_device_new_from_syspath", syspath);
    return nullptr;
  }
  return Adopt(std::move(udev), d);
}

std::unique_ptr<UdevDevice> UdevDevice::FromDevnum(std::shared_ptr<Udev> udev, char type, uint32_t major,
                                                   uint32_t minor, SysError* error) {
  errno = 0;
  udev_device* d = udev->api().udev_device_new_from_devnum(udev->get(), type, makedev(major, minor));
  if (d == nullptr) {
    *error = SysError::Make(ErrnoOr(ENODEV), "udev_device_new_from_devnum",
                            std::to_string(major) + ":" + std::to_string(minor));
    return nullptr;
  }
  return Adopt(std::move(udev), d);
}

std::unique_ptr<UdevDevice> UdevDevice::FromSubsystemSysname(std::shared_ptr<Udev> udev, const std::string& subsystem,
                                                             const std::string& sysname, SysError* error) {
  errno = 0;
  udev_device* d =
      udev->api().udev_device_new_from_subsystem_sysname(udev->get(), subsystem.c_str(), sysname.c_str());
  if (d == nullptr) {
    *error = SysError::Make(ErrnoOr(ENODEV), "udev_device_new_from_subsystem_sysname", sysname);
    return nullptr;
  }
  return Adopt(std::move(udev), d);
}

UdevDevice::~UdevDevice() {
  if (device_ != nullptr) udev_->api().udev_device_unref(device_);
}

UdevDeviceRecord UdevDevice::Describe() const {
  const UdevApi& a = udev_->api();
  UdevDeviceRecord r;
  r.syspath = OrEmpty(a.udev_device_get_syspath(device_));
  r.sysname = OrEmpty(a.udev_device_get_sysname(device_));
  r.subsystem = OrEmpty(a.udev_device_get_subsystem(device_));
  r.devnode = OrEmpty(a.udev_device_get_devnode(device_));
  r.devtype = OrEmpty(a.udev_device_get_devtype(device_));
  r.action = OrEmpty(a.udev_device_get_action(device_));
  r.seqnum = a.udev_device_get_seqnum(device_);
  const dev_t devnum = a.udev_device_get_devnum(device_);
  if (devnum != 0) {
    r.has_devnum = true;
    r.major = major(devnum);
    r.minor = minor(devnum);
  }
  r.initialized = a.udev_device_get_is_initialized(device_) > 0;
  for (udev_list_entry* e = a.udev_device_get_properties_list_entry(device_); e != nullptr;
       e = a.udev_list_entry_get_next(e)) {
    r.properties.emplace_back(OrEmpty(a.udev_list_entry_get_name(e)), OrEmpty(a.udev_list_entry_get_value(e)));
  }
  for (udev_list_entry* e = a.udev_device_get_devlinks_list_entry(device_); e != nullptr;
       e = a.udev_list_entry_get_next(e)) {
    r.devlinks.push_back(OrEmpty(a.udev_list_entry_get_name(e)));
  }
  // A remove event's device is gone from sysfs: reading attributes would
  // only fail, so don't.
  if (r.action == "remove") return r;
  udev_device* disk = device_;
  if (r.devtype == "partition") {
    // Borrowed: owned by (and released with) device_.
    disk = a.udev_device_get_parent_with_subsystem_devtype(device_, "block", "disk");
    if (disk != nullptr) r.disk_sysname = OrEmpty(a.udev_device_get_sysname(disk));
  }
  if (disk != nullptr) {
    for (const char* attr : kDiskSysattrs) {
      const char* value = a.udev_device_get_sysattr_value(disk, attr);
      if (value != nullptr) r.disk_sysattrs.emplace_back(attr, value);
    }
  }
  return r;
}

// ---- UdevEnumerate ----------------------------------------------------------

std::unique_ptr<UdevEnumerate> UdevEnumerate::New(std::shared_ptr<Udev> udev, SysError* error) {
  errno = 0;
  udev_enumerate* e = udev->api().udev_enumerate_new(udev->get());
  if (e == nullptr) {
    *error = SysError::Make(ErrnoOr(ENOMEM), "udev_enumerate_new");
    return nullptr;
  }
  std::unique_ptr<UdevEnumerate> self(new UdevEnumerate());
  self->udev_ = std::move(udev);
  self->enumerate_ = e;
  return self;
}

UdevEnumerate::~UdevEnumerate() {
  if (enumerate_ != nullptr) udev_->api().udev_enumerate_unref(enumerate_);
}

SysError UdevEnumerate::ScanSubsystem(const std::string& subsystem, std::vector<std::string>* syspaths) {
  const UdevApi& a = udev_->api();
  int rc = a.udev_enumerate_add_match_subsystem(enumerate_, subsystem.c_str());
  if (rc < 0) return SysError::Make(-rc, "udev_enumerate_add_match_subsystem", subsystem);
  rc = a.udev_enumerate_scan_devices(enumerate_);
  if (rc < 0) return SysError::Make(-rc, "udev_enumerate_scan_devices", subsystem);
  for (udev_list_entry* e = a.udev_enumerate_get_list_entry(enumerate_); e != nullptr;
       e = a.udev_list_entry_get_next(e)) {
    const char* name = a.udev_list_entry_get_name(e);
    if (name != nullptr) syspaths->emplace_back(name);
  }
  return SysError();
}

// ---- UdevMonitor ------------------------------------------------------------

std::unique_ptr<UdevMonitor> UdevMonitor::New(std::shared_ptr<Udev> udev, const std::string& source,
                                              const std::string& subsystem, SysError* error) {
  if (source != "kernel" && source != "udev") {
    *error = SysError::Make(EINVAL, "udev_monitor_new_from_netlink", source, -1,
                            "the source must be \"kernel\" or \"udev\"");
    return nullptr;
  }
  const UdevApi& a = udev->api();
  errno = 0;
  udev_monitor* m = a.udev_monitor_new_from_netlink(udev->get(), source.c_str());
  if (m == nullptr) {
    *error = SysError::Make(ErrnoOr(EPROTONOSUPPORT), "udev_monitor_new_from_netlink", source);
    return nullptr;
  }
  std::unique_ptr<UdevMonitor> self(new UdevMonitor());
  self->udev_ = std::move(udev);
  self->monitor_ = m;
  self->source_ = source;
  if (!subsystem.empty()) {
    const int rc = a.udev_monitor_filter_add_match_subsystem_devtype(m, subsystem.c_str(), nullptr);
    if (rc < 0) {
      *error = SysError::Make(-rc, "udev_monitor_filter_add_match_subsystem_devtype", source);
      return nullptr;
    }
  }
  if (a.udev_monitor_set_receive_buffer_size != nullptr) {
    (void)a.udev_monitor_set_receive_buffer_size(m, 4 * 1024 * 1024);  // best effort
  }
  const int rc = a.udev_monitor_enable_receiving(m);
  if (rc < 0) {
    *error = SysError::Make(-rc, "udev_monitor_enable_receiving", source);
    return nullptr;
  }
  return self;
}

UdevMonitor::~UdevMonitor() {
  if (monitor_ != nullptr) udev_->api().udev_monitor_unref(monitor_);
}

int UdevMonitor::fd() const { return udev_->api().udev_monitor_get_fd(monitor_); }

std::unique_ptr<UdevDevice> UdevMonitor::Receive() {
  return UdevDevice::Adopt(udev_, udev_->api().udev_monitor_receive_device(monitor_));
}

}  // namespace devmove
