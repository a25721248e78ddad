#include "nbd_endpoint.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {

using namespace nbd;

std::unique_ptr<Endpoint> NbdEndpoint::Open(const OpenRequest& r, const CancelFlag& cancel, SysError* error) {
  assert(r.nbd.enabled);
  std::unique_ptr<NbdEndpoint> e(new NbdEndpoint());
  e->path_ = r.path;
  e->kind_ = EndpointKind::kNbd;
  e->cancel_ = &cancel;
  e->address_.uri = r.path;
  e->address_.socket_path = r.nbd.socket_path;
  e->address_.host = r.nbd.host;
  e->address_.port = r.nbd.port;
  e->address_.export_name = r.nbd.export_name;
  SysError failed = e->Connect(r, cancel);
  if (!failed.failed()) failed = e->Configure(r);
  if (failed.failed()) {
    e->Close();
    *error = failed;
    return nullptr;
  }
  return e;
}

NbdEndpoint::~NbdEndpoint() { Close(); }

void NbdEndpoint::Close() {
  for (auto& c : connections_) c->Disconnect();
}

void NbdEndpoint::Abort() {
  for (auto& c : connections_) c->Abandon(ECANCELED, "the copy stopped and the server did not answer");
}

void NbdEndpoint::Watch(double now_seconds) {
  const int64_t now_ms = static_cast<int64_t>(now_seconds * 1000);
  for (auto& c : connections_) c->Watch(now_ms);
}

SysError NbdEndpoint::Connect(const OpenRequest& r, const CancelFlag& cancel) {
  const uint32_t wanted = std::max(1u, std::min(r.nbd.connections, kConnectionsMax));
  // The first connection says whether more are allowed (NBD_FLAG_CAN_MULTI_CONN);
  // without it, commands on several connections could see each other's
  // writes late and a flush on one would not cover the others.
  for (uint32_t i = 0; i < wanted; ++i) {
    NbdExportInfo info;
    SysError error;
    NbdHandshake handshake(address_, cancel);
    const int fd = handshake.Connect(&info, &error);
    if (fd < 0) return error;
    if (i == 0) {
      info_ = info;
    } else if (info.size_bytes != info_.size_bytes || info.transmission_flags != info_.transmission_flags) {
      close(fd);
      return SysError::Make(EPROTO, "NBD_OPT_GO", address_.uri, -1,
                            "the server described the export differently on a second connection");
    }
    connections_.push_back(std::make_unique<NbdConnection>(fd, info, address_.uri, i, r.nbd.answer_timeout_ms));
    if (!info_.can_multi_conn()) break;
  }
  return {};
}

SysError NbdEndpoint::Configure(const OpenRequest& r) {
  if (r.for_write && info_.read_only()) {
    return SysError::Make(EROFS, "NBD_OPT_GO", address_.uri, -1, "the server exports it read-only");
  }
  // oflag=dsync / sync: each write durable when acknowledged, which NBD says with FUA.
  fua_ = r.for_write && (r.durability == Durability::kDsync || r.durability == Durability::kSync);
  if (fua_ && !info_.can_fua()) {
    return SysError::Make(EINVAL, "NBD_OPT_GO", address_.uri, -1,
                          "the server offers no FUA writes, which synchronous durability (dsync/sync) needs; use fdatasync");
  }
  size_bytes_ = info_.size_bytes;
  identity_.kind = EndpointKind::kNbd;
  identity_.name = r.nbd.identity;
  caps_.seekable = true;
  caps_.size_known = true;
  caps_.logical_block_bytes = std::max<uint32_t>(512, info_.min_block_bytes);
  caps_.physical_block_bytes = std::max(caps_.logical_block_bytes, info_.preferred_block_bytes);
  caps_.direct_alignment = 0;
  caps_.zero_ranges = info_.can_write_zeroes();
  caps_.durable_flush = info_.can_flush();
  caps_.rereadable = true;
  caps_.grows = false;
  caps_.data_extents = info_.has_allocation_context;
  caps_.linkable = false;  // the engine's ops become NBD commands; only the connections' own ops reach the driver
  if (!caps_.zero_ranges) zero_ranges_note_ = "the server does not offer NBD_CMD_WRITE_ZEROES";
  direct_note_ = "NBD: no O_DIRECT (the server decides how it reaches its storage)";
  const uint32_t payload = std::min<uint32_t>(info_.max_payload_bytes, kRequestLengthMax);
  payload_max_ = payload / info_.min_block_bytes * info_.min_block_bytes;
  return {};
}

