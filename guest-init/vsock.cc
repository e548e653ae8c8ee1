#include "guest-init/vsock.h"

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "api/stdio_protocol.h"
#include "guest-init/direct_map.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

constinit Vsock g_vsock;

namespace {
// In the kernel's .bss: zero pages nobody copies; the device writes the
// receive buffers, the guest touches the rings only as data flows.
alignas(4096) uint8_t g_rx_pool[Vsock::kRxBuffers][Vsock::kRxBufferSize];
alignas(4096) uint8_t g_stream[Vsock::kStreamBytes];
alignas(4096) uint8_t g_tx_ring[Vsock::kTxRingBytes];
alignas(64) uint8_t g_ctrl[Vsock::kCtrlSlots][Vsock::kCtrlSlotSize];
alignas(64) uint8_t g_events[Vsock::kEventBuffers][8];

constexpr uint32_t kRxq = abi::kVsockRxq, kTxq = abi::kVsockTxq, kEventq = abi::kVsockEventq;
constexpr uint32_t kConfigGuestCid = abi::kMmioConfig;  // the device's config space: le64 guest_cid

static_assert(Vsock::kRxBuffers <= 32 && Vsock::kCtrlSlots <= 32 && Vsock::kEventBuffers <= 32);
static_assert((Vsock::kStreamBytes & (Vsock::kStreamBytes - 1)) == 0, "ByteRing needs a power of two");
static_assert(Vsock::kMaxPacketPayload + sizeof(abi::VsockHeader) + 8 <= Vsock::kTxRingBytes / 2);
static_assert(Vsock::kCtrlSlotSize >= sizeof(abi::VsockHeader));
static_assert(Vsock::kRxBufferSize > sizeof(abi::VsockHeader) + sizeof(abi::FrameHeader));

uint64_t read_cid_config(uint64_t regs) {
  const auto* cfg = reinterpret_cast<const volatile uint32_t*>(regs + kConfigGuestCid);
  return uint64_t{cfg[0]} | uint64_t{cfg[1]} << 32;
}

template <typename T>
T read_once(const T& v) {
  return *reinterpret_cast<const volatile T*>(&v);
}

}  // namespace

void Vsock::init() {
  const abi::BootInfo& bi = g_platform.boot();
  const bool preconfigured = bi.flags & abi::kBootPreconfigured;
  const uint32_t count = bi.device_count < abi::kMaxDevices ? bi.device_count : abi::kMaxDevices;
  for (uint32_t d = 0; d < count; d++) {
    const abi::VirtioDevice& dev = bi.devices[d];
    if (dev.device_id != abi::kVirtioIdVsock || dev.role != abi::kRoleControl) continue;
    uint64_t mem[3] = {abi::queue_gpa(d, kRxq), abi::queue_gpa(d, kTxq), abi::queue_gpa(d, kEventq)};
    uint16_t sizes[3] = {abi::kQueueSize, abi::kQueueSize, abi::kQueueSize};
    if (!preconfigured && !virtio_mmio_init(dev.gpa, 3, mem, sizes)) {
      char line[96];
      TextBuf t(line, sizeof line);
      t.str("virtio vsock at ").hex(dev.gpa).str(" refused initialisation");
      g_platform.log(LogLevel::kWarning, t);
      continue;
    }
    // The tx queue must hold the control slots and some data.
    if (sizes[kTxq] <= kCtrlSlots + 1 || sizes[kRxq] == 0 || sizes[kEventq] == 0) continue;
    regs_ = dev.gpa;
    const uint64_t notify = dev.gpa + abi::kMmioQueueNotify;
    rx_q_.attach(mem[kRxq], sizes[kRxq], notify, kRxq);
    tx_q_.attach(mem[kTxq], sizes[kTxq], notify, kTxq);
    ev_q_.attach(mem[kEventq], sizes[kEventq], notify, kEventq);
    if (read_once(bi.guest_cid) == 0) cfg_cid_ = read_cid_config(dev.gpa);
    present_ = true;
    // As the console: lazy notifications need ember-vmm (pre-configured,
    // control page), which takes published packets when the program faults.
    lazy_ = preconfigured && (bi.flags & abi::kBootHasControl);
    interval_ = g_rt.clock.tsc_khz() * kNotifyIntervalUs / 1000;
    conn_.init(abi::kStdioPort, kStreamBytes);
    stream_.attach(g_stream, kStreamBytes);
    const uint16_t tx_size = tx_q_.size();
    data_slots_ = static_cast<uint16_t>(tx_size - kCtrlSlots < kMaxDataInFlight ? tx_size - kCtrlSlots : kMaxDataInFlight);
    for (uint16_t i = 0; i < data_slots_; i++) free_ids_[i] = static_cast<uint16_t>(data_slots_ - 1 - i);
    free_count_ = data_slots_;
    // Receive and event buffers are posted now: the host may connect at
    // any time (and does so right after a restore).
    rx_count_ = rx_q_.size() < kRxBuffers ? rx_q_.size() : kRxBuffers;
    for (uint16_t i = 0; i < rx_count_; i++) post_rx(i);
    const uint16_t evs = ev_q_.size() < kEventBuffers ? ev_q_.size() : kEventBuffers;
    for (uint16_t i = 0; i < evs; i++) {
      ev_q_.set_desc(i, reinterpret_cast<uint64_t>(g_events[i]), sizeof g_events[i], abi::kVirtqDescFWrite);
      ev_q_.push(i);
      ev_posted_ |= 1u << i;
    }
    rx_q_.publish_and_notify();
    ev_q_.publish_and_notify();
    return;
  }
}

