// virtio-vsock (virtio spec 5.10), the pure part: the packet header, and one
// stream connection's state machine with its credit-based flow control.
// No memory but its own, no device access: the driver (vsock.h) feeds it
// the packets the device returned and asks it what to send; the host unit
// tests (tests/unit/guest_vsock_test.cc) feed it hostile ones.
//
// The guest is a listener: the host connects (REQUEST), the guest answers
// (RESPONSE), and the guest accepts one connection per run. Nothing the
// host writes is trusted: every cid, port, type, op and length is checked;
// packets for ports or connections that do not exist are answered with RST.
#pragma once

#include <stdint.h>

#include "api/virtio.h"

namespace ember::guest {

// What to send in answer to one received packet (op 0: nothing). Replies
// always go to the host CID.
struct VsockReply {
  uint16_t op = 0;
  uint32_t src_port = 0;  // ours
  uint32_t dst_port = 0;  // theirs
};

// The outcome of one received packet.
struct VsockRx {
  VsockReply reply;
  uint32_t data = 0;      // payload bytes to append to the receive stream (OP_RW on our connection)
  bool accepted = false;  // this packet opened the connection (reply is the RESPONSE)
  bool ended = false;     // this packet ended the connection
};

class VsockConn {
 public:
  enum class State : uint8_t { kListen, kOpen, kClosed };

  // `buf_alloc`: the receive buffer we advertise (the driver's stream ring).
  void init(uint32_t port, uint32_t buf_alloc);

  // One packet from the device. `avail`: payload bytes actually present in
  // the buffer behind the header (the used length minus the header, already
  // clamped to the buffer); `cid`: our CID now.
  VsockRx receive(const abi::VsockHeader& h, uint32_t avail, uint64_t cid);

  // The device reset its transport (event queue): the connection is gone,
  // the listener stays.
  void transport_reset();

  // We end the connection (a protocol violation in the stream): the caller
  // sends the RST that reset_reply() describes.
  VsockReply reset();

  // Fills a header for a packet we send on the connection. For OP_RW `len`
  // payload bytes are counted against the peer's credit (the caller checked
  // tx_credit()). Every packet advertises our buf_alloc and fwd_cnt.
  void fill(abi::VsockHeader* h, uint16_t op, uint32_t len, uint32_t flags, uint64_t cid);
  // A reply to `r` (RST to a stranger, RESPONSE, CREDIT_UPDATE).
  void fill_reply(abi::VsockHeader* h, const VsockReply& r, uint64_t cid);

  // Bytes we may send now (0 unless open and the peer still receives).
  uint32_t tx_credit() const;
  // The program consumed n bytes of the receive stream.
  void consumed(uint32_t n) { fwd_cnt_ += n; }
  // The peer's view of our free space got low: tell it (CREDIT_UPDATE).
  bool credit_update_due() const;

  State state() const { return state_; }
  bool open() const { return state_ == State::kOpen; }
  bool ever_connected() const { return state_ != State::kListen; }
  // The peer sends no more (SHUTDOWN SEND, RST, reset): stdin ends after
  // what is buffered.
  bool input_ended() const { return state_ != State::kOpen || peer_shut_send_; }
  // Nothing we send can arrive any more.
  bool output_dead() const { return state_ != State::kOpen || peer_shut_rcv_; }
  uint32_t peer_port() const { return peer_port_; }
  uint32_t port() const { return port_; }
  uint32_t buf_alloc() const { return buf_alloc_; }
  uint32_t rx_pending() const { return rx_cnt_ - fwd_cnt_; }  // received, not yet consumed
  uint32_t fwd_cnt() const { return fwd_cnt_; }
  uint32_t tx_cnt() const { return tx_cnt_; }

 private:
  VsockRx on_connection(const abi::VsockHeader& h, uint32_t avail);
  VsockRx end_with_rst();
  void take_credit(const abi::VsockHeader& h) {
    peer_buf_alloc_ = h.buf_alloc;
    peer_fwd_cnt_ = h.fwd_cnt;
  }

  State state_ = State::kListen;
  bool peer_shut_send_ = false;
  bool peer_shut_rcv_ = false;
  uint32_t port_ = 0;
  uint32_t peer_port_ = 0;
  // Our receive side: buf_alloc_ advertised, rx_cnt_ bytes received,
  // fwd_cnt_ consumed, adv_fwd_cnt_ the fwd_cnt the peer last heard of.
  uint32_t buf_alloc_ = 0;
  uint32_t rx_cnt_ = 0;
  uint32_t fwd_cnt_ = 0;
  uint32_t adv_fwd_cnt_ = 0;
  // Our send side: the peer's buffer and how much of what we sent it has
  // consumed; tx_cnt_ bytes sent. Free-running u32 counters (spec).
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;
};

}  // namespace ember::guest
