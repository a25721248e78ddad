// An NBD export as a source or target of a copy (issue 13): several
// connections to one export (multi-conn, when the server advertises it),
// each driven through the copy's I/O driver (nbd_connection.h). The engine's
// operations map onto NBD commands:
//
//   read            NBD_CMD_READ (with NBD_CMD_FLAG_DF where offered), split at the server's maximum payload
//   write           NBD_CMD_WRITE, split likewise
//   fdatasync/fsync NBD_CMD_FLUSH on every connection: "durable" means each of
//                   them answered a flush after the writes it covers completed
//   punch hole      NBD_CMD_WRITE_ZEROES (the server may deallocate; reads return zeros)
//   zero range      NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE (stays allocated)
//
// Requests honour the server's size constraints (NBD_INFO_BLOCK_SIZE): every
// offset and length is a multiple of its minimum block. A read-only export is
// refused as a target before anything is written. Where the data is comes
// from NBD_CMD_BLOCK_STATUS (base:allocation). A server error becomes the
// op's errno (EIO, ENOSPC ...) and a description naming the command, the
// byte and the server's own message (Describe()).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "endpoint.h"
#include "nbd_command.h"
#include "nbd_connection.h"
#include "nbd_handshake.h"

namespace devmove {

// A stretch of an export, in the copy's positions: data, or bytes the server
// says read as zeros (NBD_STATE_ZERO).
struct EndpointExtent {
  uint64_t position = 0;
  uint64_t length = 0;
  bool zero = false;
};

class NbdEndpoint final : public Endpoint, private NbdCommandOwner {
 public:
  static constexpr uint32_t kConnectionsMax = 16;
  // Largest range one NBD_CMD_BLOCK_STATUS asks about (the length is 32 bits).
  static constexpr uint32_t kExtentQueryBytesMax = 1u << 30;
  // NBD_CMD_BLOCK_STATUS requests per Extents() call at most (each one advances by at least one extent).
  static constexpr uint32_t kExtentQueriesMax = 1u << 20;

  static std::unique_ptr<Endpoint> Open(const OpenRequest& r, const CancelFlag& cancel, SysError* error);
  ~NbdEndpoint() override;

  void Submit(IoDriver& driver, IoOp& op) override;
  std::vector<int> descriptors() const override { return {}; }
  uint32_t driver_ops_max() const override {
    return static_cast<uint32_t>(connections_.size()) * NbdConnection::kDriverOpsMax;
  }
  SysError Flush(bool metadata) override;
  // Block status (base:allocation) as the engine's hole query (endpoint.h).
  SysError DataExtents(uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                       bool* supported) override;
  // The data and zero stretches of [position, position + length), in order, covering it.
  SysError Extents(uint64_t position, uint64_t length, std::vector<EndpointExtent>* out, const CancelFlag& cancel);
  SysError Describe(const IoOp& op, SysError error) const override;
  void Close() override;
  void Abort() override;
  void Watch(double now_seconds) override;

  const NbdExportInfo& info() const { return info_; }
  uint32_t connections() const { return static_cast<uint32_t>(connections_.size()); }

 private:
  // What one engine op became: one or more NBD commands, and their outcome.
  struct Ticket final : IoCompletion {
    NbdEndpoint* endpoint = nullptr;
    IoOp* op = nullptr;
    uint32_t parts_left = 0;
    int error = 0;
    SysError failure;
    std::vector<NbdCommand> parts;
    IoOp nop;  // completes the op through the driver when no command could be sent
    void Complete(IoOp& done) override;
  };

  NbdEndpoint() = default;
  SysError Connect(const OpenRequest& r, const CancelFlag& cancel);
  SysError Configure(const OpenRequest& r);
  Ticket& AcquireTicket(IoOp& op);
  void ReleaseTicket(Ticket& t);
  // Prepares the commands for op; false (and t.error) when it cannot be sent.
  bool Plan(Ticket& t, uint64_t offset);
  bool PlanZeroes(Ticket& t, uint64_t offset);
  bool PlanData(Ticket& t, uint64_t offset);
  void AddPart(Ticket& t, uint16_t type, uint16_t flags, uint64_t offset, uint32_t length, uint8_t* data);
  NbdConnection* PickConnection();
  void Send(IoDriver& driver, Ticket& t);
  void CommandDone(NbdCommand& command) override;
  void Fail(Ticket& t, int errno_value, const std::string& syscall, int64_t offset, const std::string& message);
  void Finish(Ticket& t);
  void CompleteLater(IoDriver& driver, Ticket& t);

  NbdAddress address_;
  NbdExportInfo info_;
  std::vector<std::unique_ptr<NbdConnection>> connections_;
  uint32_t next_connection_ = 0;
  const CancelFlag* cancel_ = nullptr;  // the copy's (it outlives its endpoints): bounds the final flush's wait
  bool fua_ = false;          // every write with NBD_CMD_FLAG_FUA (durability dsync/sync)
  uint32_t payload_max_ = 0;  // bytes per READ/WRITE: the server's maximum payload, a multiple of its minimum block
  std::vector<std::unique_ptr<Ticket>> tickets_;
  std::vector<Ticket*> free_tickets_;
  // Why ops failed, for Describe(): kept until the op is submitted again.
  std::unordered_map<const IoOp*, SysError> failures_;
};

}  // namespace devmove
