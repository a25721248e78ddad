// Node-API side of the device manager, included by addon.cc only (every other
// .cc is built without Node's headers, see CMakeLists.txt): the per-env libudev
// (loaded on first use), the enumeration functions, and the UdevMonitor class,
// which watches a udev netlink socket on the env's libuv loop.
//
// Errors are thrown as JS Errors carrying `sysError: {errno (positive),
// syscall, path?, detail?}` (sys_error_js.h); src/devices/manager.ts turns
// them into DevmoveErrors.
#pragma once

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sys_error.h"
#include "sys_error_js.h"
#include "udev.h"
#include "udev_library.h"

namespace devmove {
namespace udev_node {

// Per-env state: the library, loaded on the first device-manager call (never
// at addon load), and retried on the next call while it is missing.
class UdevEnv {
 public:
  std::shared_ptr<const UdevLibrary> Library(Napi::Env env) {
    if (library_) return library_;
    SysError error;
    library_ = UdevLibrary::Load(LibraryName(), &error);
    if (!library_) throw ToJsError(env, error);
    return library_;
  }

  std::shared_ptr<Udev> NewUdev(Napi::Env env) {
    SysError error;
    std::shared_ptr<Udev> udev = Udev::New(Library(env), &error);
    if (!udev) throw ToJsError(env, error);
    return udev;
  }

  // Loaded or not, without throwing: for status reports.
  Napi::Value Status(Napi::Env env) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("library", LibraryName());
    SysError error;
    if (!library_) library_ = UdevLibrary::Load(LibraryName(), &error);
    out.Set("available", library_ != nullptr);
    if (!library_) out.Set("error", SysErrorToJs(env, error));
    return out;
  }

 private:
  // DEVMOVE_LIBUDEV names another library (tests use it to simulate a
  // missing libudev); read per load, not cached.
  static std::string LibraryName() {
    const char* override_name = getenv("DEVMOVE_LIBUDEV");
    return override_name != nullptr && *override_name != '\0' ? override_name : UdevLibrary::kDefaultName;
  }

  std::shared_ptr<const UdevLibrary> library_;
};

inline Napi::Object RecordToJs(Napi::Env env, const UdevDeviceRecord& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("syspath", r.syspath);
  o.Set("sysname", r.sysname);
  o.Set("subsystem", r.subsystem);
  if (!r.devnode.empty()) o.Set("devnode", r.devnode);
  if (!r.devtype.empty()) o.Set("devtype", r.devtype);
  if (!r.action.empty()) o.Set("action", r.action);
  if (r.seqnum != 0) o.Set("seqnum", static_cast<double>(r.seqnum));
  if (r.has_devnum) {
    o.Set("major", r.major);
    o.Set("minor", r.minor);
  }
  o.Set("initialized", r.initialized);
  Napi::Object properties = Napi::Object::New(env);
  for (const auto& [name, value] : r.properties) properties.Set(name, value);
  o.Set("properties", properties);
  Napi::Array devlinks = Napi::Array::New(env, r.devlinks.size());
  for (uint32_t i = 0; i < r.devlinks.size(); ++i) devlinks.Set(i, r.devlinks[i]);
  o.Set("devlinks", devlinks);
  Napi::Object sysattrs = Napi::Object::New(env);
  for (const auto& [name, value] : r.disk_sysattrs) sysattrs.Set(name, value);
  o.Set("diskSysattrs", sysattrs);
  if (!r.disk_sysname.empty()) o.Set("disk", r.disk_sysname);
  return o;
}

// udevListBlockDevices(): every device of the block subsystem.
inline Napi::Value ListBlockDevices(const Napi::CallbackInfo& info, UdevEnv& udev_env) {
  Napi::Env env = info.Env();
  std::shared_ptr<Udev> udev = udev_env.NewUdev(env);
  SysError error;
  std::unique_ptr<UdevEnumerate> enumerate = UdevEnumerate::New(udev, &error);
  if (!enumerate) throw ToJsError(env, error);
  std::vector<std::string> syspaths;
  error = enumerate->ScanSubsystem("block", &syspaths);
  if (error.failed()) throw ToJsError(env, error);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (const std::string& syspath : syspaths) {
    SysError ignored;  // a device removed since the scan: skip it
    std::unique_ptr<UdevDevice> device = UdevDevice::FromSyspath(udev, syspath, &ignored);
    if (device) out.Set(n++, RecordToJs(env, device->Describe()));
  }
  return out;
}

// udevBlockDevice({ sysname } | { major, minor }): one block device, or
// undefined when there is none.
inline Napi::Value BlockDevice(const Napi::CallbackInfo& info, UdevEnv& udev_env) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "udevBlockDevice({ sysname } | { major, minor })");
  const Napi::Object query = info[0].As<Napi::Object>();
  const Napi::Value sysname = query.Get("sysname");
  const Napi::Value major = query.Get("major");
  const Napi::Value minor = query.Get("minor");
  std::shared_ptr<Udev> udev = udev_env.NewUdev(env);
  SysError error;
  std::unique_ptr<UdevDevice> device;
  if (sysname.IsString()) {
    device = UdevDevice::FromSubsystemSysname(udev, "block", sysname.As<Napi::String>().Utf8Value(), &error);
  } else if (major.IsNumber() && minor.IsNumber()) {
    device = UdevDevice::FromDevnum(udev, 'b', major.As<Napi::Number>().Uint32Value(),
                                    minor.As<Napi::Number>().Uint32Value(), &error);
  } else {
    throw Napi::TypeError::New(env, "udevBlockDevice({ sysname } | { major, minor })");
  }
  if (!device) {
    if (error.errno_value == ENODEV || error.errno_value == ENOENT) return env.Undefined();
    throw ToJsError(env, error);
  }
  return RecordToJs(env, device->Describe());
}

