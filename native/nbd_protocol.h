// The NBD wire protocol (NetworkBlockDevice/nbd doc/proto.md): magic numbers,
// flags, commands, replies and error values, and the encoding of the fixed
// parts. Everything on the wire is big-endian. Pure data and functions: the
// handshake (nbd_handshake.h) and the connection (nbd_connection.h) use them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace devmove {
namespace nbd {

constexpr uint64_t kInitMagic = 0x4e42444d41474943ull;  // "NBDMAGIC"
constexpr uint64_t kOptMagic = 0x49484156454f5054ull;   // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9ull;
constexpr uint32_t kRequestMagic = 0x25609513u;
constexpr uint32_t kSimpleReplyMagic = 0x67446698u;
constexpr uint32_t kStructuredReplyMagic = 0x668e33efu;

// Handshake flags (server) and client flags.
constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
constexpr uint16_t kFlagNoZeroes = 1u << 1;

// Transmission flags.
constexpr uint16_t kTxHasFlags = 1u << 0;
constexpr uint16_t kTxReadOnly = 1u << 1;
constexpr uint16_t kTxSendFlush = 1u << 2;
constexpr uint16_t kTxSendFua = 1u << 3;
constexpr uint16_t kTxRotational = 1u << 4;
constexpr uint16_t kTxSendTrim = 1u << 5;
constexpr uint16_t kTxSendWriteZeroes = 1u << 6;
constexpr uint16_t kTxSendDf = 1u << 7;
constexpr uint16_t kTxCanMultiConn = 1u << 8;
constexpr uint16_t kTxSendFastZero = 1u << 11;

// Options and their replies.
constexpr uint32_t kOptExportName = 1;
constexpr uint32_t kOptAbort = 2;
constexpr uint32_t kOptStartTls = 5;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kOptStructuredReply = 8;
constexpr uint32_t kOptSetMetaContext = 10;
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepInfo = 3;
constexpr uint32_t kRepMetaContext = 4;
constexpr uint32_t kRepErrorBit = 1u << 31;
constexpr uint32_t kRepErrUnsup = kRepErrorBit | 1;
constexpr uint32_t kRepErrPolicy = kRepErrorBit | 2;
constexpr uint32_t kRepErrInvalid = kRepErrorBit | 3;
constexpr uint32_t kRepErrPlatform = kRepErrorBit | 4;
constexpr uint32_t kRepErrTlsReqd = kRepErrorBit | 5;
constexpr uint32_t kRepErrUnknown = kRepErrorBit | 6;
constexpr uint32_t kRepErrShutdown = kRepErrorBit | 7;
constexpr uint32_t kRepErrBlockSizeReqd = kRepErrorBit | 8;
constexpr uint32_t kRepErrTooBig = kRepErrorBit | 9;
constexpr uint16_t kInfoExport = 0;
constexpr uint16_t kInfoBlockSize = 3;

// Commands and command flags.
enum Command : uint16_t {
  kCmdRead = 0,
  kCmdWrite = 1,
  kCmdDisc = 2,
  kCmdFlush = 3,
  kCmdTrim = 4,
  kCmdWriteZeroes = 6,
  kCmdBlockStatus = 7,
};
constexpr uint16_t kCmdFlagFua = 1u << 0;
constexpr uint16_t kCmdFlagNoHole = 1u << 1;
constexpr uint16_t kCmdFlagDf = 1u << 2;
constexpr uint16_t kCmdFlagReqOne = 1u << 3;
constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// Structured reply chunks.
constexpr uint16_t kReplyFlagDone = 1u << 0;
constexpr uint16_t kReplyNone = 0;
constexpr uint16_t kReplyOffsetData = 1;
constexpr uint16_t kReplyOffsetHole = 2;
constexpr uint16_t kReplyBlockStatus = 5;
constexpr uint16_t kReplyErrorBit = 1u << 15;
constexpr uint16_t kReplyError = kReplyErrorBit | 1;
constexpr uint16_t kReplyErrorOffset = kReplyErrorBit | 2;

// base:allocation extent flags.
constexpr uint32_t kStateHole = 1u << 0;
constexpr uint32_t kStateZero = 1u << 1;

constexpr size_t kRequestBytes = 28;
constexpr size_t kSimpleReplyBytes = 16;
constexpr size_t kChunkHeaderBytes = 20;
constexpr size_t kOptionHeaderBytes = 16;
constexpr size_t kOptionReplyHeaderBytes = 20;

// Limits of the protocol and of what this client accepts from a server.
constexpr uint32_t kMinBlockMax = 64 * 1024;       // a minimum block size above this is invalid
constexpr uint32_t kDefaultMaxPayload = 32u << 20;  // when the server advertises none (2^25)
constexpr uint32_t kStringBytesMax = 4096;          // export names, messages
constexpr uint32_t kOptionReplyBytesMax = 1u << 20;
constexpr uint32_t kRequestLengthMax = 0xffffffffu;

void Put16(uint8_t* p, uint16_t v);
void Put32(uint8_t* p, uint32_t v);
void Put64(uint8_t* p, uint64_t v);
uint16_t Get16(const uint8_t* p);
uint32_t Get32(const uint8_t* p);
uint64_t Get64(const uint8_t* p);

struct RequestHeader {
  uint16_t flags = 0;
  uint16_t type = kCmdRead;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};
void EncodeRequest(const RequestHeader& request, uint8_t out[kRequestBytes]);

// 'NBD_CMD_READ', ... ('NBD_CMD_<n>' for others).
std::string CommandName(uint16_t type);
// The errno an NBD error value stands for. The protocol defines its values as
// Linux's (EPERM 1, EIO 5, ENOMEM 12, EINVAL 22, ENOSPC 28, EOVERFLOW 75,
// ENOTSUP 95, ESHUTDOWN 108); anything else is taken as EIO.
int ErrnoFromNbdError(uint32_t nbd_error);
// 'NBD_EIO', ... ('NBD error <n>' for values outside the protocol).
std::string NbdErrorName(uint32_t nbd_error);
// The reason an option reply error type gives, for messages.
std::string OptionErrorText(uint32_t reply_type);

}  // namespace nbd
}  // namespace devmove
