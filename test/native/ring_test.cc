// Native unit test of the io_uring ring, the buffer pool and the copy engine,
// without Node. Runs for real on this kernel: every io_uring call below goes
// to the kernel, every file is a real temporary file under /tmp.
//
// No framework: each TEST is a function; a test fails when any CHECK in it
// fails. The last line printed is "ring_test: N passed, N failed" and the exit
// status is nonzero when anything failed. Built by CMakeLists.txt (target
// ring_test, registered with CTest), normally with ASan + UBSan.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "buffer_pool.h"
#include "copy_engine.h"
#include "endpoint.h"
#include "harness.h"
#include "hash_pool.h"
#include "io_driver.h"
#include "io_uring_ring.h"
#include "thread_driver.h"
#include "uring_driver.h"
#include "sys_error.h"

using namespace devmove;
using namespace devmove_test;

namespace {

// ---- Temporary files ---------------------------------------------------------

std::string g_tmpdir;
std::vector<std::string> g_tmpfiles;

std::string TempPath(const std::string& name) {
  std::string p = g_tmpdir + "/" + name;
  g_tmpfiles.push_back(p);
  return p;
}

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t x = rng();
    std::memcpy(&v[i], &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(rng());
  return v;
}

bool WriteFile(const std::string& path, const std::vector<uint8_t>& data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = write(fd, data.data() + done, data.size() - done);
    if (w <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  return close(fd) == 0;
}

bool ReadFile(const std::string& path, std::vector<uint8_t>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// A 4096-aligned heap buffer (for O_DIRECT without the pool).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) : size(n) {
    void* p = nullptr;
    if (posix_memalign(&p, 4096, n) == 0) data = static_cast<uint8_t*>(p);
    if (data) std::memset(data, 0, n);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* data = nullptr;
  size_t size;
};

// ---- Ring helpers ------------------------------------------------------------

std::unique_ptr<IoUringRing> MakeRing(uint32_t sq_entries, uint32_t cq_entries = 0, bool sqpoll = false) {
  RingOptions options;
  options.sq_entries = sq_entries;
  options.cq_entries = cq_entries;
  options.sqpoll = sqpoll;
  SysError error;
  std::unique_ptr<IoUringRing> ring = IoUringRing::Create(options, &error);
  if (!ring) {
    std::printf("    IoUringRing::Create failed: errno %d (%s) syscall=%s: %s\n", error.errno_value,
                std::strerror(error.errno_value), error.syscall.c_str(), error.message.c_str());
  }
  return ring;
}

// Submits what is prepared and collects `count` completions; false on a ring
// error or when they do not arrive within 10 s.
bool Reap(IoUringRing& ring, size_t count, std::vector<io_uring_cqe>* out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  out->clear();
  for (;;) {
    io_uring_cqe cqe;
    while (out->size() < count && ring.PopCqe(&cqe)) out->push_back(cqe);
    if (out->size() >= count) return true;
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("    Reap: timed out with %zu of %zu completions\n", out->size(), count);
      return false;
    }
    const int r = ring.SubmitAndWait(1, 500ull * 1000 * 1000);
    if (r < 0 && r != -ETIME && r != -EINTR) {
      std::printf("    Reap: SubmitAndWait returned %d (%s)\n", r, std::strerror(-r));
      return false;
    }
  }
}

// One I/O through the ring, waited for; returns cqe.res (or INT32_MIN when the ring failed).
int32_t OneIo(IoUringRing& ring, uint8_t opcode, int fd, bool fixed_file, void* addr, uint32_t len, uint64_t off,
              int buf_index = -1) {
  io_uring_sqe* sqe = ring.GetSqe();
  if (!sqe) return INT32_MIN;
  sqe->opcode = opcode;
  sqe->fd = fd;
  if (fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
  sqe->addr = reinterpret_cast<uint64_t>(addr);
  sqe->len = len;
  sqe->off = off;
  if (buf_index >= 0) sqe->buf_index = static_cast<uint16_t>(buf_index);
  sqe->user_data = 0x5eed0000u + opcode;
  std::vector<io_uring_cqe> cqes;
  if (!Reap(ring, 1, &cqes)) return INT32_MIN;
  if (cqes[0].user_data != 0x5eed0000u + opcode) {
    std::printf("    OneIo: unexpected user_data %llx\n", static_cast<unsigned long long>(cqes[0].user_data));
    return INT32_MIN;
  }
  return cqes[0].res;
}

// Opens a temp file for O_DIRECT I/O when the filesystem allows it.
int OpenScratch(const std::string& path, bool* direct) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
  *direct = fd >= 0;
  if (fd < 0 && errno == EINVAL) fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  return fd;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// ---- Tests: IoUringRing ------------------------------------------------------

void TestCreateAndProbe() {
  std::unique_ptr<IoUringRing> ring = MakeRing(64);
  REQUIRE(ring != nullptr);
  CHECK(ring->fd() >= 0);
  CHECK_EQ(ring->sq_entries(), 64u);
  CHECK(ring->cq_entries() >= ring->sq_entries());
  CHECK(ring->features() & IORING_FEAT_SINGLE_MMAP);
  CHECK(ring->OpSupported(IORING_OP_NOP));
  CHECK(ring->OpSupported(IORING_OP_READ));
  CHECK(ring->OpSupported(IORING_OP_WRITE));
  CHECK(ring->OpSupported(IORING_OP_READ_FIXED));
  CHECK(ring->OpSupported(IORING_OP_WRITE_FIXED));
  CHECK_EQ(ring->pending_submissions(), 0u);
  char buf[160];
  std::snprintf(buf, sizeof buf, "setup_flags=0x%x features=0x%x sq=%u cq=%u defer_taskrun=%d ext_arg=%d",
                ring->setup_flags(), ring->features(), ring->sq_entries(), ring->cq_entries(),
                (ring->setup_flags() & IORING_SETUP_DEFER_TASKRUN) != 0, (ring->features() & IORING_FEAT_EXT_ARG) != 0);
  Note(buf);

  // Explicit CQ size is honoured; a non-power-of-two SQ size is rounded up.
  std::unique_ptr<IoUringRing> sized = MakeRing(5, 64);
  REQUIRE(sized != nullptr);
  CHECK_EQ(sized->sq_entries(), 8u);
  CHECK_EQ(sized->cq_entries(), 64u);
}

void TestNopRoundTrips() {
  std::unique_ptr<IoUringRing> ring = MakeRing(8);  // cq = 16: both rings wrap every few batches
  REQUIRE(ring != nullptr);
  const uint32_t sq = ring->sq_entries();
  REQUIRE(sq == 8);

  // A full SQ refuses another SQE until the kernel consumes them.
  for (uint32_t i = 0; i < sq; ++i) {
    io_uring_sqe* sqe = ring->GetSqe();
    REQUIRE(sqe != nullptr);
    sqe->opcode = IORING_OP_NOP;
    sqe->user_data = 1000 + i;
  }
  CHECK(ring->GetSqe() == nullptr);
  CHECK_EQ(ring->pending_submissions(), sq);
  CHECK_EQ(ring->SubmitAndWait(sq, 2ull * 1000 * 1000 * 1000), static_cast<int>(sq));
  CHECK_EQ(ring->pending_submissions(), 0u);
  std::set<uint64_t> seen;
  io_uring_cqe cqe;
  while (ring->PopCqe(&cqe)) {
    CHECK_EQ(cqe.res, 0);
    seen.insert(cqe.user_data);
  }
  CHECK_EQ(seen.size(), static_cast<size_t>(sq));
  CHECK(seen.count(1000) == 1 && seen.count(1000 + sq - 1) == 1);
  CHECK(!ring->PopCqe(&cqe));

  // Many more NOPs than the SQ holds, in batches of varying size so head and
  // tail wrap at every position of both rings; every user_data comes back once.
  const uint64_t kTotal = 20000;
  uint64_t next = 0;
  uint64_t completed = 0;
  uint32_t batch_size = 1;
  bool ok = true;
  while (next < kTotal && ok) {
    const uint32_t batch = static_cast<uint32_t>(std::min<uint64_t>(batch_size, kTotal - next));
    batch_size = batch_size % sq + 1;
    std::set<uint64_t> expected;
    for (uint32_t i = 0; i < batch; ++i) {
      io_uring_sqe* sqe = ring->GetSqe();
      if (!sqe) {
        ok = false;
        break;
      }
      sqe->opcode = IORING_OP_NOP;
      sqe->user_data = 0xC0DE000000000000ull | next;
      expected.insert(sqe->user_data);
      ++next;
    }
    if (!ok) break;
    const int r = ring->SubmitAndWait(batch, 2ull * 1000 * 1000 * 1000);
    if (r != static_cast<int>(batch)) {
      std::printf("    SubmitAndWait(%u) returned %d\n", batch, r);
      ok = false;
      break;
    }
    uint32_t got = 0;
    while (ring->PopCqe(&cqe)) {
      ++got;
      if (cqe.res != 0 || expected.erase(cqe.user_data) != 1) {
        std::printf("    unexpected CQE user_data=%llx res=%d\n", static_cast<unsigned long long>(cqe.user_data),
                    cqe.res);
        ok = false;
      }
    }
    if (got != batch || !expected.empty()) {
      std::printf("    batch of %u: %u completions, %zu missing\n", batch, got, expected.size());
      ok = false;
    }
    completed += got;
  }
  CHECK(ok);
  CHECK_EQ(completed, kTotal);
  CHECK_EQ(ring->pending_submissions(), 0u);
}

void TestNopRoundTripsSqpoll() {
  // The SQPOLL variant (CopyPlan::sqpoll): the kernel thread consumes the SQ.
  std::unique_ptr<IoUringRing> ring = MakeRing(8, 0, /*sqpoll=*/true);
  if (!ring) {
    Note("SQPOLL ring not available here; skipped");
    return;
  }
  CHECK(ring->setup_flags() & IORING_SETUP_SQPOLL);
  const uint64_t kTotal = 3000;
  uint64_t completed = 0;
  uint64_t next = 0;
  while (next < kTotal) {
    const uint32_t batch = static_cast<uint32_t>(std::min<uint64_t>(1 + next % ring->sq_entries(), kTotal - next));
    uint32_t prepared = 0;
    for (; prepared < batch; ++prepared) {
      io_uring_sqe* sqe = ring->GetSqe();
      if (!sqe) break;  // the poller has not consumed the previous batch's slots yet
      sqe->opcode = IORING_OP_NOP;
      sqe->user_data = next++;
    }
    std::vector<io_uring_cqe> cqes;
    REQUIRE(Reap(*ring, prepared, &cqes));
    for (const io_uring_cqe& c : cqes) CHECK_EQ(c.res, 0);
    completed += cqes.size();
  }
  CHECK_EQ(completed, kTotal);
}

void TestReadWriteFile() {
  std::unique_ptr<IoUringRing> ring = MakeRing(16);
  REQUIRE(ring != nullptr);
  const std::string path = TempPath("rw.bin");
  bool direct = false;
  const int fd = OpenScratch(path, &direct);
  REQUIRE(fd >= 0);
  Note(std::string("O_DIRECT on ") + g_tmpdir + ": " + (direct ? "yes" : "no (filesystem refuses it)"));

  AlignedBuffer out(3 * 4096), in(3 * 4096);
  REQUIRE(out.data && in.data);
  const std::vector<uint8_t> data = RandomBytes(out.size, 7);
  std::memcpy(out.data, data.data(), data.size());

  CHECK_EQ(OneIo(*ring, IORING_OP_WRITE, fd, false, out.data, 3 * 4096, 4096), 3 * 4096);
  struct stat st {};
  CHECK(fstat(fd, &st) == 0);
  CHECK_EQ(st.st_size, 4 * 4096);

  CHECK_EQ(OneIo(*ring, IORING_OP_READ, fd, false, in.data, 3 * 4096, 4096), 3 * 4096);
  CHECK(std::memcmp(in.data, data.data(), data.size()) == 0);

  // The same bytes through an ordinary descriptor: the write really reached the file.
  std::vector<uint8_t> back;
  CHECK(ReadFile(path, &back));
  CHECK_EQ(back.size(), static_cast<size_t>(4 * 4096));
  if (back.size() == 4 * 4096) {
    CHECK(std::all_of(back.begin(), back.begin() + 4096, [](uint8_t b) { return b == 0; }));
    CHECK(std::memcmp(back.data() + 4096, data.data(), data.size()) == 0);
  }

  // Short read at the end of the file, then 0 at EOF.
  std::memset(in.data, 0, in.size);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, fd, false, in.data, 2 * 4096, 3 * 4096), 4096);
  CHECK(std::memcmp(in.data, data.data() + 2 * 4096, 4096) == 0);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, fd, false, in.data, 4096, 4 * 4096), 0);

  // Errors come back in cqe.res as -errno.
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, 1 << 20, false, in.data, 4096, 0), -EBADF);
  if (direct) {
    // Misaligned O_DIRECT offset.
    CHECK_EQ(OneIo(*ring, IORING_OP_READ, fd, false, in.data, 4096, 1), -EINVAL);
  }
  close(fd);
}

