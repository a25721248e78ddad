// Unit tests of the engine's parts that need no kernel: byte ranges, rate
// pacing, bad-block location, the slot pipeline's stages and the
// checkpointer. Time, media and I/O completions are made up here, so each
// part is driven through paths a real device cannot be made to take on
// demand. Randomized cases are seeded; the seed is printed
// (DEVMOVE_TEST_SEED=N repeats a run).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bad_block_locator.h"
#include "checkpointer.h"
#include "endpoint.h"
#include "harness.h"
#include "ranges.h"
#include "rate_pacer.h"
#include "stages.h"
#include "write_mode_gate.h"

using namespace devmove;
using namespace devmove_test;

namespace {

uint64_t g_seed = 0;

// ---- Ranges ------------------------------------------------------------------

std::vector<bool> Paint(const std::vector<ByteRange>& ranges, size_t size) {
  std::vector<bool> bits(size, false);
  for (const ByteRange& r : ranges)
    for (uint64_t i = r.offset; i < r.end() && i < size; ++i) bits[i] = true;
  return bits;
}

std::vector<ByteRange> RandomRanges(std::mt19937_64& rng, size_t size, int count) {
  std::vector<ByteRange> out;
  for (int i = 0; i < count; ++i) {
    const uint64_t offset = rng() % size;
    out.push_back({offset, rng() % (size - offset + 1)});
  }
  return out;
}

void TestRanges() {
  std::mt19937_64 rng(g_seed);
  constexpr size_t kSize = 300;
  for (int round = 0; round < 500; ++round) {
    std::vector<ByteRange> a = RandomRanges(rng, kSize, static_cast<int>(rng() % 6));
    std::vector<ByteRange> holes = RandomRanges(rng, kSize, static_cast<int>(rng() % 6));
    const std::vector<bool> painted = Paint(a, kSize);
    Normalize(&a);
    Normalize(&holes);
    // Normalized: the same bytes, sorted, disjoint, not touching, none empty.
    CHECK(Paint(a, kSize) == painted);
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].length > 0);
      if (i) CHECK(a[i - 1].end() < a[i].offset);
    }
    std::vector<bool> expected = Paint(a, kSize);
    const std::vector<bool> hole_bits = Paint(holes, kSize);
    for (size_t i = 0; i < kSize; ++i) expected[i] = expected[i] && !hole_bits[i];
    CHECK(Paint(Subtract(a, holes), kSize) == expected);
    const uint64_t lo = rng() % kSize;
    const uint64_t hi = lo + rng() % (kSize - lo + 1);
    const std::vector<ByteRange> clipped = ClipAndRebase(a, lo, hi);
    const std::vector<bool> clipped_bits = Paint(clipped, kSize);
    for (uint64_t i = 0; i < kSize; ++i) CHECK_EQ(clipped_bits[i], i < hi - lo && painted[lo + i]);
    uint64_t sum = 0;
    for (bool b : Paint(a, kSize)) sum += b ? 1 : 0;
    CHECK_EQ(TotalLength(a), sum);
  }
}

// ---- RatePacer ---------------------------------------------------------------

// Starts buffers whenever the pacer allows, in steps of `step` seconds, and
// checks that bytes started never run ahead of rate × t by more than one
// buffer plus the bucket after a stall.
void TestRatePacerCap() {
  constexpr uint64_t kRate = 100 * 1000 * 1000;  // 100 MB/s
  constexpr uint32_t kBuffer = 512 * 1024;
  RatePacer pacer(0);
  uint64_t started = 0;
  double max_excess = 0;
  for (double t = 0; t < 10.0; t += 0.001) {
    pacer.Observe(t, kRate, false, started);
    while (pacer.Delay(t, kRate, started, kBuffer, kBuffer) == 0) started += kBuffer;
    max_excess = std::max(max_excess, static_cast<double>(started) - kRate * t);
  }
  CHECK(max_excess <= kBuffer * 2.0);
  // And it keeps up: within a buffer of the rate at the end.
  CHECK(static_cast<double>(started) >= kRate * 9.999 - kBuffer);
  CHECK_EQ(pacer.Delay(0, 0, started, kBuffer, kBuffer) == 0, true);  // 0 = unlimited
}

