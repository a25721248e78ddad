// Node-API entry: wires the engine to JavaScript and does nothing else.
// One CopyJob object per copy; each runs the engine on a thread of its own
// (not the libuv pool, which a long copy would occupy) and reports to JS
// through a ThreadSafeFunction. No process-global state: the constructor is
// per-env instance data, so the addon is safe in worker threads.
#include <napi.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sysmacros.h>

#include <cstring>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "account_names.h"
#include "blkid_node.h"
#include "copy_engine.h"
#include "io_uring_ring.h"
#include "loop_device.h"
#include "nbd_endpoint.h"
#include "udev_node.h"

namespace devmove {
namespace {

// ---- JS → C++ plan (TypeScript has validated it; these checks are a backstop) ----

Napi::Value Require(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) throw Napi::TypeError::New(o.Env(), std::string("native plan lacks '") + key + "'");
  return v;
}

uint64_t GetU64(const Napi::Object& o, const char* key) {
  Napi::Value v = Require(o, key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("native plan '") + key + "' must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string("native plan '") + key + "' must be a safe non-negative integer");
  return static_cast<uint64_t>(d);
}

bool GetBool(const Napi::Object& o, const char* key) {
  Napi::Value v = Require(o, key);
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("native plan '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string GetString(const Napi::Object& o, const char* key) {
  Napi::Value v = Require(o, key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("native plan '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

DirectMode GetDirect(const Napi::Object& o, const char* key) {
  const std::string s = GetString(o, key);
  if (s == "auto") return DirectMode::kAuto;
  if (s == "always") return DirectMode::kAlways;
  if (s == "never") return DirectMode::kNever;
  throw Napi::RangeError::New(o.Env(), "native plan direct mode must be auto|always|never");
}

Durability GetDurability(const Napi::Object& o, const char* key) {
  const std::string s = GetString(o, key);
  if (s == "fdatasync") return Durability::kFdatasync;
  if (s == "fsync") return Durability::kFsync;
  if (s == "dsync") return Durability::kDsync;
  if (s == "sync") return Durability::kSync;
  if (s == "none") return Durability::kNone;
  throw Napi::RangeError::New(o.Env(), "native plan durability must be fdatasync|fsync|dsync|sync|none");
}

// [[offset, length], ...] as numbers.
std::vector<ByteRange> GetRanges(const Napi::Object& o, const char* key) {
  const Napi::Value v = Require(o, key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("native plan '") + key + "' must be an array");
  const Napi::Array a = v.As<Napi::Array>();
  std::vector<ByteRange> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value e = a.Get(i);
    if (!e.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("native plan '") + key + "' entries must be [offset, length]");
    Napi::Object pair = e.As<Napi::Object>();
    Napi::Object holder = Napi::Object::New(o.Env());
    holder.Set("offset", pair.Get(static_cast<uint32_t>(0)));
    holder.Set("length", pair.Get(static_cast<uint32_t>(1)));
    out.push_back({GetU64(holder, "offset"), GetU64(holder, "length")});
  }
  return out;
}

Napi::Array RangesToJs(Napi::Env env, const std::vector<ByteRange>& ranges) {
  Napi::Array a = Napi::Array::New(env, ranges.size());
  for (uint32_t i = 0; i < ranges.size(); ++i) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(static_cast<uint32_t>(0), static_cast<double>(ranges[i].offset));
    pair.Set(static_cast<uint32_t>(1), static_cast<double>(ranges[i].length));
    a.Set(i, pair);
  }
  return a;
}

// An NBD export (plan side 'nbd', from the parsed URI): where its server is.
void NbdFromJs(const Napi::Object& side, OpenRequest* open) {
  const Napi::Value value = side.Get("nbd");
  if (value.IsUndefined()) return;
  if (!value.IsObject()) throw Napi::TypeError::New(side.Env(), "native plan 'nbd' must be an object");
  const Napi::Object nbd = value.As<Napi::Object>();
  open->nbd.enabled = true;
  if (!nbd.Get("socket").IsUndefined()) open->nbd.socket_path = GetString(nbd, "socket");
  if (!nbd.Get("host").IsUndefined()) open->nbd.host = GetString(nbd, "host");
  if (!nbd.Get("port").IsUndefined()) open->nbd.port = std::to_string(GetU64(nbd, "port"));
  if (open->nbd.socket_path.empty() == open->nbd.host.empty())
    throw Napi::TypeError::New(side.Env(), "native plan 'nbd' needs a socket or a host");
  open->nbd.export_name = GetString(nbd, "exportName");
  open->nbd.identity = GetString(nbd, "identity");
  if (!nbd.Get("connections").IsUndefined()) {
    const uint64_t n = GetU64(nbd, "connections");
    if (n < 1 || n > NbdEndpoint::kConnectionsMax) throw Napi::RangeError::New(side.Env(), "native plan nbd.connections must be 1..16");
    open->nbd.connections = static_cast<uint32_t>(n);
  }
  if (!nbd.Get("answerTimeoutMs").IsUndefined()) {
    const uint64_t ms = std::min<uint64_t>(GetU64(nbd, "answerTimeoutMs"), limits::kNbdTimeoutSecondsMax * 1000);
    open->nbd.answer_timeout_ms = static_cast<uint32_t>(ms);
  }
}

void SourceFromJs(const Napi::Object& js, CopyPlan* plan) {
  const Napi::Object source = Require(js, "source").As<Napi::Object>();
  plan->source.path = GetString(source, "path");
  // '-' is standard input, as in dd.
  if (plan->source.path == "-") plan->source.fd = 0;
  plan->source.for_write = false;
  plan->source.direct = GetDirect(source, "direct");
  plan->source.noatime = GetBool(source, "noatime");
  plan->source_offset_bytes = GetU64(source, "offset");
  NbdFromJs(source, &plan->source);
}

void TargetsFromJs(const Napi::Object& js, CopyPlan* plan) {
  const Napi::Value targets_value = Require(js, "targets");
  if (!targets_value.IsArray()) throw Napi::TypeError::New(js.Env(), "native plan 'targets' must be an array");
  const Napi::Array targets = targets_value.As<Napi::Array>();
  if (targets.Length() == 0 || targets.Length() > CopyPlan::kTargetsMax)
    throw Napi::RangeError::New(js.Env(), "native plan needs 1..64 targets");
  const Durability durability = GetDurability(js, "durability");
  for (uint32_t i = 0; i < targets.Length(); ++i) {
    const Napi::Object t = targets.Get(i).As<Napi::Object>();
    TargetPlan target;
    target.open.path = GetString(t, "path");
    if (target.open.path == "-") target.open.fd = 1;  // standard output
    target.open.for_write = true;
    target.open.direct = GetDirect(t, "direct");
    target.open.create = GetBool(t, "create");
    target.open.exclusive_create = GetBool(t, "exclusiveCreate");
    target.open.exclusive = GetBool(t, "exclusive");
    target.open.durability = durability;
    target.offset_bytes = GetU64(t, "offset");
    const Napi::Value truncate_to = t.Get("truncateTo");
    target.truncate_to = truncate_to.IsUndefined() ? -1 : static_cast<int64_t>(GetU64(t, "truncateTo"));
    if (!t.Get("truncateAtOpen").IsUndefined()) target.truncate_at_open = GetBool(t, "truncateAtOpen");
    NbdFromJs(t, &target.open);
    plan->targets.push_back(std::move(target));
  }
}

// Length, I/O size and queue depth, the engine switches.
void ShapeFromJs(const Napi::Object& js, CopyPlan* plan) {
  const Napi::Value length = js.Get("length");
  if (!length.IsUndefined() && !length.IsNull()) {
    plan->has_length = true;
    plan->length_bytes = GetU64(js, "length");
    plan->length_is_max = GetBool(js, "lengthIsMax");
  }
  const uint64_t block = GetU64(js, "blockBytes");
  const uint64_t depth = GetU64(js, "queueDepth");
  if (block < 1 || block > CopyPlan::kBlockBytesMax)
    throw Napi::RangeError::New(js.Env(), "native plan blockBytes must be in 1..1 GiB");
  if (depth < 1 || depth > CopyPlan::kQueueDepthMax)
    throw Napi::RangeError::New(js.Env(), "native plan queueDepth must be in 1..1024");
  plan->block_bytes = static_cast<uint32_t>(block);
  plan->queue_depth = static_cast<uint32_t>(depth);
  if (!js.Get("queueDepthMax").IsUndefined()) {
    const uint64_t most = GetU64(js, "queueDepthMax");
    if (most < depth || most > CopyPlan::kQueueDepthMax)
      throw Napi::RangeError::New(js.Env(), "native plan queueDepthMax must be in queueDepth..1024");
    plan->queue_depth_max = static_cast<uint32_t>(most);
  }
  plan->fixed_buffers = GetBool(js, "fixedBuffers");
  plan->fixed_files = GetBool(js, "fixedFiles");
  plan->sqpoll = GetBool(js, "sqpoll");
  plan->link_read_write = GetBool(js, "linkReadWrite");
  plan->batch_submissions = GetBool(js, "batchSubmissions");
  plan->progress_interval_ms = static_cast<uint32_t>(GetU64(js, "progressIntervalMs"));
  if (plan->progress_interval_ms < limits::kProgressIntervalMsMin) plan->progress_interval_ms = limits::kProgressIntervalMsMin;  // ≤10 Hz
}

// One of `names` (in enum order), or a RangeError listing them.
template <typename E>
E GetChoice(const Napi::Object& o, const char* key, std::initializer_list<const char*> names) {
  const std::string value = GetString(o, key);
  int index = 0;
  std::string all;
  for (const char* name : names) {
    if (value == name) return static_cast<E>(index);
    all += (index++ ? "|" : "") + std::string(name);
  }
  throw Napi::RangeError::New(o.Env(), std::string("native plan ") + key + " must be " + all);
}

// Reliability and migration-job fields: optional, engine defaults when absent.
void OptionalFieldsFromJs(const Napi::Object& js, CopyPlan* plan) {
  auto has = [&](const char* key) { return !js.Get(key).IsUndefined(); };
  if (has("extents")) {
    plan->has_extents = true;
    plan->extents = GetRanges(js, "extents");
  }
  if (has("verifySkip")) plan->verify_skip = GetRanges(js, "verifySkip");
  if (has("noError")) plan->no_error = GetBool(js, "noError");
  if (has("retries")) plan->retries = static_cast<uint32_t>(std::min<uint64_t>(GetU64(js, "retries"), limits::kRetriesMax));
  if (has("verify")) plan->verify = GetBool(js, "verify");
  if (has("verifyStrict")) plan->verify_strict = GetBool(js, "verifyStrict");
  if (has("verifyBehind")) plan->verify_behind = GetBool(js, "verifyBehind");
  if (has("onlyChanged")) plan->only_changed = GetBool(js, "onlyChanged");
  if (has("idlePriority")) plan->idle_priority = GetBool(js, "idlePriority");
  if (has("hash")) plan->hash_algorithm = GetString(js, "hash");
  if (has("rate")) plan->rate_bytes_per_second = GetU64(js, "rate");
  if (has("checkpointIntervalMs"))
    plan->checkpoint_interval_ms = static_cast<uint32_t>(std::min<uint64_t>(GetU64(js, "checkpointIntervalMs"), limits::kCheckpointIntervalMsMax));
  if (has("zeroBlocks")) plan->zero_mode = GetChoice<ZeroMode>(js, "zeroBlocks", {"write", "skip", "discard", "sparse"});
  if (has("holes")) plan->hole_mode = GetChoice<HoleMode>(js, "holes", {"auto", "policy", "read"});
  if (has("sparseExact")) plan->sparse_exact = GetBool(js, "sparseExact");
  if (has("onTargetError")) plan->on_target_error = GetChoice<TargetErrorPolicy>(js, "onTargetError", {"stop", "drop"});
  if (has("zeroBlockBytes")) {
    const uint64_t block = GetU64(js, "zeroBlockBytes");
    if (block < 1 || plan->block_bytes % block != 0)
      throw Napi::RangeError::New(js.Env(), "native plan zeroBlockBytes must divide blockBytes");
    plan->zero_block_bytes = static_cast<uint32_t>(block);
  }
  if (has("ioEngine")) plan->io_engine = GetChoice<IoEngineChoice>(js, "ioEngine", {"auto", "io_uring", "threads"});
}

CopyPlan PlanFromJs(const Napi::Object& js) {
  CopyPlan plan;
  SourceFromJs(js, &plan);
  TargetsFromJs(js, &plan);
  ShapeFromJs(js, &plan);
  OptionalFieldsFromJs(js, &plan);
  return plan;
}

// ---- C++ → JS ----

Napi::Object ErrorToJs(Napi::Env env, const SysError& e);

Napi::Object FileReportToJs(Napi::Env env, const FileReport& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", f.path);
  o.Set("kind", f.kind);
  o.Set("sizeBytes", static_cast<double>(f.size_bytes));
  o.Set("sizeKnown", f.size_known);
  o.Set("sequential", f.sequential);
  o.Set("logicalBlockBytes", f.logical_block_bytes);
  o.Set("physicalBlockBytes", f.physical_block_bytes);
  o.Set("direct", f.direct);
  o.Set("directNote", f.direct_note);
  o.Set("created", f.created);
  o.Set("dropped", f.dropped);
  if (f.error.failed()) o.Set("error", ErrorToJs(env, f.error));
  if (!f.zero_note.empty()) o.Set("zeroNote", f.zero_note);
  if (f.unfinished_bytes_written > 0) o.Set("unfinishedBytes", static_cast<double>(f.unfinished_bytes_written));
  o.Set("holesKept", f.holes_kept);
  return o;
}

Napi::Object RingToJs(Napi::Env env, const CopyReport& r) {
  Napi::Object ring = Napi::Object::New(env);
  ring.Set("setupFlags", r.ring_setup_flags);
  ring.Set("features", r.ring_features);
  ring.Set("fixedBuffers", r.fixed_buffers);
  ring.Set("fixedBuffersNote", r.fixed_buffers_note);
  ring.Set("fixedFiles", r.fixed_files);
  ring.Set("fixedFilesNote", r.fixed_files_note);
  ring.Set("sqpoll", r.sqpoll);
  ring.Set("linked", r.linked);
  ring.Set("batched", r.batched);
  return ring;
}

Napi::Object IoCountersToJs(Napi::Env env, const CopyReport& r) {
  Napi::Object io = Napi::Object::New(env);
  io.Set("reads", static_cast<double>(r.reads));
  io.Set("writes", static_cast<double>(r.writes));
  io.Set("bufferedIos", static_cast<double>(r.buffered_ios));
  io.Set("shortTransfers", static_cast<double>(r.short_transfers));
  io.Set("requeues", static_cast<double>(r.requeues));
  io.Set("submitCalls", static_cast<double>(r.submit_calls));
  io.Set("brokenLinks", static_cast<double>(r.broken_links));
  io.Set("readErrors", static_cast<double>(r.read_errors));
  io.Set("retriedReads", static_cast<double>(r.retried_reads));
  io.Set("discards", static_cast<double>(r.discards));
  io.Set("targetReads", static_cast<double>(r.target_reads));
  return io;
}

// Bad and zero blocks, checkpoints, hash, verify: what the copy found.
void FindingsToJs(Napi::Env env, const CopyReport& r, Napi::Object* o) {
  Napi::Object bad = Napi::Object::New(env);
  bad.Set("bytes", static_cast<double>(r.bad_bytes));
  bad.Set("rangeCount", static_cast<double>(r.bad_range_count));
  bad.Set("ranges", RangesToJs(env, r.bad_ranges));
  o->Set("bad", bad);
  Napi::Object zero = Napi::Object::New(env);
  zero.Set("bytes", static_cast<double>(r.zero_bytes));
  zero.Set("skipped", static_cast<double>(r.zero_bytes_skipped));
  zero.Set("discarded", static_cast<double>(r.zero_bytes_discarded));
  o->Set("zero", zero);
  Napi::Object holes = Napi::Object::New(env);
  holes.Set("bytes", static_cast<double>(r.hole_bytes));
  holes.Set("note", r.holes_note);
  o->Set("holes", holes);
  o->Set("checkpoints", static_cast<double>(r.checkpoints));
  if (!r.hash_hex.empty()) {
    Napi::Object hash = Napi::Object::New(env);
    hash.Set("algorithm", r.hash_algorithm);
    hash.Set("hex", r.hash_hex);
    hash.Set("implementation", r.hash_implementation);
    hash.Set("threads", r.hash_threads);
    o->Set("hash", hash);
  }
  if (r.verify.done || r.verify.bytes_compared > 0) {
    Napi::Object v = Napi::Object::New(env);
    v.Set("done", r.verify.done);
    v.Set("bytesCompared", static_cast<double>(r.verify.bytes_compared));
    v.Set("mismatchedBlocks", static_cast<double>(r.verify.mismatched_blocks));
    v.Set("blockBytes", r.verify.compare_block_bytes);
    v.Set("mode", r.verify.mode);
    v.Set("sourceBytesRead", static_cast<double>(r.verify.source_bytes_read));
    if (!r.verify.digest.empty()) {
      v.Set("digest", r.verify.digest);
      v.Set("digestBlockBytes", r.verify.digest_block_bytes);
      v.Set("digestPagesSpilled", static_cast<double>(r.verify.digest_pages_spilled));
      v.Set("behindBytes", static_cast<double>(r.verify.behind_bytes));
    }
    if (r.verify.first_mismatch_offset >= 0) {
      v.Set("firstMismatchOffset", static_cast<double>(r.verify.first_mismatch_offset));
      v.Set("firstMismatchTarget", r.verify.first_mismatch_target);
    }
    o->Set("verify", v);
  }
  if (r.only_changed) {
    Napi::Array per = Napi::Array::New(env, r.targets.size());
    for (uint32_t i = 0; i < r.targets.size(); ++i) {
      Napi::Object c = Napi::Object::New(env);
      c.Set("bytesCompared", static_cast<double>(r.targets[i].compared_bytes));
      c.Set("bytesWritten", static_cast<double>(r.targets[i].changed_bytes_written));
      per.Set(i, c);
    }
    o->Set("changed", per);
  }
}

Napi::Object ReportToJs(Napi::Env env, const CopyReport& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytesCopied", static_cast<double>(r.bytes_copied));
  o.Set("bytesRead", static_cast<double>(r.bytes_read));
  o.Set("bytesTotal", static_cast<double>(r.bytes_total));
  o.Set("seconds", r.seconds);
  o.Set("cancelled", r.cancelled);
  o.Set("durability", r.durability);
  if (!r.source.path.empty()) o.Set("source", FileReportToJs(env, r.source));
  Napi::Array targets = Napi::Array::New(env, r.targets.size());
  for (uint32_t i = 0; i < r.targets.size(); ++i) targets.Set(i, FileReportToJs(env, r.targets[i]));
  o.Set("targets", targets);
  o.Set("blockBytes", r.block_bytes);
  o.Set("queueDepth", r.queue_depth);
  o.Set("ring", RingToJs(env, r));
  if (!r.io_engine.empty()) o.Set("ioEngine", r.io_engine);
  if (!r.io_engine_note.empty()) o.Set("ioEngineNote", r.io_engine_note);
  o.Set("io", IoCountersToJs(env, r));
  o.Set("domainOffset", static_cast<double>(r.domain_offset));
  o.Set("domainLength", static_cast<double>(r.domain_length));
  FindingsToJs(env, r, &o);
  o.Set("rate", static_cast<double>(r.rate_bytes_per_second));
  if (r.stopped_at_bad_block.length > 0) o.Set("stoppedAtBadBlock", RangesToJs(env, {r.stopped_at_bad_block}).Get(0u));
  return o;
}

Napi::Object ErrorToJs(Napi::Env env, const SysError& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", e.errno_value);
  o.Set("syscall", e.syscall);
  if (!e.path.empty()) o.Set("path", e.path);
  if (e.offset >= 0) o.Set("offset", static_cast<double>(e.offset));
  if (!e.message.empty()) o.Set("detail", e.message);
  return o;
}

// A message from the engine thread to JS.
struct Event {
  enum class Kind { kProgress, kCheckpoint, kDone } kind = Kind::kProgress;
  ProgressInfo progress;
  std::vector<ByteRange> finished;  // checkpoint
  std::vector<ByteRange> bad;
  SysError error;
  CopyReport report;
};

class CopyJob;
void DeliverEvent(Napi::Env env, Napi::Function on_event, CopyJob* job, Event* event);
using EventChannel = Napi::TypedThreadSafeFunction<CopyJob, Event, DeliverEvent>;

class CopyJob : public Napi::ObjectWrap<CopyJob> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CopyJob",
                       {InstanceMethod<&CopyJob::Start>("start"), InstanceMethod<&CopyJob::Cancel>("cancel"),
                        InstanceMethod<&CopyJob::BytesDone>("bytesDone"),
                        InstanceMethod<&CopyJob::Pause>("pause"), InstanceMethod<&CopyJob::Resume>("resume"),
                        InstanceMethod<&CopyJob::SetRate>("setRate"),
                        InstanceMethod<&CopyJob::SetQueueDepth>("setQueueDepth")});
  }

  // new CopyJob(plan, onEvent)
  explicit CopyJob(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CopyJob>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsObject() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "CopyJob(plan: object, onEvent: function)");
    engine_ = std::make_unique<CopyEngine>(PlanFromJs(info[0].As<Napi::Object>()));
    on_event_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~CopyJob() override {
    JoinIfRunning();
    RemoveCleanupHook();
  }

  // JS thread, on the engine's final event: the thread has nothing left to do
  // but release the channel, so joining here is immediate.
  void Finish() {
    JoinIfRunning();
    RemoveCleanupHook();
    if (started_ && !finished_) {
      finished_ = true;
      Unref();
    }
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (started_) throw Napi::Error::New(env, "CopyJob already started");
    started_ = true;
    // The channel keeps the event loop alive while the copy runs and lets it
    // go once the thread releases it after the final event.
    channel_ = EventChannel::New(env, on_event_.Value(), "devmove-copy", 0, 1, this);
    Ref();  // this object must outlive the thread
    env_ = env;
    napi_add_env_cleanup_hook(env, &CopyJob::OnEnvCleanup, this);
    cleanup_hook_added_ = true;
    thread_ = std::thread([this] { ThreadMain(); });
    return env.Undefined();
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    engine_->Cancel();
    return info.Env().Undefined();
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    engine_->Pause();
    return info.Env().Undefined();
  }

  Napi::Value Resume(const Napi::CallbackInfo& info) {
    engine_->Resume();
    return info.Env().Undefined();
  }

  Napi::Value SetRate(const Napi::CallbackInfo& info) {
    if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "setRate(bytesPerSecond: number)");
    const double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0) throw Napi::RangeError::New(info.Env(), "setRate() needs a non-negative number");
    engine_->SetRate(static_cast<uint64_t>(d));
    return info.Env().Undefined();
  }

  Napi::Value SetQueueDepth(const Napi::CallbackInfo& info) {
    if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "setQueueDepth(depth: number)");
    const double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 1) || d > CopyPlan::kQueueDepthMax || d != static_cast<uint32_t>(d))
      throw Napi::RangeError::New(info.Env(), "setQueueDepth() needs an integer in 1..1024");
    engine_->SetQueueDepth(static_cast<uint32_t>(d));
    return info.Env().Undefined();
  }

  Napi::Value BytesDone(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(engine_->bytes_done()));
  }

  void ThreadMain() {
    auto final_event = std::make_unique<Event>();
    final_event->kind = Event::Kind::kDone;
    final_event->error = engine_->Run(
        [this](const ProgressInfo& info) {
          auto* e = new Event();
          e->progress = info;
          if (channel_.NonBlockingCall(e) != napi_ok) delete e;
        },
        &final_event->report,
        [this](const std::vector<ByteRange>& finished, const std::vector<ByteRange>& bad) {
          auto* e = new Event();
          e->kind = Event::Kind::kCheckpoint;
          e->finished = finished;
          e->bad = bad;
          if (channel_.NonBlockingCall(e) != napi_ok) delete e;
        });
    Event* e = final_event.release();
    if (channel_.NonBlockingCall(e) != napi_ok) delete e;  // napi_closing: env is going away
    channel_.Release();
  }

  static void OnEnvCleanup(void* arg) {
    // The env is going away (process exit, worker.terminate()) while the copy
    // runs: stop it and wait, so no thread outlives the addon's code.
    auto* self = static_cast<CopyJob*>(arg);
    self->cleanup_hook_added_ = false;
    self->JoinIfRunning();
  }

  void RemoveCleanupHook() {
    if (cleanup_hook_added_) {
      napi_remove_env_cleanup_hook(env_, &CopyJob::OnEnvCleanup, this);
      cleanup_hook_added_ = false;
    }
  }

  void JoinIfRunning() {
    if (thread_.joinable()) {
      if (!finished_) engine_->Cancel();
      thread_.join();
    }
  }

  std::unique_ptr<CopyEngine> engine_;
  Napi::FunctionReference on_event_;
  EventChannel channel_;
  std::thread thread_;
  napi_env env_ = nullptr;
  bool started_ = false;
  bool finished_ = false;
  bool cleanup_hook_added_ = false;
};

