// Prototype A: libnbd (libnbd.so.0, loaded with dlopen as the addon loads
// libudev: no -dev package) driven from the copy loop's io_uring. One handle
// per connection; its socket is watched with IORING_OP_POLL_ADD (one poll for
// replies always armed, one for writability while libnbd has output queued),
// so one io_uring_enter waits for local I/O and the network together.
#include <dlfcn.h>
#include <poll.h>

#include "harness.h"

struct nbd_handle;

namespace {

struct NbdCompletion {
  int (*callback)(void* user_data, int* error);
  void* user_data;
  void (*free)(void* user_data);
};

constexpr unsigned kDirectionRead = 1;   // LIBNBD_AIO_DIRECTION_READ
constexpr unsigned kDirectionWrite = 2;  // LIBNBD_AIO_DIRECTION_WRITE

struct Api {
  nbd_handle* (*create)();
  void (*close)(nbd_handle*);
  const char* (*get_error)();
  int (*connect_uri)(nbd_handle*, const char*);
  int (*set_pread_initialize)(nbd_handle*, bool);
  int64_t (*get_size)(nbd_handle*);
  int (*can_multi_conn)(nbd_handle*);
  int64_t (*aio_pread)(nbd_handle*, void*, size_t, uint64_t, NbdCompletion, uint32_t);
  int64_t (*aio_pwrite)(nbd_handle*, const void*, size_t, uint64_t, NbdCompletion, uint32_t);
  int64_t (*aio_flush)(nbd_handle*, NbdCompletion, uint32_t);
  int (*aio_get_fd)(nbd_handle*);
  unsigned (*aio_get_direction)(nbd_handle*);
  int (*aio_notify_read)(nbd_handle*);
  int (*aio_notify_write)(nbd_handle*);
  int (*shutdown)(nbd_handle*, uint32_t);
};

template <typename Fn>
void Resolve(void* lib, const char* name, Fn* out) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (*out == nullptr) proto::Die(std::string("libnbd.so.0 lacks ") + name);
}

Api LoadApi() {
  void* lib = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) proto::Die(std::string("dlopen libnbd.so.0: ") + dlerror());
  Api a{};
  Resolve(lib, "nbd_create", &a.create);
  Resolve(lib, "nbd_close", &a.close);
  Resolve(lib, "nbd_get_error", &a.get_error);
  Resolve(lib, "nbd_connect_uri", &a.connect_uri);
  Resolve(lib, "nbd_set_pread_initialize", &a.set_pread_initialize);
  Resolve(lib, "nbd_get_size", &a.get_size);
  Resolve(lib, "nbd_can_multi_conn", &a.can_multi_conn);
  Resolve(lib, "nbd_aio_pread", &a.aio_pread);
  Resolve(lib, "nbd_aio_pwrite", &a.aio_pwrite);
  Resolve(lib, "nbd_aio_flush", &a.aio_flush);
  Resolve(lib, "nbd_aio_get_fd", &a.aio_get_fd);
  Resolve(lib, "nbd_aio_get_direction", &a.aio_get_direction);
  Resolve(lib, "nbd_aio_notify_read", &a.aio_notify_read);
  Resolve(lib, "nbd_aio_notify_write", &a.aio_notify_write);
  Resolve(lib, "nbd_shutdown", &a.shutdown);
  return a;
}

class LibnbdClient final : public proto::Client {
 public:
  LibnbdClient(const proto::Options& o, proto::Loop& loop) : api_(LoadApi()), loop_(loop) {
    const std::string uri = o.port.empty()
                                ? "nbd+unix:///" + o.export_name + "?socket=" + o.unix_path
                                : "nbd://" + o.host + ":" + o.port + "/" + o.export_name;
    Connect(uri);
    const uint32_t want = api_.can_multi_conn(conns_[0]->h) == 1 ? o.connections : 1;
    while (conns_.size() < want) Connect(uri);
    size_ = static_cast<uint64_t>(api_.get_size(conns_[0]->h));
    for (auto& c : conns_) ArmRead(*c);
  }
  ~LibnbdClient() override {
    for (auto& c : conns_) {
      api_.shutdown(c->h, 0);
      api_.close(c->h);
    }
  }
  const char* name() const override { return "libnbd"; }
  uint64_t export_size() const override { return size_; }
  uint32_t connections() const override { return static_cast<uint32_t>(conns_.size()); }

