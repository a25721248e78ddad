#include "nbd_connection.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace devmove {

using namespace nbd;

namespace {

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

NbdConnection::NbdConnection(int fd, const NbdExportInfo& info, std::string uri, uint32_t index,
                             uint32_t answer_timeout_ms)
    : fd_(fd), info_(info), uri_(std::move(uri)), index_(index), answer_timeout_ms_(answer_timeout_ms),
      reader_(info.structured_replies, *this, info.allocation_context_id),
      header_arena_(kSendBatchMax * kRequestBytes) {
  assert(fd_ >= 0);
  iov_.reserve(2 * kSendBatchMax);
}

NbdConnection::~NbdConnection() {
  // The owner drains the driver first: nothing of ours is in flight.
  assert(!sending_ && !receiving_);
  if (fd_ >= 0) close(fd_);
}

NbdCommand* NbdConnection::Find(uint64_t cookie) {
  const uint64_t slot = cookie & kSlotMask;
  if (slot >= slots_.size() || slots_[slot] == nullptr || slots_[slot]->cookie != cookie) return nullptr;
  return slots_[slot];
}

void NbdConnection::Register(NbdCommand& c) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    assert(slot <= kSlotMask);
    slots_.push_back(nullptr);
  }
  slots_[slot] = &c;
  if (outstanding_ == 0) heard_ms_ = MonotonicMs();  // the wait for an answer starts now
  ++generation_;
  c.cookie = (generation_ << kSlotBits) | slot;
  c.next = nullptr;
  c.ResetResult();
  RequestHeader h;
  h.flags = c.flags;
  h.type = c.type;
  h.cookie = c.cookie;
  h.offset = c.offset;
  h.length = c.type == kCmdFlush ? 0 : c.length;
  EncodeRequest(h, c.header);
  ++outstanding_;
}

void NbdConnection::Finished(NbdCommand& c) {
  const uint64_t slot = c.cookie & kSlotMask;
  assert(slot < slots_.size() && slots_[slot] == &c && outstanding_ > 0);
  slots_[slot] = nullptr;
  free_slots_.push_back(static_cast<uint32_t>(slot));
  --outstanding_;
  if (c.owner != nullptr) {
    c.owner->CommandDone(c);
  } else {
    sync_done_ = true;
  }
}

bool NbdConnection::Start(IoDriver& driver, NbdCommand& c) {
  assert(c.owner != nullptr);
  if (broken()) return false;
  driver_ = &driver;
  Register(c);
  if (queue_tail_ != nullptr) {
    queue_tail_->next = &c;
  } else {
    queue_head_ = &c;
  }
  queue_tail_ = &c;
  if (!sending_) StartSend();
  if (!receiving_ && !in_recv_handler_) ArmRecv();
  return true;
}

void NbdConnection::StartSend() {
  assert(!sending_ && queue_head_ != nullptr);
  iov_.clear();
  iov_at_ = 0;
  size_t payload = 0;
  for (uint32_t n = 0; n < kSendBatchMax && queue_head_ != nullptr && payload < kSendBatchBytes; ++n) {
    NbdCommand* c = queue_head_;
    queue_head_ = c->next;
    if (queue_head_ == nullptr) queue_tail_ = nullptr;
    // The header goes from our arena: the command may finish (its reply can
    // arrive before this send's completion is reaped) and be reused at once.
    uint8_t* header = header_arena_.data() + n * kRequestBytes;
    std::memcpy(header, c->header, kRequestBytes);
    iov_.push_back({header, kRequestBytes});
    if (c->type == kCmdWrite) {
      iov_.push_back({c->data, c->length});
      payload += c->length;
    }
  }
  msg_ = {};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  send_op_ = {};
  send_op_.kind = IoKind::kSendMsg;
  send_op_.msg = &msg_;
  send_op_.msg_flags = MSG_NOSIGNAL | MSG_WAITALL;
  send_op_.fd = fd_;
  send_op_.positioned = false;
  send_op_.may_block = true;  // a server that stops reading holds it
  send_op_.owner = this;
  sending_ = true;
  driver_->Submit(&send_op_);
}

