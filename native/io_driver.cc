#include "io_driver.h"

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

}  // namespace devmove
