// One NBD command in the transmission phase: a caller-owned record (the
// caller keeps it alive until CommandDone runs), in the manner of the
// engine's IoOp. The connection fills in the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nbd_protocol.h"

namespace devmove {

struct NbdCommand;

// Who hears about a command when its reply (or its connection's failure) has come.
class NbdCommandOwner {
 public:
  virtual void CommandDone(NbdCommand& command) = 0;

 protected:
  ~NbdCommandOwner() = default;
};

// One base:allocation extent: [offset, offset + length) with NBD_STATE_* flags.
struct NbdExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t flags = 0;
  bool hole() const { return flags & nbd::kStateHole; }
  bool zero() const { return flags & nbd::kStateZero; }
};

struct NbdCommand {
  // ---- What: set by the owner ----
  uint16_t type = nbd::kCmdRead;
  uint16_t flags = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint8_t* data = nullptr;                 // READ: destination, WRITE: source (length bytes)
  std::vector<NbdExtent>* extents = nullptr;  // BLOCK_STATUS: extents are appended here
  NbdCommandOwner* owner = nullptr;
  uint64_t tag = 0;                        // the owner's bookkeeping

  // ---- Result: set by the connection ----
  int error = 0;               // positive errno; 0 = success
  uint32_t nbd_error = 0;      // the server's error value (0 when the failure was the transport's)
  std::string message;         // the server's text, or what went wrong with the connection
  int64_t error_offset = -1;   // NBD_REPLY_TYPE_ERROR_OFFSET's byte, -1 when none
  bool transport_failed = false;  // the connection broke: no reply was ever seen

  // ---- Connection bookkeeping ----
  uint64_t cookie = 0;
  uint64_t covered_bytes = 0;  // READ: bytes the reply's data and hole chunks filled
  uint8_t header[nbd::kRequestBytes] = {};
  NbdCommand* next = nullptr;

  void ResetResult() {
    error = 0;
    nbd_error = 0;
    message.clear();
    error_offset = -1;
    transport_failed = false;
    covered_bytes = 0;
  }
};

}  // namespace devmove
