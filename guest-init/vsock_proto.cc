#include "guest-init/vsock_proto.h"

namespace ember::guest {

void VsockConn::init(uint32_t port, uint32_t buf_alloc) {
  *this = VsockConn{};
  port_ = port;
  buf_alloc_ = buf_alloc;
}

VsockRx VsockConn::receive(const abi::VsockHeader& h, uint32_t avail, uint64_t cid) {
  VsockRx out;
  // Only the host talks to us, and only to our CID; anything else is noise
  // not worth an answer.
  if (h.src_cid != abi::kVsockHostCid || h.dst_cid != cid || cid == 0) return out;
  const bool mine = state_ == State::kOpen && h.dst_port == port_ && h.src_port == peer_port_ &&
                    h.type == abi::kVsockTypeStream;
  if (mine) return on_connection(h, avail);
  if (h.op == abi::kVsockOpRst) return out;  // never answer an RST
  const VsockReply rst{abi::kVsockOpRst, h.dst_port, h.src_port};
  if (h.type != abi::kVsockTypeStream || h.dst_port != port_) {
    out.reply = rst;  // no such socket
    return out;
  }
  if (h.op == abi::kVsockOpRequest && state_ == State::kListen) {
    state_ = State::kOpen;
    peer_port_ = h.src_port;
    take_credit(h);
    out.reply = VsockReply{abi::kVsockOpResponse, port_, peer_port_};
    out.accepted = true;
    return out;
  }
  // A second connection (one per run), or a packet for a connection that
  // does not exist.
  out.reply = rst;
  return out;
}

VsockRx VsockConn::on_connection(const abi::VsockHeader& h, uint32_t avail) {
  VsockRx out;
  switch (h.op) {
    case abi::kVsockOpRw: {
      // The length must be what the buffer holds, and within the credit we
      // gave: a peer that overruns it is broken or hostile.
      if (h.len > avail || peer_shut_send_) return end_with_rst();
      if (h.len > buf_alloc_ - rx_pending()) return end_with_rst();
      take_credit(h);
      rx_cnt_ += h.len;
      out.data = h.len;
      return out;
    }
    case abi::kVsockOpCreditUpdate:
      take_credit(h);
      return out;
    case abi::kVsockOpCreditRequest:
      take_credit(h);
      out.reply = VsockReply{abi::kVsockOpCreditUpdate, port_, peer_port_};
      return out;
    case abi::kVsockOpShutdown:
      take_credit(h);
      if (h.flags & abi::kVsockShutdownRcv) peer_shut_rcv_ = true;
      if (h.flags & abi::kVsockShutdownSend) peer_shut_send_ = true;
      // Both directions shut: the connection is over (Linux answers RST).
      if (peer_shut_rcv_ && peer_shut_send_) return end_with_rst();
      return out;
    case abi::kVsockOpRst:
      state_ = State::kClosed;
      out.ended = true;
      return out;
    case abi::kVsockOpRequest:
      return out;  // a repeated request for the connection we accepted: already answered
    default:
      // RESPONSE (we never connect), INVALID, unknown ops.
      return end_with_rst();
  }
}

VsockRx VsockConn::end_with_rst() {
  VsockRx out;
  out.reply = reset();
  out.ended = true;
  return out;
}

VsockReply VsockConn::reset() {
  const bool was_open = state_ == State::kOpen;
  if (state_ != State::kListen) state_ = State::kClosed;
  if (!was_open) return VsockReply{};
  return VsockReply{abi::kVsockOpRst, port_, peer_port_};
}

void VsockConn::transport_reset() {
  if (state_ == State::kOpen) state_ = State::kClosed;
}

uint32_t VsockConn::tx_credit() const {
  if (output_dead()) return 0;
  // A peer claiming to have consumed more than we sent, or advertising a
  // buffer smaller than what is in flight, gets nothing (it only stalls
  // itself).
  return abi::vsock_credit(peer_buf_alloc_, peer_fwd_cnt_, tx_cnt_);
}

bool VsockConn::credit_update_due() const {
  if (state_ != State::kOpen || peer_shut_send_) return false;
  // The peer believes our free space is buf_alloc - (rx_cnt - adv_fwd_cnt);
  // tell it once half the buffer was consumed since it last heard. So
  // whenever the program blocks reading, the peer has at least half the
  // buffer as credit: no deadlock.
  return fwd_cnt_ - adv_fwd_cnt_ >= buf_alloc_ / 2 && fwd_cnt_ != adv_fwd_cnt_;
}

void VsockConn::fill(abi::VsockHeader* h, uint16_t op, uint32_t len, uint32_t flags, uint64_t cid) {
  h->src_cid = cid;
  h->dst_cid = abi::kVsockHostCid;
  h->src_port = port_;
  h->dst_port = peer_port_;
  h->len = len;
  h->type = abi::kVsockTypeStream;
  h->op = op;
  h->flags = flags;
  h->buf_alloc = buf_alloc_;
  h->fwd_cnt = fwd_cnt_;
  adv_fwd_cnt_ = fwd_cnt_;
  if (op == abi::kVsockOpRw) tx_cnt_ += len;
}

void VsockConn::fill_reply(abi::VsockHeader* h, const VsockReply& r, uint64_t cid) {
  h->src_cid = cid;
  h->dst_cid = abi::kVsockHostCid;
  h->src_port = r.src_port;
  h->dst_port = r.dst_port;
  h->len = 0;
  h->type = abi::kVsockTypeStream;
  h->op = r.op;
  h->flags = 0;
  h->buf_alloc = buf_alloc_;
  h->fwd_cnt = fwd_cnt_;
  // Only replies on our connection tell the peer about our buffer.
  if (state_ == State::kOpen && r.dst_port == peer_port_ && r.src_port == port_) adv_fwd_cnt_ = fwd_cnt_;
}

}  // namespace ember::guest
