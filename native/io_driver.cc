#include "io_driver.h"

#include <fcntl.h>
#include <linux/falloc.h>

#include <cassert>

namespace devmove {

const char* IoKindSyscall(IoKind kind) {
  switch (kind) {
    case IoKind::kRead: return "read";
    case IoKind::kWrite: return "write";
    case IoKind::kFsync: return "fsync";
    case IoKind::kFdatasync: return "fdatasync";
    case IoKind::kPunchHole: return "fallocate";
    case IoKind::kZeroRange: return "fallocate";
    case IoKind::kSendMsg: return "sendmsg";
    case IoKind::kRecv: return "recv";
    case IoKind::kNop: return "nop";
  }
  return "io";
}

int FallocateMode(IoKind kind) {
  assert(kind == IoKind::kPunchHole || kind == IoKind::kZeroRange);
  return (kind == IoKind::kPunchHole ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
}

}  // namespace devmove