void TestFixedBuffersAndFiles() {
  std::unique_ptr<IoUringRing> ring = MakeRing(16);
  REQUIRE(ring != nullptr);
  const std::string path = TempPath("fixed.bin");
  bool direct = false;
  const int fd = OpenScratch(path, &direct);
  REQUIRE(fd >= 0);

  SysError error;
  std::unique_ptr<BufferPool> pool = BufferPool::Create(4, 16384, &error);
  REQUIRE(pool != nullptr);
  const int reg = ring->RegisterBuffers(pool->iovecs().data(), pool->count());
  if (reg != 0) std::printf("    RegisterBuffers: %s\n", std::strerror(-reg));
  REQUIRE(reg == 0);

  const std::vector<uint8_t> data = RandomBytes(16384, 11);
  std::memcpy(pool->buffer(2), data.data(), data.size());
  CHECK_EQ(OneIo(*ring, IORING_OP_WRITE_FIXED, fd, false, pool->buffer(2), 16384, 0, 2), 16384);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ_FIXED, fd, false, pool->buffer(3), 16384, 0, 3), 16384);
  CHECK(std::memcmp(pool->buffer(3), data.data(), data.size()) == 0);
  // A sub-range of a registered buffer (the engine reads continuations there).
  std::memset(pool->buffer(1), 0, 16384);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ_FIXED, fd, false, pool->buffer(1) + 4096, 8192, 8192, 1), 8192);
  CHECK(std::memcmp(pool->buffer(1) + 4096, data.data() + 8192, 8192) == 0);
  // An address outside the indexed registered buffer is refused.
  CHECK_EQ(OneIo(*ring, IORING_OP_READ_FIXED, fd, false, pool->buffer(1), 4096, 0, 0), -EFAULT);

  // Fixed files, with a sparse (-1) slot as the engine registers them.
  const int fds[2] = {-1, fd};
  const int regf = ring->RegisterFiles(fds, 2);
  if (regf != 0) std::printf("    RegisterFiles: %s\n", std::strerror(-regf));
  REQUIRE(regf == 0);
  std::memset(pool->buffer(0), 0, 16384);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, 1, true, pool->buffer(0), 16384, 0), 16384);
  CHECK(std::memcmp(pool->buffer(0), data.data(), data.size()) == 0);
  std::memset(pool->buffer(0), 0, 16384);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ_FIXED, 1, true, pool->buffer(0), 16384, 0, 0), 16384);
  CHECK(std::memcmp(pool->buffer(0), data.data(), data.size()) == 0);
  // The sparse slot has no file.
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, 0, true, pool->buffer(0), 4096, 0), -EBADF);
  // Out of the table.
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, 2, true, pool->buffer(0), 4096, 0), -EBADF);

  // Registered files keep the file open after close(); the ring's destructor
  // unregisters them (and the buffers) before closing.
  close(fd);
  std::memset(pool->buffer(0), 0, 16384);
  CHECK_EQ(OneIo(*ring, IORING_OP_READ, 1, true, pool->buffer(0), 16384, 0), 16384);
  CHECK(std::memcmp(pool->buffer(0), data.data(), data.size()) == 0);
  ring.reset();
}

