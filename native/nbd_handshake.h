// Reaching an NBD export: the connection (a unix socket or TCP) and the fixed
// newstyle handshake up to the transmission phase, done synchronously before
// the copy's first I/O. Every wait is bounded (a deadline, and the copy's
// cancel flag looked at every kWaitSliceMs), so a server that never answers
// ends in ETIMEDOUT, never a hang.
//
// Negotiated, in this order: NBD_OPT_STRUCTURED_REPLY (data and errors with
// offsets; a read may come back in chunks), NBD_OPT_SET_META_CONTEXT
// "base:allocation" (where the export has data: NBD_CMD_BLOCK_STATUS), and
// NBD_OPT_GO with NBD_INFO_BLOCK_SIZE, which commits this client to the
// server's minimum block size and maximum payload. Servers without
// NBD_OPT_GO (older than the INFO extension) get NBD_OPT_EXPORT_NAME.
// NBD_OPT_STARTTLS is never sent: a server that requires TLS is refused with
// the reason.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "sys_error.h"

namespace devmove {

struct NbdAddress {
  std::string uri;          // what the user gave, for messages
  std::string socket_path;  // nbd+unix: the server's socket
  std::string host;         // nbd: host name or address
  std::string port;         // nbd: port (default 10809)
  std::string export_name;  // '' = the server's default export
};

struct NbdExportInfo {
  uint64_t size_bytes = 0;
  uint16_t transmission_flags = 0;
  // Size constraints (doc/proto.md "Size constraints"); the defaults when the
  // server advertises none.
  uint32_t min_block_bytes = 1;
  uint32_t preferred_block_bytes = 4096;
  uint32_t max_payload_bytes = 32u << 20;
  bool block_size_advertised = false;  // NBD_INFO_BLOCK_SIZE came: its maximum bounds WRITE_ZEROES too
  bool structured_replies = false;
  bool has_allocation_context = false;
  uint32_t allocation_context_id = 0;

  bool read_only() const;
  bool can_flush() const;
  bool can_fua() const;
  bool can_trim() const;
  bool can_write_zeroes() const;
  bool can_fast_zero() const;
  bool can_df() const;
  bool can_multi_conn() const;
};

class NbdHandshake {
 public:
  static constexpr int kWaitSliceMs = 100;       // how often a wait looks at the cancel flag
  static constexpr int kTimeoutMs = 30'000;      // connecting and each handshake step
  static constexpr uint32_t kRepliesMax = 256;   // option replies read for one option at most

  NbdHandshake(const NbdAddress& address, const std::atomic<bool>& cancel, int timeout_ms = kTimeoutMs)
      : address_(address), cancel_(cancel), timeout_ms_(timeout_ms) {}

  // Connects and negotiates. Returns the socket (blocking, TCP_NODELAY on
  // TCP) in the transmission phase, or -1 with *error set: syscall 'connect'
  // (ECONNREFUSED, ENOENT, ETIMEDOUT ...), or the step that failed
  // ('NBD_OPT_GO' with ENOENT for an unknown export, EACCES when the server
  // requires TLS, EPROTO for a server that breaks the protocol).
  int Connect(NbdExportInfo* info, SysError* error);

 private:
  int Dial(SysError* error);
  int DialUnix(SysError* error);
  int DialTcp(SysError* error);
  SysError WaitFor(int fd, short events, const char* step);
  SysError SendAll(int fd, const void* data, size_t length, const char* step);
  SysError RecvAll(int fd, void* data, size_t length, const char* step);
  SysError Greeting(int fd, uint16_t* handshake_flags);
  SysError SendOption(int fd, uint32_t option, const std::string& data, const char* step);
  SysError ReadOptionReply(int fd, uint32_t option, uint32_t* type, std::string* data, const char* step);
  SysError NegotiateStructuredReplies(int fd, NbdExportInfo* info);
  SysError NegotiateAllocationContext(int fd, NbdExportInfo* info);
  SysError Go(int fd, NbdExportInfo* info, bool* unsupported);
  SysError ExportName(int fd, uint16_t handshake_flags, NbdExportInfo* info);
  SysError CheckInfo(const NbdExportInfo& info) const;
  SysError Refusal(int errno_value, const char* step, const std::string& message) const;

  NbdAddress address_;
  const std::atomic<bool>& cancel_;
  int timeout_ms_;
};

}  // namespace devmove