// new UdevMonitor(source: 'kernel' | 'udev', subsystem: string, onEvent)
//   onEvent(record) for each device event; onEvent({ error: {errno, syscall} })
//   once if the socket fails (the monitor is closed after it).
//   .ref() / .unref(): whether the poll handle keeps the event loop alive
//   (unreferenced at first); .close(): idempotent; .fd for diagnostics.
//
// While open, the JS object is kept alive (a strong reference) so a watcher
// nobody holds keeps delivering; close() drops it. The uv_poll_t lives in a
// Poller that outlives the wrapper until libuv's close callback; an async
// env-cleanup hook closes it when the env goes away first (process exit,
// worker.terminate()), and Node waits for that close.
class UdevMonitorWrap : public Napi::ObjectWrap<UdevMonitorWrap> {
 public:
  static Napi::Function Define(Napi::Env env, UdevEnv* udev_env) {
    return DefineClass(env, "UdevMonitor",
                       {InstanceMethod<&UdevMonitorWrap::JsRef>("ref"),
                        InstanceMethod<&UdevMonitorWrap::JsUnref>("unref"),
                        InstanceMethod<&UdevMonitorWrap::JsHasRef>("hasRef"),
                        InstanceMethod<&UdevMonitorWrap::JsClose>("close"),
                        InstanceAccessor<&UdevMonitorWrap::JsFd>("fd"),
                        InstanceAccessor<&UdevMonitorWrap::JsSource>("source")},
                       udev_env);
  }