uint64_t Vsock::cid() const {
  // Read at every use: a VMM restoring a snapshot may give the VM another
  // CID (it rewrites the boot info while the vCPU is stopped).
  const uint64_t c = read_once(g_platform.boot().guest_cid);
  return c ? c : cfg_cid_;
}

void Vsock::post_rx(uint16_t id) {
  rx_q_.set_desc(id, reinterpret_cast<uint64_t>(g_rx_pool[id]), kRxBufferSize, abi::kVirtqDescFWrite);
  rx_q_.push(id);
  rx_posted_ |= 1u << id;
  rx_owned_++;
}

void Vsock::warm_up() {
  rx_q_.touch_pages();
  tx_q_.touch_pages();
  ev_q_.touch_pages();
  // The buffers the device fills next (the connection request, the first
  // data), in the order they were made available; the device's own writes
  // then find them private already.
  for (uint16_t k = 0; k < 3; k++) {
    const uint16_t id = rx_q_.next_avail_id(k);
    if (id < rx_count_) touch_for_write(g_rx_pool[id]);
  }
  touch_for_write(stream_.head_ptr());
  touch_for_write(g_tx_ring + head_ % kTxRingBytes);
  touch_for_write(g_ctrl);
  // The syscall path's data: the entry's saved rsp, the counters.
  touch_for_write(&ember_user_rsp);
  touch_for_write(&g_stats);
  // The program's side: its stack below the blocked syscall, and the
  // buffer that read will fill (if it is writable RAM at all).
  const uint64_t mem = g_platform.boot().mem_size;
  const uint64_t sp = ember_user_rsp;
  const uint64_t program_pages[] = {sp - 8, sp - 4096 - 8, pending_read_};
  for (uint64_t a : program_pages)
    if (program_page_writable(a, mem)) touch_for_write(reinterpret_cast<void*>(a));
}

void Vsock::arm_rx(bool on) {
  if (!present_) return;
  rx_q_.interrupts(on);
  ev_q_.interrupts(on);
}

// ------------------------------------------------------------ receiving

void Vsock::poll() {
  if (!present_) return;
  reclaim_tx();
  uint32_t id, len;
  bool reposted = false;
  const uint16_t owned_start = rx_owned_;
  uint16_t popped = 0;
  while (rx_q_.pop_used(&id, &len)) {
    if (id >= rx_count_ || !(rx_posted_ & (1u << id))) continue;  // not one we gave: ignore
    rx_posted_ &= ~(1u << id);
    rx_owned_--;
    popped++;
    packets_in_++;
    handle_packet(g_rx_pool[id], len);
    post_rx(static_cast<uint16_t>(id));
    reposted = true;
  }
  if (reposted) {
    rx_q_.publish();
    // A device that ran out of buffers waits for a notify. One that still
    // held half of them after what it returned does not need one: when it
    // runs low it returns buffers, and those bring us back here.
    if (owned_start - popped <= rx_count_ / 2) rx_q_.notify();
  }
  bool events = false;
  while (ev_q_.pop_used(&id, &len)) {
    if (id >= kEventBuffers || !(ev_posted_ & (1u << id))) continue;
    if (len >= 4) {
      uint32_t ev;
      memcpy(&ev, g_events[id], 4);
      if (ev == abi::kVsockEventTransportReset) {
        // The host side was reset (e.g. restored elsewhere): connections
        // are gone, the listener stays; the CID may have changed.
        if (conn_.open()) end_connection();
        conn_.transport_reset();
        owed_ = 0;
        if (read_once(g_platform.boot().guest_cid) == 0 && regs_) cfg_cid_ = read_cid_config(regs_);
        const uint64_t gen = g_platform.generation();
        if (gen != warm_generation_) {
          warm_generation_ = gen;
          warm_up();
        }
      }
    }
    ev_q_.set_desc(static_cast<uint16_t>(id), reinterpret_cast<uint64_t>(g_events[id]), sizeof g_events[id],
                   abi::kVirtqDescFWrite);
    ev_q_.push(static_cast<uint16_t>(id));
    events = true;
  }
  if (events) ev_q_.publish_and_notify();
  pump_control();
}

