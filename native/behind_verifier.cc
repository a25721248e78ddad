#include "behind_verifier.h"

#include <errno.h>

#include <algorithm>
#include <cassert>

namespace devmove {

std::unique_ptr<BehindVerifier> BehindVerifier::Create(Inputs inputs, SysError* error) {
  assert(inputs.driver && inputs.digests && inputs.dropped && inputs.depth > 0);
  assert(inputs.dropped->size() == inputs.targets.size());
  std::unique_ptr<BehindVerifier> v(new BehindVerifier(std::move(inputs)));
  v->buffers_ = BufferPool::Create(v->in_.depth, v->in_.buffer_bytes, error);
  if (!v->buffers_) return nullptr;
  v->reads_ = std::vector<Read>(v->in_.depth);
  for (uint32_t i = v->in_.depth; i > 0; --i) v->free_.push_back(i - 1);
  v->verified_.resize(v->in_.targets.size());
  for (uint32_t t = 0; t < v->in_.targets.size(); ++t) v->readable_.push_back(v->Readable(t) ? 1 : 0);
  return v;
}

bool BehindVerifier::Readable(uint32_t target) const {
  const Endpoint* e = in_.targets[target];
  const EndpointCaps& caps = e->caps();
  return caps.rereadable && caps.seekable && e->direct() && kReadAlignment % caps.direct_alignment == 0 &&
         e->base_offset() % kReadAlignment == 0;
}

void BehindVerifier::Add(const ByteRange& relative) {
  if (relative.length == 0) return;
  if (!queued_.empty() && queued_.back().end() == relative.offset) {
    queued_.back().length += relative.length;
  } else {
    queued_.push_back(relative);
  }
}

bool BehindVerifier::NextPiece(uint64_t* position, uint32_t* length) {
  const uint64_t block = in_.digests->block_bytes();
  DigestTable& table = in_.digests->table();
  while (!queued_.empty()) {
    ByteRange& r = queued_.front();
    const uint64_t end = r.end();
    const uint64_t start = (r.offset + block - 1) / block * block;
    const uint64_t most = start < end ? std::min<uint64_t>(end - start, in_.buffer_bytes) / block * block : 0;
    if (most == 0) {  // less than a whole block is left: the after-copy pass has it
      queued_.pop_front();
      continue;
    }
    uint64_t have = 0;
    while (have < most && table.Has((start + have) / block)) have += block;
    const uint64_t next = start + std::max(have, block);  // a block without a digest is passed over
    r.length = end > next ? end - next : 0;
    r.offset = next;
    if (r.length == 0) queued_.pop_front();
    if (have == 0) continue;
    *position = start;
    *length = static_cast<uint32_t>(have);
    return true;
  }
  return false;
}

void BehindVerifier::Pump() {
  const uint32_t targets = static_cast<uint32_t>(in_.targets.size());
  while (!free_.empty()) {
    while (piece_length_ > 0 && piece_next_target_ < targets &&
           (!readable_[piece_next_target_] || (*in_.dropped)[piece_next_target_])) {
      ++piece_next_target_;
    }
    if (piece_length_ == 0 || piece_next_target_ == targets) {
      piece_next_target_ = 0;
      piece_length_ = 0;
      if (!NextPiece(&piece_position_, &piece_length_)) return;
      continue;
    }
    Read& read = reads_[free_.back()];
    free_.pop_back();
    read.busy = true;
    read.target = piece_next_target_++;
    read.position = piece_position_;
    read.length = piece_length_;
    read.done = 0;
    Submit(read);
  }
}

void BehindVerifier::Submit(Read& read) {
  const uint32_t index = static_cast<uint32_t>(&read - reads_.data());
  IoOp& op = read.op;
  op = IoOp{};
  op.kind = IoKind::kRead;
  op.position = read.position + read.done;
  op.data = buffers_->buffer(index) + read.done;
  op.length = read.length - read.done;
  op.capacity = buffers_->buffer_bytes() - read.done;
  op.owner = this;
  op.slot = index;
  op.target = read.target;
  ++in_flight_;
  in_.targets[read.target]->Submit(*in_.driver, op);
}

void BehindVerifier::Complete(IoOp& op) {
  Read& read = reads_[op.slot];
  assert(read.busy && &op == &read.op && in_flight_ > 0);
  --in_flight_;
  if (op.result == -EAGAIN || op.result == -EINTR) {
    Submit(read);
    return;
  }
  // An error, an early end, or a short read off the page grid: the
  // after-copy pass reads it again and reports what it finds.
  if (op.result > 0) {
    read.done = std::min(read.length, read.done + static_cast<uint32_t>(op.result));
    if (read.done < read.length && read.done % kReadAlignment == 0) {
      Submit(read);
      return;
    }
    if (read.done == read.length && !(*in_.dropped)[read.target]) Compared(read);
  }
  read.busy = false;
  free_.push_back(op.slot);
}

// Every digest block read back equals what the copy read: verified there.
void BehindVerifier::Compared(Read& read) {
  const uint8_t* data = buffers_->buffer(static_cast<uint32_t>(&read - reads_.data()));
  const uint32_t block = in_.digests->block_bytes();
  for (uint32_t off = 0; off < read.length; off += block) {
    Xxh128 want;
    if (!in_.digests->table().Get((read.position + off) / block, &want)) return;
    if (in_.digests->Hash(data + off, block) != want) return;
  }
  std::vector<ByteRange>& done = verified_[read.target];
  if (!done.empty() && done.back().end() == read.position) {
    done.back().length += read.length;
  } else {
    done.push_back({read.position, read.length});
  }
}

std::vector<ByteRange> BehindVerifier::VerifiedOnAll() const {
  std::vector<ByteRange> all;
  bool first = true;
  for (uint32_t t = 0; t < in_.targets.size(); ++t) {
    if ((*in_.dropped)[t]) continue;
    std::vector<ByteRange> mine = verified_[t];
    Normalize(&mine);
    // all ∩ mine = all − (all − mine)
    all = first ? mine : Subtract(all, Subtract(all, mine));
    first = false;
  }
  return all;
}

}  // namespace devmove
