// Phase-1 prototype harness (issue 13): one io_uring event loop that copies a
// local block device (O_DIRECT) to an NBD export or back, with Q buffers in
// flight spread over C connections. Only the NBD client differs between the
// two prototypes (proto_libnbd.cc, proto_uring.cc), so the measurement compares
// the clients and nothing else. Not part of the addon; built by bench/nbd.js.
#pragma once

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io_uring_ring.h"

namespace proto {

[[noreturn]] inline void Die(const std::string& what, int err = 0) {
  std::fprintf(stderr, "proto: %s%s%s\n", what.c_str(), err ? ": " : "", err ? std::strerror(err) : "");
  std::exit(1);
}

struct Options {
  std::string local;           // block device or file, opened O_DIRECT
  std::string unix_path;       // nbd+unix
  std::string host = "127.0.0.1";
  std::string port;            // nbd:// over TCP when set
  std::string export_name;
  bool to_nbd = true;          // local → NBD (write); false: NBD → local (read)
  uint64_t size = 0;           // 0: the export's size
  uint32_t block = 512 * 1024;
  uint32_t connections = 4;    // at most; 1 when the server lacks multi-conn
  uint32_t requests = 4;       // in flight per connection
};

inline uint64_t ParseNumber(const char* s) {
  char* end = nullptr;
  uint64_t v = std::strtoull(s, &end, 10);
  switch (*end) {
    case 'K': v <<= 10; break;
    case 'M': v <<= 20; break;
    case 'G': v <<= 30; break;
    default: break;
  }
  return v;
}

inline Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--local") o.local = v;
    else if (k == "--unix") o.unix_path = v;
    else if (k == "--host") o.host = v;
    else if (k == "--port") o.port = v;
    else if (k == "--export") o.export_name = v;
    else if (k == "--dir") o.to_nbd = std::string(v) == "write";
    else if (k == "--size") o.size = ParseNumber(v);
    else if (k == "--block") o.block = static_cast<uint32_t>(ParseNumber(v));
    else if (k == "--connections") o.connections = static_cast<uint32_t>(ParseNumber(v));
    else if (k == "--requests") o.requests = static_cast<uint32_t>(ParseNumber(v));
    else Die("unknown option " + k);
  }
  if (o.local.empty() || (o.unix_path.empty() && o.port.empty())) Die("--local and --unix or --port are required");
  return o;
}

inline double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// user_data of every SQE is an Op; its Done() runs when the CQE is reaped.
struct Op {
  virtual void Done(int32_t res, uint32_t cqe_flags) = 0;

 protected:
  ~Op() = default;
};

// The ring, with a FIFO-free rule: callers never have more SQEs outstanding
// than the ring holds (asserted), which the prototypes' bounded slots ensure.
class Loop {
 public:
  Loop() {
    devmove::RingOptions ro;
    ro.sq_entries = 1024;
    ro.cq_entries = 4096;
    devmove::SysError err;
    ring_ = devmove::IoUringRing::Create(ro, &err);
    if (!ring_) Die("io_uring_setup", err.errno_value);
  }
  io_uring_sqe* Sqe(Op* op) {
    io_uring_sqe* sqe = ring_->GetSqe();
    if (sqe == nullptr) {
      ring_->SubmitAndWait(0, 0);
      sqe = ring_->GetSqe();
      if (sqe == nullptr) Die("submission queue full");
    }
    sqe->user_data = reinterpret_cast<uint64_t>(op);
    ++in_flight_;
    return sqe;
  }
  // Submits what is prepared, waits for one completion, runs every completion there is.
  void RunOnce() {
    const int r = ring_->SubmitAndWait(1, 0);
    if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY) Die("io_uring_enter", -r);
    io_uring_cqe cqe;
    while (ring_->PopCqe(&cqe)) {
      --in_flight_;
      reinterpret_cast<Op*>(cqe.user_data)->Done(cqe.res, cqe.flags);
    }
  }
  uint32_t in_flight() const { return in_flight_; }

 private:
  std::unique_ptr<devmove::IoUringRing> ring_;
  uint32_t in_flight_ = 0;
};

// What a prototype client offers the copy loop. Completions arrive through
// the Op handed in (res = bytes or 0, or -errno).
class Client {
 public:
  virtual ~Client() = default;
  virtual uint64_t export_size() const = 0;
  virtual uint32_t connections() const = 0;
  virtual void Read(uint32_t conn, uint8_t* buf, uint64_t offset, uint32_t length, Op* done) = 0;
  virtual void Write(uint32_t conn, const uint8_t* buf, uint64_t offset, uint32_t length, Op* done) = 0;
  virtual void Flush(uint32_t conn, Op* done) = 0;
  // Called once per loop turn after the copy loop queued its requests.
  virtual void Kick() = 0;
  virtual const char* name() const = 0;
};