void Vsock::handle_packet(const uint8_t* buf, uint32_t len) {
  // The used length is the host's word: at least a header, at most the
  // buffer. Anything else cannot even be answered.
  if (len < sizeof(abi::VsockHeader) || len > kRxBufferSize) return;
  abi::VsockHeader h;
  memcpy(&h, buf, sizeof h);
  const bool was_open = conn_.open();
  VsockRx r = conn_.receive(h, len - sizeof(abi::VsockHeader), cid());
  if (r.data) {
    if (r.data > stream_.room()) {  // cannot happen: the credit check covers it
      queue_reply(conn_.reset());
      return;
    }
    stream_.push(buf + sizeof(abi::VsockHeader), r.data);
  }
  if (r.ended && was_open) end_connection();
  if (r.reply.op) queue_reply(r.reply);
  if (r.accepted) {
    // A VMM that connects ahead of its client right after a restore gives
    // us the idle moment to warm up: answer first, then touch the pages.
    const uint64_t gen = g_platform.generation();
    if (gen != warm_generation_) {
      warm_generation_ = gen;
      pump_control();
      warm_up();
    }
  }
}

void Vsock::end_connection() {
  // Output nobody can receive is dropped: forget what waits for credit.
  credit_requested_ = false;
  owed_ &= static_cast<uint8_t>(~(kOweResponse | kOweCredit | kOweCreditRequest));
}

void Vsock::queue_reply(const VsockReply& r) {
  const bool on_conn = r.src_port == conn_.port() && r.dst_port == conn_.peer_port() && conn_.ever_connected();
  if (on_conn) {
    if (r.op == abi::kVsockOpResponse) owed_ |= kOweResponse;
    else if (r.op == abi::kVsockOpCreditUpdate) owed_ |= kOweCredit;
    else if (r.op == abi::kVsockOpRst) {
      if (conn_.open()) conn_.reset();  // a reset we decided on: the connection ends here too
      end_connection();
      rst_ = r;
      owed_ = kOweRst;  // nothing else matters any more
    }
    return;
  }
  // A stranger's RST: best effort (a host flooding us with packets for
  // ports that do not exist gets as many answers as there are free slots).
  send_control(r, false, r.op);
}

bool Vsock::send_control(const VsockReply& r, bool on_conn, uint16_t op) {
  reclaim_tx();
  if (ctrl_busy_ == (1u << kCtrlSlots) - 1) return false;
  uint16_t slot = static_cast<uint16_t>(lowest_bit(~ctrl_busy_ & ((1u << kCtrlSlots) - 1)));
  abi::VsockHeader h;
  if (on_conn && op != abi::kVsockOpRst) conn_.fill(&h, op, 0, 0, cid());
  else conn_.fill_reply(&h, r, cid());
  memcpy(g_ctrl[slot], &h, sizeof h);
  const uint16_t id = static_cast<uint16_t>(data_slots_ + slot);
  tx_q_.set_desc(id, reinterpret_cast<uint64_t>(g_ctrl[slot]), sizeof(abi::VsockHeader), 0);
  tx_q_.push(id);
  tx_q_.publish();
  ctrl_busy_ |= 1u << slot;
  packets_out_++;
  notify_now();  // the host waits for these
  return true;
}

void Vsock::pump_control() {
  while (owed_) {
    VsockReply r{0, conn_.port(), conn_.peer_port()};
    uint8_t bit;
    if (owed_ & kOweRst) r = rst_, bit = kOweRst;
    else if (owed_ & kOweResponse) r.op = abi::kVsockOpResponse, bit = kOweResponse;
    else if (owed_ & kOweCredit) r.op = abi::kVsockOpCreditUpdate, bit = kOweCredit;
    else r.op = abi::kVsockOpCreditRequest, bit = kOweCreditRequest;
    if (!send_control(r, r.op != abi::kVsockOpRst, r.op)) return;
    owed_ &= static_cast<uint8_t>(~bit);
  }
}

