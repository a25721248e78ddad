#include "nbd_reply_reader.h"

#include <errno.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {

using namespace nbd;

namespace {

enum class Parsed { kNeedMore, kConsumed, kViolation };

}  // namespace

NbdReplyReader::Read NbdReplyReader::NextRead() {
  switch (state_) {
    case State::kData:
      return {data_at_, data_left_, true};
    case State::kControl:
      return {control_.data() + control_filled_, static_cast<uint32_t>(control_.size()) - control_filled_, true};
    case State::kHeaders:
      break;
  }
  Compact();
  assert(end_ < kStagingBytes);
  return {staging_.data() + end_, std::min<uint32_t>(kHeaderRecvBytes, kStagingBytes - end_), false};
}

bool NbdReplyReader::Received(uint32_t bytes) {
  assert(bytes > 0);
  switch (state_) {
    case State::kHeaders:
      assert(end_ + bytes <= kStagingBytes);
      end_ += bytes;
      return Parse();
    case State::kData:
      assert(bytes <= data_left_);
      data_at_ += bytes;
      data_left_ -= bytes;
      if (data_left_ > 0) return true;
      state_ = State::kHeaders;
      if (data_done_) FinishCommand(*data_command_);
      data_command_ = nullptr;
      return Parse();
    case State::kControl: {
      control_filled_ += bytes;
      assert(control_filled_ <= control_.size());
      if (control_filled_ < control_.size()) return true;
      state_ = State::kHeaders;
      NbdCommand& c = *control_command_;
      control_command_ = nullptr;
      if (!ControlChunk(c, control_flags_, control_type_, control_.data(), static_cast<uint32_t>(control_.size()))) {
        return false;
      }
      std::vector<uint8_t>().swap(control_);  // a large block status reply is not kept
      return Parse();
    }
  }
  return false;
}

void NbdReplyReader::Compact() {
  if (begin_ == 0) return;
  std::memmove(staging_.data(), staging_.data() + begin_, end_ - begin_);
  end_ -= begin_;
  begin_ = 0;
}

bool NbdReplyReader::Fail(const std::string& why) {
  if (error_.empty()) error_ = why;
  return false;
}

// Consumes whole messages from staging until it needs more bytes or a data
// or control payload is to be read directly.
bool NbdReplyReader::Parse() {
  // Each pass consumes at least one header from a buffer of bounded size.
  while (state_ == State::kHeaders) {
    const uint32_t avail = end_ - begin_;
    const uint8_t* p = staging_.data() + begin_;
    if (avail < 4) return true;
    const uint32_t magic = Get32(p);
    if (magic == kSimpleReplyMagic) {
      if (avail < kSimpleReplyBytes) return true;
      if (!ParseSimple(p)) return false;
    } else if (magic == kStructuredReplyMagic && structured_) {
      if (avail < kChunkHeaderBytes) return true;
      const uint32_t before = begin_;
      if (!ParseChunk(p, avail)) return false;
      if (begin_ == before && state_ == State::kHeaders) return true;  // the chunk is not all here yet
    } else {
      return Fail("the server sent a reply with an unknown magic number");
    }
  }
  return true;
}

bool NbdReplyReader::ParseSimple(const uint8_t* p) {
  const uint32_t nbd_error = Get32(p + 4);
  NbdCommand* c = table_.Find(Get64(p + 8));
  if (c == nullptr) return Fail("the server replied to a request that was not sent");
  begin_ += kSimpleReplyBytes;
  if (nbd_error != 0) {
    c->error = ErrnoFromNbdError(nbd_error);
    c->nbd_error = nbd_error;
    FinishCommand(*c);
    return true;
  }
  if (c->type == kCmdBlockStatus) return Fail("the server answered NBD_CMD_BLOCK_STATUS with a simple reply");
  if (c->type != kCmdRead) {
    FinishCommand(*c);
    return true;
  }
  if (structured_) return Fail("the server sent read data in a simple reply after agreeing to structured replies");
  c->covered_bytes = c->length;
  return StartData(*c, c->data, c->length, true);
}

bool NbdReplyReader::ParseChunk(const uint8_t* p, uint32_t avail) {
  const uint16_t flags = Get16(p + 4);
  const uint16_t type = Get16(p + 6);
  const uint32_t length = Get32(p + 16);
  NbdCommand* c = table_.Find(Get64(p + 8));
  if (c == nullptr) return Fail("the server replied to a request that was not sent");
  const bool done = flags & kReplyFlagDone;
  if (type == kReplyOffsetData) {
    if (c->type != kCmdRead || length < 9) return Fail("the server sent read data that does not belong to a read");
    if (avail < kChunkHeaderBytes + 8) return true;
    return DataChunk(*c, p, done);
  }
  if (length > kControlPayloadMax) return Fail("the server sent a reply payload of " + std::to_string(length) + " bytes");
  if (kChunkHeaderBytes + length <= kStagingBytes) {
    if (avail < kChunkHeaderBytes + length) return true;
    begin_ += kChunkHeaderBytes + length;
    return ControlChunk(*c, flags, type, p + kChunkHeaderBytes, length);
  }
  // Larger than staging: collect it on the side.
  const uint32_t have = avail - kChunkHeaderBytes;
  control_.assign(p + kChunkHeaderBytes, p + kChunkHeaderBytes + have);
  control_.resize(length);
  control_filled_ = have;
  control_command_ = c;
  control_flags_ = flags;
  control_type_ = type;
  begin_ = end_ = 0;
  state_ = State::kControl;
  return true;
}