// The copy loop shared by both prototypes.
class Copy {
 public:
  Copy(const Options& o, Loop& loop, Client& client) : o_(o), loop_(loop), client_(client) {
    fd_ = open(o.local.c_str(), (o.to_nbd ? O_RDONLY : O_WRONLY) | O_DIRECT | O_CLOEXEC);
    if (fd_ < 0) Die("open " + o.local, errno);
    size_ = o.size ? o.size : client.export_size();
    if (size_ > client.export_size()) Die("the export is smaller than --size");
    const uint32_t count = client.connections() * o.requests;
    slots_.resize(count);
    for (uint32_t i = 0; i < count; ++i) {
      Slot& s = slots_[i];
      s.copy = this;
      s.index = i;
      s.conn = i % client.connections();
      if (posix_memalign(reinterpret_cast<void**>(&s.buf), 4096, o.block) != 0) Die("posix_memalign");
      std::memset(s.buf, 0, o.block);
      s.local.slot = &s;
      s.remote.slot = &s;
    }
  }

  // Returns the seconds from the first request to the durable end.
  double Run() {
    const double t0 = Now();
    for (Slot& s : slots_) Next(s);
    while (active_ > 0 || finishing_ > 0) {
      client_.Kick();
      loop_.RunOnce();
    }
    if (!failed_.empty()) Die(failed_);
    return Now() - t0;
  }
  uint64_t size() const { return size_; }

 private:
  struct Slot;
  struct LocalOp final : Op {
    Slot* slot = nullptr;
    void Done(int32_t res, uint32_t) override { slot->copy->LocalDone(*slot, res); }
  };
  struct RemoteOp final : Op {
    Slot* slot = nullptr;
    void Done(int32_t res, uint32_t) override { slot->copy->RemoteDone(*slot, res); }
  };
  struct FinishOp final : Op {
    Copy* copy = nullptr;
    void Done(int32_t res, uint32_t) override { copy->FinishDone(res); }
  };
  struct Slot {
    Copy* copy = nullptr;
    uint32_t index = 0, conn = 0, length = 0;
    uint64_t position = 0;
    uint8_t* buf = nullptr;
    LocalOp local;
    RemoteOp remote;
  };

  void Next(Slot& s) {
    if (next_ >= size_ || !failed_.empty()) return;
    s.position = next_;
    s.length = static_cast<uint32_t>(std::min<uint64_t>(o_.block, size_ - next_));
    next_ += s.length;
    ++active_;
    if (o_.to_nbd) {
      LocalIo(s, IORING_OP_READ);
    } else {
      client_.Read(s.conn, s.buf, s.position, s.length, &s.remote);
    }
  }
  void LocalIo(Slot& s, uint8_t opcode) {
    io_uring_sqe* sqe = loop_.Sqe(&s.local);
    sqe->opcode = opcode;
    sqe->fd = fd_;
    sqe->addr = reinterpret_cast<uint64_t>(s.buf);
    sqe->len = s.length;
    sqe->off = s.position;
  }
  void LocalDone(Slot& s, int32_t res) {
    if (res != static_cast<int32_t>(s.length)) return Fail(s, "local I/O", res);
    if (o_.to_nbd) return client_.Write(s.conn, s.buf, s.position, s.length, &s.remote);
    Retire(s);
  }
  void RemoteDone(Slot& s, int32_t res) {
    if (res < 0) return Fail(s, "NBD request", res);
    if (!o_.to_nbd) return LocalIo(s, IORING_OP_WRITE);
    Retire(s);
  }
  void Retire(Slot& s) {
    --active_;
    done_bytes_ += s.length;
    Next(s);
    if (active_ == 0 && next_ >= size_ && failed_.empty()) StartFinish();
  }
  void StartFinish() {
    // Durability: NBD_CMD_FLUSH on every connection, or fdatasync of the local target.
    if (o_.to_nbd) {
      finish_ops_.resize(client_.connections());
      for (uint32_t c = 0; c < client_.connections(); ++c) {
        finish_ops_[c].copy = this;
        ++finishing_;
        client_.Flush(c, &finish_ops_[c]);
      }
    } else {
      finish_ops_.resize(1);
      finish_ops_[0].copy = this;
      ++finishing_;
      io_uring_sqe* sqe = loop_.Sqe(&finish_ops_[0]);
      sqe->opcode = IORING_OP_FSYNC;
      sqe->fd = fd_;
      sqe->fsync_flags = IORING_FSYNC_DATASYNC;
    }
  }
  void FinishDone(int32_t res) {
    --finishing_;
    if (res < 0) failed_ = std::string("flush: ") + std::strerror(-res);
  }
  void Fail(Slot& s, const char* what, int32_t res) {
    --active_;
    char line[160];
    std::snprintf(line, sizeof line, "%s at %llu failed: %s", what, static_cast<unsigned long long>(s.position),
                  res < 0 ? std::strerror(-res) : "short transfer");
    if (failed_.empty()) failed_ = line;
  }

  const Options& o_;
  Loop& loop_;
  Client& client_;
  int fd_ = -1;
  uint64_t size_ = 0, next_ = 0, done_bytes_ = 0;
  uint32_t active_ = 0, finishing_ = 0;
  std::vector<Slot> slots_;
  std::vector<FinishOp> finish_ops_;
  std::string failed_;
};

inline int RunMain(const Options& o, Loop& loop, Client& client) {
  Copy copy(o, loop, client);
  const double seconds = copy.Run();
  std::printf("{\"client\":\"%s\",\"bytes\":%llu,\"seconds\":%.6f,\"connections\":%u,\"requests\":%u,\"block\":%u}\n",
              client.name(), static_cast<unsigned long long>(copy.size()), seconds, client.connections(),
              o.requests, o.block);
  return 0;
}

}  // namespace proto
