// The Endpoint seam: one source or target of a copy, whatever it is. The
// engine only schedules; an endpoint says what it can do (its capabilities)
// and turns the engine's requests — read, write, flush, zero a range at a
// position of the copy — into operations for the I/O driver, and finishes
// them when they complete. Positions are the copy's: an endpoint adds its own
// base offset (dd's skip=/seek=), so source and target positions are
// separate.
//
// Kinds: a block device and a regular file (random access, known size,
// O_DIRECT where aligned: local_endpoint.h), a stream — a pipe, FIFO,
// socket or character device, standard input or output — read and written
// strictly in order with no known size (stream_endpoint.h), and an NBD export
// (nbd_endpoint.h): Submit() sends requests on one of several connections and
// completes the op when the replies are in; the op itself never reaches the
// driver (caps().linkable is false).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_extents.h"
#include "io_driver.h"
#include "sys_error.h"

namespace devmove {

enum class DirectMode { kAuto, kAlways, kNever };
enum class Durability { kFdatasync, kFsync, kDsync, kSync, kNone };

struct OpenRequest {
  static constexpr int kNoDescriptor = -1;
  std::string path;
  int fd = kNoDescriptor;          // 0 = standard input, 1 = standard output (path is then '-')
  bool for_write = false;
  bool read_back = false;          // target only: open read-write, to verify what was written
  DirectMode direct = DirectMode::kAuto;
  bool noatime = false;            // source only: O_NOATIME
  bool create = false;             // target only: create a regular file when missing
  bool exclusive_create = false;   // target only: fail if it exists (dd conv=excl)
  bool exclusive = true;           // target block devices: O_EXCL claim (off only when forced)
  Durability durability = Durability::kFdatasync;  // target only: dsync/sync open flags
  // An NBD export (path is then its URI, for reports): where the server is.
  struct Nbd {
    bool enabled = false;
    std::string socket_path;   // nbd+unix
    std::string host;          // nbd (TCP)
    std::string port;
    std::string export_name;
    std::string identity;      // the export's storage id ('nbd:unix:...' / 'nbd:tcp:...')
    uint32_t connections = 4;  // at most; one when the server does not allow multi-conn
    // A server that owes answers and sends nothing this long is given up on; 0 = never.
    uint32_t answer_timeout_ms = 60'000;
  } nbd;
};

// The copy's cancellation request, seen by waits that happen while opening
// (a FIFO waiting for its other end).
using CancelFlag = std::atomic<bool>;

enum class EndpointKind { kBlockDevice, kRegularFile, kPipe, kSocket, kCharacterDevice, kNbd };

struct EndpointCaps {
  bool seekable = true;             // any position, any order, several I/Os in flight
  bool size_known = true;
  uint32_t logical_block_bytes = 512;
  uint32_t physical_block_bytes = 512;
  uint32_t direct_alignment = 0;    // O_DIRECT offset/length multiple; 0: no O_DIRECT descriptor
  bool zero_ranges = false;         // IoKind::kPunchHole leaves zeros (file hole, device write-zeroes)
  bool durable_flush = false;       // fsync/fdatasync put what was written on stable storage
  bool rereadable = false;          // can be read again to verify
  bool grows = false;               // writing past the end extends it (regular files)
  bool data_extents = false;        // DataExtents() can say where the data is (a file's SEEK_DATA/SEEK_HOLE, NBD block status)
  bool linkable = true;             // its ops go to the driver as they are (IOSQE_IO_LINK chains may include them)
};

// What a source or target is, to tell when two of them are one object.
struct StorageIdentity {
  EndpointKind kind = EndpointKind::kRegularFile;
  dev_t dev = 0;
  ino_t ino = 0;
  dev_t rdev = 0;
  std::string name;  // NBD: the export's storage id
  bool Same(const StorageIdentity& other) const;
};

class Endpoint : public IoCompletion {
 public:
  virtual ~Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  const std::string& path() const { return path_; }
  // The name reports and errors use ('-' for standard input/output opened again through /proc).
  void RenameForReports(const std::string& name) { path_ = name; }
  EndpointKind kind() const { return kind_; }
  // 'block' | 'file' | 'pipe' | 'socket' | 'character'
  const char* kind_name() const;
  const EndpointCaps& caps() const { return caps_; }
  // Bytes it holds now; 0 when not known (caps().size_known false).
  uint64_t size_bytes() const { return size_bytes_; }
  bool direct() const { return caps_.direct_alignment != 0; }
  const std::string& direct_note() const { return direct_note_; }
  // Why zero ranges cannot be punched here (caps().zero_ranges false), for the report.
  const std::string& zero_ranges_note() const { return zero_ranges_note_; }
  bool created() const { return created_; }
  StorageIdentity identity() const { return identity_; }
  // Where position 0 of the copy is on this endpoint (dd's skip= / seek=).
  uint64_t base_offset() const { return base_offset_; }
  void set_base_offset(uint64_t offset) { base_offset_ = offset; }
  // Standard input/output opened again through /proc has a description of
  // its own; `fd` is the shell's, whose offset LeaveSharedOffsetAt() moves.
  void ShareOffsetWith(int fd) { shared_fd_ = fd; }
  // Leaves the shell's descriptor at `position` (bytes from base_offset()),
  // where dd's own reads or writes would have left it, so that
  // `(dd skip=1 count=1; dd) < file` goes on where the first one stopped.
  void LeaveSharedOffsetAt(uint64_t position) const;

