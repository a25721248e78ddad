// The NBD client's parts without a server: the reply reader fed byte streams
// cut at random places (seeded; the seed is printed), every chunk type of
// structured replies, simple replies, and the protocol violations that must
// drop the connection. The client against real servers is tested by the
// integration suite (test/integration/nbd*.test.ts).
#include <errno.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../native/nbd_protocol.h"
#include "../../native/nbd_reply_reader.h"
#include "harness.h"

using namespace devmove;
using namespace devmove::nbd;
using namespace devmove_test;

namespace {

std::mt19937_64 g_random;

// The server's side of a conversation, as bytes.
struct Stream {
  std::vector<uint8_t> bytes;
  void U16(uint16_t v) { uint8_t b[2]; Put16(b, v); bytes.insert(bytes.end(), b, b + 2); }
  void U32(uint32_t v) { uint8_t b[4]; Put32(b, v); bytes.insert(bytes.end(), b, b + 4); }
  void U64(uint64_t v) { uint8_t b[8]; Put64(b, v); bytes.insert(bytes.end(), b, b + 8); }
  void Raw(const std::vector<uint8_t>& v) { bytes.insert(bytes.end(), v.begin(), v.end()); }
  void Simple(uint64_t cookie, uint32_t error) { U32(kSimpleReplyMagic); U32(error); U64(cookie); }
  void Chunk(uint64_t cookie, uint16_t flags, uint16_t type, uint32_t length) {
    U32(kStructuredReplyMagic); U16(flags); U16(type); U64(cookie); U32(length);
  }
  void Data(uint64_t cookie, bool done, uint64_t offset, const std::vector<uint8_t>& data) {
    Chunk(cookie, done ? kReplyFlagDone : 0, kReplyOffsetData, static_cast<uint32_t>(8 + data.size()));
    U64(offset);
    Raw(data);
  }
  void Hole(uint64_t cookie, bool done, uint64_t offset, uint32_t size) {
    Chunk(cookie, done ? kReplyFlagDone : 0, kReplyOffsetHole, 12);
    U64(offset);
    U32(size);
  }
  void None(uint64_t cookie) { Chunk(cookie, kReplyFlagDone, kReplyNone, 0); }
  void Error(uint64_t cookie, bool done, uint32_t error, const std::string& message, int64_t offset = -1) {
    const bool with_offset = offset >= 0;
    Chunk(cookie, done ? kReplyFlagDone : 0, with_offset ? kReplyErrorOffset : kReplyError,
          static_cast<uint32_t>(6 + message.size() + (with_offset ? 8 : 0)));
    U32(error);
    U16(static_cast<uint16_t>(message.size()));
    bytes.insert(bytes.end(), message.begin(), message.end());
    if (with_offset) U64(static_cast<uint64_t>(offset));
  }
};

struct Table final : NbdCommandTable {
  std::vector<NbdCommand*> commands;
  std::vector<NbdCommand*> finished;
  NbdCommand* Find(uint64_t cookie) override {
    for (NbdCommand* c : commands) {
      if (c != nullptr && c->cookie == cookie) return c;
    }
    return nullptr;
  }
  void Finished(NbdCommand& c) override {
    for (NbdCommand*& x : commands) {
      if (x == &c) x = nullptr;
    }
    finished.push_back(&c);
  }
};

// Feeds the stream to the reader in pieces of random size (1 .. max_piece).
// Returns whether the reader accepted all of it.
bool Feed(NbdReplyReader& reader, const Stream& s, uint32_t max_piece) {
  size_t at = 0;
  while (at < s.bytes.size()) {
    const NbdReplyReader::Read r = reader.NextRead();
    if (r.length == 0) return false;
    const uint32_t piece = 1 + static_cast<uint32_t>(g_random() % max_piece);
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>({r.length, piece, s.bytes.size() - at}));
    std::memcpy(r.into, s.bytes.data() + at, n);
    at += n;
    if (!reader.Received(n)) return false;
  }
  return true;
}

std::vector<uint8_t> RandomBytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(g_random());
  return v;
}

NbdCommand ReadCommand(uint64_t cookie, uint64_t offset, std::vector<uint8_t>& buffer) {
  NbdCommand c;
  c.type = kCmdRead;
  c.cookie = cookie;
  c.offset = offset;
  c.length = static_cast<uint32_t>(buffer.size());
  c.data = buffer.data();
  return c;
}

