#include "buffer_pool.h"

#include <errno.h>
#include <sys/mman.h>

#include <cassert>

namespace devmove {

namespace {

// Faults [data, data + bytes) in as MAP_POPULATE would; a kernel before 5.14
// lacks MADV_POPULATE_WRITE, then one write per page does it.
void Populate(uint8_t* data, size_t bytes) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  if (bytes == 0 || madvise(data, bytes, MADV_POPULATE_WRITE) == 0) return;
  for (size_t at = 0; at < bytes; at += BufferPool::kAlignment) data[at] = 0;
}

}  // namespace

std::unique_ptr<BufferPool> BufferPool::Create(uint32_t count, uint32_t capacity, uint32_t buffer_bytes, SysError* error) {
  assert(count > 0 && count <= capacity);
  assert(buffer_bytes > 0);
  const uint64_t total = static_cast<uint64_t>(capacity) * buffer_bytes;
  if (total > kTotalBytesMax) {
    *error = SysError::Make(EINVAL, "mmap", {}, -1,
                            "buffer ring too large: queue depth × block size must stay within 1 GiB");
    return nullptr;
  }
  // Round each buffer up to the alignment so every buffer starts aligned.
  const size_t stride = (buffer_bytes + kAlignment - 1) / kAlignment * kAlignment;
  const size_t bytes = stride * capacity;
  // Only what is usable now is faulted in; the rest is address space until Grow().
  const int populate = count == capacity ? MAP_POPULATE : 0;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
  if (base == MAP_FAILED) {
    *error = SysError::Make(errno, "mmap", {}, -1, "could not allocate the buffer ring");
    return nullptr;
  }
  std::unique_ptr<BufferPool> pool(new BufferPool());
  pool->base_ = base;
  pool->mapped_bytes_ = bytes;
  pool->stride_ = stride;
  pool->buffer_bytes_ = buffer_bytes;
  pool->iovecs_.resize(capacity);
  for (uint32_t i = 0; i < capacity; ++i) {
    pool->iovecs_[i].iov_base = static_cast<uint8_t*>(base) + stride * i;
    pool->iovecs_[i].iov_len = buffer_bytes;
  }
  if (populate == 0) Populate(static_cast<uint8_t*>(base), stride * count);
  pool->count_ = count;
  return pool;
}

void BufferPool::Grow(uint32_t count) {
  assert(count <= capacity());
  if (count <= count_) return;
  Populate(static_cast<uint8_t*>(iovecs_[count_].iov_base), stride_ * (count - count_));
  count_ = count;
}

uint8_t* BufferPool::buffer(uint32_t index) const {
  assert(index < count_);
  return static_cast<uint8_t*>(iovecs_[index].iov_base);
}

BufferPool::~BufferPool() {
  if (base_) munmap(base_, mapped_bytes_);
}

}  // namespace devmove