NbdEndpoint::Ticket& NbdEndpoint::AcquireTicket(IoOp& op) {
  if (free_tickets_.empty()) {
    tickets_.push_back(std::make_unique<Ticket>());
    free_tickets_.push_back(tickets_.back().get());
  }
  Ticket& t = *free_tickets_.back();
  free_tickets_.pop_back();
  t.endpoint = this;
  t.op = &op;
  t.parts_left = 0;
  t.error = 0;
  t.failure = {};
  t.parts.clear();
  return t;
}

void NbdEndpoint::ReleaseTicket(Ticket& t) {
  t.op = nullptr;
  free_tickets_.push_back(&t);
}

void NbdEndpoint::Submit(IoDriver& driver, IoOp& op) {
  assert(op.owner != nullptr && !op.queued);
  op.finisher = this;
  op.may_block = false;
  op.positioned = true;
  op.direct = false;
  op.fd = -1;
  op.offset = base_offset_ + op.position;
  op.queued = true;  // ours until DeliverCompletion
  failures_.erase(&op);
  Ticket& t = AcquireTicket(op);
  if (!Plan(t, op.offset)) return CompleteLater(driver, t);
  Send(driver, t);
}

bool NbdEndpoint::Plan(Ticket& t, uint64_t offset) {
  IoOp& op = *t.op;
  switch (op.kind) {
    case IoKind::kRead:
    case IoKind::kWrite:
      return PlanData(t, offset);
    case IoKind::kFsync:
    case IoKind::kFdatasync:
      // Without NBD_FLAG_SEND_FLUSH the server offers nothing to wait for.
      if (!info_.can_flush()) return false;
      for (auto& c : connections_) {
        if (!c->broken()) AddPart(t, kCmdFlush, 0, 0, 0, nullptr);
      }
      if (t.parts.empty()) Fail(t, connections_[0]->broken_reason().errno_value, "NBD_CMD_FLUSH", -1,
                                 connections_[0]->broken_reason().message);
      return !t.parts.empty();
    case IoKind::kPunchHole:
    case IoKind::kZeroRange:
      return PlanZeroes(t, offset);
    default:
      Fail(t, EINVAL, IoKindSyscall(op.kind), -1, "not an operation on an NBD export");
      return false;
  }
}

// One NBD_CMD_WRITE_ZEROES per op (a whole hole of the source), cut only at
// the maximum block size a server advertised (NBD_INFO_BLOCK_SIZE); kZeroRange
// asks the server to keep the range allocated (NBD_CMD_FLAG_NO_HOLE).
bool NbdEndpoint::PlanZeroes(Ticket& t, uint64_t offset) {
  IoOp& op = *t.op;
  if (!info_.can_write_zeroes()) {
    Fail(t, EOPNOTSUPP, "NBD_CMD_WRITE_ZEROES", static_cast<int64_t>(offset), zero_ranges_note_);
    return false;
  }
  const uint32_t block = info_.min_block_bytes;
  if (offset % block || op.length % block || offset + op.length > size_bytes_) {
    Fail(t, EINVAL, "NBD_CMD_WRITE_ZEROES", static_cast<int64_t>(offset), "not on the export's block boundaries");
    return false;
  }
  const uint16_t flags = op.kind == IoKind::kZeroRange ? kCmdFlagNoHole : 0;
  const uint32_t most = info_.block_size_advertised ? payload_max_ : op.length;
  assert(most > 0 && most % block == 0);
  for (uint64_t done = 0; done < op.length;) {
    const uint32_t piece = static_cast<uint32_t>(std::min<uint64_t>(most, op.length - done));
    AddPart(t, kCmdWriteZeroes, flags, offset + done, piece, nullptr);
    done += piece;
  }
  return true;
}

