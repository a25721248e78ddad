// Node-API side of the content probe (libblkid), included by addon.cc only:
// the per-env libblkid, loaded on the first probe (never at addon load, never
// by a copy), and blkidProbe(), which probes one device node read-only.
//
// Errors are thrown as JS Errors carrying `sysError` (sys_error_js.h).
#pragma once

#include <napi.h>

#include <stdlib.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "blkid_library.h"
#include "sys_error.h"
#include "sys_error_js.h"

namespace devmove {
namespace blkid_node {

// Per-env state: the library, loaded on first use and retried on the next
// call while it is missing (like udev_node::UdevEnv).
class BlkidEnv {
 public:
  std::shared_ptr<const BlkidLibrary> Library(Napi::Env env) {
    SysError error;
    if (!Load(&error)) throw ToJsError(env, error);
    return library_;
  }

  // Loaded or not, without throwing: { library, available, error? }.
  Napi::Value Status(Napi::Env env) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("library", LibraryName());
    SysError error;
    const bool available = Load(&error);
    out.Set("available", available);
    if (!available) out.Set("error", SysErrorToJs(env, error));
    return out;
  }

 private:
  bool Load(SysError* error) {
    if (!library_) library_ = BlkidLibrary::Load(LibraryName(), error);
    return library_ != nullptr;
  }

  // DEVMOVE_LIBBLKID names another library (tests use it to simulate a
  // missing libblkid); read per load, not cached.
  static std::string LibraryName() {
    const char* override_name = getenv("DEVMOVE_LIBBLKID");
    return override_name != nullptr && *override_name != '\0' ? override_name : BlkidLibrary::kDefaultName;
  }

  std::shared_ptr<const BlkidLibrary> library_;
};

constexpr const char* kProbeUsage =
    "blkidProbe(requests: Array<{ path: string, partitions: Array<[major: number, minor: number]> }>)";
// A machine has at most a few thousand block devices, a disk a few hundred
// partitions (GPT: 128 by default).
constexpr uint32_t kRequestsMax = 1 << 16;
constexpr uint32_t kPartitionsMax = 1 << 16;

inline uint32_t DeviceNumber(Napi::Env env, Napi::Value value) {
  if (!value.IsNumber()) throw Napi::TypeError::New(env, kProbeUsage);
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0 || std::floor(d) != d) throw Napi::RangeError::New(env, kProbeUsage);
  return static_cast<uint32_t>(d);
}

inline std::vector<std::pair<uint32_t, uint32_t>> DeviceNumbers(Napi::Env env, Napi::Value value) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, kProbeUsage);
  const Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > kPartitionsMax) throw Napi::RangeError::New(env, kProbeUsage);
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value pair = array.Get(i);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(env, kProbeUsage);
    out.emplace_back(DeviceNumber(env, pair.As<Napi::Array>().Get(0u)), DeviceNumber(env, pair.As<Napi::Array>().Get(1u)));
  }
  return out;
}

inline std::vector<BlkidProbeRequest> Requests(Napi::Env env, Napi::Value value) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, kProbeUsage);
  const Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > kRequestsMax) throw Napi::RangeError::New(env, kProbeUsage);
  std::vector<BlkidProbeRequest> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, kProbeUsage);
    const Napi::Value path = item.As<Napi::Object>().Get("path");
    if (!path.IsString()) throw Napi::TypeError::New(env, kProbeUsage);
    out[i].path = path.As<Napi::String>().Utf8Value();
    out[i].partitions = DeviceNumbers(env, item.As<Napi::Object>().Get("partitions"));
  }
  return out;
}

inline Napi::Object EntryToJs(Napi::Env env, const BlkidPartitionEntry& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("major", e.major);
  o.Set("minor", e.minor);
  o.Set("found", e.found);
  if (!e.found) return o;
  o.Set("number", e.number);
  if (!e.scheme.empty()) o.Set("scheme", e.scheme);
  o.Set("type", e.type);
  if (!e.name.empty()) o.Set("name", e.name);
  if (!e.uuid.empty()) o.Set("uuid", e.uuid);
  if (!e.flags.empty()) o.Set("flags", e.flags);
  return o;
}

inline const char* OutcomeName(BlkidOutcome outcome) {
  switch (outcome) {
    case BlkidOutcome::kFound:
      return "found";
    case BlkidOutcome::kNothing:
      return "nothing";
    case BlkidOutcome::kAmbiguous:
      return "ambiguous";
  }
  return "nothing";
}

inline Napi::Object ResultToJs(Napi::Env env, const BlkidProbeResult& result) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("outcome", OutcomeName(result.outcome));
  Napi::Object values = Napi::Object::New(env);
  for (const auto& [name, value] : result.values) values.Set(name, value);
  out.Set("values", values);
  Napi::Array entries = Napi::Array::New(env, result.entries.size());
  for (uint32_t i = 0; i < result.entries.size(); ++i) entries.Set(i, EntryToJs(env, result.entries[i]));
  out.Set("entries", entries);
  return out;
}

// blkidProbe([{ path, partitions }]) → per request, in order, either
// { outcome, values: { TYPE, LABEL, ... }, entries: [{ major, minor, found,
// number?, scheme?, type?, name?, uuid?, flags? }] } or { error: {errno,
// syscall, path} }: each device's own signature and, for the kernel
// partitions listed (of that whole disk), their entries in its table. The
// devices are probed in parallel (BlkidProbe::ProbeAll) while this call
// blocks; every device is closed before it returns. Throws (ELIBACC) only
// when libblkid cannot be loaded.
inline Napi::Value Probe(const Napi::CallbackInfo& info, BlkidEnv& blkid_env) {
  Napi::Env env = info.Env();
  if (info.Length() != 1) throw Napi::TypeError::New(env, kProbeUsage);
  const std::vector<BlkidProbeRequest> requests = Requests(env, info[0]);
  const std::vector<BlkidProbeOutcome> outcomes =
      BlkidProbe::ProbeAll(blkid_env.Library(env), requests, kBlkidProbeThreadsMax);
  Napi::Array out = Napi::Array::New(env, outcomes.size());
  for (uint32_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i].error.failed()) {
      Napi::Object failed = Napi::Object::New(env);
      failed.Set("error", SysErrorToJs(env, outcomes[i].error));
      out.Set(i, failed);
    } else {
      out.Set(i, ResultToJs(env, outcomes[i].result));
    }
  }
  return out;
}

}  // namespace blkid_node
}  // namespace devmove