void TestRatePacerStall() {
  // After a 2 s stall the pacer allows at most one bucket more than a
  // steady copy would: a stall is never paid back as a burst.
  constexpr uint64_t kRate = 200 * 1000 * 1000;
  constexpr uint32_t kBuffer = 128 * 1024;
  RatePacer pacer(0);
  uint64_t started = 0;
  for (double t = 0; t < 1.0; t += 0.001) {
    pacer.Observe(t, kRate, false, started);
    while (pacer.Delay(t, kRate, started, kBuffer, kBuffer) == 0) started += kBuffer;
  }
  const uint64_t before = started;
  const double resume = 3.0;  // nothing started between 1 s and 3 s
  pacer.Observe(resume, kRate, false, started);
  while (pacer.Delay(resume, kRate, started, kBuffer, kBuffer) == 0) started += kBuffer;
  const double bucket = std::max(2.0 * kBuffer, kRate * RatePacer::kBucketSeconds);
  CHECK(static_cast<double>(started - before) <= bucket + 2.0 * kBuffer);
  // A changed rate starts a new base: nothing owed from the old one.
  pacer.Observe(resume, kRate / 2, false, started);
  CHECK(pacer.Delay(resume, kRate / 2, started, kBuffer, kBuffer) == 0);
  started += kBuffer;
  CHECK(pacer.Delay(resume, kRate / 2, started, kBuffer, kBuffer) > 0);
  // A resume after a pause also rebases.
  pacer.Observe(resume + 5, kRate / 2, true, started);
  pacer.Observe(resume + 10, kRate / 2, false, started);
  CHECK(pacer.Delay(resume + 10, kRate / 2, started, kBuffer, kBuffer) == 0);
}

// ---- BadBlockLocator -------------------------------------------------------

// A made-up medium: bad logical blocks in a buffer at some absolute offset.
struct Medium {
  uint64_t base = 0;
  uint32_t block = 512;
  std::vector<bool> bad;  // per block of the buffer
  // A read of [offset, offset + length) in the buffer: how many bytes come
  // back before the first bad block (or -EIO when it starts on one), with a
  // short read now and then.
  int32_t Read(uint32_t offset, uint32_t length, std::mt19937_64& rng) const {
    for (uint32_t at = offset; at < offset + length; at += block - (at % block)) {
      if (bad[at / block]) return at == offset ? -5 : static_cast<int32_t>(at - offset);
    }
    if (length > 1 && rng() % 5 == 0) return static_cast<int32_t>(1 + rng() % (length - 1));
    return static_cast<int32_t>(length);
  }
};