bool NbdEndpoint::PlanData(Ticket& t, uint64_t offset) {
  IoOp& op = *t.op;
  const bool read = op.kind == IoKind::kRead;
  const char* command = read ? "NBD_CMD_READ" : "NBD_CMD_WRITE";
  const uint32_t block = info_.min_block_bytes;
  uint64_t length = op.length;
  if (read && offset >= size_bytes_) return false;  // at the end: a read of 0 bytes
  if (read && offset + length > size_bytes_) length = size_bytes_ - offset;  // a short read at the end
  if (read && length % block != 0) {
    // Round the tail up to the server's block when the buffer and the export allow it.
    const uint64_t rounded = (length + block - 1) / block * block;
    if (rounded <= op.capacity && offset + rounded <= size_bytes_) length = rounded;
  }
  if (!read && offset + length > size_bytes_) {
    Fail(t, ENOSPC, command, static_cast<int64_t>(offset),
         "the export ends at byte " + std::to_string(size_bytes_));
    return false;
  }
  if (offset % block != 0 || length % block != 0) {
    Fail(t, EINVAL, command, static_cast<int64_t>(offset),
         "the server requires requests in multiples of " + std::to_string(block) + " bytes (its minimum block size)");
    return false;
  }
  op.length = static_cast<uint32_t>(length);
  for (uint64_t done = 0; done < length;) {
    const uint32_t piece = static_cast<uint32_t>(std::min<uint64_t>(payload_max_, length - done));
    const uint16_t flags = read ? (info_.can_df() ? kCmdFlagDf : 0) : (fua_ ? kCmdFlagFua : 0);
    AddPart(t, read ? kCmdRead : kCmdWrite, flags, offset + done, piece, op.data + done);
    done += piece;
  }
  return true;
}

void NbdEndpoint::AddPart(Ticket& t, uint16_t type, uint16_t flags, uint64_t offset, uint32_t length, uint8_t* data) {
  t.parts.emplace_back();
  NbdCommand& c = t.parts.back();
  c.type = type;
  c.flags = flags;
  c.offset = offset;
  c.length = length;
  c.data = data;
  c.owner = this;
}

NbdConnection* NbdEndpoint::PickConnection() {
  // The live connection with the fewest commands owed; ties go round.
  NbdConnection* best = nullptr;
  const uint32_t n = static_cast<uint32_t>(connections_.size());
  for (uint32_t i = 0; i < n; ++i) {
    NbdConnection* c = connections_[(next_connection_ + i) % n].get();
    if (!c->broken() && (best == nullptr || c->outstanding() < best->outstanding())) best = c;
  }
  next_connection_ = (next_connection_ + 1) % n;
  return best;
}

void NbdEndpoint::Send(IoDriver& driver, Ticket& t) {
  t.parts_left = static_cast<uint32_t>(t.parts.size());
  uint32_t flushes = 0;
  for (NbdCommand& c : t.parts) {
    c.tag = reinterpret_cast<uint64_t>(&t);
    NbdConnection* conn = nullptr;
    if (c.type == kCmdFlush) {
      // One flush per live connection, in connection order.
      while (flushes < connections_.size() && connections_[flushes]->broken()) ++flushes;
      conn = flushes < connections_.size() ? connections_[flushes++].get() : nullptr;
    } else {
      conn = PickConnection();
    }
    if (conn != nullptr && conn->Start(driver, c)) continue;
    // No live connection: this part fails now, the others finish on their own.
    const SysError& why = connections_[0]->broken_reason();
    c.error = why.failed() ? why.errno_value : ECONNRESET;
    c.transport_failed = true;
    c.message = why.message;
    Fail(t, c.error, CommandName(c.type), static_cast<int64_t>(c.offset), c.message);
    if (--t.parts_left == 0) return CompleteLater(driver, t);
  }
}

void NbdEndpoint::Fail(Ticket& t, int errno_value, const std::string& syscall, int64_t offset,
                       const std::string& message) {
  if (t.error != 0) return;
  t.error = errno_value;
  t.failure = SysError::Make(errno_value, syscall, path_, offset, message);
}

void NbdEndpoint::CommandDone(NbdCommand& c) {
  Ticket& t = *reinterpret_cast<Ticket*>(c.tag);
  assert(t.parts_left > 0);
  if (c.error != 0) {
    std::string message = c.message;
    if (!c.transport_failed) {
      message = "the server answered " + NbdErrorName(c.nbd_error) + (c.message.empty() ? "" : ": " + c.message);
    }
    const int64_t at = c.error_offset >= 0 ? c.error_offset : static_cast<int64_t>(c.offset);
    Fail(t, c.error, CommandName(c.type), c.type == kCmdFlush ? -1 : at, message);
  }
  if (--t.parts_left == 0) Finish(t);
}

void NbdEndpoint::Finish(Ticket& t) {
  IoOp& op = *t.op;
  if (t.error != 0) {
    op.result = -t.error;
    failures_[&op] = t.failure;
  } else if (op.kind == IoKind::kRead || op.kind == IoKind::kWrite) {
    op.result = static_cast<int32_t>(op.length);
  } else {
    op.result = 0;
  }
  ReleaseTicket(t);
  DeliverCompletion(op);
}