// ------------------------------------------------------------ stdin

uint64_t Vsock::consume(uint8_t* out, uint64_t n) {
  uint64_t made = 0;
  for (int piece = 0; piece < 2 && !dec_.error(); piece++) {
    uint32_t len;
    const uint8_t* p = stream_.peek(&len);
    if (len == 0) break;
    uint64_t got = 0;
    const uint32_t used = dec_.feed(p, len, out ? out + made : nullptr, n - made, &got);
    stream_.pop(used);
    conn_.consumed(used);
    made += got;
    if (used < len) break;
  }
  if (dec_.error() && conn_.open()) {
    // Not the protocol: end the connection; the program sees EOF.
    queue_reply(conn_.reset());
    end_connection();
  }
  if (conn_.credit_update_due()) owed_ |= kOweCredit;
  pump_control();
  return made;
}

int64_t Vsock::read(uint8_t* out, uint64_t n, bool block) {
  while (true) {
    poll();
    const uint64_t got = consume(out, n);
    if (got) return static_cast<int64_t>(got);
    if (dec_.eof() || dec_.error() || (conn_.input_ended() && stream_.used() == 0)) return 0;
    if (!block) return -1;
    flush();  // whoever feeds stdin may be waiting for our output
    wait(owed_ != 0);  // an owed control packet waits for a free slot: tx completions too
  }
}

uint64_t Vsock::buffered() {
  // A dry run of the decoder over what is in the ring.
  FrameDecoder d = dec_;
  uint32_t len;
  const uint8_t* p = stream_.peek(&len);
  uint64_t first = 0, second = 0;
  if (d.feed(p, len, nullptr, ~0ull, &first) == len) {
    p = stream_.peek_second(&len);
    d.feed(p, len, nullptr, ~0ull, &second);
  }
  return first + second;
}

bool Vsock::readable() {
  poll();
  if (dec_.eof() || dec_.error()) return true;
  if (buffered()) return true;
  // Only headers (or nothing) left and no more coming: a read returns 0.
  return conn_.input_ended();
}

bool Vsock::at_eof() {
  poll();
  if (dec_.eof() || dec_.error()) return true;
  return conn_.input_ended() && buffered() == 0;
}

// ------------------------------------------------------------ sending

void Vsock::reclaim_tx() {
  uint32_t id, len;
  while (tx_q_.pop_used(&id, &len)) {
    if (id < data_slots_) {
      done_[id] = true;  // a free id the host returns is forgotten when it is handed out again
    } else if (id < uint32_t{data_slots_} + kCtrlSlots) {
      ctrl_busy_ &= ~(1u << (id - data_slots_));
    }
  }
  while (fifo_count_ && done_[fifo_[fifo_first_]]) {
    const uint16_t id = fifo_[fifo_first_];
    done_[id] = false;
    tail_ = end_of_[id];
    free_ids_[free_count_++] = id;
    fifo_first_ = static_cast<uint16_t>((fifo_first_ + 1) % kMaxDataInFlight);
    fifo_count_--;
  }
}

uint8_t* Vsock::tx_alloc(uint32_t bytes, uint16_t* id) {
  bytes = (bytes + 7) & ~7u;
  reclaim_tx();
  if (free_count_ == 0) return nullptr;
  const uint64_t pos = head_ % kTxRingBytes;
  const uint64_t skip = kTxRingBytes - pos < bytes ? kTxRingBytes - pos : 0;  // packets never wrap
  if (kTxRingBytes - (head_ - tail_) < skip + bytes) return nullptr;
  head_ += skip;
  uint8_t* p = g_tx_ring + head_ % kTxRingBytes;
  *id = free_ids_[--free_count_];
  done_[*id] = false;
  head_ += bytes;
  end_of_[*id] = head_;
  fifo_[(fifo_first_ + fifo_count_) % kMaxDataInFlight] = *id;
  fifo_count_++;
  return p;
}