  void Read(uint32_t conn, uint8_t* buf, uint64_t offset, uint32_t length, proto::Op* done) override {
    Conn& c = *conns_[conn];
    if (api_.aio_pread(c.h, buf, length, offset, Completion(done), 0) < 0) proto::Die(api_.get_error());
  }
  void Write(uint32_t conn, const uint8_t* buf, uint64_t offset, uint32_t length, proto::Op* done) override {
    Conn& c = *conns_[conn];
    if (api_.aio_pwrite(c.h, buf, length, offset, Completion(done), 0) < 0) proto::Die(api_.get_error());
  }
  void Flush(uint32_t conn, proto::Op* done) override {
    if (api_.aio_flush(conns_[conn]->h, Completion(done), 0) < 0) proto::Die(api_.get_error());
  }
  // libnbd sends at once where it can; what it could not send waits for POLLOUT.
  void Kick() override {
    RunFinished();
    for (auto& c : conns_) {
      if ((api_.aio_get_direction(c->h) & kDirectionWrite) && !c->write_armed) ArmWrite(*c);
    }
  }

 private:
  struct Conn;
  struct PollOp final : proto::Op {
    LibnbdClient* client = nullptr;
    Conn* conn = nullptr;
    bool for_write = false;
    void Done(int32_t res, uint32_t) override { client->PollDone(*conn, for_write, res); }
  };
  struct Conn {
    nbd_handle* h = nullptr;
    int fd = -1;
    bool write_armed = false;
    PollOp read_poll, write_poll;
  };

  // libnbd runs completion callbacks with the handle's lock held, so a new
  // command on the same handle must wait: completions are queued, then run.
  struct Finished {
    proto::Op* op;
    int32_t res;
  };
  struct Ticket {
    LibnbdClient* client;
    proto::Op* op;
  };
  static int Completed(void* user_data, int* error) {
    auto* t = static_cast<Ticket*>(user_data);
    t->client->finished_.push_back({t->op, *error ? -*error : 0});
    return 1;  // retire the command
  }
  static void FreeTicket(void* user_data) { delete static_cast<Ticket*>(user_data); }
  NbdCompletion Completion(proto::Op* op) { return NbdCompletion{&Completed, new Ticket{this, op}, &FreeTicket}; }
  void RunFinished() {
    std::vector<Finished> ready;
    ready.swap(finished_);
    for (const Finished& f : ready) f.op->Done(f.res, 0);
  }

  void Connect(const std::string& uri) {
    auto c = std::make_unique<Conn>();
    c->h = api_.create();
    if (c->h == nullptr) proto::Die(api_.get_error());
    // libnbd zeroes every read buffer first unless told not to (1.10+): a memset per request.
    api_.set_pread_initialize(c->h, false);
    if (api_.connect_uri(c->h, uri.c_str()) < 0) proto::Die(api_.get_error());
    c->fd = api_.aio_get_fd(c->h);
    c->read_poll = {};
    c->read_poll.client = this;
    c->read_poll.conn = c.get();
    c->write_poll.client = this;
    c->write_poll.conn = c.get();
    c->write_poll.for_write = true;
    conns_.push_back(std::move(c));
  }
  void ArmRead(Conn& c) {
    io_uring_sqe* sqe = loop_.Sqe(&c.read_poll);
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = c.fd;
    sqe->poll32_events = POLLIN;
  }
  void ArmWrite(Conn& c) {
    c.write_armed = true;
    io_uring_sqe* sqe = loop_.Sqe(&c.write_poll);
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = c.fd;
    sqe->poll32_events = POLLOUT;
  }
  void PollDone(Conn& c, bool for_write, int32_t res) {
    if (res < 0) proto::Die("poll", -res);
    if (for_write) {
      c.write_armed = false;
      if (api_.aio_notify_write(c.h) < 0) proto::Die(api_.get_error());
      RunFinished();
      return;
    }
    if (api_.aio_notify_read(c.h) < 0) proto::Die(api_.get_error());
    ArmRead(c);
    RunFinished();
  }

  Api api_;
  proto::Loop& loop_;
  std::vector<std::unique_ptr<Conn>> conns_;
  uint64_t size_ = 0;
  std::vector<Finished> finished_;
};

}  // namespace

int main(int argc, char** argv) {
  const proto::Options o = proto::ParseOptions(argc, argv);
  proto::Loop loop;
  LibnbdClient client(o, loop);
  return proto::RunMain(o, loop, client);
}
