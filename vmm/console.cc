#include "vmm/console.h"

#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ember {

namespace {
constexpr size_t kMaxIov = 64;
}

void ConsoleDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
  // struct virtio_console_config {cols, rows, max_nr_ports, emerg_wr}: only
  // meaningful with features we do not offer, so all zero.
  std::fill(data.begin(), data.end(), 0);
  (void)offset;
}

Result<void> ConsoleDevice::activate(const VirtioContext& ctx, uint64_t) {
  ctx_ = ctx;
  active_ = true;
  // Chains made available before DRIVER_OK (or while we were away) count.
  if (!process_rx()) return Error{"receiveq: " + ctx_.queues[kConsoleReceiveq].broken_reason()};
  return Ok();
}

void ConsoleDevice::reset() {
  active_ = false;
  ctx_ = {};
  has_pending_ = false;
  pending_offset_ = 0;
  // input_eof_/output_closed_ describe the host fds, which a guest reset
  // does not change.
}

bool ConsoleDevice::process_queue(uint32_t q) {
  if (!active_) return true;
  if (q == kConsoleReceiveq) return process_rx();
  if (q == kConsoleTransmitq) return process_tx();
  return true;
}

void ConsoleDevice::finish_used(Virtqueue& q) {
  q.publish_used();
  if (q.should_interrupt()) ctx_.interrupt->raise(abi::kVirtioIntUsedBuffer);
}

bool ConsoleDevice::return_eof_buffers() {
  Virtqueue& q = ctx_.queues[kConsoleReceiveq];
  bool any = false;
  for (;;) {
    const auto r = q.pop(scratch_);
    if (r == Virtqueue::Pop::kBroken) return false;
    if (r == Virtqueue::Pop::kEmpty) break;
    q.add_used(scratch_.head, 0);
    any = true;
  }
  if (any) finish_used(q);
  return true;
}

bool ConsoleDevice::read_one(bool* progress) {
  *progress = false;
  Virtqueue& q = ctx_.queues[kConsoleReceiveq];
  const auto r = q.pop(scratch_);
  if (r == Virtqueue::Pop::kBroken) return false;
  if (r == Virtqueue::Pop::kEmpty) return true;
  if (scratch_.writable_bytes == 0) {
    // A used length of 0 means EOF to the driver; a buffer with no room
    // cannot be answered truthfully.
    ctx_.interrupt->needs_reset("receive buffer " + std::to_string(scratch_.head) + " has no writable space");
    return false;
  }
  ssize_t got;
  if (input_buffer_) {
    // Straight from memory into the guest's buffer.
    got = 0;
    for (const auto& s : scratch_.writable) {
      const size_t k = std::min(s.size(), input_buffer_->size() - input_off_);
      std::memcpy(s.data(), input_buffer_->data() + input_off_, k);
      input_off_ += k;
      got += static_cast<ssize_t>(k);
      if (input_off_ == input_buffer_->size()) break;
    }
  } else {
    iovec iov[kMaxIov];
    const size_t n = std::min(scratch_.writable.size(), kMaxIov);
    for (size_t i = 0; i < n; i++) iov[i] = iovec{scratch_.writable[i].data(), scratch_.writable[i].size()};
    do {
      got = ::readv(in_fd_, iov, static_cast<int>(n));
    } while (got < 0 && errno == EINTR);
  }
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    q.undo_pop();  // nothing to deliver after all; keep the buffer for later
    return true;
  }
  if (got < 0) {
    if (log_) log_->debug("reading console input: %s; treating it as end of input", std::strerror(errno));
    got = 0;
  }
  if (got == 0) input_eof_ = true;
  q.add_used(scratch_.head, static_cast<uint32_t>(got));
  finish_used(q);
  *progress = true;
  if (input_eof_) return return_eof_buffers();
  return true;
}

bool ConsoleDevice::process_rx() {
  if (in_fd_ < 0 && !input_buffer_) return true;  // no input: receive buffers wait forever
  if (input_eof_) return return_eof_buffers();
  if (input_pollable_ && !input_buffer_) {
    // Wait for readiness (wants_input()); the ring's health is still checked.
    Virtqueue& q = ctx_.queues[kConsoleReceiveq];
    q.has_available();
    return !q.broken();
  }
  // Regular files, /dev/null: reading never blocks, so fill every buffer now.
  for (;;) {
    bool progress;
    if (!read_one(&progress)) return false;
    if (!progress || input_eof_) return true;
  }
}

bool ConsoleDevice::wants_input() {
  if (!active_ || in_fd_ < 0 || input_buffer_ || input_eof_ || !input_pollable_) return false;
  return ctx_.queues[kConsoleReceiveq].has_available();
}

void ConsoleDevice::on_input_ready() {
  if (!active_ || in_fd_ < 0 || input_eof_) return;
  bool progress;
  if (!read_one(&progress)) ctx_.interrupt->needs_reset("receiveq: " + ctx_.queues[kConsoleReceiveq].broken_reason());
}

bool ConsoleDevice::write_pending() {
  if (out_fd_ < 0 || output_closed_) return true;  // discard
  for (;;) {
    iovec iov[kMaxIov];
    size_t n = 0;
    uint64_t skip = pending_offset_;
    uint64_t left = 0;
    for (const auto& s : pending_.readable) {
      if (skip >= s.size()) {
        skip -= s.size();
        continue;
      }
      if (n < kMaxIov) iov[n++] = iovec{const_cast<uint8_t*>(s.data()) + skip, s.size() - skip};
      left += s.size() - skip;
      skip = 0;
    }
    if (left == 0) return true;
    const ssize_t w = ::writev(out_fd_, iov, static_cast<int>(n));
    if (w > 0) {
      pending_offset_ += static_cast<uint64_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (w < 0 && errno == EPIPE) {
      broken_pipe_ = true;
      if (log_) log_->debug("console output fd %d: broken pipe", out_fd_);
    } else if (log_) {
      log_->error("writing console output to fd %d: %s; discarding the rest", out_fd_,
                  w < 0 ? std::strerror(errno) : "wrote nothing");
    }
    output_closed_ = true;
    return true;
  }
}

bool ConsoleDevice::process_tx() {
  Virtqueue& q = ctx_.queues[kConsoleTransmitq];
  bool any = false;
  for (;;) {
    if (!has_pending_) {
      const auto r = q.pop(pending_);
      if (r == Virtqueue::Pop::kBroken) {
        if (any) finish_used(q);
        return false;
      }
      if (r == Virtqueue::Pop::kEmpty) break;
      has_pending_ = true;
      pending_offset_ = 0;
    }
    if (!write_pending()) break;  // EAGAIN: wants_output() until the fd drains
    q.add_used(pending_.head, 0);
    has_pending_ = false;
    any = true;
  }
  if (any) finish_used(q);
  return true;
}

void ConsoleDevice::on_output_ready() {
  if (!active_) return;
  if (!process_tx()) ctx_.interrupt->needs_reset("transmitq: " + ctx_.queues[kConsoleTransmitq].broken_reason());
}

void ConsoleDevice::drain_output() {
  if (!active_) return;
  for (;;) {
    if (!process_tx()) return;  // broken ring: nothing more to trust
    if (!has_pending_) return;
    pollfd p{out_fd_, POLLOUT, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) return;
  }
}

}  // namespace ember
