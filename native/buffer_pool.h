// The ring of data buffers: N buffers of `buffer_bytes` each, carved from one
// page-aligned, pre-faulted mapping made once per job and reused for every
// I/O. Allocating per I/O was measured to spend ~80 % of CPU zeroing fresh
// pages; here the kernel zeroes the mapping once, at MAP_POPULATE time.
//
// A pool may reserve address space for more buffers than it starts with
// (`capacity`): Grow() makes more of them usable, faulting their pages in
// then, so memory follows the buffers in use (a job hands a finished pair's
// budget to the pairs still running), never the reservation.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "sys_error.h"

namespace devmove {

class BufferPool {
 public:
  static constexpr size_t kAlignment = 4096;                  // ≥ any logical block size we accept
  static constexpr uint64_t kTotalBytesMax = 1ull << 30;      // 1 GiB of buffers per job at most

  static std::unique_ptr<BufferPool> Create(uint32_t count, uint32_t buffer_bytes, SysError* error) {
    return Create(count, count, buffer_bytes, error);
  }
  // `count` usable now, up to `capacity` after Grow(); capacity × buffer_bytes within kTotalBytesMax.
  static std::unique_ptr<BufferPool> Create(uint32_t count, uint32_t capacity, uint32_t buffer_bytes, SysError* error);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Buffers usable now (index < count()).
  uint32_t count() const { return count_; }
  uint32_t capacity() const { return static_cast<uint32_t>(iovecs_.size()); }
  // Makes `count` buffers usable (count ≤ capacity), their pages faulted in now.
  void Grow(uint32_t count);
  uint32_t buffer_bytes() const { return buffer_bytes_; }
  uint8_t* buffer(uint32_t index) const;
  // One iovec per buffer of the capacity; the first count() for IORING_REGISTER_BUFFERS.
  const std::vector<iovec>& iovecs() const { return iovecs_; }

 private:
  BufferPool() = default;
  void* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  size_t stride_ = 0;
  uint32_t count_ = 0;
  uint32_t buffer_bytes_ = 0;
  std::vector<iovec> iovecs_;
};

}  // namespace devmove