void DeliverEvent(Napi::Env env, Napi::Function on_event, CopyJob* job, Event* raw) {
  std::unique_ptr<Event> e(raw);
  if (env == nullptr) return;  // the env is shutting down; nobody is listening
  Napi::Object js = Napi::Object::New(env);
  if (e->kind == Event::Kind::kProgress) {
    const ProgressInfo& p = e->progress;
    js.Set("type", "progress");
    js.Set("domainOffset", static_cast<double>(p.domain_offset));
    js.Set("domainLength", static_cast<double>(p.domain_length));
    js.Set("bytesDone", static_cast<double>(p.bytes_done));
    js.Set("bytesTotal", static_cast<double>(p.bytes_total));
    js.Set("sizeKnown", p.size_known);
    js.Set("badBytes", static_cast<double>(p.bad_bytes));
    js.Set("zeroBytes", static_cast<double>(p.zero_bytes));
    js.Set("paused", p.paused);
    js.Set("verifying", p.verifying);
    js.Set("verifyDone", static_cast<double>(p.verify_done));
    js.Set("verifyTotal", static_cast<double>(p.verify_total));
    js.Set("queueDepth", p.queue_depth);
  } else if (e->kind == Event::Kind::kCheckpoint) {
    js.Set("type", "checkpoint");
    js.Set("finished", RangesToJs(env, e->finished));
    js.Set("bad", RangesToJs(env, e->bad));
  } else {
    job->Finish();
    js.Set("type", "done");
    js.Set("report", ReportToJs(env, e->report));
    if (e->error.failed()) js.Set("error", ErrorToJs(env, e->error));
  }
  on_event.Call({js});
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  SysError error;
  RingOptions options;
  options.sq_entries = 8;
  std::unique_ptr<IoUringRing> ring = IoUringRing::Create(options, &error);
  out.Set("available", ring != nullptr);
  if (!ring) {
    out.Set("error", ErrorToJs(env, error));
    return out;
  }
  out.Set("setupFlags", ring->setup_flags());
  out.Set("features", ring->features());
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("read", ring->OpSupported(IORING_OP_READ));
  ops.Set("write", ring->OpSupported(IORING_OP_WRITE));
  ops.Set("readFixed", ring->OpSupported(IORING_OP_READ_FIXED));
  ops.Set("writeFixed", ring->OpSupported(IORING_OP_WRITE_FIXED));
  ops.Set("fsync", ring->OpSupported(IORING_OP_FSYNC));
  out.Set("ops", ops);
  Napi::Object f = Napi::Object::New(env);
  f.Set("extArg", (ring->features() & IORING_FEAT_EXT_ARG) != 0);
  f.Set("nodrop", (ring->features() & IORING_FEAT_NODROP) != 0);
  f.Set("singleMmap", (ring->features() & IORING_FEAT_SINGLE_MMAP) != 0);
  f.Set("deferTaskrun", (ring->setup_flags() & IORING_SETUP_DEFER_TASKRUN) != 0);
  out.Set("featureFlags", f);
  return out;
}

