// ConsoleDevice: virtio-console (device id 3), one port, no features beyond
// VERSION_1. receiveq (0) is fed from a host fd, transmitq (1) is written to
// a host fd.
//
// Input is never buffered on the host: the VMM reads from the host fd only
// when the guest has a receive buffer available, straight into that buffer.
// Host EOF is passed on as a used receive buffer of length 0 (Ember's
// convention, api/boot_info.h), and every later receive buffer is returned
// the same way.
//
// All methods run under the transport's lock, on the event-loop thread.
#pragma once

#include <cstdint>
#include <string>

#include "api/boot_info.h"
#include "vmm/log.h"
#include "vmm/virtio_device.h"

namespace ember {

inline constexpr uint32_t kConsoleReceiveq = 0;
inline constexpr uint32_t kConsoleTransmitq = 1;

struct ConsoleState {
  bool input_eof = false;
  bool output_closed = false;
};

class ConsoleDevice : public VirtioDevice {
 public:
  // in_fd < 0: no input (the receiveq is never answered); out_fd < 0: output
  // is discarded. The fds are borrowed.
  ConsoleDevice(int in_fd, int out_fd, const Log* log = nullptr) : in_fd_(in_fd), out_fd_(out_fd), log_(log) {}

  uint32_t device_id() const override { return abi::kVirtioIdConsole; }
  uint64_t device_features() const override { return 0; }
  uint32_t queue_count() const override { return 2; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> activate(const VirtioContext& ctx, uint64_t driver_features) override;
  bool process_queue(uint32_t q) override;
  void reset() override;

  // --- for the event loop ---
  int input_fd() const { return in_fd_; }
  int output_fd() const { return out_fd_; }
  // Whether input readiness can be waited for with epoll (false for regular
  // files and /dev/null: they are always "ready" and read eagerly instead).
  void set_input_pollable(bool pollable) { input_pollable_ = pollable; }
  // Input from memory instead of the fd: `data` (kept alive by the caller),
  // then EOF. For `restore --repeat`, where every run reads the same input
  // (restore() starts it over).
  void set_input_buffer(const std::string* data) {
    input_buffer_ = data;
    input_off_ = 0;
  }
  // The loop should watch input_fd() for reading: a receive buffer is
  // waiting and the input has not ended.
  bool wants_input();
  void on_input_ready();
  // The loop should watch output_fd() for writing: a write hit EAGAIN.
  bool wants_output() const { return active_ && has_pending_; }
  void on_output_ready();
  // The host's reader went away (EPIPE): the run should end, as a process
  // writing to a closed pipe would (SIGPIPE).
  bool broken_pipe() const { return broken_pipe_; }
  // At the end of the run: write every transmit chain the guest queued,
  // waiting for the fd where needed. The guest never waits for TX completion.
  void drain_output();

  ConsoleState save() const { return ConsoleState{input_eof_, output_closed_}; }
  // Before the transport's restore (which resets and re-activates the
  // device). An input buffer starts over.
  void restore(const ConsoleState& s) {
    input_eof_ = s.input_eof;
    output_closed_ = s.output_closed;
    input_off_ = 0;
    broken_pipe_ = false;
  }

 private:
  bool process_rx();
  bool process_tx();
  // Reads once into one receive chain. Returns false if the ring is broken.
  bool read_one(bool* progress);
  bool return_eof_buffers();
  void finish_used(Virtqueue& q);
  // Writes as much of pending_ as the fd takes; true when it is all written.
  bool write_pending();

  int in_fd_;
  int out_fd_;
  const std::string* input_buffer_ = nullptr;
  size_t input_off_ = 0;
  const Log* log_;
  bool active_ = false;
  VirtioContext ctx_{};
  bool input_pollable_ = true;
  bool input_eof_ = false;
  bool output_closed_ = false;
  bool broken_pipe_ = false;
  bool has_pending_ = false;  // pending_ holds a TX chain blocked on EAGAIN
  uint64_t pending_offset_ = 0;
  DescriptorChain pending_;
  DescriptorChain scratch_;
};

}  // namespace ember