void TestSubmitAndWaitTimeout() {
  std::unique_ptr<IoUringRing> ring = MakeRing(8);
  REQUIRE(ring != nullptr);
  if (!(ring->features() & IORING_FEAT_EXT_ARG)) {
    Note("kernel lacks IORING_FEAT_EXT_ARG: SubmitAndWait cannot time out; skipped");
    return;
  }
  // Nothing in flight, one completion requested: the wait ends with -ETIME
  // (io_uring_ring.h: "-ETIME means the timeout passed").
  auto start = std::chrono::steady_clock::now();
  int r = ring->SubmitAndWait(1, 50ull * 1000 * 1000);
  double took = Seconds(start);
  CHECK_EQ(r, -ETIME);
  CHECK(took >= 0.045 && took < 2.0);
  io_uring_cqe cqe;
  CHECK(!ring->PopCqe(&cqe));

  // Nothing requested: returns at once with 0 submitted.
  CHECK_EQ(ring->SubmitAndWait(0, 50ull * 1000 * 1000), 0);

  if (!ring->OpSupported(IORING_OP_TIMEOUT)) {
    Note("IORING_OP_TIMEOUT unsupported; in-flight part skipped");
    return;
  }
  // Something in flight that completes later (a 300 ms IORING_OP_TIMEOUT).
  __kernel_timespec ts{};
  ts.tv_sec = 0;
  ts.tv_nsec = 300ll * 1000 * 1000;
  io_uring_sqe* sqe = ring->GetSqe();
  REQUIRE(sqe != nullptr);
  sqe->opcode = IORING_OP_TIMEOUT;
  sqe->fd = -1;
  sqe->addr = reinterpret_cast<uint64_t>(&ts);
  sqe->len = 1;
  sqe->off = 0;  // pure timer, not a completion count
  sqe->user_data = 77;
  start = std::chrono::steady_clock::now();
  // A call that submits reports what it submitted even when its wait times
  // out (the kernel returns the submitted count over the wait's -ETIME).
  r = ring->SubmitAndWait(1, 20ull * 1000 * 1000);
  CHECK_EQ(r, 1);
  CHECK(!ring->PopCqe(&cqe));
  // Nothing left to submit, the timer still running: -ETIME.
  r = ring->SubmitAndWait(1, 20ull * 1000 * 1000);
  CHECK_EQ(r, -ETIME);
  CHECK(!ring->PopCqe(&cqe));
  // Then the timer fires: 0 submitted, its CQE (res -ETIME from the op itself).
  r = ring->SubmitAndWait(1, 5ull * 1000 * 1000 * 1000);
  CHECK_EQ(r, 0);
  took = Seconds(start);
  CHECK(ring->PopCqe(&cqe));
  CHECK_EQ(cqe.user_data, 77u);
  CHECK_EQ(cqe.res, -ETIME);
  CHECK(took >= 0.25 && took < 5.0);
}

void TestExplainSetupFailure() {
  const std::string eperm = IoUringRing::ExplainSetupFailure(EPERM);
  const std::string enomem = IoUringRing::ExplainSetupFailure(ENOMEM);
  const std::string enosys = IoUringRing::ExplainSetupFailure(ENOSYS);
  Note("EPERM:  " + eperm);
  Note("ENOMEM: " + enomem);
  Note("ENOSYS: " + enosys);
  CHECK(!eperm.empty() && !enomem.empty() && !enosys.empty());

  std::string disabled;
  {
    std::ifstream in("/proc/sys/kernel/io_uring_disabled");
    if (in) std::getline(in, disabled);
  }
  if (disabled == "1" || disabled == "2") {
    CHECK(Contains(eperm, "kernel.io_uring_disabled=" + disabled));
  } else {
    CHECK(Contains(eperm, "EPERM"));
    CHECK(Contains(eperm, "seccomp"));
  }

  CHECK(Contains(enomem, "RLIMIT_MEMLOCK"));
  rlimit rl{};
  CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
  if (rl.rlim_cur != RLIM_INFINITY) {
    CHECK(Contains(enomem, std::to_string(rl.rlim_cur / 1024) + " KiB"));
    CHECK(Contains(enomem, "ulimit -l"));
  }

  CHECK(Contains(enosys, "kernel"));
  CHECK(Contains(enosys, "seccomp"));
  CHECK(Contains(enosys, "5.6"));

  CHECK(Contains(IoUringRing::ExplainSetupFailure(EMFILE), "file descriptor"));
  CHECK(Contains(IoUringRing::ExplainSetupFailure(EINVAL), "kernel too old"));
  CHECK(Contains(IoUringRing::ExplainSetupFailure(EBADF), std::strerror(EBADF)));
}

// ---- Tests: I/O drivers -------------------------------------------------------

// Collects completions, as the engine's slots do.
struct Collector final : IoCompletion {
  void Complete(IoOp& op) override { done.push_back(&op); }
  std::vector<IoOp*> done;
};

std::unique_ptr<IoDriver> MakeDriver(const std::string& which, uint32_t in_flight_max) {
  DriverOptions options;
  options.in_flight_max = in_flight_max;
  SysError error;
  std::unique_ptr<IoDriver> driver;
  if (which == "io_uring") driver = UringDriver::Create(options, &error);
  if (which == "threads") driver = ThreadDriver::Create(options, &error);
  if (!driver) std::printf("    %s driver: %s\n", which.c_str(), error.message.c_str());
  return driver;
}

// Polls until `count` completions arrived or 10 s passed.
bool PollFor(IoDriver& driver, const Collector& c, size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (c.done.size() < count && std::chrono::steady_clock::now() < deadline) {
    const SysError e = driver.Poll(100ull * 1000 * 1000);
    if (e.failed()) return false;
  }
  return c.done.size() >= count;
}