void Vsock::send_stream(const uint8_t* a, uint32_t na, const uint8_t* b, uint64_t nb) {
  const uint64_t total = na + nb;
  uint64_t off = 0;
  while (off < total) {
    poll();
    if (conn_.output_dead()) return;  // nobody receives any more: dropped
    if (owed_ & kOweResponse) {      // the RESPONSE goes first
      flush();
      wait(true);
      continue;
    }
    const uint32_t credit = conn_.tx_credit();
    if (credit == 0) {
      // Ask once per stall; the peer also sends updates as it reads.
      if (!credit_requested_) owed_ |= kOweCreditRequest, credit_requested_ = true;
      pump_control();
      flush();
      wait(owed_ != 0);
      continue;
    }
    credit_requested_ = false;
    uint64_t p = total - off;
    if (p > credit) p = credit;
    if (p > kMaxPacketPayload) p = kMaxPacketPayload;
    uint16_t id;
    uint8_t* pkt = tx_alloc(static_cast<uint32_t>(sizeof(abi::VsockHeader) + p), &id);
    if (!pkt) {  // ring or descriptors full: the device must catch up
      flush();
      wait(true);
      continue;
    }
    // Payload: the rest of `a`, then `b`.
    uint64_t at = sizeof(abi::VsockHeader), left = p, pos = off;
    if (pos < na) {
      const uint64_t t = na - pos < left ? na - pos : left;
      memcpy(pkt + at, a + pos, t);
      at += t, left -= t, pos += t;
    }
    if (left) memcpy(pkt + at, b + (pos - na), left);
    abi::VsockHeader h;
    conn_.fill(&h, abi::kVsockOpRw, static_cast<uint32_t>(p), 0, cid());
    memcpy(pkt, &h, sizeof h);
    tx_q_.set_desc(id, reinterpret_cast<uint64_t>(pkt), static_cast<uint32_t>(sizeof(abi::VsockHeader) + p), 0);
    tx_q_.push(id);
    tx_q_.publish();
    packets_out_++;
    if (owed_ & kOweCredit) owed_ &= static_cast<uint8_t>(~kOweCredit);  // this packet carried fwd_cnt
    if (!deferred_since_) deferred_since_ = rdtsc();
    off += p;
  }
}

void Vsock::write(uint32_t frame_type, const uint8_t* data, uint64_t n) {
  // One frame per packet where credit allows: frame header + up to
  // kMaxPacketPayload - 8 bytes.
  constexpr uint64_t kChunk = kMaxPacketPayload - sizeof(abi::FrameHeader);
  static_assert(kChunk <= abi::kMaxFramePayload);
  while (n) {
    const uint64_t k = n < kChunk ? n : kChunk;
    const abi::FrameHeader fh{frame_type, static_cast<uint32_t>(k)};
    send_stream(reinterpret_cast<const uint8_t*>(&fh), sizeof fh, data, k);
    data += k, n -= k;
  }
}

void Vsock::notify_now() {
  deferred_since_ = 0;
  last_notify_ = rdtsc();
  tx_q_.notify();
}

void Vsock::flush() {
  if (deferred_since_) notify_now();
}

void Vsock::commit() {
  if (!deferred_since_) return;
  reclaim_tx();
  const uint64_t now = rdtsc();
  if (!lazy_ || now - last_notify_ >= interval_ || now - deferred_since_ >= interval_ ||
      head_ - tail_ >= kTxRingBytes / 2 || fifo_count_ >= data_slots_ / 2)
    flush();
}

void Vsock::finish(uint32_t kind, uint32_t value) {
  poll();
  if (conn_.output_dead()) return;
  const abi::FrameHeader fh{abi::kFrameExit, sizeof(abi::ExitPayload)};
  const abi::ExitPayload ep{kind, value};
  send_stream(reinterpret_cast<const uint8_t*>(&fh), sizeof fh, reinterpret_cast<const uint8_t*>(&ep), sizeof ep);
  flush();
  // The VMM ends the VM at the control-page write that follows: every
  // packet must have been taken by the device before it.
  while (!conn_.output_dead() && (fifo_count_ || owed_ || ctrl_busy_)) {
    wait(true);
    poll();
  }
}

// ------------------------------------------------------------ waiting

void Vsock::wait(bool tx) {
  const uint16_t seen = g_platform.wake_count();
  arm_rx(true);
  if (tx) tx_q_.interrupts(true);
  full_barrier();  // the flags must be visible before the last look at the rings
  if (!rx_waiting() && !(tx && tx_q_.has_used())) g_platform.wait_wake(seen);
  arm_rx(false);
  if (tx) tx_q_.interrupts(false);
}

}  // namespace ember::guest
