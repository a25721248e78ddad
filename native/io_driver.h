// The I/O driver seam: whatever actually performs reads, writes and flushes
// (an io_uring, or worker threads where io_uring is forbidden) behind one
// interface, in the shape of TigerBeetle's io/linux.zig.
//
// Every submission is one caller-owned IoOp record that lives until its
// completion has run; a driver keeps no per-operation allocation of its own.
// The io_uring driver puts a pointer to the record in user_data. Completions
// are collected first and run afterwards, so a completion handler that
// submits more work never recurses into another handler. A driver that cannot
// take an operation right now (a full submission queue) keeps it in a FIFO
// and hands it over at the next Poll(): Submit() never blocks and never spins.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sys_error.h"

namespace devmove {

class BufferPool;

enum class IoKind : uint8_t {
  kRead,       // data[0, length) from offset
  kWrite,      // data[0, length) to offset
  kFsync,      // everything written so far, with metadata, to stable storage
  kFdatasync,  // everything written so far to stable storage
  kPunchHole,  // fallocate(PUNCH_HOLE | KEEP_SIZE) over [offset, offset + length): reads back zeros
  kZeroRange,  // fallocate(ZERO_RANGE | KEEP_SIZE): reads back zeros and stays allocated (a device's
               // write-zeroes without unmap, as BLKZEROOUT; a file's unwritten extents)
  kSendMsg,    // sendmsg(fd, msg, msg_flags) on a socket: returns the bytes sent
  kRecv,       // recv(fd, data, length, msg_flags) on a socket: the bytes received, 0 at the peer's end
  kNop,        // nothing: completes with 0 at the next Poll (an endpoint finishing an op it never sent)
};

// The system call an IoKind stands for, as errors name it.
const char* IoKindSyscall(IoKind kind);
// fallocate's mode for kPunchHole and kZeroRange (both KEEP_SIZE), in either driver.
int FallocateMode(IoKind kind);

struct IoOp;

// Who hears about an operation when it is done.
class IoCompletion {
 public:
  virtual void Complete(IoOp& op) = 0;

 protected:
  ~IoCompletion() = default;
};

struct IoOp {
  // ---- What: set by the owner (a slot of the engine, the checkpointer, the verifier) ----
  IoKind kind = IoKind::kRead;
  uint64_t position = 0;       // on the endpoint, in the copy's terms (the endpoint adds its base)
  uint8_t* data = nullptr;
  uint32_t length = 0;
  uint32_t capacity = 0;       // bytes usable at data: a read may be rounded up to the alignment
  int32_t buffer_index = -1;   // the registered buffer holding data, or -1
  bool link_next = false;      // the op submitted next starts only once this one moved every byte
  IoCompletion* owner = nullptr;
  uint32_t slot = 0;           // the owner's bookkeeping
  uint32_t target = 0;

  // ---- How: set by the endpoint that submits it ----
  int fd = -1;
  uint64_t offset = 0;         // on fd; unused when !positioned
  bool positioned = true;      // false: a stream, at its current position (pipes, sockets)
  bool direct = false;         // fd is an O_DIRECT descriptor
  bool may_block = false;      // may wait for a peer indefinitely: Cancel() ends it
  msghdr* msg = nullptr;       // kSendMsg: what to send (it and its iovecs live until the completion)
  uint32_t msg_flags = 0;      // kSendMsg, kRecv: MSG_* flags (MSG_WAITALL: all of it, or an error)
  IoCompletion* finisher = nullptr;  // sees the result before the owner does (the endpoint)

  // ---- Result: set by the driver ----
  int32_t result = 0;          // bytes moved, or -errno

  // ---- Driver bookkeeping ----
  IoOp* next = nullptr;        // FIFO and chain link
  bool queued = false;         // submitted and not yet completed
};

// Hands a finished op to its finisher (which passes it on to the owner), or
// straight to its owner.
inline void DeliverCompletion(IoOp& op) {
  op.queued = false;
  if (op.finisher != nullptr) {
    op.finisher->Complete(op);
  } else {
    op.owner->Complete(op);
  }
}

struct DriverOptions {
  static constexpr uint32_t kInFlightMax = 1u << 17;
  uint32_t in_flight_max = 64;    // operations submitted at once at most (sizes the ring / the workers)
  // Operations expected at once when the copy starts; 0 = in_flight_max. The threads driver starts
  // this many workers: a ring that may grow later (queue_depth_max) queues the extra ops on them
  // rather than start a pair's worth of threads that most copies never use.
  uint32_t in_flight_start = 0;
  bool sqpoll = false;            // io_uring: a kernel thread polls the submission queue
  bool batch_submissions = true;  // io_uring: one io_uring_enter per Poll() (false: one per op or chain)
  bool idle_priority = false;     // every read and write in the idle I/O priority class
};

class IoDriver {
 public:
  virtual ~IoDriver() = default;

  // 'io_uring' or 'threads'.
  virtual const char* name() const = 0;
  virtual bool Supports(IoKind kind) const = 0;

  // Optional speed-ups, called once before the first Submit(). The answer is
  // '' when done, else why not (for the report).
  virtual std::string RegisterBuffers(const BufferPool& pool) = 0;
  virtual std::string RegisterFiles(const std::vector<int>& fds) = 0;

  // Takes the op over until its completion runs. Never blocks.
  virtual void Submit(IoOp* op) = 0;
  // Ends an op that may wait for a peer (op->may_block) soon, with -ECANCELED
  // unless it completes first. Ops that cannot wait are left to finish.
  virtual void Cancel(IoOp* op) = 0;
  // Starts what was submitted, waits up to timeout_ns (0: not at all) for at
  // least one completion, then runs every completion that is there. A failed
  // SysError means the driver itself broke (nothing in flight can be reaped).
  virtual SysError Poll(uint64_t timeout_ns) = 0;

  // Submitted and not yet completed.
  virtual uint32_t in_flight() const = 0;
  // Calls into the kernel that submitted work (io_uring_enter); 0 for threads.
  virtual uint64_t submit_calls() const = 0;
  // io_uring only: the ring's setup flags and features, for the report.
  virtual uint32_t ring_setup_flags() const { return 0; }
  virtual uint32_t ring_features() const { return 0; }
};

}  // namespace devmove