void DriverFifoAndChains(const std::string& which) {
  // Far more operations than the ring holds (in_flight_max 4: an 8-entry SQ,
  // 16-entry CQ): the rest wait in the FIFO, every op completes exactly once,
  // and linked read->write chains are never split (each write sees its read's data).
  std::unique_ptr<IoDriver> driver = MakeDriver(which, 4);
  REQUIRE(driver != nullptr);
  const std::string in_path = TempPath("driver-" + which + ".in");
  const std::string out_path = TempPath("driver-" + which + ".out");
  constexpr uint32_t kOps = 300;
  constexpr uint32_t kBlock = 4096;
  const std::vector<uint8_t> data = RandomBytes(kOps * kBlock, 21);
  REQUIRE(WriteFile(in_path, data));
  const int in = open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(in >= 0 && out >= 0);
  if (which == "io_uring") CHECK(driver->RegisterFiles({in, out}).empty());
  std::vector<uint8_t> buffers(kOps * kBlock);
  std::vector<IoOp> reads(kOps), writes(kOps);
  Collector c;
  for (uint32_t i = 0; i < kOps; ++i) {
    for (IoOp* op : {&reads[i], &writes[i]}) {
      op->kind = op == &reads[i] ? IoKind::kRead : IoKind::kWrite;
      op->fd = op == &reads[i] ? in : out;
      op->offset = static_cast<uint64_t>(i) * kBlock;
      op->data = buffers.data() + op->offset;
      op->length = op->capacity = kBlock;
      op->owner = &c;
      op->slot = i;
    }
    reads[i].link_next = true;
    driver->Submit(&reads[i]);
    driver->Submit(&writes[i]);
  }
  CHECK_EQ(driver->in_flight(), 2 * kOps);
  REQUIRE(PollFor(*driver, c, 2 * kOps));
  CHECK_EQ(c.done.size(), static_cast<size_t>(2 * kOps));
  CHECK_EQ(driver->in_flight(), 0u);
  std::set<IoOp*> unique(c.done.begin(), c.done.end());
  CHECK_EQ(unique.size(), static_cast<size_t>(2 * kOps));
  for (uint32_t i = 0; i < kOps; ++i) {
    CHECK_EQ(reads[i].result, static_cast<int32_t>(kBlock));
    CHECK_EQ(writes[i].result, static_cast<int32_t>(kBlock));
  }
  close(in);
  close(out);
  std::vector<uint8_t> back;
  CHECK(ReadFile(out_path, &back));
  CHECK(back == data);
  Note(which + ": " + std::to_string(driver->submit_calls()) + " submit calls for " + std::to_string(2 * kOps) + " ops");
}

void DriverCancelsAWaitingPipeRead(const std::string& which) {
  // A read on a pipe nobody writes to waits forever; Cancel() ends it.
  std::unique_ptr<IoDriver> driver = MakeDriver(which, 4);
  REQUIRE(driver != nullptr);
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  uint8_t buffer[64];
  Collector c;
  IoOp op;
  op.kind = IoKind::kRead;
  op.fd = fds[0];
  op.positioned = false;
  op.may_block = true;
  op.data = buffer;
  op.length = op.capacity = sizeof buffer;
  op.owner = &c;
  driver->Submit(&op);
  CHECK(driver->Poll(50ull * 1000 * 1000).errno_value == 0);
  CHECK(c.done.empty());  // still waiting for a writer
  const auto start = std::chrono::steady_clock::now();
  driver->Cancel(&op);
  REQUIRE(PollFor(*driver, c, 1));
  CHECK_EQ(op.result, -ECANCELED);
  CHECK(Seconds(start) < 2.0);
  // A pipe with data: the read completes with it.
  c.done.clear();
  CHECK_EQ(write(fds[1], "hello", 5), 5);
  driver->Submit(&op);
  REQUIRE(PollFor(*driver, c, 1));
  CHECK_EQ(op.result, 5);
  CHECK(std::memcmp(buffer, "hello", 5) == 0);
  close(fds[0]);
  close(fds[1]);
}

void TestUringDriver() {
  DriverFifoAndChains("io_uring");
  DriverCancelsAWaitingPipeRead("io_uring");
}

void TestThreadDriver() {
  DriverFifoAndChains("threads");
  DriverCancelsAWaitingPipeRead("threads");
  // A chain whose read comes up short (end of file) cancels its write, as IOSQE_IO_LINK does.
  std::unique_ptr<IoDriver> driver = MakeDriver("threads", 2);
  REQUIRE(driver != nullptr);
  const std::string path = TempPath("threads-short.in");
  REQUIRE(WriteFile(path, RandomBytes(100, 3)));
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  uint8_t buffer[4096];
  Collector c;
  IoOp read, write;
  for (IoOp* op : {&read, &write}) {
    op->fd = fd;
    op->data = buffer;
    op->length = op->capacity = sizeof buffer;
    op->offset = op == &read ? 0 : 8192;
    op->kind = op == &read ? IoKind::kRead : IoKind::kWrite;
    op->owner = &c;
  }
  read.link_next = true;
  driver->Submit(&read);
  driver->Submit(&write);
  REQUIRE(PollFor(*driver, c, 2));
  CHECK_EQ(read.result, 100);
  CHECK_EQ(write.result, -ECANCELED);
  struct stat st {};
  CHECK(fstat(fd, &st) == 0 && st.st_size == 100);  // the write never ran
  close(fd);
}

// ---- Tests: BufferPool -------------------------------------------------------

void CheckPool(uint32_t count, uint32_t bytes) {
  SysError error;
  std::unique_ptr<BufferPool> pool = BufferPool::Create(count, bytes, &error);
  REQUIRE(pool != nullptr);
  CHECK_EQ(pool->count(), count);
  CHECK_EQ(pool->buffer_bytes(), bytes);
  CHECK_EQ(pool->iovecs().size(), static_cast<size_t>(count));
  std::vector<uintptr_t> starts;
  for (uint32_t i = 0; i < count; ++i) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(pool->buffer(i));
    CHECK_EQ(p % BufferPool::kAlignment, 0u);
    CHECK(pool->iovecs()[i].iov_base == pool->buffer(i));
    CHECK_EQ(pool->iovecs()[i].iov_len, static_cast<size_t>(bytes));
    starts.push_back(p);
    // Every byte of every buffer is usable.
    std::memset(pool->buffer(i), static_cast<int>(i + 1), bytes);
  }
  std::sort(starts.begin(), starts.end());
  CHECK(std::adjacent_find(starts.begin(), starts.end()) == starts.end());  // distinct
  for (size_t i = 1; i < starts.size(); ++i) CHECK(starts[i] - starts[i - 1] >= bytes);  // disjoint
  for (uint32_t i = 0; i < count; ++i) {
    CHECK_EQ(pool->buffer(i)[0], static_cast<uint8_t>(i + 1));
    CHECK_EQ(pool->buffer(i)[bytes - 1], static_cast<uint8_t>(i + 1));
  }
}

void TestBufferPool() {
  CheckPool(8, 512 * 1024);
  CheckPool(3, 1);
  CheckPool(5, 4096 * 3 + 1);
  CheckPool(1, 4095);

  SysError error;
  std::unique_ptr<BufferPool> too_big = BufferPool::Create(1024, 2u * 1024 * 1024, &error);  // 2 GiB
  CHECK(too_big == nullptr);
  CHECK_EQ(error.errno_value, EINVAL);
  CHECK(error.syscall == "mmap");
  CHECK(Contains(error.message, "1 GiB"));
}

// ---- Tests: CopyEngine -------------------------------------------------------

struct CopyResult {
  SysError error;
  CopyReport report;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
};

CopyPlan BasicPlan(const std::string& source, const std::string& target) {
  CopyPlan plan;
  plan.source.path = source;
  TargetPlan t;
  t.open.path = target;
  t.open.for_write = true;
  t.open.create = true;  // a new file: nothing to truncate
  plan.targets.push_back(t);
  return plan;
}

