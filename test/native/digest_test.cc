// Native test of the digests: BLAKE3 (every kernel this CPU runs, against
// b3sum's answers), the out-of-order tree, the hashing pool and the
// parallel digests on it, and XXH3-128 from libxxhash (against xxhsum).
// No kernel devices; b3sum and xxhsum (Debian packages b3sum, xxhash) are
// the oracles where they are installed — a test that needs one and cannot
// find it is reported as skipped, never as passed.
//
// Randomized tests take their seed from DEVMOVE_TEST_SEED (default: the
// time) and print it, so a failure can be replayed.
#include <dirent.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <thread>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "blake3.h"
#include "blake3_tree.h"
#include "block_digest_stage.h"
#include "digest_stage.h"
#include "digest_table.h"
#include "harness.h"
#include "hash_pool.h"
#include "parallel_digest.h"
#include "xxhash_library.h"

using namespace devmove;
using namespace devmove_test;

namespace {

// ---- Skips ------------------------------------------------------------------

int g_skipped = 0;
bool g_skip_current = false;

#define SKIP(reason)                              \
  do {                                            \
    g_skip_current = true;                        \
    std::printf("    skip: %s\n", (reason));      \
    return;                                       \
  } while (0)

void RunTest(const char* name, const std::function<void()>& test) {
  g_skip_current = false;
  const int passed_before = g_passed;
  Run(name, test);
  if (g_skip_current && g_passed == passed_before + 1) {
    --g_passed;  // a skipped test did not pass
    ++g_skipped;
    std::printf("  SKIP %s\n", name);
  }
}

// ---- Inputs -------------------------------------------------------------------

uint64_t g_seed = 0;

// The official test vectors' input: byte i is i mod 251.
std::vector<uint8_t> Pattern(size_t length) {
  std::vector<uint8_t> v(length);
  for (size_t i = 0; i < length; ++i) v[i] = static_cast<uint8_t>(i % 251);
  return v;
}

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t length) {
  std::vector<uint8_t> v(length);
  for (size_t i = 0; i < length; i += 8) {
    const uint64_t x = rng();
    std::memcpy(v.data() + i, &x, std::min<size_t>(8, length - i));
  }
  return v;
}

std::string StreamHex(const blake3::Kernel& kernel, const std::vector<uint8_t>& data) {
  Blake3Stream stream(kernel);
  stream.Update(data.data(), data.size());
  return stream.FinalHex();
}

