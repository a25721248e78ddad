#include "buffer_pool.h"

#include <errno.h>
#include <sys/mman.h>

#include <cassert>

namespace devmove {

std::unique_ptr<BufferPool> BufferPool::Create(uint32_t count, uint32_t buffer_bytes, SysError* error) {
  assert(count > 0);
  assert(buffer_bytes > 0);
  const uint64_t total = static_cast<uint64_t>(count) * buffer_bytes;
  if (total > kTotalBytesMax) {
    *error = SysError::Make(EINVAL, "mmap", {}, -1,
                            "buffer ring too large: queue depth × block size must stay within 1 GiB");
    return nullptr;
  }
  // Round each buffer up to the alignment so every buffer starts aligned.
  const size_t stride = (buffer_bytes + kAlignment - 1) / kAlignment * kAlignment;
  const size_t bytes = stride * count;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                    -1, 0);
  if (base == MAP_FAILED) {
    *error = SysError::Make(errno, "mmap", {}, -1, "could not allocate the buffer ring");
    return nullptr;
  }
  std::unique_ptr<BufferPool> pool(new BufferPool());
  pool->base_ = base;
  pool->mapped_bytes_ = bytes;
  pool->count_ = count;
  pool->buffer_bytes_ = buffer_bytes;
  pool->iovecs_.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    pool->iovecs_[i].iov_base = static_cast<uint8_t*>(base) + stride * i;
    pool->iovecs_[i].iov_len = buffer_bytes;
  }
  return pool;
}

uint8_t* BufferPool::buffer(uint32_t index) const {
  assert(index < count_);
  return static_cast<uint8_t*>(iovecs_[index].iov_base);
}

BufferPool::~BufferPool() {
  if (base_) munmap(base_, mapped_bytes_);
}

}  // namespace devmove
