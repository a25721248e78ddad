// GB/s per core of each digest implementation devmove has, on this machine:
// BLAKE3 on each kernel (one thread, in order, as --hash=blake3 runs today),
// XXH3-128 per 512 KiB block (libxxhash), and the parallel BLAKE3 digest on
// the hashing pool with 1..N workers (wall-clock GB/s and CPU seconds).
//
// Rates are bytes per second of CPU time of the hashing thread
// (CLOCK_THREAD_CPUTIME_ID), so other work on a shared machine lowers them
// less than it lowers wall-clock rates; the pool rows give both. Each figure
// is the median of --runs runs, implementations alternating within a run.
//
//   digest_bench [--mib N] [--runs N] [--threads N]     (node bench/digest.js builds and runs it)
//
// Output: one JSON object per line.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "blake3.h"
#include "blake3_tree.h"
#include "hash_pool.h"
#include "parallel_digest.h"
#include "xxhash_library.h"

using namespace devmove;

namespace {

constexpr size_t kBufferBytes = 512 * 1024;  // the engine's default buffer

double Seconds(clockid_t clock) {
  timespec t;
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Measure {
  std::string name;
  std::function<void()> run;  // hashes the whole region once
  std::vector<double> cpu_seconds;
  std::vector<double> wall_seconds;
};

void Report(const Measure& m, size_t bytes, const char* what) {
  const double cpu = Median(m.cpu_seconds);
  const double wall = Median(m.wall_seconds);
  std::printf(
      "{\"what\":\"%s\",\"name\":\"%s\",\"bytes\":%zu,\"runs\":%zu,\"cpu_s\":%.4f,\"wall_s\":%.4f,"
      "\"gb_per_cpu_s\":%.3f,\"gb_per_wall_s\":%.3f}\n",
      what, m.name.c_str(), bytes, m.cpu_seconds.size(), cpu, wall, bytes / cpu / 1e9, bytes / wall / 1e9);
}

// Alternating order within each run, so drift on a shared machine hits every implementation alike.
void RunAll(std::vector<Measure>& measures, int runs, clockid_t cpu_clock) {
  for (int r = 0; r < runs; ++r) {
    for (size_t i = 0; i < measures.size(); ++i) {
      Measure& m = measures[(i + r) % measures.size()];
      const double cpu0 = Seconds(cpu_clock), wall0 = Seconds(CLOCK_MONOTONIC);
      m.run();
      m.cpu_seconds.push_back(Seconds(cpu_clock) - cpu0);
      m.wall_seconds.push_back(Seconds(CLOCK_MONOTONIC) - wall0);
    }
  }
}

std::string g_sink;  // keeps results alive so nothing is optimised away

void SingleThread(const std::vector<uint8_t>& region, int runs) {
  std::vector<Measure> measures;
  for (blake3::KernelId id : blake3::kKernelIds) {
    if (!blake3::KernelSupported(id)) continue;
    const blake3::Kernel& kernel = blake3::GetKernel(id);
    measures.push_back({std::string("blake3-") + kernel.name, [&region, &kernel] {
                          Blake3Stream stream(kernel);
                          for (size_t at = 0; at < region.size(); at += kBufferBytes)
                            stream.Update(region.data() + at, std::min(kBufferBytes, region.size() - at));
                          g_sink = stream.FinalHex();
                        }, {}, {}});
  }
  SysError error;
  std::shared_ptr<const XxhashLibrary> xxh = XxhashLibrary::Load(XxhashLibrary::kDefaultName, &error);
  if (xxh) {
    measures.push_back({"xxh3-128-per-512KiB (" + xxh->entry_point() + ")", [&region, xxh] {
                          uint64_t x = 0;
                          for (size_t at = 0; at < region.size(); at += kBufferBytes)
                            x ^= xxh->Hash128(region.data() + at, std::min(kBufferBytes, region.size() - at)).low64;
                          g_sink = std::to_string(x);
                        }, {}, {}});
  } else {
    std::printf("{\"what\":\"skip\",\"name\":\"xxh3\",\"why\":\"%s\"}\n", error.message.c_str());
  }
  RunAll(measures, runs, CLOCK_THREAD_CPUTIME_ID);
  for (const Measure& m : measures) Report(m, region.size(), "one-thread");
}

// The parallel digest as the engine would drive it: buffers handed over in
// order, reaped when the pool is full; CPU time of the whole process.
void Pool(const std::vector<uint8_t>& region, int runs, uint32_t threads_max) {
  std::vector<std::unique_ptr<HashPool>> pools;
  std::vector<Measure> measures;
  for (uint32_t threads = 1; threads <= threads_max; threads *= 2) {
    SysError error;
    pools.push_back(HashPool::Create(threads, &error));
    HashPool* pool = pools.back().get();
    if (!pool) return;
    measures.push_back({"blake3-pool-" + std::to_string(threads) + "-threads", [&region, pool] {
                          ParallelDigest::Limits limits;
                          limits.pieces_max = 16;
                          SysError e;
                          auto digest = Blake3ParallelDigest::Create(*pool, blake3::BestKernel(), limits, &e);
                          std::vector<uint64_t> tickets;
                          for (size_t at = 0; at < region.size(); at += kBufferBytes) {
                            while (!digest->Submit(at, region.data() + at, std::min(kBufferBytes, region.size() - at), at)) {
                              digest->Drain();
                              digest->Reap(&tickets);
                            }
                          }
                          std::string why;
                          digest->Finish(region.size(), &g_sink, &why);
                          digest->Reap(&tickets);
                        }, {}, {}});
  }
  RunAll(measures, runs, CLOCK_PROCESS_CPUTIME_ID);
  for (const Measure& m : measures) Report(m, region.size(), "pool");
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 256;
  int runs = 5;
  uint32_t threads = HashPool::UsableCpus();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mib")) mib = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = static_cast<uint32_t>(std::atoi(argv[i + 1]));
  }
  if (mib == 0 || runs < 1 || threads < 1) {
    std::fprintf(stderr, "usage: digest_bench [--mib N] [--runs N] [--threads N]\n");
    return 2;
  }
  std::vector<uint8_t> region(mib << 20);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < region.size(); i += 8) {
    const uint64_t x = rng();
    std::memcpy(region.data() + i, &x, 8);
  }
  std::printf("{\"what\":\"setup\",\"bytes\":%zu,\"runs\":%d,\"usable_cpus\":%u,\"best_kernel\":\"%s\"}\n",
              region.size(), runs, HashPool::UsableCpus(), blake3::BestKernel().name);
  SingleThread(region, runs);
  Pool(region, runs, threads);
  return g_sink.empty() ? 1 : 0;
}