void NbdConnection::ArmRecv() {
  assert(!receiving_ && outstanding_ > 0);
  const NbdReplyReader::Read r = reader_.NextRead();
  recv_op_ = {};
  recv_op_.kind = IoKind::kRecv;
  recv_op_.data = r.into;
  recv_op_.length = r.length;
  recv_op_.capacity = r.length;
  recv_op_.msg_flags = r.exact ? MSG_WAITALL : 0;
  recv_op_.fd = fd_;
  recv_op_.positioned = false;
  recv_op_.may_block = true;  // waits for the server's reply
  recv_op_.owner = this;
  receiving_ = true;
  driver_->Submit(&recv_op_);
}

void NbdConnection::Complete(IoOp& op) {
  if (&op == &send_op_) {
    OnSend(op.result);
  } else {
    assert(&op == &recv_op_);
    OnRecv(op.result);
  }
}

void NbdConnection::OnSend(int32_t result) {
  sending_ = false;
  if (broken()) return;
  if (result <= 0) {
    Break(result < 0 ? -result : ECONNRESET, "sending to the server failed");
    return;
  }
  heard_ms_ = MonotonicMs();
  size_t sent = static_cast<size_t>(result);
  while (sent > 0 && iov_at_ < iov_.size()) {
    iovec& v = iov_[iov_at_];
    const size_t take = std::min(sent, v.iov_len);
    v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
    v.iov_len -= take;
    sent -= take;
    if (v.iov_len == 0) ++iov_at_;
  }
  if (iov_at_ < iov_.size()) {
    // A short send: the rest goes next, before anything queued since.
    msg_.msg_iov = iov_.data() + iov_at_;
    msg_.msg_iovlen = iov_.size() - iov_at_;
    sending_ = true;
    driver_->Submit(&send_op_);
    return;
  }
  if (queue_head_ != nullptr) StartSend();
}

void NbdConnection::OnRecv(int32_t result) {
  receiving_ = false;
  if (broken()) return;
  if (result < 0) {
    Break(-result, "receiving from the server failed");
    return;
  }
  if (result == 0) {
    Break(ECONNRESET, "the server closed the connection");
    return;
  }
  heard_ms_ = MonotonicMs();
  in_recv_handler_ = true;
  const bool ok = reader_.Received(static_cast<uint32_t>(result));
  in_recv_handler_ = false;
  if (!ok) {
    Break(EPROTO, reader_.error());
    return;
  }
  if (outstanding_ > 0 && !broken()) ArmRecv();
}

bool NbdConnection::Silent(int64_t now_ms) const {
  return answer_timeout_ms_ > 0 && outstanding_ > 0 && !broken() && now_ms - heard_ms_ >= answer_timeout_ms_;
}

void NbdConnection::Watch(int64_t now_ms) {
  if (!Silent(now_ms)) return;
  Break(ETIMEDOUT, "the server sent nothing for " + std::to_string((now_ms - heard_ms_) / 1000) + " s while it owed " +
                       std::to_string(outstanding_) + " answer(s) (--nbd-timeout)");
}

void NbdConnection::Break(int errno_value, const std::string& why) {
  if (broken()) return;
  // A timeout here is the transport's (TCP keepalive, TCP_USER_TIMEOUT), not
  // a slow medium: it must not look like an unreadable block to the engine.
  if (errno_value == ETIMEDOUT) errno_value = ECONNABORTED;
  broken_ = SysError::Make(errno_value, "recv", uri_, -1,
                           why + " (connection " + std::to_string(index_ + 1) + ": " + std::strerror(errno_value) + ")");
  // Wakes whatever of ours still waits in the driver; the descriptor stays
  // ours until the destructor, so no other file can take its number.
  shutdown(fd_, SHUT_RDWR);
  std::vector<NbdCommand*> owed;
  for (NbdCommand*& c : slots_) {
    if (c == nullptr) continue;
    owed.push_back(c);
    c = nullptr;
  }
  free_slots_.clear();
  for (uint32_t i = 0; i < slots_.size(); ++i) free_slots_.push_back(i);
  outstanding_ = 0;
  queue_head_ = queue_tail_ = nullptr;
  for (NbdCommand* c : owed) {
    c->error = errno_value;
    c->transport_failed = true;
    c->message = broken_.message;
    if (c->owner != nullptr) {
      c->owner->CommandDone(*c);
    } else {
      sync_done_ = true;
    }
  }
}