void TestSimpleReplies() {
  for (uint32_t piece : {1u, 3u, 16u, 4096u}) {
    Table t;
    NbdReplyReader reader(false, t, 0);
    NbdCommand w1, w2, r1;
    w1.type = kCmdWrite, w1.cookie = 7;
    w2.type = kCmdFlush, w2.cookie = 9;
    std::vector<uint8_t> buffer(1000, 0xee);
    r1 = ReadCommand(11, 4096, buffer);
    t.commands = {&w1, &w2, &r1};
    const std::vector<uint8_t> data = RandomBytes(1000);
    Stream s;
    s.Simple(9, 0);
    s.Simple(11, 0);
    s.Raw(data);
    s.Simple(7, 28);  // ENOSPC
    CHECK(Feed(reader, s, piece));
    CHECK_EQ(t.finished.size(), 3u);
    CHECK_EQ(w2.error, 0);
    CHECK_EQ(r1.error, 0);
    CHECK(buffer == data);
    CHECK_EQ(w1.error, ENOSPC);
    CHECK_EQ(w1.nbd_error, 28u);
  }
}

// A 1 MiB read with NBD_CMD_FLAG_DF: one data chunk, cut anywhere; only the
// bytes a header recv took past the header are copied, the rest goes straight
// into the buffer.
void TestStructuredReadDf() {
  for (uint32_t piece : {1u, 7u, 100u, 5000u, 1u << 20}) {
    Table t;
    NbdReplyReader reader(true, t, 0);
    std::vector<uint8_t> buffer(1 << 20);
    NbdCommand r = ReadCommand(42, 1 << 30, buffer);
    t.commands = {&r};
    const std::vector<uint8_t> data = RandomBytes(buffer.size());
    Stream s;
    s.Data(42, true, 1 << 30, data);
    CHECK(Feed(reader, s, piece));
    CHECK_EQ(t.finished.size(), 1u);
    CHECK_EQ(r.error, 0);
    CHECK(buffer == data);
  }
}

// A read answered in pieces, out of order: data and holes, then NONE.
void TestFragmentedRead() {
  Table t;
  NbdReplyReader reader(true, t, 0);
  std::vector<uint8_t> buffer(64 * 1024, 0xee);
  NbdCommand r = ReadCommand(5, 65536, buffer);
  t.commands = {&r};
  std::vector<uint8_t> expect(buffer.size(), 0);
  const std::vector<uint8_t> a = RandomBytes(10000), b = RandomBytes(3000);
  std::memcpy(expect.data() + 40000, a.data(), a.size());
  std::memcpy(expect.data(), b.data(), b.size());
  Stream s;
  s.Data(5, false, 65536 + 40000, a);
  s.Hole(5, false, 65536 + 3000, 37000);
  s.Data(5, false, 65536, b);
  s.Hole(5, false, 65536 + 50000, 65536 - 50000);
  s.None(5);
  CHECK(Feed(reader, s, 333));
  CHECK_EQ(t.finished.size(), 1u);
  CHECK_EQ(r.error, 0);
  CHECK(buffer == expect);
}

void TestReadNotCovered() {
  Table t;
  NbdReplyReader reader(true, t, 0);
  std::vector<uint8_t> buffer(8192);
  NbdCommand r = ReadCommand(5, 0, buffer);
  t.commands = {&r};
  Stream s;
  s.Data(5, false, 0, RandomBytes(4096));
  s.None(5);
  CHECK(Feed(reader, s, 64));
  CHECK_EQ(t.finished.size(), 1u);
  CHECK_EQ(r.error, EIO);
  CHECK(Contains(r.message, "covered 4096 of 8192"));
}

void TestErrorChunks() {
  Table t;
  NbdReplyReader reader(true, t, 0);
  std::vector<uint8_t> buffer(4096);
  NbdCommand r = ReadCommand(1, 1 << 20, buffer);
  NbdCommand w;
  w.type = kCmdWrite, w.cookie = 2, w.offset = 0, w.length = 512;
  NbdCommand z;
  z.type = kCmdWriteZeroes, z.cookie = 3, z.length = 512;
  t.commands = {&r, &w, &z};
  Stream s;
  s.Error(1, false, 5, "bad sector", (1 << 20) + 512);
  s.None(1);
  s.Error(2, true, 28, "");
  s.Error(3, true, 0xdead, "odd");  // outside the protocol's values: EIO, the value kept
  CHECK(Feed(reader, s, 9));
  CHECK_EQ(t.finished.size(), 3u);
  CHECK_EQ(r.error, EIO);
  CHECK_EQ(r.nbd_error, 5u);
  CHECK(r.message == "bad sector");
  CHECK_EQ(r.error_offset, (1 << 20) + 512);
  CHECK_EQ(w.error, ENOSPC);
  CHECK_EQ(w.error_offset, -1);
  CHECK_EQ(z.error, EIO);
  CHECK_EQ(z.nbd_error, 0xdeadu);
}

