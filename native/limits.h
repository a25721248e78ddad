// The limits every layer enforces, from one file: native/limits.json. The
// build (binding.gyp, CMakeLists.txt) passes each as a DEVMOVE_LIMIT_* define;
// TypeScript reads the same file (src/base/limits.ts), so the engine can never
// accept what the library refuses, or the other way round.
#pragma once

#include <cstdint>

#if !defined(DEVMOVE_LIMIT_BLOCK_BYTES_MAX) || !defined(DEVMOVE_LIMIT_QUEUE_DEPTH_MAX) ||           \
    !defined(DEVMOVE_LIMIT_RING_BYTES_MAX) || !defined(DEVMOVE_LIMIT_TARGETS_MAX) ||                \
    !defined(DEVMOVE_LIMIT_RETRIES_MAX) || !defined(DEVMOVE_LIMIT_CHECKPOINT_INTERVAL_MS_MAX) ||    \
    !defined(DEVMOVE_LIMIT_PROGRESS_INTERVAL_MS_MIN) || !defined(DEVMOVE_LIMIT_NBD_TIMEOUT_SECONDS_MAX)
#error "native/limits.json's DEVMOVE_LIMIT_* defines are missing: build through binding.gyp or CMakeLists.txt"
#endif

namespace devmove::limits {

constexpr uint64_t kBlockBytesMax = DEVMOVE_LIMIT_BLOCK_BYTES_MAX;
constexpr uint64_t kQueueDepthMax = DEVMOVE_LIMIT_QUEUE_DEPTH_MAX;
constexpr uint64_t kRingBytesMax = DEVMOVE_LIMIT_RING_BYTES_MAX;
constexpr uint64_t kTargetsMax = DEVMOVE_LIMIT_TARGETS_MAX;
constexpr uint64_t kNbdTimeoutSecondsMax = DEVMOVE_LIMIT_NBD_TIMEOUT_SECONDS_MAX;
constexpr uint64_t kRetriesMax = DEVMOVE_LIMIT_RETRIES_MAX;
constexpr uint64_t kCheckpointIntervalMsMax = DEVMOVE_LIMIT_CHECKPOINT_INTERVAL_MS_MAX;
constexpr uint64_t kProgressIntervalMsMin = DEVMOVE_LIMIT_PROGRESS_INTERVAL_MS_MIN;

// One read or write is capped by the kernel at INT_MAX & PAGE_MASK.
static_assert(kBlockBytesMax <= 0x7ffff000ull, "a block must fit one read(2)");
static_assert(kRingBytesMax <= (1ull << 32), "the buffer ring is one mapping of at most 4 GiB");
static_assert(kTargetsMax <= 255, "a target index fits the engine's 8-bit fields");

}  // namespace devmove::limits
