// The virtio-vsock driver and the stdio channel over it
// (api/stdio_protocol.h): the runtime listens on kStdioPort; the first
// connection the host makes carries the program's stdin, stdout, stderr and
// exit status for the rest of the run.
//
// Device: virtio-mmio v2, device id 19, role kRoleControl in the boot info;
// queues rx 0, tx 1, event 2 at queue_gpa(). Pre-configured by ember-vmm
// (kBootPreconfigured, no MMIO access at all) or initialised here.
//
// Receive: kRxBuffers buffers of kRxBufferSize (header + payload in one
// descriptor) stay posted from boot on, so the host can connect at any
// time. Every packet is checked (vsock_proto.h) and its payload copied at
// once into the stream ring (kStreamBytes = the buf_alloc we advertise), so
// receive buffers never wait for the program: credit updates and resets
// always get through, whatever the program does.
//
// Send: packets (header + payload, one descriptor each) are built in a byte
// ring; data only as far as the peer's credit allows. Control packets
// (RESPONSE, RST, CREDIT_UPDATE, CREDIT_REQUEST) have their own slots, so
// they never wait for data. Notifications are rate-limited like the
// console's (console.h) where ember-vmm runs us; before the program blocks,
// and at exit, everything is notified. At exit the guest waits until the
// device has taken every packet (used ring) before the control-page write
// that ends the VM.
#pragma once

#include <stdint.h>

#include "guest-init/stdio_frames.h"
#include "guest-init/virtio.h"
#include "guest-init/vsock_proto.h"

namespace ember::guest {

class Vsock {
 public:
  static constexpr uint16_t kRxBuffers = 16;
  static constexpr uint32_t kRxBufferSize = 16384;       // header + payload
  static constexpr uint32_t kStreamBytes = 256 * 1024;   // receive stream ring = buf_alloc
  static constexpr uint32_t kTxRingBytes = 256 * 1024;
  static constexpr uint32_t kMaxPacketPayload = 64 * 1024;
  static constexpr uint16_t kMaxDataInFlight = 120;      // descriptors
  static constexpr uint16_t kCtrlSlots = 8;              // descriptors after the data ones
  static constexpr uint32_t kCtrlSlotSize = 48;
  static constexpr uint16_t kEventBuffers = 4;
  static constexpr uint64_t kNotifyIntervalUs = 500;

  // From the boot info: the first vsock device with role kRoleControl.
  void init();
  bool present() const { return present_; }

  // Takes what the device returned (sent packets, events, received
  // packets: accepts the stdio connection, answers strangers, moves data
  // into the stream ring) and sends owed control packets. Cheap when
  // nothing happened.
  void poll();
  // A stdio connection was accepted: stdin/stdout/stderr are the
  // connection's for the rest of the run, even after it ends.
  bool owns_stdio() const { return conn_.ever_connected(); }

  // stdin, once owns_stdio(): like read(2) on a pipe (at least one byte,
  // blocking if none; 0 at EOF; -1 instead of blocking if !block).
  int64_t read(uint8_t* out, uint64_t n, bool block);
  bool readable();  // a read would not block
  bool at_eof();
  uint64_t buffered();  // stdin bytes readable without blocking

  // stdout/stderr: the data as frames of type kFrameStdout/kFrameStderr.
  // Waits for credit or ring space if needed; dropped once the host can
  // no longer receive.
  void write(uint32_t frame_type, const uint8_t* data, uint64_t n);
  void commit();  // one notify decision per write(v)
  void flush();   // notify now if a notification was deferred
  void flush_if_due(uint64_t now_tsc) {
    if (deferred_since_ && now_tsc - deferred_since_ >= interval_) flush();
  }
  bool deferred() const { return deferred_since_ != 0; }

  // The program's end: the exit frame (kExitCode/kExitSignal), then waits
  // until the device has taken every packet. Nothing without a connection.
  void finish(uint32_t kind, uint32_t value);

  // Restore warm-up. A VM restored from a snapshot (or reset in place)
  // faults in every page it writes for the first time: ~8.5 us a page
  // under PVM (measured; first reads are nearly free). A VMM that restored
  // the VM sends a TRANSPORT_RESET event (connections do not survive a
  // restore); the guest then writes, with an atomic no-op, the pages the
  // first request will write (rings, queues, the next receive buffers, the
  // syscall path's data, the program's stack and pending read buffer), while
  // the VM is idle. Once per generation. The buffer a blocked stdin read
  // will fill is noted here by stdio.cc.
  void set_pending_read(uint8_t* buf) { pending_read_ = reinterpret_cast<uint64_t>(buf); }

  // For waits on several sources (stdio.cc): receive interrupts on/off,
  // and whether received packets or events wait to be taken.
  void arm_rx(bool on);
  bool rx_waiting() const { return present_ && (rx_q_.has_used() || ev_q_.has_used()); }

  // Counters (ember.trace).
  uint64_t packets_in() const { return packets_in_; }
  uint64_t packets_out() const { return packets_out_; }

 private:
  uint64_t cid() const;
  void post_rx(uint16_t id);
  void handle_packet(const uint8_t* buf, uint32_t len);
  void queue_reply(const VsockReply& r);
  void pump_control();
  bool send_control(const VsockReply& r, bool on_conn, uint16_t op);
  void reclaim_tx();
  uint8_t* tx_alloc(uint32_t bytes, uint16_t* id);
  void send_stream(const uint8_t* a, uint32_t na, const uint8_t* b, uint64_t nb);
  uint64_t consume(uint8_t* out, uint64_t n);
  void end_connection();
  // One wait: returns on any interrupt (or at once if something is there).
  void wait(bool tx);
  void notify_now();
  void warm_up();

  bool present_ = false;
  bool lazy_ = false;
  uint64_t regs_ = 0;
  uint64_t cfg_cid_ = 0;  // from config space, where the boot info has none
  Virtqueue rx_q_;
  Virtqueue tx_q_;
  Virtqueue ev_q_;
  VsockConn conn_;
  FrameDecoder dec_;
  ByteRing stream_;

  // Receive buffers.
  uint16_t rx_count_ = 0;
  uint16_t rx_owned_ = 0;     // buffers the device holds
  uint32_t rx_posted_ = 0;    // bit i: buffer i is the device's
  uint32_t ev_posted_ = 0;

  // Control packets: owed to the connection (sent as slots free up).
  enum : uint8_t { kOweResponse = 1, kOweRst = 2, kOweCredit = 4, kOweCreditRequest = 8 };
  uint8_t owed_ = 0;
  VsockReply rst_;          // the connection's RST, once reset
  uint32_t ctrl_busy_ = 0;  // bit i: control slot i is in flight
  bool credit_requested_ = false;

  // The data ring (like ConsoleOut): descriptor ids [0, data_slots_).
  uint64_t interval_ = 0;
  uint64_t last_notify_ = 0;
  uint64_t deferred_since_ = 0;
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
  uint16_t data_slots_ = 0;
  uint16_t free_count_ = 0;
  uint16_t fifo_first_ = 0;
  uint16_t fifo_count_ = 0;
  uint16_t free_ids_[kMaxDataInFlight] = {};
  uint16_t fifo_[kMaxDataInFlight] = {};
  uint64_t end_of_[kMaxDataInFlight] = {};
  bool done_[kMaxDataInFlight] = {};

  uint64_t pending_read_ = 0;  // user buffer of the blocked stdin read, 0: none
  uint64_t warm_generation_ = 0;
  uint64_t packets_in_ = 0;
  uint64_t packets_out_ = 0;
};

extern constinit Vsock g_vsock;

}  // namespace ember::guest