bool NbdReplyReader::DataChunk(NbdCommand& c, const uint8_t* header, bool done) {
  const uint64_t offset = Get64(header + kChunkHeaderBytes);
  const uint32_t bytes = Get32(header + 16) - 8;
  if (offset < c.offset || offset - c.offset > c.length || bytes > c.length - (offset - c.offset)) {
    return Fail("the server sent read data outside the request");
  }
  c.covered_bytes += bytes;
  begin_ += kChunkHeaderBytes + 8;
  return StartData(c, c.data + (offset - c.offset), bytes, done);
}

bool NbdReplyReader::StartData(NbdCommand& c, uint8_t* dest, uint32_t length, bool done) {
  const uint32_t take = std::min(length, end_ - begin_);
  if (take > 0) std::memcpy(dest, staging_.data() + begin_, take);
  begin_ += take;
  if (take == length) {
    if (done) FinishCommand(c);
    return true;
  }
  // Staging is used up (take < length means it held less than the payload).
  assert(begin_ == end_);
  begin_ = end_ = 0;
  data_command_ = &c;
  data_at_ = dest + take;
  data_left_ = length - take;
  data_done_ = done;
  state_ = State::kData;
  return true;
}

bool NbdReplyReader::ControlChunk(NbdCommand& c, uint16_t flags, uint16_t type, const uint8_t* payload,
                                  uint32_t length) {
  bool ok = true;
  if (type == kReplyNone) {
    if (length != 0 || !(flags & kReplyFlagDone)) return Fail("the server sent a malformed NBD_REPLY_TYPE_NONE");
  } else if (type == kReplyOffsetHole) {
    ok = HoleChunk(c, payload, length);
  } else if (type == kReplyBlockStatus) {
    ok = BlockStatusChunk(c, payload, length);
  } else if (type & kReplyErrorBit) {
    ok = ErrorChunk(c, type, payload, length);
  } else {
    return Fail("the server sent a reply chunk of unknown type " + std::to_string(type));
  }
  if (!ok) return false;
  if (flags & kReplyFlagDone) FinishCommand(c);
  return true;
}

bool NbdReplyReader::HoleChunk(NbdCommand& c, const uint8_t* payload, uint32_t length) {
  if (c.type != kCmdRead || length != 12) return Fail("the server sent a malformed NBD_REPLY_TYPE_OFFSET_HOLE");
  const uint64_t offset = Get64(payload);
  const uint32_t size = Get32(payload + 8);
  if (size == 0 || offset < c.offset || offset - c.offset > c.length || size > c.length - (offset - c.offset)) {
    return Fail("the server sent a hole outside the request");
  }
  std::memset(c.data + (offset - c.offset), 0, size);
  c.covered_bytes += size;
  return true;
}

bool NbdReplyReader::BlockStatusChunk(NbdCommand& c, const uint8_t* payload, uint32_t length) {
  if (c.type != kCmdBlockStatus || length < 12 || (length - 4) % 8 != 0) {
    return Fail("the server sent a malformed NBD_REPLY_TYPE_BLOCK_STATUS");
  }
  if (Get32(payload) != allocation_context_id_) return true;  // a context this client did not ask for
  // The descriptors cover consecutive bytes from the request's offset. A
  // server may describe less than was asked; what it says past the request's
  // end (some servers round the last extent up) is cut off.
  const uint64_t end = c.offset + c.length;
  uint64_t at = c.offset;
  for (uint32_t i = 4; i < length && at < end; i += 8) {
    const uint32_t extent_length = Get32(payload + i);
    if (extent_length == 0) return Fail("the server sent an extent of length 0");
    const uint64_t kept = std::min<uint64_t>(extent_length, end - at);
    if (c.extents != nullptr) c.extents->push_back({at, kept, Get32(payload + i + 4)});
    at += kept;
  }
  return true;
}

bool NbdReplyReader::ErrorChunk(NbdCommand& c, uint16_t type, const uint8_t* payload, uint32_t length) {
  if (length < 6) return Fail("the server sent a malformed error chunk");
  const uint32_t nbd_error = Get32(payload);
  const uint16_t message_length = Get16(payload + 4);
  if (6u + message_length > length) return Fail("the server sent an error message longer than its chunk");
  int64_t offset = -1;
  if (type == kReplyErrorOffset) {
    if (length != 6u + message_length + 8) return Fail("the server sent a malformed NBD_REPLY_TYPE_ERROR_OFFSET");
    offset = static_cast<int64_t>(Get64(payload + 6 + message_length));
  }
  if (c.error == 0) {
    // An error value of 0 in an error chunk is itself a violation; take it as EIO.
    c.error = nbd_error == 0 ? EIO : ErrnoFromNbdError(nbd_error);
    c.nbd_error = nbd_error;
    c.message.assign(reinterpret_cast<const char*>(payload + 6), message_length);
    c.error_offset = offset;
  }
  return true;
}

void NbdReplyReader::FinishCommand(NbdCommand& c) {
  if (c.error == 0 && c.type == kCmdRead && c.covered_bytes != c.length) {
    c.error = EIO;
    c.message = "the server's reply covered " + std::to_string(c.covered_bytes) + " of " + std::to_string(c.length) +
                " bytes";
  }
  table_.Finished(c);
}

}  // namespace devmove
