#include "nbd_handshake.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cassert>
#include <cstring>

#include "nbd_protocol.h"

namespace devmove {

using namespace nbd;

bool NbdExportInfo::read_only() const { return transmission_flags & kTxReadOnly; }
bool NbdExportInfo::can_flush() const { return transmission_flags & kTxSendFlush; }
bool NbdExportInfo::can_fua() const { return transmission_flags & kTxSendFua; }
bool NbdExportInfo::can_trim() const { return transmission_flags & kTxSendTrim; }
bool NbdExportInfo::can_write_zeroes() const { return transmission_flags & kTxSendWriteZeroes; }
bool NbdExportInfo::can_fast_zero() const {
  return can_write_zeroes() && (transmission_flags & kTxSendFastZero);
}
bool NbdExportInfo::can_df() const { return structured_replies && (transmission_flags & kTxSendDf); }
bool NbdExportInfo::can_multi_conn() const { return transmission_flags & kTxCanMultiConn; }

namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::string LengthPrefixed(const std::string& s) {
  uint8_t length[4];
  Put32(length, static_cast<uint32_t>(s.size()));
  return std::string(reinterpret_cast<char*>(length), 4) + s;
}

}  // namespace

SysError NbdHandshake::Refusal(int errno_value, const char* step, const std::string& message) const {
  return SysError::Make(errno_value, step, address_.uri, -1, message);
}

int NbdHandshake::Connect(NbdExportInfo* info, SysError* error) {
  const int fd = Dial(error);
  if (fd < 0) return -1;
  uint16_t handshake_flags = 0;
  SysError e = Greeting(fd, &handshake_flags);
  if (!e.failed()) e = NegotiateStructuredReplies(fd, info);
  if (!e.failed() && info->structured_replies) e = NegotiateAllocationContext(fd, info);
  bool go_unsupported = false;
  if (!e.failed()) e = Go(fd, info, &go_unsupported);
  if (!e.failed() && go_unsupported) e = ExportName(fd, handshake_flags, info);
  if (!e.failed()) e = CheckInfo(*info);
  if (e.failed()) {
    close(fd);
    *error = e;
    return -1;
  }
  return fd;
}

int NbdHandshake::Dial(SysError* error) {
  const int fd = address_.socket_path.empty() ? DialTcp(error) : DialUnix(error);
  if (fd < 0) return -1;
  // Blocking from here: the copy drives the socket through the I/O driver,
  // and the handshake waits with poll() before every call.
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

int NbdHandshake::DialUnix(SysError* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (address_.socket_path.size() >= sizeof addr.sun_path) {
    *error = Refusal(ENAMETOOLONG, "connect", "the socket path is longer than a unix socket address allows");
    return -1;
  }
  std::memcpy(addr.sun_path, address_.socket_path.c_str(), address_.socket_path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = SysError::Make(errno, "socket", address_.uri);
    return -1;
  }
  // A unix socket connects at once or fails (ENOENT: no such socket;
  // ECONNREFUSED: nobody listens on it; EAGAIN: the backlog is full).
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = SysError::Make(errno, "connect", address_.uri, -1, "socket " + address_.socket_path);
    close(fd);
    return -1;
  }
  return fd;
}

int NbdHandshake::DialTcp(SysError* error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  const std::string port = address_.port.empty() ? "10809" : address_.port;
  const int r = getaddrinfo(address_.host.c_str(), port.c_str(), &hints, &list);
  if (r != 0) {
    *error = Refusal(r == EAI_SYSTEM ? errno : EHOSTUNREACH, "getaddrinfo",
                     "cannot resolve " + address_.host + ": " + gai_strerror(r));
    return -1;
  }
  int fd = -1;
  SysError last = Refusal(EHOSTUNREACH, "connect", "no address of " + address_.host + " answered");
  for (addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = SysError::Make(errno, "connect", address_.uri);
    } else if ((last = WaitFor(fd, POLLOUT, "connect")).failed()) {
      // timed out or cancelled
    } else {
      int so_error = 0;
      socklen_t length = sizeof so_error;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
      if (so_error == 0) break;
      last = SysError::Make(so_error, "connect", address_.uri);
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(list);
  if (fd < 0) {
    *error = last;
    return -1;
  }
  // Requests are small and replies wait on them: Nagle would delay each by a round trip.
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

SysError NbdHandshake::WaitFor(int fd, short events, const char* step) {
  const int64_t deadline = NowMs() + timeout_ms_;
  for (;;) {
    if (cancel_.load(std::memory_order_relaxed)) return Refusal(ECANCELED, step, "cancelled");
    const int64_t left = deadline - NowMs();
    if (left <= 0) {
      return Refusal(ETIMEDOUT, step, "the server did not answer within " + std::to_string(timeout_ms_ / 1000) + " s");
    }
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, kWaitSliceMs)));
    if (r > 0) return {};
    if (r < 0 && errno != EINTR) return SysError::Make(errno, "poll", address_.uri);
  }
}

