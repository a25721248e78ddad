// Prototype B's protocol pieces: the NBD wire format (doc/proto.md of
// NetworkBlockDevice/nbd) and a blocking fixed-newstyle handshake with
// NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT base:allocation and
// NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE. Big-endian on the wire.
#pragma once

#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "nbd_protocol.h"  // native/: the engine's wire constants and encoders, shared

namespace nbdwire {

using namespace devmove::nbd;
constexpr uint32_t kRepErrBit = kRepErrorBit;
constexpr size_t kStructuredReplyBytes = kChunkHeaderBytes;

inline void EncodeRequest(uint8_t* out, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
                          uint32_t length) {
  devmove::nbd::EncodeRequest({flags, type, cookie, offset, length}, out);
}

struct ExportInfo {
  uint64_t size = 0;
  uint16_t flags = 0;
  uint32_t min_block = 1, preferred_block = 4096, max_payload = 32u << 20;
  bool structured = false;
  int64_t allocation_context = -1;  // base:allocation's id, -1 when not negotiated
};

// Blocking I/O for the handshake; returns 0 or -errno (-ECONNRESET for EOF).
inline int WriteAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}
inline int ReadAll(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    const ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) return -ECONNRESET;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

inline int SendOption(int fd, uint32_t option, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> m(16 + data.size());
  Put64(m.data(), kOptMagic);
  Put32(m.data() + 8, option);
  Put32(m.data() + 12, static_cast<uint32_t>(data.size()));
  if (!data.empty()) std::memcpy(m.data() + 16, data.data(), data.size());
  return WriteAll(fd, m.data(), m.size());
}

struct OptionReply {
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

inline int ReadOptionReply(int fd, uint32_t option, OptionReply* reply) {
  uint8_t h[20];
  if (int r = ReadAll(fd, h, sizeof h)) return r;
  if (Get64(h) != kOptReplyMagic || Get32(h + 8) != option) return -EPROTO;
  reply->type = Get32(h + 12);
  const uint32_t length = Get32(h + 16);
  if (length > (1u << 20)) return -EPROTO;
  reply->data.resize(length);
  return length ? ReadAll(fd, reply->data.data(), length) : 0;
}

inline std::vector<uint8_t> NameBlob(const std::string& s) {
  std::vector<uint8_t> b(4 + s.size());
  Put32(b.data(), static_cast<uint32_t>(s.size()));
  if (!s.empty()) std::memcpy(b.data() + 4, s.data(), s.size());
  return b;
}

// The handshake up to transmission. Returns 0 or -errno; *why says what failed.
inline int Handshake(int fd, const std::string& export_name, ExportInfo* info, std::string* why) {
  uint8_t greeting[18];
  if (int r = ReadAll(fd, greeting, sizeof greeting)) return *why = "greeting", r;
  if (Get64(greeting) != kInitMagic || Get64(greeting + 8) != kOptMagic)
    return *why = "not a newstyle NBD server", -EPROTO;
  const uint16_t hflags = Get16(greeting + 16);
  if (!(hflags & kFlagFixedNewstyle)) return *why = "the server lacks fixed newstyle negotiation", -EPROTO;
  uint8_t cflags[4];
  Put32(cflags, kFlagFixedNewstyle | (hflags & kFlagNoZeroes));
  if (int r = WriteAll(fd, cflags, 4)) return *why = "client flags", r;

  OptionReply rep;
  if (int r = SendOption(fd, kOptStructuredReply, {})) return r;
  if (int r = ReadOptionReply(fd, kOptStructuredReply, &rep)) return *why = "structured reply option", r;
  info->structured = rep.type == kRepAck;

  if (info->structured) {
    std::vector<uint8_t> d = NameBlob(export_name);
    const std::string query = "base:allocation";
    d.resize(d.size() + 4);
    Put32(d.data() + d.size() - 4, 1);
    const std::vector<uint8_t> q = NameBlob(query);
    d.insert(d.end(), q.begin(), q.end());
    if (int r = SendOption(fd, kOptSetMetaContext, d)) return r;
    for (int i = 0; i < 64; ++i) {
      if (int r = ReadOptionReply(fd, kOptSetMetaContext, &rep)) return *why = "meta context option", r;
      if (rep.type == kRepMetaContext && rep.data.size() >= 4 &&
          std::string(rep.data.begin() + 4, rep.data.end()) == query)
        info->allocation_context = Get32(rep.data.data());
      if (rep.type != kRepMetaContext) break;
    }
  }

  std::vector<uint8_t> go = NameBlob(export_name);
  go.resize(go.size() + 4);
  Put16(go.data() + go.size() - 4, 1);
  Put16(go.data() + go.size() - 2, kInfoBlockSize);
  if (int r = SendOption(fd, kOptGo, go)) return r;
  bool have_export = false;
  for (int i = 0; i < 64; ++i) {
    if (int r = ReadOptionReply(fd, kOptGo, &rep)) return *why = "go option", r;
    if (rep.type == kRepAck) break;
    if (rep.type & kRepErrBit) {
      *why = "the server refused the export (" + std::string(rep.data.begin(), rep.data.end()) + ")";
      return -ENOENT;
    }
    if (rep.type != kRepInfo || rep.data.size() < 2) continue;
    const uint16_t kind = Get16(rep.data.data());
    if (kind == kInfoExport && rep.data.size() == 12) {
      info->size = Get64(rep.data.data() + 2);
      info->flags = Get16(rep.data.data() + 10);
      have_export = true;
    } else if (kind == kInfoBlockSize && rep.data.size() == 14) {
      info->min_block = Get32(rep.data.data() + 2);
      info->preferred_block = Get32(rep.data.data() + 6);
      info->max_payload = Get32(rep.data.data() + 10);
    }
  }
  if (!have_export) return *why = "no export information", -EPROTO;
  return 0;
}

// Connects to a unix socket or host:port. Returns the socket or -errno.
inline int Dial(const std::string& unix_path, const std::string& host, const std::string& port) {
  if (!unix_path.empty()) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (unix_path.size() >= sizeof a.sun_path) return close(fd), -ENAMETOOLONG;
    std::memcpy(a.sun_path, unix_path.c_str(), unix_path.size() + 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      const int e = errno;
      close(fd);
      return -e;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -EHOSTUNREACH;
  int fd = -ECONNREFUSED;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    const int e = errno;
    close(fd);
    fd = -e;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

}  // namespace nbdwire
