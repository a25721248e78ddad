// One connection to an NBD export in the transmission phase, driven through
// the copy's I/O driver (io_uring or worker threads) on the engine's thread.
//
// Sending: commands queue in a FIFO; one IoKind::kSendMsg is in the driver at
// a time and carries every command queued since the last one (the headers
// from this connection's own arena, write data straight from the engine's
// buffers), continued in order after a short send. Receiving: one
// IoKind::kRecv is in the driver whenever replies are owed, never otherwise,
// so an idle connection leaves nothing in flight and the engine's loop ends.
// The bytes go where the reply reader says (nbd_reply_reader.h).
//
// A connection that breaks — the server closes it or resets it, a send or
// recv fails, the server breaks the protocol — fails every command it owes
// with the reason (transport_failed) and refuses new ones; nothing waits on
// it any more. Before and after the copy the same connection runs commands
// synchronously (RunSync: block status before, the final flush after).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "io_driver.h"
#include "nbd_command.h"
#include "nbd_handshake.h"
#include "nbd_reply_reader.h"
#include "sys_error.h"

namespace devmove {

class NbdConnection final : public IoCompletion, private NbdCommandTable {
 public:
  static constexpr uint32_t kSendBatchMax = 32;     // commands per sendmsg (2 iovecs each)
  // A batch takes no more commands once it carries this much write data. One
  // sendmsg of several 512 KiB writes cost 0.27 CPU s/GiB over TCP loopback,
  // one write per sendmsg 0.17 (bench/nbd.js --only ab); small commands (read
  // and flush headers) still travel many to a sendmsg.
  static constexpr size_t kSendBatchBytes = 256 * 1024;
  static constexpr uint32_t kDriverOpsMax = 2;      // a send and a recv in the driver at most
  static constexpr int kSyncWaitSliceMs = 100;      // a synchronous wait looks at the cancel flag this often
  // After a cancel, a synchronous wait still waits this long for a server that answers (a final flush).
  static constexpr uint32_t kCancelGraceMs = 5000;

  // Takes over `fd` (in the transmission phase, from NbdHandshake).
  // answer_timeout_ms: how long the server may owe answers and send nothing (0: forever).
  NbdConnection(int fd, const NbdExportInfo& info, std::string uri, uint32_t index, uint32_t answer_timeout_ms);
  ~NbdConnection();
  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  // Sends `command` (through `driver`) and, once its reply is in, calls its
  // owner's CommandDone on the engine's thread. On a broken connection the
  // command is not sent: it returns false and the caller completes it.
  bool Start(IoDriver& driver, NbdCommand& command);
  // The driver's completion of this connection's send or recv.
  void Complete(IoOp& op) override;

  // With nothing outstanding: sends `command` and waits for its reply with
  // blocking I/O, until `cancel` (ECANCELED) or the connection breaks.
  // The command's result says how the server answered.
  SysError RunSync(NbdCommand& command, const std::atomic<bool>& cancel);
  // NBD_CMD_DISC when idle and intact (the clean way to leave), then close.
  void Disconnect();
  // Gives up on the server: everything owed fails with `errno_value` now, and
  // what this connection has in the driver ends (its socket is shut down).
  void Abandon(int errno_value, const std::string& why) { Break(errno_value, why); }

  // The server owes answers and has sent nothing (nor taken any of our
  // bytes) for longer than the answer timeout: Watch() gives up on it.
  bool Silent(int64_t now_ms) const;
  // Breaks the connection when it is Silent (ETIMEDOUT, reported as ECONNABORTED).
  void Watch(int64_t now_ms);

  bool broken() const { return broken_.failed(); }
  const SysError& broken_reason() const { return broken_; }
  uint32_t outstanding() const { return outstanding_; }
  uint32_t index() const { return index_; }

 private:
  NbdCommand* Find(uint64_t cookie) override;
  void Finished(NbdCommand& command) override;
  void Register(NbdCommand& command);
  void StartSend();
  void OnSend(int32_t result);
  void ArmRecv();
  void OnRecv(int32_t result);
  // Fails every command it owes; the connection refuses new ones from now on.
  void Break(int errno_value, const std::string& why);
  SysError SyncSend(NbdCommand& command, const std::atomic<bool>& cancel);
  SysError SyncWait(short events, const std::atomic<bool>& cancel);

  int fd_;
  NbdExportInfo info_;
  std::string uri_;
  uint32_t index_;
  uint32_t answer_timeout_ms_;
  int64_t heard_ms_ = 0;  // when the server last sent or took bytes, or answers became owed
  IoDriver* driver_ = nullptr;
  NbdReplyReader reader_;
  SysError broken_;

  // Commands owed a reply, by cookie: slot = cookie & kSlotMask, the rest a
  // generation so a stale cookie never matches a reused slot.
  static constexpr uint64_t kSlotBits = 16;
  static constexpr uint64_t kSlotMask = (1u << kSlotBits) - 1;
  std::vector<NbdCommand*> slots_;
  std::vector<uint32_t> free_slots_;
  uint64_t generation_ = 0;
  uint32_t outstanding_ = 0;

  // Not yet handed to a sendmsg (FIFO through NbdCommand::next).
  NbdCommand* queue_head_ = nullptr;
  NbdCommand* queue_tail_ = nullptr;
  // The sendmsg in flight: its headers, iovecs and where it has got to.
  IoOp send_op_;
  bool sending_ = false;
  std::vector<uint8_t> header_arena_;
  std::vector<iovec> iov_;
  size_t iov_at_ = 0;
  msghdr msg_{};

  IoOp recv_op_;
  bool receiving_ = false;      // a recv is in the driver
  bool in_recv_handler_ = false;
  bool sync_done_ = false;      // RunSync: its command finished
};

}  // namespace devmove