// 20000 extents: a payload larger than the staging buffer.
void TestBlockStatus() {
  Table t;
  NbdReplyReader reader(true, t, 3);
  std::vector<NbdExtent> extents;
  NbdCommand b;
  b.type = kCmdBlockStatus, b.cookie = 77, b.offset = 1 << 20, b.length = 20000u * 4096;
  b.extents = &extents;
  t.commands = {&b};
  Stream s;
  constexpr uint32_t kExtents = 20000;
  s.Chunk(77, 0, kReplyBlockStatus, 4 + 8 * 2);
  s.U32(9);  // another context: ignored
  s.U32(4096), s.U32(0), s.U32(4096), s.U32(1);
  s.Chunk(77, kReplyFlagDone, kReplyBlockStatus, 4 + 8 * kExtents);
  s.U32(3);
  for (uint32_t i = 0; i < kExtents; ++i) {
    s.U32(4096);
    s.U32(i % 2 ? kStateHole | kStateZero : 0);
  }
  CHECK(Feed(reader, s, 70000));
  CHECK_EQ(t.finished.size(), 1u);
  CHECK_EQ(b.error, 0);
  REQUIRE(extents.size() == kExtents);
  CHECK_EQ(extents[0].offset, 1u << 20);
  CHECK(!extents[0].zero());
  CHECK_EQ(extents[1].offset, (1u << 20) + 4096);
  CHECK(extents[1].zero() && extents[1].hole());
  CHECK_EQ(extents.back().offset + extents.back().length, b.offset + b.length);
}

void TestBlockStatusPastTheRequestIsCut() {
  Table t;
  NbdReplyReader reader(true, t, 1);
  std::vector<NbdExtent> extents;
  NbdCommand b;
  b.type = kCmdBlockStatus, b.cookie = 1, b.offset = 0, b.length = 6000;
  b.extents = &extents;
  t.commands = {&b};
  Stream s;
  s.Chunk(1, kReplyFlagDone, kReplyBlockStatus, 4 + 16);
  s.U32(1);
  s.U32(4096), s.U32(0), s.U32(8192), s.U32(kStateZero);
  CHECK(Feed(reader, s, 5));
  REQUIRE(extents.size() == 2);
  CHECK_EQ(extents[1].length, 6000u - 4096);
}

void TestViolations() {
  struct Case {
    const char* name;
    void (*build)(Stream&);
    const char* message;
  };
  const Case cases[] = {
      {"unknown cookie", [](Stream& s) { s.Simple(999, 0); }, "not sent"},
      {"bad magic", [](Stream& s) { s.U32(0x12345678); s.U64(0); s.U32(0); }, "unknown magic"},
      {"data outside the request", [](Stream& s) { s.Data(1, true, 4096 * 2, RandomBytes(10)); }, "outside the request"},
      {"hole outside the request", [](Stream& s) { s.Hole(1, true, 0, 8192); }, "outside the request"},
      {"data for a write", [](Stream& s) { s.Data(2, true, 0, RandomBytes(10)); }, "does not belong"},
      {"unknown chunk type", [](Stream& s) { s.Chunk(1, kReplyFlagDone, 77, 0); }, "unknown type"},
      {"NONE without DONE", [](Stream& s) { s.Chunk(1, 0, kReplyNone, 0); }, "NBD_REPLY_TYPE_NONE"},
      {"error message longer than its chunk", [](Stream& s) {
         s.Chunk(1, kReplyFlagDone, kReplyError, 8); s.U32(5); s.U16(100); s.U16(0);
       }, "longer than its chunk"},
      {"simple read data after structured replies", [](Stream& s) { s.Simple(1, 0); }, "simple reply"},
      {"huge payload", [](Stream& s) { s.Chunk(1, kReplyFlagDone, kReplyError, 1u << 30); }, "payload"},
  };
  for (const Case& c : cases) {
    Table t;
    NbdReplyReader reader(true, t, 0);
    std::vector<uint8_t> buffer(4096);
    NbdCommand r = ReadCommand(1, 4096, buffer);
    NbdCommand w;
    w.type = kCmdWrite, w.cookie = 2, w.length = 512;
    t.commands = {&r, &w};
    Stream s;
    c.build(s);
    const bool accepted = Feed(reader, s, 1 + static_cast<uint32_t>(g_random() % 32));
    if (accepted || !Contains(reader.error(), c.message)) Note(std::string(c.name) + ": " + reader.error());
    CHECK(!accepted);
    CHECK(Contains(reader.error(), c.message));
  }
}