SysError NbdConnection::SyncWait(short events, const std::atomic<bool>& cancel) {
  // A cancel gives the server kCancelGraceMs more to answer (the flush that
  // makes a cancelled copy's mapfile true), then ends the wait.
  uint32_t slices_after_cancel = 0;
  const int64_t start_ms = MonotonicMs();
  for (;;) {
    if (cancel.load(std::memory_order_relaxed) && slices_after_cancel++ * kSyncWaitSliceMs >= kCancelGraceMs) {
      return SysError::Make(ECANCELED, "poll", uri_, -1, "cancelled: the server did not answer within " +
                                                             std::to_string(kCancelGraceMs / 1000) + " s");
    }
    if (answer_timeout_ms_ > 0 && MonotonicMs() - start_ms >= answer_timeout_ms_) {
      return SysError::Make(ECONNABORTED, "poll", uri_, -1, "the server did not answer within " +
                                                                std::to_string(answer_timeout_ms_ / 1000) + " s (--nbd-timeout)");
    }
    pollfd p{fd_, events, 0};
    const int r = poll(&p, 1, kSyncWaitSliceMs);
    if (r > 0) return {};
    if (r < 0 && errno != EINTR) return SysError::Make(errno, "poll", uri_);
  }
}

SysError NbdConnection::SyncSend(NbdCommand& c, const std::atomic<bool>& cancel) {
  iovec v[2] = {{c.header, kRequestBytes}, {c.data, c.type == kCmdWrite ? c.length : 0u}};
  size_t at = 0;
  while (at < 2) {
    if (v[at].iov_len == 0) {
      ++at;
      continue;
    }
    if (SysError e = SyncWait(POLLOUT, cancel); e.failed()) return e;
    msghdr m{};
    m.msg_iov = v + at;
    m.msg_iovlen = 2 - at;
    const ssize_t n = sendmsg(fd_, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return SysError::Make(n < 0 ? errno : ECONNRESET, "send", uri_);
    size_t sent = static_cast<size_t>(n);
    for (; sent > 0 && at < 2; ++at) {
      const size_t take = std::min(sent, v[at].iov_len);
      v[at].iov_base = static_cast<uint8_t*>(v[at].iov_base) + take;
      v[at].iov_len -= take;
      sent -= take;
      if (v[at].iov_len > 0) break;
    }
  }
  return {};
}

SysError NbdConnection::RunSync(NbdCommand& c, const std::atomic<bool>& cancel) {
  assert(outstanding_ == 0 && !sending_ && !receiving_);
  if (broken()) return broken_;
  NbdCommandOwner* owner = c.owner;
  c.owner = nullptr;
  sync_done_ = false;
  Register(c);
  SysError e = SyncSend(c, cancel);
  while (!e.failed() && !sync_done_) {
    const NbdReplyReader::Read r = reader_.NextRead();
    if ((e = SyncWait(POLLIN, cancel)).failed()) break;
    const ssize_t n = recv(fd_, r.into, r.length, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      Break(errno, "receiving from the server failed");
    } else if (n == 0) {
      Break(ECONNRESET, "the server closed the connection");
    } else if (!reader_.Received(static_cast<uint32_t>(n))) {
      Break(EPROTO, reader_.error());
    }
  }
  // A send failure or a cancel leaves the stream between messages no more.
  if (e.failed()) Break(e.errno_value, e.errno_value == ECANCELED ? "cancelled" : "sending to the server failed");
  c.owner = owner;
  return c.transport_failed ? broken_ : SysError{};
}

void NbdConnection::Disconnect() {
  if (fd_ < 0) return;
  if (!broken() && outstanding_ == 0 && !sending_ && !receiving_) {
    uint8_t header[kRequestBytes];
    RequestHeader h;
    h.type = kCmdDisc;
    EncodeRequest(h, header);
    // Best effort: a server that cannot take 28 bytes now learns from the close.
    (void)!send(fd_, header, sizeof header, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  shutdown(fd_, SHUT_RDWR);
}

}  // namespace devmove