CopyResult RunCopy(CopyPlan plan, bool cancel_first = false) {
  CopyResult result;
  CopyEngine engine(std::move(plan));
  if (cancel_first) engine.Cancel();
  result.error = engine.Run([&](const ProgressInfo& p) { result.progress.emplace_back(p.bytes_done, p.bytes_total); },
                            &result.report);
  if (result.error.failed()) {
    std::printf("    copy failed: errno %d (%s) syscall=%s path=%s offset=%lld: %s\n", result.error.errno_value,
                std::strerror(result.error.errno_value), result.error.syscall.c_str(), result.error.path.c_str(),
                static_cast<long long>(result.error.offset), result.error.message.c_str());
  }
  return result;
}

std::string Describe(const CopyResult& r) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "bytes=%llu/%llu reads=%llu writes=%llu buffered_ios=%llu short=%llu fixed_buffers=%d fixed_files=%d "
                "direct(src=%d dst=%d)",
                static_cast<unsigned long long>(r.report.bytes_copied),
                static_cast<unsigned long long>(r.report.bytes_total),
                static_cast<unsigned long long>(r.report.reads), static_cast<unsigned long long>(r.report.writes),
                static_cast<unsigned long long>(r.report.buffered_ios),
                static_cast<unsigned long long>(r.report.short_transfers), r.report.fixed_buffers,
                r.report.fixed_files, r.report.source.direct,
                r.report.targets.empty() ? -1 : static_cast<int>(r.report.targets[0].direct));
  return buf;
}

// Copies `length` random bytes source → target(s) with `tweak` applied to the
// default plan; checks every target byte for byte.
void CopyAndCompare(const char* label, size_t length, const std::function<void(CopyPlan&)>& tweak = {},
                    uint32_t targets = 1) {
  const std::string source = TempPath(std::string(label) + ".src");
  const std::vector<uint8_t> data = RandomBytes(length, 1000 + length);
  REQUIRE(WriteFile(source, data));
  std::vector<std::string> target_paths;
  CopyPlan plan = BasicPlan(source, TempPath(std::string(label) + ".dst0"));
  target_paths.push_back(plan.targets[0].open.path);
  for (uint32_t t = 1; t < targets; ++t) {
    TargetPlan extra = plan.targets[0];
    extra.open.path = TempPath(std::string(label) + ".dst" + std::to_string(t));
    target_paths.push_back(extra.open.path);
    plan.targets.push_back(extra);
  }
  if (tweak) tweak(plan);

  const CopyResult r = RunCopy(plan);
  Note(std::string(label) + " (" + std::to_string(length) + " bytes): " + Describe(r));
  REQUIRE(!r.error.failed());
  CHECK(!r.report.cancelled);
  CHECK_EQ(r.report.bytes_total, static_cast<uint64_t>(length));
  CHECK_EQ(r.report.bytes_copied, static_cast<uint64_t>(length));
  CHECK_EQ(r.report.targets.size(), static_cast<size_t>(targets));
  CHECK(r.report.durability == "fdatasync");
  CopyPlan probe = BasicPlan("", "");  // what the tweak asks for
  if (tweak) tweak(probe);
  CHECK(r.report.io_engine == (probe.io_engine == IoEngineChoice::kThreads ? "threads" : "io_uring"));
  // Progress: first (0, total), last (total, total), never decreasing.
  REQUIRE(!r.progress.empty());
  CHECK_EQ(r.progress.front().first, 0u);
  CHECK_EQ(r.progress.back().first, static_cast<uint64_t>(length));
  for (size_t i = 0; i < r.progress.size(); ++i) {
    CHECK_EQ(r.progress[i].second, static_cast<uint64_t>(length));
    if (i) CHECK(r.progress[i].first >= r.progress[i - 1].first);
  }
  for (const std::string& path : target_paths) {
    std::vector<uint8_t> back;
    CHECK(ReadFile(path, &back));
    CHECK_EQ(back.size(), data.size());
    CHECK(back == data);
  }
  for (const FileReport& f : r.report.targets) {
    CHECK_EQ(f.size_bytes, static_cast<uint64_t>(length));
    CHECK(f.created);
    CHECK(f.kind == "file");
  }
}

void TestCopyLengths() {
  // Length 0 (empty source): what the engine does is recorded, not changed:
  // it succeeds, copies nothing, creates an empty target and makes it durable.
  CopyAndCompare("len0", 0);
  CopyAndCompare("len1", 1);
  CopyAndCompare("len4095", 4095);
  CopyAndCompare("len512k1", 512 * 1024 + 1);
  CopyAndCompare("len3m", 3 * 1024 * 1024);
}

void TestCopyVariants() {
  const size_t kLen = 3 * 1024 * 1024 + 777;
  CopyAndCompare("nofixed", kLen, [](CopyPlan& p) {
    p.fixed_buffers = false;
    p.fixed_files = false;
  });
  CopyAndCompare("fixedbuf-only", kLen, [](CopyPlan& p) { p.fixed_files = false; });
  CopyAndCompare("fixedfiles-only", kLen, [](CopyPlan& p) { p.fixed_buffers = false; });
  CopyAndCompare("buffered", kLen, [](CopyPlan& p) {
    p.source.direct = DirectMode::kNever;
    p.targets[0].open.direct = DirectMode::kNever;
  });
  // Odd block size, shallow queue: every I/O unaligned, the buffered descriptors.
  CopyAndCompare("oddblock", kLen, [](CopyPlan& p) {
    p.block_bytes = 3 * 4096 + 7;
    p.queue_depth = 3;
  });
  CopyAndCompare("depth1", 1024 * 1024 + 5, [](CopyPlan& p) {
    p.block_bytes = 64 * 1024;
    p.queue_depth = 1;
  });
  CopyAndCompare("deep", kLen, [](CopyPlan& p) {
    p.block_bytes = 4096;
    p.queue_depth = 256;
  });
  CopyAndCompare("three-targets", kLen, {}, 3);
  CopyAndCompare("sqpoll", kLen, [](CopyPlan& p) { p.sqpoll = true; });
  // Ablation modes: linked read→write chains, one io_uring_enter per request.
  CopyAndCompare("linked", kLen, [](CopyPlan& p) { p.link_read_write = true; });
  CopyAndCompare("linked-deep", kLen, [](CopyPlan& p) {
    p.link_read_write = true;
    p.block_bytes = 4096;
    p.queue_depth = CopyPlan::kQueueDepthMax;
  });
  CopyAndCompare("linked-sqpoll", kLen, [](CopyPlan& p) {
    p.link_read_write = true;
    p.sqpoll = true;
    p.block_bytes = 4096;
    p.queue_depth = 8;
  });
  CopyAndCompare("unbatched", kLen, [](CopyPlan& p) { p.batch_submissions = false; });
}

void TestCopyOnThreads() {
  // The same copies through the threads I/O driver (where io_uring is forbidden).
  const auto threads = [](CopyPlan& p) { p.io_engine = IoEngineChoice::kThreads; };
  const size_t kLen = 3 * 1024 * 1024 + 777;
  CopyAndCompare("threads-len0", 0, threads);
  CopyAndCompare("threads-len4095", 4095, threads);
  CopyAndCompare("threads", kLen, threads);
  CopyAndCompare("threads-unlinked", kLen, [&](CopyPlan& p) {
    threads(p);
    p.link_read_write = false;
  });
  CopyAndCompare("threads-oddblock", kLen, [&](CopyPlan& p) {
    threads(p);
    p.block_bytes = 3 * 4096 + 7;
    p.queue_depth = 3;
  });
  CopyAndCompare("threads-deep-fanout", kLen, [&](CopyPlan& p) {
    threads(p);
    p.block_bytes = 4096;
    p.queue_depth = 256;
  }, 3);
  CopyAndCompare("threads-buffered", kLen, [&](CopyPlan& p) {
    threads(p);
    p.source.direct = DirectMode::kNever;
  });
}

