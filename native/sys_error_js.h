// A SysError as JavaScript sees it, shared by the device manager's Node-API
// files (udev_node.h, blkid_node.h): `{errno (positive), syscall, path?,
// detail?}` objects, and Errors carrying one as `sysError`, which
// src/devices/manager.ts turns into DevmoveErrors.
#pragma once

#include <napi.h>

#include <string.h>

#include <string>

#include "sys_error.h"

namespace devmove {

inline Napi::Object SysErrorToJs(Napi::Env env, const SysError& e) {
  Napi::Object info = Napi::Object::New(env);
  info.Set("errno", e.errno_value);
  info.Set("syscall", e.syscall);
  if (!e.path.empty()) info.Set("path", e.path);
  if (!e.message.empty()) info.Set("detail", e.message);
  return info;
}

inline Napi::Error ToJsError(Napi::Env env, const SysError& e) {
  std::string message = e.syscall;
  if (!e.path.empty()) message += " '" + e.path + "'";
  message += ": " + (e.message.empty() ? std::string(strerror(e.errno_value)) : e.message);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("sysError", SysErrorToJs(env, e));
  return error;
}

}  // namespace devmove