SysError NbdHandshake::SendAll(int fd, const void* data, size_t length, const char* step) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (length > 0) {
    if (SysError e = WaitFor(fd, POLLOUT, step); e.failed()) return e;
    const ssize_t n = send(fd, p, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return SysError::Make(errno, "send", address_.uri, -1, std::string("during ") + step);
    p += n;
    length -= static_cast<size_t>(n);
  }
  return {};
}

SysError NbdHandshake::RecvAll(int fd, void* data, size_t length, const char* step) {
  auto* p = static_cast<uint8_t*>(data);
  while (length > 0) {
    if (SysError e = WaitFor(fd, POLLIN, step); e.failed()) return e;
    const ssize_t n = recv(fd, p, length, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return SysError::Make(errno, "recv", address_.uri, -1, std::string("during ") + step);
    if (n == 0) return Refusal(ECONNRESET, step, "the server closed the connection");
    p += n;
    length -= static_cast<size_t>(n);
  }
  return {};
}

SysError NbdHandshake::Greeting(int fd, uint16_t* handshake_flags) {
  uint8_t greeting[18];
  if (SysError e = RecvAll(fd, greeting, sizeof greeting, "greeting"); e.failed()) return e;
  if (Get64(greeting) != kInitMagic) return Refusal(EPROTO, "greeting", "not an NBD server (no NBDMAGIC)");
  if (Get64(greeting + 8) != kOptMagic) {
    return Refusal(EPROTO, "greeting", "the server speaks the oldstyle handshake, which devmove does not support");
  }
  *handshake_flags = Get16(greeting + 16);
  if (!(*handshake_flags & kFlagFixedNewstyle)) {
    return Refusal(EPROTO, "greeting", "the server lacks the fixed newstyle handshake");
  }
  uint8_t client_flags[4];
  Put32(client_flags, kFlagFixedNewstyle | (*handshake_flags & kFlagNoZeroes));
  return SendAll(fd, client_flags, sizeof client_flags, "greeting");
}

SysError NbdHandshake::SendOption(int fd, uint32_t option, const std::string& data, const char* step) {
  uint8_t header[kOptionHeaderBytes];
  Put64(header, kOptMagic);
  Put32(header + 8, option);
  Put32(header + 12, static_cast<uint32_t>(data.size()));
  if (SysError e = SendAll(fd, header, sizeof header, step); e.failed()) return e;
  return SendAll(fd, data.data(), data.size(), step);
}

SysError NbdHandshake::ReadOptionReply(int fd, uint32_t option, uint32_t* type, std::string* data,
                                       const char* step) {
  uint8_t header[kOptionReplyHeaderBytes];
  if (SysError e = RecvAll(fd, header, sizeof header, step); e.failed()) return e;
  const uint32_t length = Get32(header + 16);
  if (Get64(header) != kOptReplyMagic || Get32(header + 8) != option || length > kOptionReplyBytesMax) {
    return Refusal(EPROTO, step, "the server's option reply is malformed");
  }
  *type = Get32(header + 12);
  data->resize(length);
  return length == 0 ? SysError{} : RecvAll(fd, &(*data)[0], length, step);
}

SysError NbdHandshake::NegotiateStructuredReplies(int fd, NbdExportInfo* info) {
  constexpr const char* kStep = "NBD_OPT_STRUCTURED_REPLY";
  if (SysError e = SendOption(fd, kOptStructuredReply, {}, kStep); e.failed()) return e;
  uint32_t type = 0;
  std::string data;
  if (SysError e = ReadOptionReply(fd, kOptStructuredReply, &type, &data, kStep); e.failed()) return e;
  if (type == kRepErrTlsReqd) {
    return Refusal(EACCES, kStep, "the server requires TLS, which devmove does not speak: reach it through an ssh tunnel");
  }
  // Any other error: simple replies (the server predates structured replies).
  info->structured_replies = type == kRepAck;
  return {};
}

SysError NbdHandshake::NegotiateAllocationContext(int fd, NbdExportInfo* info) {
  constexpr const char* kStep = "NBD_OPT_SET_META_CONTEXT";
  const std::string context = "base:allocation";
  uint8_t one_query[4];
  Put32(one_query, 1);
  const std::string data = LengthPrefixed(address_.export_name) + std::string(reinterpret_cast<char*>(one_query), 4) +
                           LengthPrefixed(context);
  if (SysError e = SendOption(fd, kOptSetMetaContext, data, kStep); e.failed()) return e;
  for (uint32_t i = 0; i < kRepliesMax; ++i) {
    uint32_t type = 0;
    std::string reply;
    if (SysError e = ReadOptionReply(fd, kOptSetMetaContext, &type, &reply, kStep); e.failed()) return e;
    if (type != kRepMetaContext) return {};  // ACK, or an error: no block status then
    if (reply.size() >= 4 && reply.compare(4, std::string::npos, context) == 0) {
      info->has_allocation_context = true;
      info->allocation_context_id = Get32(reinterpret_cast<const uint8_t*>(reply.data()));
    }
  }
  return Refusal(EPROTO, kStep, "the server sent too many meta context replies");
}

SysError NbdHandshake::Go(int fd, NbdExportInfo* info, bool* unsupported) {
  constexpr const char* kStep = "NBD_OPT_GO";
  uint8_t requests[4];
  Put16(requests, 1);
  Put16(requests + 2, kInfoBlockSize);
  const std::string data = LengthPrefixed(address_.export_name) + std::string(reinterpret_cast<char*>(requests), 4);
  if (SysError e = SendOption(fd, kOptGo, data, kStep); e.failed()) return e;
  bool have_export = false;
  for (uint32_t i = 0; i < kRepliesMax; ++i) {
    uint32_t type = 0;
    std::string reply;
    if (SysError e = ReadOptionReply(fd, kOptGo, &type, &reply, kStep); e.failed()) return e;
    const auto* p = reinterpret_cast<const uint8_t*>(reply.data());
    if (type == kRepAck) {
      return have_export ? SysError{} : Refusal(EPROTO, kStep, "the server sent no NBD_INFO_EXPORT");
    }
    if (type == kRepErrUnsup) {
      *unsupported = true;
      return {};
    }
    if (type & kRepErrorBit) {
      const int e = type == kRepErrUnknown ? ENOENT : type == kRepErrTlsReqd ? EACCES : type == kRepErrShutdown ? ESHUTDOWN : EPROTO;
      std::string message = "export '" + address_.export_name + "': " + OptionErrorText(type);
      if (!reply.empty() && reply.size() <= kStringBytesMax) message += ": " + reply;
      if (type == kRepErrTlsReqd) message += "; devmove does not speak TLS: reach the server through an ssh tunnel";
      return Refusal(e, kStep, message);
    }
    if (type != kRepInfo || reply.size() < 2) continue;
    const uint16_t kind = Get16(p);
    if (kind == kInfoExport && reply.size() == 12) {
      info->size_bytes = Get64(p + 2);
      info->transmission_flags = Get16(p + 10);
      have_export = true;
    } else if (kind == kInfoBlockSize && reply.size() == 14) {
      info->min_block_bytes = Get32(p + 2);
      info->preferred_block_bytes = Get32(p + 6);
      info->max_payload_bytes = Get32(p + 10);
      info->block_size_advertised = true;
    }
  }
  return Refusal(EPROTO, kStep, "the server sent too many replies");
}

SysError NbdHandshake::ExportName(int fd, uint16_t handshake_flags, NbdExportInfo* info) {
  constexpr const char* kStep = "NBD_OPT_EXPORT_NAME";
  if (SysError e = SendOption(fd, kOptExportName, address_.export_name, kStep); e.failed()) return e;
  uint8_t reply[10 + 124];
  const size_t length = (handshake_flags & kFlagNoZeroes) ? 10 : sizeof reply;
  // The server closes the connection for an unknown export: no error reply exists here.
  if (SysError e = RecvAll(fd, reply, length, kStep); e.failed()) {
    if (e.errno_value == ECONNRESET) e.errno_value = ENOENT, e.message = "the server closed the connection: no export '" + address_.export_name + "'?";
    return e;
  }
  info->size_bytes = Get64(reply);
  info->transmission_flags = Get16(reply + 8);
  return {};
}

SysError NbdHandshake::CheckInfo(const NbdExportInfo& info) const {
  const char* kStep = "NBD_OPT_GO";
  const bool power_of_two = info.min_block_bytes != 0 && (info.min_block_bytes & (info.min_block_bytes - 1)) == 0;
  if (!power_of_two || info.min_block_bytes > kMinBlockMax) {
    return Refusal(EPROTO, kStep, "the server advertises an invalid minimum block size (" +
                                      std::to_string(info.min_block_bytes) + ")");
  }
  if (info.max_payload_bytes < info.min_block_bytes || info.preferred_block_bytes < info.min_block_bytes) {
    return Refusal(EPROTO, kStep, "the server advertises inconsistent block sizes");
  }
  if (!(info.transmission_flags & kTxHasFlags)) {
    return Refusal(EPROTO, kStep, "the server's transmission flags lack NBD_FLAG_HAS_FLAGS");
  }
  return {};
}

}  // namespace devmove