Napi::Value ExplainSetupFailure(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(info.Env(), "explainIoUringSetupFailure(errno: number)");
  return Napi::String::New(info.Env(), IoUringRing::ExplainSetupFailure(info[0].As<Napi::Number>().Int32Value()));
}

// accountNames(uid, gid) → { user?, group? }: names from the C library's name
// service (the device manager's owner and group of a device node).
Napi::Value AccountNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "accountNames(uid: number, gid: number)");
  Napi::Object out = Napi::Object::New(env);
  const std::optional<std::string> user = UserName(static_cast<uid_t>(info[0].As<Napi::Number>().Uint32Value()));
  const std::optional<std::string> group = GroupName(static_cast<gid_t>(info[1].As<Napi::Number>().Uint32Value()));
  if (user) out.Set("user", *user);
  if (group) out.Set("group", *group);
  return out;
}

std::string DevNo(dev_t dev) { return std::to_string(major(dev)) + ":" + std::to_string(minor(dev)); }

// loopStatus(path) → { backingDevice: 'MAJ:MIN', backingInode: '123', backingRdev?: 'MAJ:MIN',
// offsetBytes, sizeLimitBytes, fileName }. Throws an Error carrying sysError (as the udev calls do).
Napi::Value LoopStatusToJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loopStatus(path: string)");
  LoopStatus status;
  SysError error;
  if (!ReadLoopStatus(info[0].As<Napi::String>().Utf8Value(), &status, &error)) {
    Napi::Error e = Napi::Error::New(env, error.syscall + " failed on " + error.path);
    e.Value().Set("sysError", ErrorToJs(env, error));
    throw e;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("backingDevice", DevNo(status.backing_dev));
  out.Set("backingInode", std::to_string(status.backing_inode));  // may exceed 2^53
  if (status.backing_rdev != 0) out.Set("backingRdev", DevNo(status.backing_rdev));
  out.Set("offsetBytes", static_cast<double>(status.offset_bytes));
  out.Set("sizeLimitBytes", static_cast<double>(status.size_limit_bytes));
  out.Set("fileName", status.file_name);
  return out;
}