void TestCopyWideFanOut() {
  // The plan limits allow kQueueDepthMax (1024) buffers × kTargetsMax (64)
  // targets: far more I/Os in flight than one SQ holds (4096 entries at most).
  const auto wide = [](CopyPlan& p) {
    p.block_bytes = 4096;
    p.queue_depth = CopyPlan::kQueueDepthMax;
  };
  CopyAndCompare("fanout5", 4 * 1024 * 1024 + 4096 * 3 + 1, wide, 5);
  CopyAndCompare("fanout5-sqpoll", 4 * 1024 * 1024 + 17, [&](CopyPlan& p) {
    wide(p);
    p.sqpoll = true;
  }, 5);
  // The extreme: 1024 buffers × 64 targets = 65536 I/Os in flight.
  CopyAndCompare("fanout64", 512 * 1024 + 1, [](CopyPlan& p) {
    p.block_bytes = 512;
    p.queue_depth = CopyPlan::kQueueDepthMax;
  }, CopyPlan::kTargetsMax);
}


void TestCopyExtentsAndCheckpoints() {
  // Only the planned extents are copied; checkpoints report exactly them
  // (absolute source offsets), merged, after they were made durable.
  const size_t kLen = 4 * 1024 * 1024;
  const std::string source = TempPath("extents.src");
  const std::vector<uint8_t> data = RandomBytes(kLen, 77);
  REQUIRE(WriteFile(source, data));
  CopyPlan plan = BasicPlan(source, TempPath("extents.dst"));
  plan.source_offset_bytes = 4096;
  plan.targets[0].offset_bytes = 4096;
  plan.has_extents = true;
  plan.extents = {{1 * 1024 * 1024, 300 * 1024}, {0, 8192}, {3 * 1024 * 1024, 8 * 1024 * 1024}};  // last one clipped
  plan.checkpoint_interval_ms = 100;
  plan.block_bytes = 64 * 1024;
  std::vector<ByteRange> finished;
  CopyEngine engine(plan);
  CopyReport report;
  const SysError error = engine.Run({}, &report, [&](const std::vector<ByteRange>& f, const std::vector<ByteRange>& bad) {
    CHECK(bad.empty());
    finished.insert(finished.end(), f.begin(), f.end());
  });
  REQUIRE(!error.failed());
  const uint64_t expected = (8192 - 4096) + 300 * 1024 + (kLen - 3 * 1024 * 1024);
  CHECK_EQ(report.bytes_total, expected);
  CHECK_EQ(report.bytes_copied, expected);
  uint64_t sum = 0;
  for (const ByteRange& r : finished) sum += r.length;
  CHECK_EQ(sum, expected);
  std::vector<uint8_t> back;
  REQUIRE(ReadFile(plan.targets[0].open.path, &back));
  REQUIRE(back.size() == kLen);
  auto same = [&](size_t from, size_t to) { return std::memcmp(back.data() + from, data.data() + from, to - from) == 0; };
  auto zero = [&](size_t from, size_t to) { return std::all_of(back.begin() + from, back.begin() + to, [](uint8_t b) { return b == 0; }); };
  CHECK(zero(0, 4096));
  CHECK(same(4096, 8192));
  CHECK(zero(8192, 1024 * 1024));
  CHECK(same(1024 * 1024, 1024 * 1024 + 300 * 1024));
  CHECK(zero(1024 * 1024 + 300 * 1024, 3 * 1024 * 1024));
  CHECK(same(3 * 1024 * 1024, kLen));
}

void TestCopyZeroBlocks() {
  // A source that is mostly zeros: 'sparse' writes only the data blocks and
  // still gives the target its full size; 'write' counts nothing.
  const size_t kLen = 2 * 1024 * 1024 + 64 * 1024;
  std::vector<uint8_t> data(kLen, 0);
  const std::vector<uint8_t> noise = RandomBytes(64 * 1024, 5);
  std::copy(noise.begin(), noise.end(), data.begin() + 1024 * 1024);
  const std::string source = TempPath("zeros.src");
  REQUIRE(WriteFile(source, data));
  for (ZeroMode mode : {ZeroMode::kSparse, ZeroMode::kSkip, ZeroMode::kDiscard, ZeroMode::kWrite}) {
    CopyPlan plan = BasicPlan(source, TempPath("zeros.dst" + std::to_string(static_cast<int>(mode))));
    plan.zero_mode = mode;
    plan.block_bytes = 64 * 1024;
    const CopyResult r = RunCopy(plan);
    REQUIRE(!r.error.failed());
    std::vector<uint8_t> back;
    REQUIRE(ReadFile(plan.targets[0].open.path, &back));
    CHECK(back == data);
    if (mode == ZeroMode::kWrite) {
      CHECK_EQ(r.report.zero_bytes, 0u);
      CHECK_EQ(r.report.writes, static_cast<uint64_t>(kLen / (64 * 1024)));
    } else {
      CHECK_EQ(r.report.zero_bytes, static_cast<uint64_t>(kLen - 64 * 1024));
      CHECK_EQ(r.report.writes, 1u);
    }
  }
}

void TestCopyHashWithoutHostOpenSsl() {
  // The standalone test has no Node: the digest cannot be computed, and the
  // copy says so before opening anything for writing... after the source.
  CopyPlan plan = BasicPlan(TempPath("zeros.src"), TempPath("hash.dst"));
  plan.hash_algorithm = "sha256";
  const CopyResult r = RunCopy(plan);
  CHECK(r.error.failed());
  CHECK(r.error.syscall == "hash");
  CHECK(Contains(r.error.message, "OpenSSL"));
  struct stat st {};
  CHECK(stat(plan.targets[0].open.path.c_str(), &st) != 0);  // the refused copy left no new file
}

// Threads of this process named as the hash pool names its workers.
uint32_t HashPoolThreads() {
  uint32_t n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == HashPool::kThreadName) ++n;
  }
  closedir(dir);
  return n;
}

void TestCopyHashAndVerifyShareOnePool() {
  // --hash and verify with one read both hash on workers: one pool for the
  // two, as many workers as one pool has (counted while the copy runs, on
  // both I/O drivers), and both digests still right.
  const size_t kLen = 6 * 1024 * 1024 + 333;
  const std::string source = TempPath("one-pool.src");
  REQUIRE(WriteFile(source, RandomBytes(kLen, 4242)));
  const uint32_t workers = std::min(HashPool::UsableCpus(), HashPool::kThreadsMax);
  CHECK_EQ(HashPoolThreads(), 0u);
  for (IoEngineChoice engine : {IoEngineChoice::kIoUring, IoEngineChoice::kThreads}) {
    CopyPlan plan = BasicPlan(source, TempPath(std::string("one-pool.dst") + (engine == IoEngineChoice::kThreads ? "-threads" : "")));
    plan.io_engine = engine;
    plan.hash_algorithm = "blake3";
    plan.verify = true;
    plan.block_bytes = 64 * 1024;
    plan.progress_interval_ms = 0;  // a progress call every turn of the loop: the threads are counted there
    uint32_t most = 0;
    uint32_t calls = 0;
    CopyEngine copy(plan);
    CopyReport report;
    const SysError error = copy.Run([&](const ProgressInfo&) {
      most = std::max(most, HashPoolThreads());
      ++calls;
    }, &report);
    REQUIRE(!error.failed());
    CHECK(calls > 0);
    CHECK_EQ(most, workers);
    CHECK_EQ(report.hash_threads, workers);
    CHECK(report.verify.done && report.verify.mode == "digest");
    CHECK_EQ(report.verify.bytes_compared, uint64_t{kLen});
    CHECK_EQ(HashPoolThreads(), 0u);  // the pool is gone with the copy
  }
}