bool HaveTool(const char* tool) {
  const std::string command = std::string("command -v ") + tool + " >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

// Runs `tool` on a temporary file holding data; its first word of output.
std::string ToolDigest(const char* tool_args, const std::vector<uint8_t>& data) {
  char path[] = "/tmp/devmove-digest-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  // stderr dropped: xxhsum draws a progress line there.
  const std::string command = std::string(tool_args) + " " + path + " 2>/dev/null";
  std::string out;
  if (FILE* p = popen(command.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  unlink(path);
  return out.substr(0, out.find_first_of(" \n"));
}

std::vector<const blake3::Kernel*> SupportedKernels() {
  std::vector<const blake3::Kernel*> kernels;
  for (blake3::KernelId id : blake3::kKernelIds)
    if (blake3::KernelSupported(id)) kernels.push_back(&blake3::GetKernel(id));
  return kernels;
}

// ---- BLAKE3 ---------------------------------------------------------------------

// b3sum 1.2.0's digests of the test-vector input (byte i = i mod 251), at
// the lengths around block, chunk and subtree boundaries.
struct KnownDigest {
  size_t length;
  const char* hex;
};
const KnownDigest kKnown[] = {
    {0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
    {1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
    {63, "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b"},
    {64, "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98"},
    {65, "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee"},
    {1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"},
    {1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"},
    {1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"},
    {2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"},
    {2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"},
    {3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2"},
    {3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"},
    {4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"},
    {4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"},
    {5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833"},
    {5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff"},
    {6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205"},
    {6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f"},
    {7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a"},
    {7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817"},
    {8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63"},
    {8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"},
    {16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4"},
    {31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"},
    {102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"},
    {1048576, "74cb441fd087764ca9c3694da742ebe30cbeb3060a17009ca81825c7a8d10343"},
    {1049600, "59f733f7a6508b55eb572977d6b5b344769021d8689804460bbbaad07da9688a"},
};

void TestKnownDigestsEveryKernel() {
  const std::vector<const blake3::Kernel*> kernels = SupportedKernels();
  Note("kernels on this CPU: " + std::to_string(kernels.size()) + ", best " + blake3::BestKernel().name);
  CHECK(kernels.front()->id == blake3::KernelId::kPortable);
  for (const blake3::Kernel* k : kernels) {
    for (const KnownDigest& known : kKnown) {
      const std::string hex = StreamHex(*k, Pattern(known.length));
      if (hex != known.hex) {
        Note(std::string(k->name) + " length " + std::to_string(known.length) + ": " + hex);
        CHECK(hex == known.hex);
      }
    }
  }
}

// Every kernel computes what the portable one does, for every input count
// (full and partial SIMD passes) and counters past 2^32 (the high word).
void TestKernelsAgreeWithPortable() {
  std::mt19937_64 rng(g_seed);
  const blake3::Kernel& portable = blake3::GetKernel(blake3::KernelId::kPortable);
  for (const blake3::Kernel* k : SupportedKernels()) {
    for (size_t count = 1; count <= 40; ++count) {
      const std::vector<uint8_t> data = RandomBytes(rng, count * blake3::kChunkBytes);
      const uint64_t counter = (count % 3 == 0) ? (uint64_t{1} << 32) - 5 : rng() >> 20;
      std::vector<uint8_t> want(count * 32), got(count * 32);
      portable.hash_many(data.data(), 1024, count, 16, counter, true, 0, blake3::kChunkStart, blake3::kChunkEnd,
                         want.data());
      k->hash_many(data.data(), 1024, count, 16, counter, true, 0, blake3::kChunkStart, blake3::kChunkEnd, got.data());
      CHECK(want == got);
      // Parents: one 64-byte block each, no counter.
      portable.hash_many(data.data(), 64, count, 1, 0, false, blake3::kParent, 0, 0, want.data());
      k->hash_many(data.data(), 64, count, 1, 0, false, blake3::kParent, 0, 0, got.data());
      CHECK(want == got);
    }
  }
}

void TestAgainstB3sum() {
  if (!HaveTool("b3sum")) SKIP("b3sum not installed (Debian package b3sum)");
  std::mt19937_64 rng(g_seed + 1);
  std::vector<size_t> lengths = {0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 16 * 1024 - 1, 16 * 1024 + 1,
                                 256 * 1024, 512 * 1024 + 1, 3 * 1024 * 1024 + 333};
  for (int i = 0; i < 6; ++i) lengths.push_back(rng() % (2 * 1024 * 1024));
  for (size_t length : lengths) {
    const std::vector<uint8_t> data = RandomBytes(rng, length);
    const std::string want = ToolDigest("b3sum --no-names", data);
    for (const blake3::Kernel* k : SupportedKernels()) {
      const std::string got = StreamHex(*k, data);
      if (got != want) Note(std::string(k->name) + " length " + std::to_string(length) + ": " + got + " != " + want);
      CHECK(got == want);
    }
  }
}

// Updates of any size, down to one byte, give the digest of the whole.
void TestStreamUpdateSizes() {
  std::mt19937_64 rng(g_seed + 2);
  const std::vector<uint8_t> data = RandomBytes(rng, 70 * 1024 + 17);
  const blake3::Kernel& k = blake3::BestKernel();
  const std::string whole = StreamHex(k, data);
  Blake3Stream bytewise(k);
  for (size_t i = 0; i < 5000; ++i) bytewise.Update(&data[i], 1);
  bytewise.Update(data.data() + 5000, data.size() - 5000);
  CHECK(bytewise.FinalHex() == whole);
  Blake3Stream random_sizes(k);
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min<size_t>(data.size() - at, 1 + rng() % 9000);
    random_sizes.Update(data.data() + at, n);
    at += n;
  }
  CHECK(random_sizes.FinalHex() == whole);
}

// ---- The out-of-order tree --------------------------------------------------------

struct Piece {
  uint64_t position;
  size_t length;
};

// Cuts [0, total) into pieces of random sizes (some aligned to 512 KiB like
// the engine's buffers, some not, some tiny) and shuffles them.
std::vector<Piece> RandomPieces(std::mt19937_64& rng, uint64_t total) {
  std::vector<Piece> pieces;
  const bool aligned = rng() % 2 == 0;
  for (uint64_t at = 0; at < total;) {
    uint64_t n = aligned ? 512 * 1024 : 1 + rng() % (rng() % 4 == 0 ? 3000 : 300 * 1024);
    n = std::min<uint64_t>(n, total - at);
    pieces.push_back({at, static_cast<size_t>(n)});
    at += n;
  }
  std::shuffle(pieces.begin(), pieces.end(), rng);
  return pieces;
}

void TestTreeOutOfOrder() {
  std::mt19937_64 rng(g_seed + 3);
  const std::vector<const blake3::Kernel*> kernels = SupportedKernels();
  const uint64_t totals[] = {0, 1, 1024, 1025, 2048, 2049, 5000, 512 * 1024, 512 * 1024 + 1, 3 * 1024 * 1024,
                             rng() % (8 * 1024 * 1024), rng() % 70000};
  for (uint64_t total : totals) {
    for (int round = 0; round < 3; ++round) {
      const std::vector<uint8_t> data = RandomBytes(rng, total);
      const std::string want = StreamHex(blake3::GetKernel(blake3::KernelId::kPortable), data);
      Blake3Tree tree(*kernels[rng() % kernels.size()]);
      for (const Piece& p : RandomPieces(rng, total)) {
        const Blake3Tree::Run run = tree.Add(p.position, data.data() + p.position, p.length);
        blake3::Subtree subtrees[128];
        const size_t n = blake3::HashSubtrees(tree.kernel(), run.data, run.first_chunk, run.chunks, subtrees);
        CHECK_EQ(n, blake3::SubtreeCount(run.first_chunk, run.chunks));
        tree.Deliver(subtrees, n);
      }
      // In order again, nothing waits; the stack is a binary counter.
      CHECK_EQ(tree.waiting_subtrees(), 0u);
      CHECK(tree.stack_depth() <= 2 + 64);
      uint8_t digest[32];
      std::string why;
      REQUIRE(tree.Finish(total, digest, &why));
      const std::string got = blake3::ToHex(digest, 32);
      if (got != want) Note("total " + std::to_string(total) + ": " + got + " != " + want);
      CHECK(got == want);
    }
  }
}

void TestTreeRefusesGaps() {
  const std::vector<uint8_t> data = Pattern(10 * 1024);
  const blake3::Kernel& k = blake3::BestKernel();
  {  // a piece in the middle never came
    Blake3Tree tree(k);
    tree.Add(0, data.data(), 3000);
    const Blake3Tree::Run run = tree.Add(5000, data.data() + 5000, 5240);
    blake3::Subtree s[128];
    tree.Deliver(s, blake3::HashSubtrees(k, run.data, run.first_chunk, run.chunks, s));
    uint8_t digest[32];
    std::string why;
    CHECK(!tree.Finish(10 * 1024, digest, &why));
    CHECK(Contains(why, "missing"));
  }
  {  // a total other than what was added
    Blake3Tree tree(k);
    tree.Add(0, data.data(), 1000);
    uint8_t digest[32];
    std::string why;
    CHECK(!tree.Finish(2000, digest, &why));
    CHECK(Contains(why, "ends at byte 1000"));
  }
}

// The subtree decomposition of runs: aligned, contiguous, powers of two.
void TestSubtreeDecomposition() {
  std::mt19937_64 rng(g_seed + 4);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t first = rng() % 5000 + (i % 7 == 0 ? (uint64_t{1} << 40) : 0);
    const uint64_t chunks = 1 + rng() % 3000;
    uint64_t at = first;
    size_t count = 0;
    while (at < first + chunks) {
      const uint32_t level = blake3::NextSubtreeLevel(at, first + chunks - at);
      const uint64_t size = uint64_t{1} << level;
      CHECK(at % size == 0);
      CHECK(at + size <= first + chunks);
      at += size;
      ++count;
    }
    CHECK_EQ(count, blake3::SubtreeCount(first, chunks));
    CHECK(count <= 128);
  }
}

// ---- The pool and the parallel digests ------------------------------------------

struct CountingTask final : HashPool::Task {
  std::atomic<int>* runs = nullptr;
  void Run() override { runs->fetch_add(1); }
};

void TestPoolRunsEverything() {
  SysError error;
  CHECK(HashPool::UsableCpus() >= 1);
  std::atomic<int> runs{0};
  std::vector<CountingTask> tasks(1000);
  {
    std::unique_ptr<HashPool> pool = HashPool::Create(0, &error);
    REQUIRE(pool);
    CHECK_EQ(pool->threads(), std::min(HashPool::UsableCpus(), HashPool::kThreadsMax));
    for (CountingTask& t : tasks) {
      t.runs = &runs;
      pool->Submit(&t);
    }
  }  // the destructor runs what is queued
  CHECK_EQ(runs.load(), 1000);
  std::unique_ptr<HashPool> capped = HashPool::Create(1000, &error);
  REQUIRE(capped);
  CHECK_EQ(capped->threads(), HashPool::kThreadsMax);
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

// Submits pieces in a shuffled order with few piece records, as the engine
// would: when Submit says no, reap (waiting on wake_fd) and try again. Every
// ticket comes back exactly once, and the digest is the in-order one.
void TestParallelBlake3() {
  std::mt19937_64 rng(g_seed + 5);
  SysError error;
  for (uint32_t threads : {1u, 2u, 4u}) {
    std::unique_ptr<HashPool> pool = HashPool::Create(threads, &error);
    REQUIRE(pool);
    for (uint64_t total : {uint64_t{0}, uint64_t{700}, uint64_t{9 * 1024 * 1024 + 5}, rng() % (6 * 1024 * 1024)}) {
      const std::vector<uint8_t> data = RandomBytes(rng, total);
      const std::string want = StreamHex(blake3::GetKernel(blake3::KernelId::kPortable), data);
      ParallelDigest::Limits limits;
      limits.pieces_max = 1 + rng() % 4;
      limits.tasks_per_piece = 1 + rng() % ParallelDigest::Limits::kTasksPerPieceMax;
      limits.task_bytes_min = 1024 << (rng() % 8);
      std::unique_ptr<Blake3ParallelDigest> digest =
          Blake3ParallelDigest::Create(*pool, blake3::BestKernel(), limits, &error);
      REQUIRE(digest);
      const std::vector<Piece> pieces = RandomPieces(rng, total);
      std::vector<int> returned(pieces.size(), 0);
      std::vector<uint64_t> tickets;
      for (size_t i = 0; i < pieces.size(); ++i) {
        while (!digest->Submit(pieces[i].position, data.data() + pieces[i].position, pieces[i].length, i)) {
          CHECK_EQ(digest->pieces_in_use(), limits.pieces_max);
          pollfd p{digest->wake_fd(), POLLIN, 0};
          poll(&p, 1, 10000);
          digest->Reap(&tickets);
        }
        CHECK(digest->pieces_in_use() <= limits.pieces_max);
      }
      std::string hex, why;
      REQUIRE(digest->Finish(total, &hex, &why));
      CHECK(hex == want);
      if (!pieces.empty()) CHECK(Readable(digest->wake_fd()));
      digest->Reap(&tickets);
      CHECK(!Readable(digest->wake_fd()));
      CHECK_EQ(digest->pieces_in_use(), 0u);
      for (uint64_t t : tickets) returned.at(t)++;
      CHECK(std::all_of(returned.begin(), returned.end(), [](int n) { return n == 1; }));
    }
  }
}

// Hands `data` to the stages in slots of `buffer_bytes`, as the engine does:
// a random batch of free slots at a time, in shuffled order, each slot to
// every stage; a slot is free again once every stage that held it handed it
// back through Collect() (after its wake_fd() became readable).
void FeedInAnyOrder(std::mt19937_64& rng, const std::vector<uint8_t>& data, uint32_t buffer_bytes,
                    const std::vector<PoolDigestStage*>& stages) {
  constexpr uint32_t kSlots = 8;
  const uint64_t total = data.size();
  std::vector<std::vector<uint8_t>> buffers(kSlots, std::vector<uint8_t>(buffer_bytes));
  std::vector<Slot> slots(kSlots);
  std::vector<uint32_t> free_slots;
  for (uint32_t i = 0; i < kSlots; ++i) free_slots.push_back(i);
  uint64_t next = 0;
  std::vector<Slot*> released;
  const auto busy = [&] {
    return std::any_of(stages.begin(), stages.end(), [](const SlotStage* st) { return st->Busy(UINT64_MAX); });
  };
  const auto held = [&](const Slot& s) {
    return std::any_of(stages.begin(), stages.end(), [&s](const SlotStage* st) { return st->Holds(s); });
  };
  while (next < total || busy()) {
    std::shuffle(free_slots.begin(), free_slots.end(), rng);
    std::vector<Slot*> batch;
    while (!free_slots.empty() && next < total && rng() % 4 != 0) {
      Slot& s = slots[free_slots.back()];
      free_slots.pop_back();
      s.index = static_cast<uint32_t>(&s - slots.data());
      s.buffer = buffers[s.index].data();
      s.capacity = buffer_bytes;
      s.position = next;
      s.length = static_cast<uint32_t>(std::min<uint64_t>(buffer_bytes, total - next));
      std::memcpy(s.buffer, data.data() + next, s.length);
      next += s.length;
      batch.push_back(&s);
    }
    std::shuffle(batch.begin(), batch.end(), rng);
    for (Slot* s : batch) {
      for (SlotStage* st : stages) st->OnRead(*s, &released);
      CHECK(held(*s));
    }
    std::vector<pollfd> fds;
    for (const SlotStage* st : stages) fds.push_back({st->wake_fd(), POLLIN, 0});
    if (busy()) poll(fds.data(), fds.size(), 1000);
    released.clear();
    for (SlotStage* st : stages) st->Collect(&released);
    std::sort(released.begin(), released.end());
    released.erase(std::unique(released.begin(), released.end()), released.end());
    for (Slot* s : released) {
      if (held(*s)) continue;  // another stage still has it
      std::memset(s->buffer, 0xee, buffer_bytes);  // the buffer is the engine's again: reuse must not change a digest
      free_slots.push_back(s->index);
    }
  }
  CHECK_EQ(free_slots.size(), size_t{kSlots});
}

// The engine's digest stages on one shared pool, as a copy with --hash and
// --verify runs them: slots handed over in any order (as reads complete) are
// held until a worker is done, come back through Collect() once wake_fd() is
// readable, --hash's digest is that of [0, n) in order and every block's
// digest is that of its bytes. A stage destroyed while it holds slots (a
// stopped copy) waits for its workers.
void TestDigestStagesShareOnePool() {
  std::mt19937_64 rng(g_seed + 11);
  constexpr uint32_t kSlots = 8;
  constexpr uint32_t kBuffer = 64 * 1024;
  SysError error;
  for (uint64_t total : {uint64_t{1}, uint64_t{kBuffer * 3 + 17}, 1 + rng() % (40 * kBuffer)}) {
    const std::vector<uint8_t> data = RandomBytes(rng, total);
    const std::string want = StreamHex(blake3::GetKernel(blake3::KernelId::kPortable), data);
    std::unique_ptr<HashPool> pool = HashPool::Create(1 + rng() % 3, &error);  // outlives the stages
    REQUIRE(pool);
    std::unique_ptr<DigestStage> stage = DigestStage::Create("blake3", *pool, kSlots, &error);
    REQUIRE(stage);
    BlockDigestStage::Config config;
    config.block_bytes = 16 * 1024;
    config.input_bytes = total;
    config.memory_max_bytes = 4 * DigestTable::kPageBytes;
    config.spill_dir = "/tmp";
    config.slots_max = kSlots;
    std::unique_ptr<BlockDigestStage> blocks = BlockDigestStage::Create(config, *pool, &error);
    REQUIRE(blocks);
    FeedInAnyOrder(rng, data, kBuffer, {stage.get(), blocks.get()});
    std::string hex, why;
    REQUIRE(stage->Finish(&hex, &why));
    CHECK(hex == want);
    blocks->Finish();
    uint64_t right = 0;
    const uint64_t count = (total + config.block_bytes - 1) / config.block_bytes;
    for (uint64_t b = 0; b < count; ++b) {
      const size_t n = std::min<uint64_t>(config.block_bytes, total - b * config.block_bytes);
      Xxh128 got;
      right += blocks->table().Get(b, &got) && got == blocks->Hash(data.data() + b * config.block_bytes, n);
    }
    CHECK_EQ(right, count);
  }
  // Destroyed while holding slots: returns once no worker reads them.
  std::unique_ptr<HashPool> pool = HashPool::Create(2, &error);
  REQUIRE(pool);
  std::unique_ptr<DigestStage> stage = DigestStage::Create("blake3", *pool, kSlots, &error);
  REQUIRE(stage);
  std::vector<uint8_t> buffer(kBuffer, 7);
  Slot s;
  s.buffer = buffer.data();
  s.capacity = s.length = kBuffer;
  std::vector<Slot*> released;
  stage->OnRead(s, &released);
  stage.reset();
  CHECK(!stage);
}

struct VectorSink final : BlockDigestSink {
  std::vector<Xxh128> digests;
  std::vector<std::atomic<int>> puts;
  explicit VectorSink(size_t blocks) : digests(blocks), puts(blocks) {}
  void Put(uint64_t block, const Xxh128& digest) override {
    digests.at(block) = digest;  // distinct blocks: no two workers write one entry
    puts.at(block).fetch_add(1);
  }
};

void TestXxhashLibrary() {
  SysError error;
  CHECK(!XxhashLibrary::Load("libxxhash-not-there.so.0", &error));
  CHECK_EQ(error.errno_value, ELIBACC);
  CHECK(error.syscall == "dlopen");
  CHECK(Contains(error.message, "install the libxxhash0 package"));
  error = SysError();
  std::shared_ptr<const XxhashLibrary> lib = XxhashLibrary::Load(XxhashLibrary::kDefaultName, &error);
  if (!lib) SKIP("libxxhash.so.0 not installed (Debian package libxxhash0)");
  Note("XXH3-128 entry point: " + lib->entry_point());
  CHECK(XxhashLibrary::CanonicalHex(lib->Hash128("", 0)) == "99aa06d3014798d86001c324468d497f");
  CHECK(XxhashLibrary::CanonicalHex(lib->Hash128("abc", 3)) == "06b05ab6733a618578af5f94892f3950");
  if (!HaveTool("xxhsum")) SKIP("xxhsum not installed (Debian package xxhash)");
  std::mt19937_64 rng(g_seed + 6);
  for (size_t length : {size_t{1}, size_t{240}, size_t{241}, size_t{4096}, size_t{512 * 1024}, size_t(rng() % 3000000)}) {
    const std::vector<uint8_t> data = RandomBytes(rng, length);
    const std::string want = ToolDigest("xxhsum -H2", data);
    const std::string got = XxhashLibrary::CanonicalHex(lib->Hash128(data.data(), data.size()));
    if (got != want) Note("length " + std::to_string(length) + ": " + got + " != " + want);
    CHECK(got == want);
  }
}

void TestParallelXxh3Blocks() {
  SysError error;
  std::shared_ptr<const XxhashLibrary> lib = XxhashLibrary::Load(XxhashLibrary::kDefaultName, &error);
  if (!lib) SKIP("libxxhash.so.0 not installed (Debian package libxxhash0)");
  std::unique_ptr<HashPool> pool = HashPool::Create(3, &error);
  REQUIRE(pool);
  std::mt19937_64 rng(g_seed + 7);
  const uint32_t block_bytes = 64 * 1024;
  const uint64_t total = 40 * block_bytes + 1234;  // a short last block
  const std::vector<uint8_t> data = RandomBytes(rng, total);
  const size_t blocks = (total + block_bytes - 1) / block_bytes;
  VectorSink sink(blocks);
  ParallelDigest::Limits limits;
  limits.pieces_max = 2;
  limits.tasks_per_piece = 3;
  limits.task_bytes_min = block_bytes;
  std::unique_ptr<BlockDigests> digests = BlockDigests::Create(
      *pool, [lib](const uint8_t* d, size_t n) { return lib->Hash128(d, n); }, block_bytes, total, &sink, limits, &error);
  REQUIRE(digests);
  // Buffers of 5 blocks, in reverse order.
  std::vector<uint64_t> tickets;
  const uint64_t piece_bytes = 5 * block_bytes;
  for (uint64_t start = (total - 1) / piece_bytes * piece_bytes;; start -= piece_bytes) {
    const size_t n = std::min<uint64_t>(piece_bytes, total - start);
    while (!digests->Submit(start, data.data() + start, n, start)) {
      digests->Drain();
      digests->Reap(&tickets);
    }
    if (start == 0) break;
  }
  digests->Drain();
  digests->Reap(&tickets);
  CHECK_EQ(tickets.size(), static_cast<size_t>((total + piece_bytes - 1) / piece_bytes));
  for (size_t b = 0; b < blocks; ++b) {
    const size_t n = std::min<uint64_t>(block_bytes, total - b * block_bytes);
    CHECK_EQ(sink.puts[b].load(), 1);
    CHECK(sink.digests[b] == lib->Hash128(data.data() + b * block_bytes, n));
  }
}

// An in-order digest off the I/O thread: pieces handed over in any order are
// fed in input order, one at a time; pieces behind a gap that never closes
// come back unhashed and Finish says so.
void TestSerialDigest() {
  std::mt19937_64 rng(g_seed + 10);
  SysError error;
  std::unique_ptr<HashPool> pool = HashPool::Create(3, &error);
  REQUIRE(pool);
  const uint64_t total = 5 * 1024 * 1024 + 77;
  const std::vector<uint8_t> data = RandomBytes(rng, total);
  const std::string want = StreamHex(blake3::GetKernel(blake3::KernelId::kPortable), data);
  Blake3Stream stream(blake3::BestKernel());
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  uint64_t fed = 0;
  bool in_order = true;
  auto update = [&](const uint8_t* p, size_t n) {
    if (inside.fetch_add(1) != 0) overlapped = true;
    in_order = in_order && p == data.data() + fed;
    fed += n;
    stream.Update(p, n);
    inside.fetch_sub(1);
  };
  ParallelDigest::Limits limits;
  limits.pieces_max = 3;
  std::unique_ptr<SerialDigest> digest = SerialDigest::Create(*pool, update, limits, &error);
  REQUIRE(digest);
  // Out of order, but never more than pieces_max ahead: what a ring of 3 buffers does.
  const std::vector<Piece> pieces = [&] {
    std::vector<Piece> v;
    for (uint64_t at = 0; at < total; at += 256 * 1024) v.push_back({at, static_cast<size_t>(std::min<uint64_t>(256 * 1024, total - at))});
    for (size_t i = 0; i + 2 < v.size(); i += 3) std::shuffle(v.begin() + i, v.begin() + i + 3, rng);
    return v;
  }();
  std::vector<uint64_t> tickets;
  for (size_t i = 0; i < pieces.size(); ++i) {
    while (!digest->Submit(pieces[i].position, data.data() + pieces[i].position, pieces[i].length, i)) {
      pollfd p{digest->wake_fd(), POLLIN, 0};
      poll(&p, 1, 10000);
      digest->Reap(&tickets);
    }
  }
  std::string why;
  REQUIRE(digest->Finish(total, &why));
  CHECK(!overlapped);
  CHECK(in_order);
  CHECK(stream.FinalHex() == want);
  digest->Reap(&tickets);
  CHECK_EQ(tickets.size(), pieces.size());
  // A gap that never closes: the pieces behind it come back, Finish says what was fed.
  fed = 0;
  std::unique_ptr<SerialDigest> gap = SerialDigest::Create(*pool, [&](const uint8_t*, size_t n) { fed += n; }, limits, &error);
  REQUIRE(gap);
  CHECK(gap->Submit(0, data.data(), 1000, 0));
  CHECK(gap->Submit(2000, data.data() + 2000, 1000, 2));
  CHECK(gap->Submit(3000, data.data() + 3000, 1000, 3));
  CHECK(!gap->Finish(4000, &why));
  CHECK(Contains(why, "[0, 1000)"));
  tickets.clear();
  gap->Reap(&tickets);
  CHECK_EQ(tickets.size(), 3u);
  CHECK_EQ(fed, 1000u);
  // And a digest destroyed with pieces stuck behind a gap does not hang.
  std::unique_ptr<SerialDigest> dropped = SerialDigest::Create(*pool, [](const uint8_t*, size_t) {}, limits, &error);
  REQUIRE(dropped);
  CHECK(dropped->Submit(5000, data.data() + 5000, 10, 9));
  dropped.reset();
}

// ---- The per-block digest table ----------------------------------------------------

Xxh128 FakeDigest(uint64_t block, uint64_t salt) { return Xxh128{block * 0x9E3779B97F4A7C15ull ^ salt, ~block + salt}; }

size_t EntriesIn(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) n += std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0;
    closedir(d);
  }
  return n;
}

void TestDigestTableInMemory() {
  SysError error;
  const uint64_t blocks = 3 * DigestTable::kEntriesPerPage + 17;
  std::unique_ptr<DigestTable> table = DigestTable::Create(blocks, 64 << 20, "/nonexistent", &error);
  REQUIRE(table);  // the spill directory is never touched when everything fits
  CHECK(!table->spills());
  std::mt19937_64 rng(g_seed + 8);
  std::vector<uint64_t> order(blocks);
  for (uint64_t i = 0; i < blocks; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t b : order) {
    if (b % 7 != 3) table->Put(b, FakeDigest(b, 1));  // some blocks never get one (holes, outside a domain)
  }
  Xxh128 d;
  for (uint64_t b = 0; b < blocks; ++b) {
    CHECK_EQ(table->Has(b), b % 7 != 3);
    CHECK_EQ(table->Get(b, &d), b % 7 != 3);
    if (b % 7 != 3) CHECK(d == FakeDigest(b, 1));
  }
  CHECK(!table->Get(blocks, &d));
}

// Three pages of memory for forty pages of digests: puts arrive nearly in
// order (a ring of buffers completing out of order), verify reads in order;
// memory never exceeds the limit and every digest comes back.
void TestDigestTableSpills() {
  char dir[] = "/var/tmp/devmove-spill-test-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  SysError error;
  const uint64_t blocks = 40 * DigestTable::kEntriesPerPage - 5;
  std::unique_ptr<DigestTable> table = DigestTable::Create(blocks, 3 * DigestTable::kPageBytes, dir, &error);
  REQUIRE(table);
  CHECK(table->spills());
  CHECK_EQ(EntriesIn(dir), 0u);  // unlinked from the start
  std::mt19937_64 rng(g_seed + 9);
  for (uint64_t base = 0; base < blocks; base += 64) {
    std::vector<uint64_t> window;
    for (uint64_t b = base; b < std::min<uint64_t>(blocks, base + 64); ++b) window.push_back(b);
    std::shuffle(window.begin(), window.end(), rng);
    for (uint64_t b : window) table->Put(b, FakeDigest(b, 2));
    CHECK(table->pages_in_memory() <= 3);
  }
  // A late put into a page already written out: read back, changed, kept.
  table->Put(5, FakeDigest(5, 99));
  Xxh128 d;
  bool all = true;
  for (uint64_t b = 0; b < blocks; ++b) all = all && table->Get(b, &d) && d == FakeDigest(b, b == 5 ? 99 : 2);
  CHECK(all);
  CHECK(!table->error().failed());
  CHECK(table->pages_written() >= 37);
  CHECK(table->pages_read() >= 37);
  Note("pages written " + std::to_string(table->pages_written()) + ", read " + std::to_string(table->pages_read()));
  table.reset();
  CHECK_EQ(EntriesIn(dir), 0u);
  rmdir(dir);
  CHECK(!DigestTable::Create(blocks, DigestTable::kPageBytes, "/nonexistent-devmove-dir", &error));
  CHECK_EQ(error.errno_value, ENOENT);
  CHECK(error.path == "/nonexistent-devmove-dir");
}

// Workers put concurrently (disjoint blocks, as the pool does) while the
// table spills: nothing is lost.
void TestDigestTableConcurrentPuts() {
  SysError error;
  const uint64_t blocks = 24 * DigestTable::kEntriesPerPage;
  std::unique_ptr<DigestTable> table = DigestTable::Create(blocks, 4 * DigestTable::kPageBytes, "/var/tmp", &error);
  REQUIRE(table);
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&table, t, blocks] {
      for (uint64_t b = t; b < blocks; b += 4) table->Put(b, FakeDigest(b, 3));
    });
  }
  for (std::thread& t : threads) t.join();
  Xxh128 d;
  uint64_t right = 0;
  for (uint64_t b = 0; b < blocks; ++b) right += table->Get(b, &d) && d == FakeDigest(b, 3);
  CHECK_EQ(right, blocks);
}

}  // namespace

int main() {
  const char* seed = std::getenv("DEVMOVE_TEST_SEED");
  g_seed = seed ? std::strtoull(seed, nullptr, 10) : static_cast<uint64_t>(time(nullptr));
  std::printf("digest_test: seed %llu (DEVMOVE_TEST_SEED=%llu replays it)\n", static_cast<unsigned long long>(g_seed),
              static_cast<unsigned long long>(g_seed));
  RunTest("BLAKE3: b3sum's digests of the test-vector input, every kernel", TestKnownDigestsEveryKernel);
  RunTest("BLAKE3: SIMD kernels agree with the portable one", TestKernelsAgreeWithPortable);
  RunTest("BLAKE3: random inputs against b3sum", TestAgainstB3sum);
  RunTest("BLAKE3: updates of any size", TestStreamUpdateSizes);
  RunTest("BLAKE3 tree: pieces out of order", TestTreeOutOfOrder);
  RunTest("BLAKE3 tree: gaps are refused", TestTreeRefusesGaps);
  RunTest("BLAKE3 tree: subtree decomposition", TestSubtreeDecomposition);
  RunTest("hash pool: every task runs, threads capped", TestPoolRunsEverything);
  RunTest("parallel BLAKE3: bounded pieces, tickets, digest", TestParallelBlake3);
  RunTest("serial digest: in input order off the I/O thread; gaps", TestSerialDigest);
  RunTest("digest stages on one pool: slots in any order, held until collected, one digest, every block's digest",
          TestDigestStagesShareOnePool);
  RunTest("XXH3-128: libxxhash loaded at run time, against xxhsum -H2", TestXxhashLibrary);
  RunTest("parallel XXH3-128 per block", TestParallelXxh3Blocks);
  RunTest("digest table: in memory, blocks without a digest", TestDigestTableInMemory);
  RunTest("digest table: spills to an unlinked file, bounded memory", TestDigestTableSpills);
  RunTest("digest table: concurrent puts while spilling", TestDigestTableConcurrentPuts);
  std::printf("digest_test: %d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
  return g_failed == 0 ? 0 : 1;
}
