// Native test of the data-extent query (SEEK_DATA/SEEK_HOLE) on real sparse
// files, on the root filesystem (/var/tmp) and on tmpfs (/dev/shm): every
// byte written is inside a data extent, every byte outside reads as zero,
// and a query bounded to a few extents at a time, repeated, gives the same
// answer as one unbounded query. Seeded (DEVMOVE_TEST_SEED).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "data_extents.h"
#include "harness.h"

using namespace devmove;
using namespace devmove_test;

namespace {

uint64_t g_seed = 0;
constexpr uint64_t kPage = 4096;

struct SparseFile {
  std::string path;
  int fd = -1;
  uint64_t size = 0;
  std::vector<DataExtent> written;  // page-aligned, sorted, disjoint
};

// A file of `size` with random page-aligned runs of data (none touching).
SparseFile MakeSparse(const std::string& dir, std::mt19937_64& rng, uint64_t size, int runs) {
  SparseFile f;
  f.path = dir + "/devmove-extents-XXXXXX";
  f.fd = mkstemp(&f.path[0]);
  f.size = size;
  if (f.fd < 0 || ftruncate(f.fd, static_cast<off_t>(size)) != 0) return f;
  uint64_t at = (rng() % 4) * kPage;
  for (int i = 0; i < runs && at < size; ++i) {
    const uint64_t length = std::min<uint64_t>(size - at, (1 + rng() % 64) * kPage);
    std::vector<uint8_t> bytes(length);
    for (auto& b : bytes) b = static_cast<uint8_t>(1 + rng() % 255);  // never zero: data is data
    if (pwrite(f.fd, bytes.data(), length, static_cast<off_t>(at)) != static_cast<ssize_t>(length)) break;
    f.written.push_back({at, length});
    at += length + (1 + rng() % 300) * kPage;
  }
  fsync(f.fd);
  return f;
}

void Remove(SparseFile& f) {
  if (f.fd >= 0) close(f.fd);
  unlink(f.path.c_str());
}

bool Inside(const std::vector<DataExtent>& extents, uint64_t offset, uint64_t length) {
  for (const DataExtent& e : extents)
    if (offset >= e.offset && offset + length <= e.offset + e.length) return true;
  return false;
}

bool ReadsZero(int fd, uint64_t offset, uint64_t length) {
  std::vector<uint8_t> buf(std::min<uint64_t>(length, 1 << 20));
  for (uint64_t done = 0; done < length;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
    if (pread(fd, buf.data(), n, static_cast<off_t>(offset + done)) != static_cast<ssize_t>(n)) return false;
    for (size_t i = 0; i < n; ++i)
      if (buf[i] != 0) return false;
    done += n;
  }
  return true;
}

void CheckOn(const std::string& dir) {
  std::mt19937_64 rng(g_seed + std::hash<std::string>()(dir));
  for (int round = 0; round < 8; ++round) {
    SparseFile f = MakeSparse(dir, rng, (64 + rng() % 4000) * kPage, 1 + static_cast<int>(rng() % 40));
    REQUIRE(f.fd >= 0);
    DataExtentsAnswer all;
    bool supported = false;
    REQUIRE(!QueryDataExtents(f.fd, 0, f.size, 1 << 20, &all, &supported).failed());
    CHECK(supported);
    CHECK_EQ(all.answered_to, f.size);
    for (const DataExtent& w : f.written) CHECK(Inside(all.data, w.offset, w.length));
    uint64_t at = 0;
    for (const DataExtent& e : all.data) {
      CHECK(e.offset >= at && e.length > 0);
      CHECK(ReadsZero(f.fd, at, e.offset - at));
      at = e.offset + e.length;
    }
    CHECK(ReadsZero(f.fd, at, f.size - at));
    // Few extents at a time, from odd offsets: the same data, piece by piece.
    std::vector<DataExtent> pieces;
    for (uint64_t from = 0; from < f.size;) {
      DataExtentsAnswer part;
      REQUIRE(!QueryDataExtents(f.fd, from, f.size, 1 + rng() % 3, &part, &supported).failed());
      CHECK(part.answered_to > from);
      for (const DataExtent& e : part.data) {
        if (!pieces.empty() && pieces.back().offset + pieces.back().length == e.offset) {
          pieces.back().length += e.length;  // an extent cut where a window ended
        } else {
          pieces.push_back(e);
        }
      }
      from = part.answered_to;
    }
    CHECK_EQ(pieces.size(), all.data.size());
    for (size_t i = 0; i < pieces.size() && i < all.data.size(); ++i) {
      CHECK_EQ(pieces[i].offset, all.data[i].offset);
      CHECK_EQ(pieces[i].length, all.data[i].length);
    }
    Remove(f);
  }
}

void TestRootFilesystem() { CheckOn("/var/tmp"); }
void TestTmpfs() { CheckOn("/dev/shm"); }

void TestEdges() {
  std::mt19937_64 rng(g_seed);
  SparseFile empty = MakeSparse("/var/tmp", rng, 0, 0);
  DataExtentsAnswer a;
  bool supported = false;
  REQUIRE(!QueryDataExtents(empty.fd, 0, 0, 4, &a, &supported).failed());
  CHECK(a.data.empty());
  Remove(empty);
  SparseFile holes = MakeSparse("/var/tmp", rng, 1 << 30, 0);  // 1 GiB, all hole
  REQUIRE(!QueryDataExtents(holes.fd, 0, holes.size, 4, &a, &supported).failed());
  CHECK(a.data.empty());
  CHECK_EQ(a.answered_to, holes.size);
  // A window inside a data extent gets that part of it.
  std::vector<uint8_t> page(kPage, 7);
  REQUIRE(pwrite(holes.fd, page.data(), kPage, 5 * kPage) == static_cast<ssize_t>(kPage));
  REQUIRE(!QueryDataExtents(holes.fd, 5 * kPage + 100, 5 * kPage + 200, 4, &a, &supported).failed());
  REQUIRE(a.data.size() == 1);
  CHECK_EQ(a.data[0].offset, 5 * kPage + 100);
  CHECK_EQ(a.data[0].length, 100u);
  Remove(holes);
  // Not a seekable file: the error names lseek.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  CHECK(QueryDataExtents(fds[0], 0, 100, 4, &a, &supported).syscall == "lseek");
  close(fds[0]);
  close(fds[1]);
}

}  // namespace

int main() {
  const char* seed = std::getenv("DEVMOVE_TEST_SEED");
  g_seed = seed ? std::strtoull(seed, nullptr, 10) : static_cast<uint64_t>(time(nullptr));
  std::printf("extents_test: seed %llu (DEVMOVE_TEST_SEED=%llu replays it)\n", static_cast<unsigned long long>(g_seed),
              static_cast<unsigned long long>(g_seed));
  Run("data extents on the root filesystem (/var/tmp)", TestRootFilesystem);
  Run("data extents on tmpfs (/dev/shm)", TestTmpfs);
  Run("data extents: empty, all hole, a window inside data, a pipe", TestEdges);
  std::printf("extents_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