// unblockStatusSignal(): lets SIGUSR1 reach this (the main) thread again. Node
// started with --disable-sigusr1 keeps SIGUSR1 blocked in its threads' signal
// masks, so the CLI's own SIGUSR1 listener (dd's statistics) would never run;
// with that flag Node installs no inspector handler, so unblocking is safe.
Napi::Value UnblockStatusSignal(const Napi::CallbackInfo& info) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  const int r = pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  if (r != 0) throw Napi::Error::New(info.Env(), std::string("pthread_sigmask: ") + std::strerror(r));
  return info.Env().Undefined();
}

class DevmoveAddon : public Napi::Addon<DevmoveAddon> {
 public:
  DevmoveAddon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
                             InstanceValue("CopyJob", CopyJob::Define(env), napi_enumerable),
                             InstanceMethod<&DevmoveAddon::ProbeMethod>("probe", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::ExplainMethod>("explainIoUringSetupFailure",
                                                                          napi_enumerable),
                             InstanceValue("abiVersion", Napi::Number::New(env, 4), napi_enumerable),
                             InstanceMethod<&DevmoveAddon::LoopStatusMethod>("loopStatus", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::UnblockMethod>("unblockStatusSignal", napi_enumerable),
                             // Device manager (libudev, loaded on first use): udev_node.h
                             InstanceValue("UdevMonitor", udev_node::UdevMonitorWrap::Define(env, &udev_env_),
                                           napi_enumerable),
                             InstanceMethod<&DevmoveAddon::UdevListMethod>("udevListBlockDevices", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::UdevDeviceMethod>("udevBlockDevice", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::UdevStatusMethod>("udevStatus", napi_enumerable),
                             // Content probe (libblkid, loaded on first use): blkid_node.h
                             InstanceMethod<&DevmoveAddon::BlkidProbeMethod>("blkidProbe", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::BlkidStatusMethod>("blkidStatus", napi_enumerable),
                             InstanceMethod<&DevmoveAddon::AccountNamesMethod>("accountNames", napi_enumerable),
                         });
  }

 private:
  Napi::Value ProbeMethod(const Napi::CallbackInfo& info) { return Probe(info); }
  Napi::Value ExplainMethod(const Napi::CallbackInfo& info) { return ExplainSetupFailure(info); }
  Napi::Value LoopStatusMethod(const Napi::CallbackInfo& info) { return LoopStatusToJs(info); }
  Napi::Value UnblockMethod(const Napi::CallbackInfo& info) { return UnblockStatusSignal(info); }
  Napi::Value UdevListMethod(const Napi::CallbackInfo& info) { return udev_node::ListBlockDevices(info, udev_env_); }
  Napi::Value UdevDeviceMethod(const Napi::CallbackInfo& info) { return udev_node::BlockDevice(info, udev_env_); }
  Napi::Value UdevStatusMethod(const Napi::CallbackInfo& info) { return udev_env_.Status(info.Env()); }
  Napi::Value BlkidProbeMethod(const Napi::CallbackInfo& info) { return blkid_node::Probe(info, blkid_env_); }
  Napi::Value BlkidStatusMethod(const Napi::CallbackInfo& info) { return blkid_env_.Status(info.Env()); }
  Napi::Value AccountNamesMethod(const Napi::CallbackInfo& info) { return AccountNames(info); }

  udev_node::UdevEnv udev_env_;  // per-env libudev; UdevMonitor objects hold their own reference on it
  blkid_node::BlkidEnv blkid_env_;  // per-env libblkid; probes hold their own reference on it
};

}  // namespace
}  // namespace devmove

using devmove::DevmoveAddon;
NODE_API_ADDON(DevmoveAddon)