  // Maps op.position to a descriptor and an offset (and for reads may round
  // op.length up to the O_DIRECT alignment within op.capacity), then hands
  // the op to the driver. Its completion passes through Complete().
  virtual void Submit(IoDriver& driver, IoOp& op) = 0;
  // Whether Submit() would send a write of [position, position + length)
  // through O_DIRECT (else through the page cache, or a stream).
  virtual bool WritesDirect(uint64_t position, uint64_t length) const {
    (void)position;
    (void)length;
    return false;
  }
  // Finishes an op, then passes it to its owner.
  void Complete(IoOp& op) override;
  // Descriptors the driver may register.
  virtual std::vector<int> descriptors() const = 0;

  // Synchronous steps before the first I/O or after the last one.
  // Streams: consume `bytes` before position 0 (dd's skip= on a pipe reads
  // and discards); seekable endpoints need nothing.
  virtual SysError Advance(uint64_t bytes, const CancelFlag& cancel);
  // Regular files: set the size (dd's truncation; sparse copies end with it).
  // by_open: cut to 0 by opening the file again with O_TRUNC, as GNU dd opens
  // its output when seek= is below one output block.
  virtual SysError Truncate(uint64_t size_bytes, bool by_open = false);
  // Makes everything written durable (fsync: metadata too). No-op without durable_flush.
  virtual SysError Flush(bool metadata);
  // A file this copy created: its directory entry is made durable too.
  virtual void SyncDirectoryEntry() {}
  virtual void RefreshSize() {}
  // A failed copy that wrote nothing removes the file it created (only that file).
  virtual void UnlinkIfCreated() {}
  // Before verify: what has to go through the page cache is dropped from it.
  virtual void DropCache() {}
  // Where the data is in [from, to) of the copy's positions (base_offset is
  // added here and taken off the answer): data ranges, sorted; the rest of
  // [from, answer->answered_to) reads as zeros and need not be read. At most
  // max_extents ranges per call. *supported false: this endpoint cannot say
  // (no caps().data_extents, or the filesystem refused) — all of it is data.
  // A regular file answers with SEEK_DATA/SEEK_HOLE, an NBD export with
  // NBD_CMD_BLOCK_STATUS (base:allocation).
  virtual SysError DataExtents(uint64_t from, uint64_t to, size_t max_extents, DataExtentsAnswer* answer,
                               bool* supported);
  // Operations this endpoint keeps in the driver of its own (an NBD
  // connection's send and receive), on top of the engine's: for sizing it.
  virtual uint32_t driver_ops_max() const { return 0; }
  // The error an op that failed stands for, as the engine made it from the
  // op's result; an endpoint that knows more (the NBD command, the server's
  // message) says so.
  virtual SysError Describe(const IoOp& op, SysError error) const {
    (void)op;
    return error;
  }
  // Ends what the endpoint holds open beyond its descriptors (NBD: a clean
  // disconnect); nothing may be in flight. Idempotent.
  virtual void Close() {}
  // A stopping copy gives up on a peer that does not answer: what the
  // endpoint has in flight fails now (NBD: every connection is dropped).
  // Ops in the driver itself are the engine's to cancel.
  virtual void Abort() {}
  // Called by the engine's loop every turn (at least every 100 ms): an
  // endpoint whose peer has gone silent past its limit gives up on it, so
  // what it owes fails instead of being waited for forever.
  virtual void Watch(double now_seconds) { (void)now_seconds; }

 protected:
  Endpoint() = default;
  // Streams check and advance their position here.
  virtual void Finish(IoOp& op) { (void)op; }

  std::string path_;
  EndpointKind kind_ = EndpointKind::kRegularFile;
  EndpointCaps caps_;
  uint64_t size_bytes_ = 0;
  std::string direct_note_;
  std::string zero_ranges_note_;
  bool created_ = false;
  StorageIdentity identity_;
  uint64_t base_offset_ = 0;
  int shared_fd_ = -1;
};

// Opens what the request names: standard input/output (request.fd), a block
// device, a regular file (created when asked), a FIFO (waiting for its other
// end like dd, until `cancel`), or refuses it (directories, character devices
// and sockets named by path, kernel pseudo-filesystems, /dev typos, dangling
// links) with the reason.
std::unique_ptr<Endpoint> OpenEndpoint(const OpenRequest& request, const CancelFlag& cancel, SysError* error);

// The directory a path's last component lives in ("." for a bare name).
std::string ParentDirectory(const std::string& path);

}  // namespace devmove