  explicit UdevMonitorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdevMonitorWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsFunction())
      throw Napi::TypeError::New(env, "UdevMonitor(source: 'kernel' | 'udev', subsystem: string, onEvent: function)");
    auto* udev_env = static_cast<UdevEnv*>(info.Data());
    source_ = info[0].As<Napi::String>().Utf8Value();
    const std::string subsystem = info[1].As<Napi::String>().Utf8Value();
    std::shared_ptr<Udev> udev = udev_env->NewUdev(env);
    SysError error;
    std::unique_ptr<UdevMonitor> monitor = UdevMonitor::New(udev, source_, subsystem, &error);
    if (!monitor) throw ToJsError(env, error);

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
      throw Napi::Error::New(env, "UdevMonitor: no libuv loop for this env");
    auto poller = std::make_unique<Poller>();
    poller->monitor = std::move(monitor);
    poller->owner = this;
    poller->handle.data = poller.get();
    int rc = uv_poll_init(loop, &poller->handle, poller->monitor->fd());
    if (rc < 0) throw ToJsError(env, SysError::Make(-rc, "uv_poll_init", source_));
    // From here the handle is registered with the loop: it must be closed
    // with uv_close, never just freed.
    Poller* p = poller.release();
    uv_unref(reinterpret_cast<uv_handle_t*>(&p->handle));
    rc = uv_poll_start(&p->handle, UV_READABLE, &UdevMonitorWrap::OnPoll);
    if (rc < 0) {
      p->owner = nullptr;
      p->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), &UdevMonitorWrap::OnClosed);
      throw ToJsError(env, SysError::Make(-rc, "uv_poll_start", source_));
    }
    if (napi_add_async_cleanup_hook(env, &UdevMonitorWrap::OnEnvTeardown, p, &p->hook) != napi_ok) p->hook = nullptr;
    poller_ = p;
    env_ = env;
    on_event_ = Napi::Persistent(info[2].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "devmove:UdevMonitor");
    Ref();  // stay alive while open
  }

  ~UdevMonitorWrap() override { CloseHandle(); }

 private:
  struct Poller {
    uv_poll_t handle{};
    std::unique_ptr<UdevMonitor> monitor;  // released after the handle is closed
    UdevMonitorWrap* owner = nullptr;      // nullptr once closed or the env is going away
    napi_async_cleanup_hook_handle hook = nullptr;
    bool closing = false;
  };

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    if (poller_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&poller_->handle));
    return info.This();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    if (poller_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&poller_->handle));
    return info.This();
  }

  Napi::Value JsHasRef(const Napi::CallbackInfo& info) {
    const bool ref = poller_ != nullptr && uv_has_ref(reinterpret_cast<uv_handle_t*>(&poller_->handle)) != 0;
    return Napi::Boolean::New(info.Env(), ref);
  }

  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  Napi::Value JsFd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), poller_ != nullptr ? poller_->monitor->fd() : -1);
  }

  Napi::Value JsSource(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), source_); }

  // JS thread: stop, release the callback and the keep-alive reference.
  void Close() {
    if (poller_ == nullptr) return;
    CloseHandle();
    on_event_.Reset();
    async_context_.reset();
    Unref();  // may let GC collect this object: touch nothing after it
  }

  void CloseHandle() {
    Poller* p = poller_;
    if (p == nullptr) return;
    poller_ = nullptr;
    p->owner = nullptr;
    if (!p->closing) {
      p->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), &UdevMonitorWrap::OnClosed);
    }
  }

  static void OnClosed(uv_handle_t* handle) {
    std::unique_ptr<Poller> p(static_cast<Poller*>(handle->data));
    if (p->hook != nullptr) napi_remove_async_cleanup_hook(p->hook);
    // p (and the monitor socket) are released here.
  }

  static void OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg) {
    auto* p = static_cast<Poller*>(arg);
    if (p->owner != nullptr) p->owner->poller_ = nullptr;
    p->owner = nullptr;
    if (!p->closing) {
      p->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), &UdevMonitorWrap::OnClosed);
    }
    // else: OnClosed is already due and removes the hook.
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* p = static_cast<Poller*>(handle->data);
    if (p->owner == nullptr) return;
    try {
      Drain(p, status, events);
    } catch (const Napi::Error&) {
      // Node-API refuses to run JS once the env is being torn down (an event
      // arriving while an unreferenced watcher's process exits): nothing can
      // take the events any more. No exception may cross into libuv's C
      // frames (it would terminate the process); stop polling, and the env
      // teardown hook closes the handle.
      uv_poll_stop(handle);
    }
  }

  static void Drain(Poller* p, int status, int /*events*/) {
    UdevMonitorWrap* self = p->owner;
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      Napi::Object event = Napi::Object::New(env);
      Napi::Object error = Napi::Object::New(env);
      error.Set("errno", -status);
      error.Set("syscall", "uv_poll");
      error.Set("path", self->source_);
      event.Set("error", error);
      self->Deliver(event);
      if (p->owner != nullptr) p->owner->Close();
      return;
    }
    // Drain what is queued, in bounded batches so one burst cannot hold the
    // loop: level-triggered polling brings us back for the rest.
    for (int i = 0; i < 256 && p->owner != nullptr; ++i) {
      std::unique_ptr<UdevDevice> device = p->monitor->Receive();
      if (!device) break;
      Napi::Object event = RecordToJs(env, device->Describe());
      event.Set("source", self->source_);
      device.reset();
      self->Deliver(event);  // may close (p->owner becomes nullptr; p stays valid until OnClosed)
    }
  }

  void Deliver(Napi::Object event) {
    Napi::Env env(env_);
    try {
      // MakeCallback: async hooks see the call, and the microtask queue
      // (promise reactions of an async iterator) runs after it.
      on_event_.MakeCallback(Value(), {event}, *async_context_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());  // an exception thrown by a listener: 'uncaughtException'
    }
  }

  Poller* poller_ = nullptr;
  napi_env env_ = nullptr;
  std::string source_;
  Napi::FunctionReference on_event_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

}  // namespace udev_node
}  // namespace devmove