void TestBadBlockLocator() {
  std::mt19937_64 rng(g_seed + 1);
  for (int round = 0; round < 300; ++round) {
    Medium m;
    m.block = rng() % 2 ? 512 : 4096;
    const uint32_t blocks = 1 + static_cast<uint32_t>(rng() % 300);
    m.bad.assign(blocks, false);
    for (uint32_t i = 0; i < blocks; ++i) m.bad[i] = rng() % 9 == 0;
    const uint32_t retries = static_cast<uint32_t>(rng() % 3);
    const uint32_t from = static_cast<uint32_t>(rng() % blocks) * m.block;
    const uint32_t to = blocks * m.block;
    BadBlockLocator locator;
    locator.Start(from, to, m.block, retries);
    std::vector<bool> seen_bad(blocks, false);
    std::vector<bool> read_ok(blocks, false);
    uint32_t retried = 0;
    BadBlockLocator::Step step = BadBlockLocator::Step::kRead;
    // Each pass reads a piece, retries one or settles one: bounded by blocks × (retries + 2) + splits.
    for (int guard = 0; locator.active() && guard < 100000; ++guard) {
      const BadBlockLocator::Piece p = locator.piece();
      const int32_t r = m.Read(p.offset, p.length, rng);
      if (r < 0) {
        step = locator.OnMediaError((m.base + p.offset) % m.block == 0);
      } else {
        for (uint32_t b = p.offset / m.block; b < (p.offset + static_cast<uint32_t>(r) + m.block - 1) / m.block; ++b)
          read_ok[b] = true;
        step = locator.OnRead(static_cast<uint32_t>(r));
      }
      if (step == BadBlockLocator::Step::kRetry) ++retried;
      if (step == BadBlockLocator::Step::kBad) {
        const BadBlockLocator::Piece bad = locator.piece();
        CHECK_EQ(bad.length, m.block);  // located to one logical block
        CHECK(m.bad[bad.offset / m.block]);
        CHECK_EQ(bad.tries, retries);
        seen_bad[bad.offset / m.block] = true;
        step = locator.Skip();
      }
    }
    CHECK(step == BadBlockLocator::Step::kDone && !locator.active());
    uint32_t expected_bad = 0;
    for (uint32_t b = from / m.block; b < blocks; ++b) {
      CHECK_EQ(seen_bad[b], m.bad[b]);  // every bad block found, no good one called bad
      if (!m.bad[b]) CHECK(read_ok[b]);  // every good byte read
      expected_bad += m.bad[b] ? 1 : 0;
    }
    CHECK_EQ(retried, expected_bad * retries);
  }
}

// ---- Stages ------------------------------------------------------------------

void TestZeroCheckStage() {
  std::mt19937_64 rng(g_seed + 2);
  std::vector<uint8_t> buffer(64 * 1024);
  for (int round = 0; round < 400; ++round) {
    const uint32_t block = 1u << (9 + rng() % 6);  // 512 .. 16 KiB
    Slot slot;
    slot.buffer = buffer.data();
    slot.length = 1 + static_cast<uint32_t>(rng() % buffer.size());
    slot.position = (rng() % 64) * 512;
    std::memset(buffer.data(), 0, slot.length);
    for (uint32_t off = 0; off < slot.length; off += 512)
      if (rng() % 3 == 0) buffer[off + rng() % std::min<uint32_t>(512, slot.length - off)] = 1;
    slot.read_done = slot.length;
    ZeroCheckStage stage(block);
    std::vector<Slot*> released;
    stage.OnRead(slot, &released);
    CHECK(released.empty() && !stage.Holds(slot));
    // Runs tile the slot, alternate, and each block (counted from the copy's
    // start) is zero exactly when its run says so.
    uint32_t at = 0;
    for (size_t i = 0; i < slot.runs.size(); ++i) {
      const ZeroRun& run = slot.runs[i];
      CHECK_EQ(run.offset, at);
      CHECK(run.length > 0);
      if (i) CHECK(slot.runs[i - 1].zero != run.zero);
      const bool all_zero = ZeroCheckStage::IsAllZero(buffer.data() + run.offset, run.length);
      if (run.zero) CHECK(all_zero);
      at += run.length;
    }
    CHECK_EQ(at, slot.length);
    for (uint64_t start = slot.position - slot.position % block; start < slot.position + slot.length; start += block) {
      const uint32_t lo = static_cast<uint32_t>(std::max(start, slot.position) - slot.position);
      const uint32_t hi = static_cast<uint32_t>(std::min(start + block, slot.position + slot.length) - slot.position);
      const bool zero = ZeroCheckStage::IsAllZero(buffer.data() + lo, hi - lo);
      for (const ZeroRun& run : slot.runs)
        if (run.offset <= lo && lo < run.offset + run.length) CHECK_EQ(run.zero, zero);
    }
  }
  uint8_t tiny[3] = {0, 0, 0};
  CHECK(ZeroCheckStage::IsAllZero(tiny, 3));
  tiny[2] = 7;
  CHECK(!ZeroCheckStage::IsAllZero(tiny, 3));
}

