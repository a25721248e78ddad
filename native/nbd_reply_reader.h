// The receiving half of an NBD connection as a state machine without I/O:
// it says where the next bytes from the socket should go (NextRead), is told
// how many arrived (Received), and finishes commands as their replies
// complete. The same machine serves the asynchronous path (the I/O driver's
// recv) and the synchronous one (blocking recv before and after the copy),
// and is tested by feeding it byte sequences cut anywhere.
//
// Reply headers are read into a small staging buffer, so one recv takes many
// 16-byte write replies at once; read data goes straight into the command's
// buffer with an exact recv (only the few bytes a header recv took past the
// header are copied). Structured replies may split a read into data and hole
// chunks in any order; every chunk is checked to lie inside its request, and
// a successful read must be covered completely.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nbd_command.h"

namespace devmove {

class NbdCommandTable {
 public:
  // The outstanding command with this cookie, or nullptr.
  virtual NbdCommand* Find(uint64_t cookie) = 0;
  // Its reply is complete (result filled in): remove it and tell its owner.
  virtual void Finished(NbdCommand& command) = 0;

 protected:
  ~NbdCommandTable() = default;
};

class NbdReplyReader {
 public:
  // A header recv asks for at most this much: what it takes past a header
  // (the start of read data) is copied once, so it is kept small.
  static constexpr uint32_t kHeaderRecvBytes = 4096;
  // Room for a control payload (errors, block status) read whole.
  static constexpr uint32_t kStagingBytes = 64 * 1024;
  // The largest non-data payload accepted (block status descriptors).
  static constexpr uint32_t kControlPayloadMax = 16u << 20;

  NbdReplyReader(bool structured, NbdCommandTable& table, uint32_t allocation_context_id)
      : structured_(structured), table_(table), allocation_context_id_(allocation_context_id),
        staging_(kStagingBytes) {}

  struct Read {
    uint8_t* into;
    uint32_t length;
    bool exact;  // the whole length is needed (MSG_WAITALL); else any amount up to it
  };
  Read NextRead();
  // `bytes` (> 0) arrived where NextRead() said. Returns false on a protocol
  // violation: the connection must be dropped; error() says why.
  bool Received(uint32_t bytes);
  const std::string& error() const { return error_; }

 private:
  enum class State { kHeaders, kData, kControl };

  bool Parse();
  bool ParseSimple(const uint8_t* p);
  bool ParseChunk(const uint8_t* p, uint32_t avail);
  bool DataChunk(NbdCommand& c, const uint8_t* header, bool done);
  bool HoleChunk(NbdCommand& c, const uint8_t* payload, uint32_t length);
  bool BlockStatusChunk(NbdCommand& c, const uint8_t* payload, uint32_t length);
  bool ErrorChunk(NbdCommand& c, uint16_t type, const uint8_t* payload, uint32_t length);
  bool ControlChunk(NbdCommand& c, uint16_t flags, uint16_t type, const uint8_t* payload, uint32_t length);
  // Takes `length` bytes for `dest` from staging, then reads the rest directly.
  bool StartData(NbdCommand& c, uint8_t* dest, uint32_t length, bool done);
  void FinishCommand(NbdCommand& c);
  bool Fail(const std::string& why);
  void Compact();

  bool structured_;
  NbdCommandTable& table_;
  uint32_t allocation_context_id_;
  State state_ = State::kHeaders;
  std::vector<uint8_t> staging_;
  uint32_t begin_ = 0;  // first unparsed byte in staging_
  uint32_t end_ = 0;    // end of received bytes in staging_
  // kData: the rest of a data payload, read straight into a command's buffer.
  NbdCommand* data_command_ = nullptr;
  uint8_t* data_at_ = nullptr;
  uint32_t data_left_ = 0;
  bool data_done_ = false;  // the chunk carried NBD_REPLY_FLAG_DONE
  // kControl: a payload larger than staging, collected here.
  std::vector<uint8_t> control_;
  uint32_t control_filled_ = 0;
  NbdCommand* control_command_ = nullptr;
  uint16_t control_flags_ = 0;
  uint16_t control_type_ = 0;
  std::string error_;
};

}  // namespace devmove
