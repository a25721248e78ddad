// A stream as a source or target: a pipe or FIFO, a socket, a character
// device (a terminal, /dev/null) reached through standard input or output.
// Strictly sequential: one read or write in flight, each at the position the
// previous one ended; no known size (a read of 0 bytes is the end); no
// O_DIRECT; nothing to flush (the bytes are handed to the reader, no stable
// storage is involved); cannot be read again to verify.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <vector>

#include "endpoint.h"

namespace devmove {

class StreamEndpoint final : public Endpoint {
 public:
  // How long one wait for the other end lasts before the cancel flag is
  // looked at again: bounds how late Cancel() (SIGINT, SIGTERM) takes effect.
  static constexpr int kPeerWaitSliceMs = 100;
  // Bytes read and thrown away per call while skipping (dd's skip= on a pipe).
  static constexpr size_t kSkipChunkBytes = 64 * 1024;
  // A pipe is grown to fs.pipe-max-size, at most this.
  static constexpr long kPipeBytesMax = 4l << 20;

  // Standard input (request.fd 0) or output (1), already open; `st` is its fstat.
  static std::unique_ptr<Endpoint> FromDescriptor(const OpenRequest& r, const struct stat& st, SysError* error);
  // A named FIFO. Opening one blocks until the other end opens, and nothing
  // would end that wait; here it is opened non-blocking and waited for in
  // slices, so `cancel` ends it.
  static std::unique_ptr<Endpoint> OpenFifo(const OpenRequest& r, const CancelFlag& cancel, SysError* error);
  ~StreamEndpoint() override;

  void Submit(IoDriver& driver, IoOp& op) override;
  std::vector<int> descriptors() const override { return {fd_}; }
  // Source: reads and discards `bytes`. Target: a stream cannot seek (dd
  // fails the same way: "cannot seek: Illegal seek").
  SysError Advance(uint64_t bytes, const CancelFlag& cancel) override;

 protected:
  void Finish(IoOp& op) override;

 private:
  StreamEndpoint() = default;
  // Kind and capabilities; refuses O_DIRECT when it was required.
  SysError Describe(const OpenRequest& r, const struct stat& st);
  // Waits in slices until `fd_` is readable or writable; ECANCELED when cancelled.
  SysError WaitReady(short events, const CancelFlag& cancel) const;

  int fd_ = -1;
  uint64_t position_ = 0;  // bytes read or written so far (the next op's position)
  bool for_write_ = false;
};

}  // namespace devmove