// An op that sends nothing (a read at the end, a flush the server does not
// offer, a refusal) still completes through the driver, never inside Submit:
// completion handlers must not run within the caller's submission.
void NbdEndpoint::CompleteLater(IoDriver& driver, Ticket& t) {
  t.nop = {};
  t.nop.kind = IoKind::kNop;
  t.nop.owner = &t;
  driver.Submit(&t.nop);
}

void NbdEndpoint::Ticket::Complete(IoOp& done) {
  (void)done;
  endpoint->Finish(*this);
}

SysError NbdEndpoint::Describe(const IoOp& op, SysError error) const {
  auto it = failures_.find(&op);
  if (it == failures_.end()) return error;
  SysError described = it->second;
  if (described.offset < 0) described.offset = error.offset;
  return described;
}

SysError NbdEndpoint::Flush(bool metadata) {
  (void)metadata;  // NBD has one flush: everything the server acknowledged reaches stable storage
  if (!info_.can_flush()) return {};
  for (auto& conn : connections_) {
    if (conn->broken()) return conn->broken_reason();
    NbdCommand c;
    c.type = kCmdFlush;
    if (SysError e = conn->RunSync(c, *cancel_); e.failed()) return e;
    if (c.error != 0) {
      return SysError::Make(c.error, "NBD_CMD_FLUSH", path_, -1,
                            "the server answered " + NbdErrorName(c.nbd_error) + (c.message.empty() ? "" : ": " + c.message));
    }
  }
  return {};
}

SysError NbdEndpoint::Extents(uint64_t position, uint64_t length, std::vector<EndpointExtent>* out,
                              const CancelFlag& cancel) {
  out->clear();
  if (!info_.has_allocation_context) return SysError::Make(ENOTSUP, "NBD_CMD_BLOCK_STATUS", path_);
  NbdConnection& conn = *connections_[0];
  uint64_t at = base_offset_ + position;
  const uint64_t end = std::min(base_offset_ + position + length, size_bytes_);
  std::vector<NbdExtent> extents;
  for (uint32_t query = 0; at < end; ++query) {
    if (query == kExtentQueriesMax) return SysError::Make(EPROTO, "NBD_CMD_BLOCK_STATUS", path_, -1, "too many extents");
    NbdCommand c;
    c.type = kCmdBlockStatus;
    c.offset = at;
    c.length = static_cast<uint32_t>(std::min<uint64_t>(kExtentQueryBytesMax, end - at));
    extents.clear();
    c.extents = &extents;
    if (SysError e = conn.RunSync(c, cancel); e.failed()) return e;
    if (c.error != 0) {
      return SysError::Make(c.error, "NBD_CMD_BLOCK_STATUS", path_, static_cast<int64_t>(at),
                            "the server answered " + NbdErrorName(c.nbd_error));
    }
    if (extents.empty()) return SysError::Make(EPROTO, "NBD_CMD_BLOCK_STATUS", path_, static_cast<int64_t>(at), "no extents");
    for (const NbdExtent& x : extents) {
      // Only NBD_STATE_ZERO says the bytes read as zeros; a hole without it
      // is "contents undefined" and is read like data.
      const bool zero = x.zero();
      const uint64_t from = x.offset - base_offset_;
      if (!out->empty() && out->back().zero == zero && out->back().position + out->back().length == from) {
        out->back().length += x.length;
      } else {
        out->push_back({from, x.length, zero});
      }
      at = x.offset + x.length;
    }
  }
  return {};
}

// Block status (base:allocation) as the engine's hole query: the data
// stretches of [from, to), at most max_extents of them. Only what the server
// marks NBD_STATE_ZERO counts as a hole. A server that cannot answer leaves
// the source to be read whole (*supported false), as a filesystem without
// SEEK_DATA does.
SysError NbdEndpoint::DataExtents(uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                                  bool* supported) {
  if (!caps_.data_extents) return Endpoint::DataExtents(from, to, max_extents, answer, supported);
  static const CancelFlag kNever{false};
  std::vector<EndpointExtent> map;
  if (Extents(from, to - from, &map, cancel_ ? *cancel_ : kNever).failed()) {
    return Endpoint::DataExtents(from, to, max_extents, answer, supported);
  }
  *supported = true;
  answer->data.clear();
  answer->answered_to = from;
  for (const EndpointExtent& x : map) {
    if (!x.zero) {
      if (answer->data.size() == max_extents) break;  // the rest is answered by the next query
      answer->data.push_back({x.position, x.length});
    }
    answer->answered_to = x.position + x.length;
  }
  answer->answered_to = std::min(answer->answered_to, to);
  return {};
}

}  // namespace devmove