void TestCopyOffsets() {
  // source offset + length, target offset (the dd skip=/count=/seek= paths).
  const size_t kSrc = 2 * 1024 * 1024 + 100;
  const std::vector<uint8_t> data = RandomBytes(kSrc, 99);
  const std::string source = TempPath("offsets.src");
  REQUIRE(WriteFile(source, data));
  const std::string target = TempPath("offsets.dst");
  CopyPlan plan = BasicPlan(source, target);
  plan.source_offset_bytes = 8192;
  plan.has_length = true;
  plan.length_bytes = 1024 * 1024 + 3;
  plan.targets[0].offset_bytes = 4096;
  const CopyResult r = RunCopy(plan);
  REQUIRE(!r.error.failed());
  CHECK_EQ(r.report.bytes_copied, plan.length_bytes);
  std::vector<uint8_t> back;
  CHECK(ReadFile(target, &back));
  REQUIRE(back.size() == 4096 + plan.length_bytes);
  CHECK(std::all_of(back.begin(), back.begin() + 4096, [](uint8_t b) { return b == 0; }));
  CHECK(std::equal(back.begin() + 4096, back.end(), data.begin() + 8192));

  // length_is_max: stops at the source's end instead of failing.
  CopyPlan capped = BasicPlan(source, TempPath("offsets-capped.dst"));
  capped.source_offset_bytes = kSrc - 10;
  capped.has_length = true;
  capped.length_bytes = 1000;
  capped.length_is_max = true;
  const CopyResult c = RunCopy(capped);
  CHECK(!c.error.failed());
  CHECK_EQ(c.report.bytes_copied, 10u);

  // Without it, a length past the end is EINVAL before any I/O.
  CopyPlan past = capped;
  past.length_is_max = false;
  past.targets[0].open.path = TempPath("offsets-past.dst");
  CopyEngine engine(past);
  CopyReport report;
  const SysError e = engine.Run({}, &report);
  CHECK_EQ(e.errno_value, EINVAL);
  CHECK(e.syscall == "read");
}

void TestCopySourceMissing() {
  const std::string missing = g_tmpdir + "/does-not-exist.img";
  const std::string target = TempPath("missing.dst");
  CopyEngine engine(BasicPlan(missing, target));
  CopyReport report;
  const SysError e = engine.Run({}, &report);
  CHECK_EQ(e.errno_value, ENOENT);
  CHECK(e.syscall == "open");
  CHECK(e.path == missing);
  CHECK_EQ(report.bytes_copied, 0u);
  CHECK(report.source.path.empty());  // the source never opened
  CHECK(access(target.c_str(), F_OK) != 0);  // nothing created before the source opened
}

void TestCopyCancelBeforeRun() {
  const std::string source = TempPath("cancel.src");
  REQUIRE(WriteFile(source, RandomBytes(1024 * 1024, 5)));
  const CopyResult r = RunCopy(BasicPlan(source, TempPath("cancel.dst")), /*cancel_first=*/true);
  CHECK_EQ(r.error.errno_value, ECANCELED);
  CHECK(r.error.syscall == "copy");
  CHECK(r.report.cancelled);
  CHECK_EQ(r.report.bytes_copied, 0u);
  CHECK_EQ(r.report.reads, 0u);
}

// Pages of [p, p + bytes) resident in memory (mincore).
size_t ResidentPages(const uint8_t* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((bytes + page - 1) / page);
  const bool ok = mincore(const_cast<uint8_t*>(p), bytes, v.data()) == 0;
  CHECK(ok);
  if (!ok) return SIZE_MAX;
  return static_cast<size_t>(std::count_if(v.begin(), v.end(), [](unsigned char c) { return (c & 1) != 0; }));
}

void TestBufferPoolGrow() {
  // Address space for 8 buffers, memory for the 2 usable ones; Grow(5) faults in 3 more, no others.
  const uint32_t bytes = 64 * 1024;
  SysError error;
  std::unique_ptr<BufferPool> pool = BufferPool::Create(2, 8, bytes, &error);
  REQUIRE(pool != nullptr);
  CHECK_EQ(pool->count(), 2u);
  CHECK_EQ(pool->capacity(), 8u);
  CHECK_EQ(pool->iovecs().size(), 8u);
  const size_t per = bytes / static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto resident = [&](uint32_t i) { return ResidentPages(static_cast<const uint8_t*>(pool->iovecs()[i].iov_base), bytes); };
  for (uint32_t i = 0; i < 8; ++i) CHECK_EQ(resident(i), i < 2 ? per : 0u);
  pool->Grow(5);
  CHECK_EQ(pool->count(), 5u);
  for (uint32_t i = 0; i < 8; ++i) CHECK_EQ(resident(i), i < 5 ? per : 0u);
  for (uint32_t i = 0; i < 5; ++i) CHECK_EQ(reinterpret_cast<uintptr_t>(pool->buffer(i)) % BufferPool::kAlignment, 0u);
  pool->Grow(3);  // never shrinks
  CHECK_EQ(pool->count(), 5u);
  // The reservation counts against the 1 GiB limit like buffers in use.
  CHECK(BufferPool::Create(1, 1024, 2u * 1024 * 1024, &error) == nullptr);
  CHECK_EQ(error.errno_value, EINVAL);
}

void TestCopyQueueDepthGrows() {
  // queue_depth 2 that may grow to 8: SetQueueDepth(6) before the copy, and the engine's ring has 6.
  const std::string source = TempPath("grow.src");
  const std::vector<uint8_t> data = RandomBytes(4 * 1024 * 1024, 9);
  REQUIRE(WriteFile(source, data));
  for (const uint32_t asked : {0u, 6u, 100u}) {
    CopyPlan plan = BasicPlan(source, TempPath("grow.dst"));
    plan.block_bytes = 256 * 1024;
    plan.queue_depth = 2;
    plan.queue_depth_max = 8;
    CopyEngine engine(std::move(plan));
    if (asked > 0) engine.SetQueueDepth(asked);
    CopyReport report;
    const SysError e = engine.Run({}, &report);
    REQUIRE(!e.failed());
    CHECK_EQ(report.queue_depth, asked == 0 ? 2u : std::min(asked, 8u));
    CHECK_EQ(report.bytes_copied, data.size());
    std::vector<uint8_t> back;
    CHECK(ReadFile(TempPath("grow.dst"), &back));
    CHECK(back == data);
  }
}

void TestCopyTargetIsDirectory() {
  const std::string source = TempPath("dir.src");
  REQUIRE(WriteFile(source, RandomBytes(4096, 6)));
  CopyEngine engine(BasicPlan(source, g_tmpdir));
  CopyReport report;
  const SysError e = engine.Run({}, &report);
  // Opening a directory O_WRONLY fails in open(2) itself.
  CHECK_EQ(e.errno_value, EISDIR);
  CHECK(e.syscall == "open");
}


