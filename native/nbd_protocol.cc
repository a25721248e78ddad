#include "nbd_protocol.h"

#include <endian.h>
#include <errno.h>

#include <cstring>

namespace devmove {
namespace nbd {

void Put16(uint8_t* p, uint16_t v) {
  v = htobe16(v);
  std::memcpy(p, &v, sizeof v);
}
void Put32(uint8_t* p, uint32_t v) {
  v = htobe32(v);
  std::memcpy(p, &v, sizeof v);
}
void Put64(uint8_t* p, uint64_t v) {
  v = htobe64(v);
  std::memcpy(p, &v, sizeof v);
}
uint16_t Get16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return be16toh(v);
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return be32toh(v);
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return be64toh(v);
}

void EncodeRequest(const RequestHeader& r, uint8_t out[kRequestBytes]) {
  Put32(out, kRequestMagic);
  Put16(out + 4, r.flags);
  Put16(out + 6, r.type);
  Put64(out + 8, r.cookie);
  Put64(out + 16, r.offset);
  Put32(out + 24, r.length);
}

std::string CommandName(uint16_t type) {
  switch (type) {
    case kCmdRead: return "NBD_CMD_READ";
    case kCmdWrite: return "NBD_CMD_WRITE";
    case kCmdDisc: return "NBD_CMD_DISC";
    case kCmdFlush: return "NBD_CMD_FLUSH";
    case kCmdTrim: return "NBD_CMD_TRIM";
    case kCmdWriteZeroes: return "NBD_CMD_WRITE_ZEROES";
    case kCmdBlockStatus: return "NBD_CMD_BLOCK_STATUS";
    default: return "NBD_CMD_" + std::to_string(type);
  }
}

int ErrnoFromNbdError(uint32_t e) {
  switch (e) {
    case 1: return EPERM;
    case 5: return EIO;
    case 12: return ENOMEM;
    case 22: return EINVAL;
    case 28: return ENOSPC;
    case 75: return EOVERFLOW;
    case 95: return ENOTSUP;
    case 108: return ESHUTDOWN;
    default: return EIO;
  }
}

std::string NbdErrorName(uint32_t e) {
  switch (e) {
    case 1: return "NBD_EPERM";
    case 5: return "NBD_EIO";
    case 12: return "NBD_ENOMEM";
    case 22: return "NBD_EINVAL";
    case 28: return "NBD_ENOSPC";
    case 75: return "NBD_EOVERFLOW";
    case 95: return "NBD_ENOTSUP";
    case 108: return "NBD_ESHUTDOWN";
    default: return "NBD error " + std::to_string(e);
  }
}

std::string OptionErrorText(uint32_t t) {
  switch (t) {
    case kRepErrUnsup: return "the server does not support the option (NBD_REP_ERR_UNSUP)";
    case kRepErrPolicy: return "the server's policy forbids it (NBD_REP_ERR_POLICY)";
    case kRepErrInvalid: return "the server found the request invalid (NBD_REP_ERR_INVALID)";
    case kRepErrPlatform: return "not supported on the server's platform (NBD_REP_ERR_PLATFORM)";
    case kRepErrTlsReqd: return "the server requires TLS (NBD_REP_ERR_TLS_REQD)";
    case kRepErrUnknown: return "no such export on the server (NBD_REP_ERR_UNKNOWN)";
    case kRepErrShutdown: return "the server is shutting down (NBD_REP_ERR_SHUTDOWN)";
    case kRepErrBlockSizeReqd: return "the server requires block size negotiation (NBD_REP_ERR_BLOCK_SIZE_REQD)";
    case kRepErrTooBig: return "the request is too big for the server (NBD_REP_ERR_TOO_BIG)";
    default: return "option error " + std::to_string(t & ~kRepErrorBit);
  }
}

}  // namespace nbd
}  // namespace devmove
