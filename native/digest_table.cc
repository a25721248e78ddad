#include "digest_table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

namespace devmove {
namespace {

bool TestBit(const std::vector<uint64_t>& bits, uint64_t i) { return (bits[i / 64] >> (i % 64)) & 1; }
void SetBit(std::vector<uint64_t>& bits, uint64_t i) { bits[i / 64] |= uint64_t{1} << (i % 64); }

// An unlinked file in dir: O_TMPFILE where the filesystem has it, else a
// named file removed at once. Nothing is left behind, even after a crash.
int OpenSpillFile(const std::string& dir, SysError* error) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    *error = SysError::Make(errno, "open", dir, -1, "cannot make the verify digests' spill file (O_TMPFILE)");
    return -1;
  }
  std::string name = dir + "/devmove-digests-XXXXXX";
  fd = mkostemp(&name[0], O_CLOEXEC);
  if (fd < 0) {
    *error = SysError::Make(errno, "open", dir, -1, "cannot make the verify digests' spill file");
    return -1;
  }
  unlink(name.c_str());
  return fd;
}

// Whole-buffer positioned I/O (a short count is continued, EINTR retried).
SysError Transfer(bool write, int fd, void* data, size_t length, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(data);
  for (size_t done = 0; done < length;) {
    const ssize_t n = write ? pwrite(fd, p + done, length - done, static_cast<off_t>(offset + done))
                            : pread(fd, p + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError::Make(errno, write ? "write" : "read", "(verify digests' spill file)", offset + done);
    if (n == 0) return SysError::Make(EIO, "read", "(verify digests' spill file)", offset + done, "the spill file ended early");
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

std::unique_ptr<DigestTable> DigestTable::Create(uint64_t blocks, uint64_t memory_max_bytes, const std::string& spill_dir,
                                                 SysError* error) {
  assert(blocks <= kBlocksMax);
  const uint64_t pages_total = (blocks + kEntriesPerPage - 1) / kEntriesPerPage;
  const uint64_t pages_max = std::max<uint64_t>(memory_max_bytes, kMemoryMinBytes) / kPageBytes;
  std::unique_ptr<DigestTable> table(new DigestTable(blocks, pages_max));
  if (pages_total > pages_max) {
    table->spill_fd_ = OpenSpillFile(spill_dir, error);
    if (table->spill_fd_ < 0) return nullptr;
  }
  table->present_.assign((blocks + 63) / 64, 0);
  table->on_disk_.assign((pages_total + 63) / 64, 0);
  return table;
}

DigestTable::~DigestTable() {
  if (spill_fd_ >= 0) close(spill_fd_);
}

void DigestTable::FailLocked(const SysError& error) {
  if (!error_.failed()) error_ = error;
}

bool DigestTable::EvictOneLocked() {
  assert(!lru_.empty() && spill_fd_ >= 0);
  const uint64_t victim = lru_.back();
  auto it = pages_.find(victim);
  assert(it != pages_.end());
  Page& page = *it->second;
  if (page.dirty) {
    const SysError e = Transfer(true, spill_fd_, page.entries.data(), kPageBytes, victim * kPageBytes);
    if (e.failed()) {
      FailLocked(e);
      return false;
    }
    SetBit(on_disk_, victim);
    ++pages_written_;
  }
  lru_.pop_back();
  pages_.erase(it);
  return true;
}

DigestTable::Page* DigestTable::PageLocked(uint64_t page_index) {
  auto it = pages_.find(page_index);
  if (it != pages_.end()) {
    Page& page = *it->second;
    lru_.splice(lru_.begin(), lru_, page.lru);
    return &page;
  }
  // Bounded: every page in memory is one entry of lru_, at most pages_max_.
  if (pages_.size() >= pages_max_ && !EvictOneLocked()) return nullptr;
  std::unique_ptr<Page> page(new Page());
  page->entries.resize(kEntriesPerPage);
  if (TestBit(on_disk_, page_index)) {
    const SysError e = Transfer(false, spill_fd_, page->entries.data(), kPageBytes, page_index * kPageBytes);
    if (e.failed()) {
      FailLocked(e);
      return nullptr;
    }
    ++pages_read_;
  }
  lru_.push_front(page_index);
  page->lru = lru_.begin();
  Page* raw = page.get();
  pages_.emplace(page_index, std::move(page));
  assert(pages_.size() <= pages_max_);
  return raw;
}

void DigestTable::Put(uint64_t block, const Xxh128& digest) {
  std::lock_guard<std::mutex> lock(mutex_);
  assert(block < blocks_);
  Page* page = PageLocked(block / kEntriesPerPage);
  if (page == nullptr) return;  // error_ says why; Get() will say false
  page->entries[block % kEntriesPerPage] = digest;
  page->dirty = true;
  SetBit(present_, block);
}

bool DigestTable::Get(uint64_t block, Xxh128* digest) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (block >= blocks_ || !TestBit(present_, block)) return false;
  Page* page = PageLocked(block / kEntriesPerPage);
  if (page == nullptr) return false;
  *digest = page->entries[block % kEntriesPerPage];
  return true;
}

bool DigestTable::Has(uint64_t block) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return block < blocks_ && TestBit(present_, block);
}

SysError DigestTable::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

uint64_t DigestTable::pages_in_memory() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pages_.size();
}

uint64_t DigestTable::pages_written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pages_written_;
}

uint64_t DigestTable::pages_read() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pages_read_;
}

}  // namespace devmove