void CopyThroughFifo(IoEngineChoice engine) {
  // A FIFO as the source (a writer thread) and as the target (a reader
  // thread): read in order, buffers filled from short pipe reads, no known size.
  const std::string tag = engine == IoEngineChoice::kThreads ? "threads" : "io_uring";
  const std::string fifo = TempPath("pipe-" + tag);
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const std::vector<uint8_t> data = RandomBytes(3 * 1024 * 1024 + 99, 41);
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    for (size_t done = 0; fd >= 0 && done < data.size();) {
      const ssize_t n = write(fd, data.data() + done, std::min<size_t>(10000, data.size() - done));
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    if (fd >= 0) close(fd);
  });
  CopyPlan in = BasicPlan(fifo, TempPath("pipe-" + tag + ".out"));
  in.io_engine = engine;
  const CopyResult r = RunCopy(in);
  writer.join();
  REQUIRE(!r.error.failed());
  CHECK(r.report.source.kind == "pipe" && r.report.source.sequential && !r.report.source.size_known);
  CHECK_EQ(r.report.bytes_copied, static_cast<uint64_t>(data.size()));
  std::vector<uint8_t> back;
  CHECK(ReadFile(in.targets[0].open.path, &back));
  CHECK(back == data);

  std::vector<uint8_t> received;
  std::thread reader([&] {
    const int fd = open(fifo.c_str(), O_RDONLY | O_CLOEXEC);
    uint8_t chunk[8192];
    for (ssize_t n; fd >= 0 && (n = read(fd, chunk, sizeof chunk)) > 0;) received.insert(received.end(), chunk, chunk + n);
    if (fd >= 0) close(fd);
  });
  CopyPlan out = BasicPlan(in.targets[0].open.path, fifo);
  out.io_engine = engine;
  out.block_bytes = 64 * 1024;
  const CopyResult w = RunCopy(out);
  reader.join();
  REQUIRE(!w.error.failed());
  CHECK(w.report.targets[0].kind == "pipe");
  CHECK(w.report.durability == "none (the target is a stream)");
  CHECK(received == data);
}

void TestCopyPipes() {
  CopyThroughFifo(IoEngineChoice::kIoUring);
  CopyThroughFifo(IoEngineChoice::kThreads);
  // Cancel ends the wait for a writer that never comes.
  const std::string fifo = TempPath("pipe-nobody");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  CopyEngine engine(BasicPlan(fifo, TempPath("pipe-nobody.out")));
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    engine.Cancel();
  });
  CopyReport report;
  const auto start = std::chrono::steady_clock::now();
  const SysError e = engine.Run({}, &report);
  canceller.join();
  CHECK_EQ(e.errno_value, ECANCELED);
  CHECK(report.cancelled);
  CHECK(Seconds(start) < 5.0);
  // What a stream cannot do is refused.
  CopyPlan verify = BasicPlan(fifo, TempPath("pipe-verify.out"));
  verify.verify = true;
  std::thread opener([&] {
    const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
  });
  const CopyResult v = RunCopy(verify);
  opener.join();
  CHECK_EQ(v.error.errno_value, EINVAL);
  CHECK(v.error.syscall == "verify");
}


void TestCopyTruncateAtOpen() {
  // dd's O_TRUNC: a longer existing target is cut to 0 by opening it again
  // with O_TRUNC after every check, then written: same file, new content.
  const std::string source = TempPath("trunc.src");
  const std::vector<uint8_t> data = RandomBytes(100000, 8);
  REQUIRE(WriteFile(source, data));
  const std::string target = TempPath("trunc.dst");
  REQUIRE(WriteFile(target, RandomBytes(300000, 9)));
  struct stat before {};
  REQUIRE(stat(target.c_str(), &before) == 0);
  CopyPlan plan = BasicPlan(source, target);
  plan.targets[0].truncate_to = 0;
  plan.targets[0].truncate_at_open = true;
  const CopyResult r = RunCopy(plan);
  REQUIRE(!r.error.failed());
  std::vector<uint8_t> back;
  CHECK(ReadFile(target, &back));
  CHECK(back == data);
  struct stat after {};
  CHECK(stat(target.c_str(), &after) == 0 && after.st_ino == before.st_ino);
  CHECK(!r.report.targets[0].created);
}

void Cleanup() {
  for (const std::string& f : g_tmpfiles) unlink(f.c_str());
  if (!g_tmpdir.empty() && rmdir(g_tmpdir.c_str()) != 0) {
    std::printf("note: could not remove %s: %s\n", g_tmpdir.c_str(), std::strerror(errno));
  }
}

// A failed assert() or a sanitizer report (abort_on_error=1) ends the process
// with SIGABRT: remove the temp files on the way out, then die as before.
void OnAbort(int sig) {
  for (const std::string& f : g_tmpfiles) unlink(f.c_str());
  if (!g_tmpdir.empty()) rmdir(g_tmpdir.c_str());
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const char* base = std::getenv("DEVMOVE_TEST_TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/devmove-ring-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    std::printf("ring_test: cannot create a temp dir from %s: %s\n", tmpl.c_str(), std::strerror(errno));
    std::printf("ring_test: 0 passed, 1 failed\n");
    return 1;
  }
  g_tmpdir = buf.data();
  std::printf("ring_test: temp dir %s\n", g_tmpdir.c_str());
  signal(SIGABRT, OnAbort);

  Run("IoUringRing::Create + probe", TestCreateAndProbe);
  Run("NOP round trips wrap the rings", TestNopRoundTrips);
  Run("NOP round trips with SQPOLL", TestNopRoundTripsSqpoll);
  Run("READ/WRITE on a temp file", TestReadWriteFile);
  Run("RegisterBuffers + READ_FIXED, RegisterFiles + IOSQE_FIXED_FILE", TestFixedBuffersAndFiles);
  Run("SubmitAndWait timeout contract", TestSubmitAndWaitTimeout);
  Run("ExplainSetupFailure", TestExplainSetupFailure);
  Run("BufferPool alignment", TestBufferPool);
  Run("BufferPool grows into its reservation", TestBufferPoolGrow);
  Run("CopyEngine SetQueueDepth grows the ring to queue_depth_max", TestCopyQueueDepthGrows);
  Run("UringDriver: FIFO beyond the ring, chains never split, cancel of a waiting pipe read", TestUringDriver);
  Run("ThreadDriver: the same, and a short read cancels its linked write", TestThreadDriver);
  Run("CopyEngine lengths 0, 1, 4095, 512 KiB+1, 3 MiB", TestCopyLengths);
  Run("CopyEngine plan variants", TestCopyVariants);
  Run("CopyEngine queue depth 1024 x 5 and x 64 targets", TestCopyWideFanOut);
  Run("CopyEngine on the threads I/O driver", TestCopyOnThreads);
  Run("CopyEngine through FIFOs, both drivers; cancel while waiting; verify refused", TestCopyPipes);
  Run("CopyEngine offsets and lengths", TestCopyOffsets);
  Run("CopyEngine truncation at open (O_TRUNC, as dd)", TestCopyTruncateAtOpen);
  Run("CopyEngine extents and checkpoints", TestCopyExtentsAndCheckpoints);
  Run("CopyEngine zero blocks: sparse, skip, discard, write", TestCopyZeroBlocks);
  Run("CopyEngine hash without a host OpenSSL", TestCopyHashWithoutHostOpenSsl);
  Run("CopyEngine --hash and verify with one read share one hash pool, both drivers", TestCopyHashAndVerifyShareOnePool);
  Run("CopyEngine source missing -> ENOENT open", TestCopySourceMissing);
  Run("CopyEngine Cancel() before Run -> ECANCELED", TestCopyCancelBeforeRun);
  Run("CopyEngine target is a directory -> EISDIR", TestCopyTargetIsDirectory);

  Cleanup();
  std::printf("ring_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