// Many commands, their replies interleaved (chunks of one read between
// others' replies), cut at random places: every command gets its own bytes.
void TestInterleavedRandom() {
  constexpr int kCommands = 64;
  Table t;
  NbdReplyReader reader(true, t, 0);
  std::vector<std::vector<uint8_t>> buffers(kCommands), expected(kCommands);
  std::vector<NbdCommand> commands(kCommands);
  for (int i = 0; i < kCommands; ++i) {
    const size_t size = 512 * (1 + g_random() % 300);
    buffers[i].assign(size, 0xee);
    expected[i] = RandomBytes(size);
    commands[i] = ReadCommand(1000 + i, static_cast<uint64_t>(i) << 24, buffers[i]);
    t.commands.push_back(&commands[i]);
  }
  Stream s;
  // Each read in two halves; all first halves, then all second halves.
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < kCommands; ++i) {
      const size_t half = expected[i].size() / 2;
      const size_t from = pass == 0 ? 0 : half, to = pass == 0 ? half : expected[i].size();
      s.Data(1000 + i, pass == 1, commands[i].offset + from,
             std::vector<uint8_t>(expected[i].begin() + from, expected[i].begin() + to));
    }
  }
  CHECK(Feed(reader, s, 1 + static_cast<uint32_t>(g_random() % 20000)));
  CHECK_EQ(t.finished.size(), static_cast<size_t>(kCommands));
  for (int i = 0; i < kCommands; ++i) CHECK(buffers[i] == expected[i]);
}

void TestErrnoMapping() {
  CHECK_EQ(ErrnoFromNbdError(1), EPERM);
  CHECK_EQ(ErrnoFromNbdError(5), EIO);
  CHECK_EQ(ErrnoFromNbdError(12), ENOMEM);
  CHECK_EQ(ErrnoFromNbdError(22), EINVAL);
  CHECK_EQ(ErrnoFromNbdError(28), ENOSPC);
  CHECK_EQ(ErrnoFromNbdError(75), EOVERFLOW);
  CHECK_EQ(ErrnoFromNbdError(95), ENOTSUP);
  CHECK_EQ(ErrnoFromNbdError(108), ESHUTDOWN);
  CHECK_EQ(ErrnoFromNbdError(2), EIO);
  CHECK(NbdErrorName(28) == "NBD_ENOSPC");
  CHECK(CommandName(kCmdWriteZeroes) == "NBD_CMD_WRITE_ZEROES");
  uint8_t header[kRequestBytes];
  RequestHeader h;
  h.flags = kCmdFlagDf;
  h.type = kCmdRead;
  h.cookie = 0x0102030405060708ull;
  h.offset = 1ull << 40;
  h.length = 65536;
  EncodeRequest(h, header);
  const uint8_t expect[kRequestBytes] = {0x25, 0x60, 0x95, 0x13, 0, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                                         0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  CHECK(std::memcmp(header, expect, kRequestBytes) == 0);
}

}  // namespace

int main() {
  const char* env = std::getenv("DEVMOVE_TEST_SEED");
  const uint64_t seed = env != nullptr ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  std::printf("nbd_test: seed %llu (DEVMOVE_TEST_SEED=%llu repeats it)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  g_random.seed(seed);
  Run("simple replies, cut anywhere", TestSimpleReplies);
  Run("a structured read with DF goes straight into the buffer", TestStructuredReadDf);
  Run("a read in data and hole chunks, out of order", TestFragmentedRead);
  Run("a read whose reply does not cover it fails with EIO", TestReadNotCovered);
  Run("error chunks: errno, NBD error, message, offset", TestErrorChunks);
  Run("block status larger than the staging buffer", TestBlockStatus);
  Run("block status past the request is cut", TestBlockStatusPastTheRequestIsCut);
  Run("protocol violations drop the connection", TestViolations);
  Run("64 interleaved reads, cut at random places", TestInterleavedRandom);
  Run("NBD errors as errno; the request header's bytes", TestErrnoMapping);
  std::printf("nbd_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