void TestHashStageOrder() {
  // Slots complete out of order; the digest sees them in start order, and
  // each slot is held until it has been hashed.
  std::mt19937_64 rng(g_seed + 3);
  constexpr int kSlots = 40;
  std::vector<std::vector<uint8_t>> data(kSlots);
  std::vector<Slot> slots(kSlots);
  std::vector<uint8_t> expected;
  for (int i = 0; i < kSlots; ++i) {
    data[i].resize(1 + rng() % 100);
    for (uint8_t& b : data[i]) b = static_cast<uint8_t>(rng());
    expected.insert(expected.end(), data[i].begin(), data[i].end());
    slots[i].sequence = static_cast<uint64_t>(i);
    slots[i].buffer = data[i].data();
    slots[i].length = static_cast<uint32_t>(data[i].size());
  }
  std::vector<uint8_t> digested;
  HashStage stage([&](const uint8_t* p, size_t n) { digested.insert(digested.end(), p, p + n); });
  std::vector<int> order(kSlots);
  for (int i = 0; i < kSlots; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  int released_total = 0;
  for (int i : order) {
    CHECK(stage.Holds(slots[i]));
    std::vector<Slot*> released;
    stage.OnRead(slots[i], &released);
    for (Slot* s : released) CHECK(!stage.Holds(*s));
    released_total += static_cast<int>(released.size());
  }
  CHECK_EQ(released_total, kSlots);
  CHECK(digested == expected);
  CHECK_EQ(stage.hashed_bytes(), expected.size());
}

// ---- Checkpointer ------------------------------------------------------------

// A driver that keeps what it is given; the test completes ops by hand.
class HeldDriver final : public IoDriver {
 public:
  const char* name() const override { return "held"; }
  bool Supports(IoKind) const override { return true; }
  std::string RegisterBuffers(const BufferPool&) override { return "not needed"; }
  std::string RegisterFiles(const std::vector<int>&) override { return "not needed"; }
  void Submit(IoOp* op) override {
    op->queued = true;
    held.push_back(op);
  }
  void Cancel(IoOp*) override {}
  SysError Poll(uint64_t) override { return {}; }
  uint32_t in_flight() const override { return static_cast<uint32_t>(held.size()); }
  uint64_t submit_calls() const override { return 0; }
  void CompleteAll(int32_t result) {
    std::vector<IoOp*> done;
    done.swap(held);
    for (IoOp* op : done) {
      op->result = result;
      DeliverCompletion(*op);
    }
  }
  std::vector<IoOp*> held;
};

class FlushTarget final : public Endpoint {
 public:
  FlushTarget() { caps_.durable_flush = true; }
  void Submit(IoDriver& driver, IoOp& op) override {
    op.finisher = this;
    op.fd = 3;
    driver.Submit(&op);
  }
  std::vector<int> descriptors() const override { return {3}; }
};

void TestCheckpointer() {
  HeldDriver driver;
  FlushTarget a, b;
  std::vector<Endpoint*> targets{&a, &b};
  std::vector<std::vector<ByteRange>> emitted;
  std::vector<uint32_t> failed;
  Checkpointer cp(
      1000, 100, Durability::kFdatasync,
      [&](const std::vector<ByteRange>& finished, const std::vector<ByteRange>&) { emitted.push_back(finished); },
      [&](uint32_t t, const SysError&) { failed.push_back(t); });
  CHECK(cp.enabled());
  cp.Tick(0.0, driver, targets);  // sets the first due time
  cp.AddFinished({0, 10});
  cp.AddFinished({10, 5});
  cp.Tick(0.05, driver, targets);
  CHECK(driver.held.empty());  // not due yet
  cp.Tick(0.11, driver, targets);
  CHECK_EQ(driver.held.size(), 2u);  // one flush per target
  CHECK(driver.held[0]->kind == IoKind::kFdatasync);
  cp.AddFinished({15, 5});  // finished during the round: the next round's
  CHECK(emitted.empty());
  driver.CompleteAll(0);
  REQUIRE(emitted.size() == 1);
  CHECK(emitted[0].size() == 1 && emitted[0][0].offset == 1000 && emitted[0][0].length == 15);  // absolute, merged
  // A flush that fails on one target: the round is not reported (what it
  // covered is not durable there), the failure is handed on.
  cp.Tick(0.25, driver, targets);
  REQUIRE(driver.held.size() == 2);
  IoOp* second = driver.held[1];
  driver.held.pop_back();
  driver.CompleteAll(0);
  second->result = -5;
  DeliverCompletion(*second);
  CHECK_EQ(failed.size(), 1u);
  CHECK_EQ(emitted.size(), 1u);
  // Final: what finished after the last round is reported once it is durable.
  cp.AddFinished({30, 1});
  cp.Final();
  CHECK_EQ(emitted.size(), 2u);
  CHECK_EQ(cp.checkpoints(), 2u);
  // Frozen (a target was dropped): nothing more is reported finished.
  cp.AddFinished({40, 1});
  cp.Freeze();
  cp.AddFinished({50, 1});
  cp.Final();
  CHECK_EQ(emitted.size(), 2u);

  // O_DSYNC writes are durable when they complete: no flush, reported at once.
  std::vector<ByteRange> got;
  Checkpointer dsync(0, 100, Durability::kDsync,
                     [&](const std::vector<ByteRange>& f, const std::vector<ByteRange>&) { got = f; },
                     [](uint32_t, const SysError&) {});
  dsync.Tick(0, driver, targets);
  dsync.AddFinished({0, 1});
  dsync.Tick(1, driver, targets);
  CHECK(driver.held.empty());
  CHECK_EQ(got.size(), 1u);
}


// ---- WriteModeGate -----------------------------------------------------------

// Random writes of both modes on two targets against a model: the two modes
// are never in flight together on one target, a write that was held back is
// woken when the other mode drains, and a copy of one mode never waits.
void TestWriteModeGate() {
  std::mt19937_64 rng(g_seed);
  WriteModeGate gate;
  gate.Reset(2);
  uint32_t in_flight[2][2] = {{0, 0}, {0, 0}};  // [target][direct]
  bool held[2] = {false, false};
  for (int step = 0; step < 20000; ++step) {
    const uint32_t t = static_cast<uint32_t>(rng() % 2);
    const bool direct = t == 1 || rng() % 8 != 0;  // target 1: all O_DIRECT
    const bool complete = rng() % 2 == 0;
    if (complete && in_flight[t][direct] > 0) {
      const bool wake = gate.Finished(t, direct);
      --in_flight[t][direct];
      CHECK_EQ(wake, held[t] && in_flight[t][direct] == 0);
      if (wake) held[t] = false;
    } else if (!complete) {
      const bool may = gate.MayStart(t, direct);
      CHECK_EQ(may, in_flight[t][!direct] == 0);
      if (may) {
        gate.Started(t, direct);
        ++in_flight[t][direct];
      } else {
        held[t] = true;
      }
    }
    CHECK(in_flight[t][0] == 0 || in_flight[t][1] == 0);
  }
  CHECK(!held[1]);
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const char* seed = std::getenv("DEVMOVE_TEST_SEED");
  g_seed = seed && *seed ? std::strtoull(seed, nullptr, 10) : std::random_device{}();
  std::printf("engine_parts_test: seed %llu (DEVMOVE_TEST_SEED=%llu repeats this run)\n",
              static_cast<unsigned long long>(g_seed), static_cast<unsigned long long>(g_seed));
  Run("ranges: Normalize, Subtract, ClipAndRebase against a bitmap model", TestRanges);
  Run("RatePacer never runs ahead of rate x time by more than a buffer", TestRatePacerCap);
  Run("RatePacer: no burst after a stall; rate change and resume rebase", TestRatePacerStall);
  Run("BadBlockLocator finds exactly the bad blocks, with retries", TestBadBlockLocator);
  Run("ZeroCheckStage runs tile the slot at the block granularity", TestZeroCheckStage);
  Run("HashStage digests in start order and holds slots until then", TestHashStageOrder);
  Run("Checkpointer reports ranges only after every flush completed", TestCheckpointer);
  Run("WriteModeGate: O_DIRECT and page-cache writes never at once, the held one woken", TestWriteModeGate);
  std::printf("engine_parts_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
