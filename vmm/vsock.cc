#include "vmm/vsock.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "api/stdio_frames.h"
#include "base/clock.h"

namespace ember {

namespace {

constexpr size_t kMaxIov = 64;
constexpr size_t kMaxLine = 64;  // "CONNECT 4294967295\n" is 19
constexpr int kAcceptBatch = 16;

// Copies n bytes into the chain's writable buffers starting at byte `offset`.
void scatter(const DescriptorChain& chain, uint64_t offset, const void* src, size_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (const auto& s : chain.writable) {
    if (n == 0) return;
    if (offset >= s.size()) {
      offset -= s.size();
      continue;
    }
    const size_t k = std::min<size_t>(s.size() - offset, n);
    std::memcpy(s.data() + offset, p, k);
    p += k;
    n -= k;
    offset = 0;
  }
}

// Copies n bytes out of the chain's readable buffers starting at `offset`.
void gather(const DescriptorChain& chain, uint64_t offset, void* dst, size_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (const auto& s : chain.readable) {
    if (n == 0) return;
    if (offset >= s.size()) {
      offset -= s.size();
      continue;
    }
    const size_t k = std::min<size_t>(s.size() - offset, n);
    std::memcpy(p, s.data() + offset, k);
    p += k;
    n -= k;
    offset = 0;
  }
}

enum Pending : uint32_t {
  kPendRst = 1,
  kPendRequest = 2,
  kPendResponse = 4,
  kPendShutdown = 8,
  kPendCreditUpdate = 16,
  kPendCreditRequest = 32,
};

}  // namespace

struct VsockDevice::Conn {
  enum State { kAwaitLine, kConnecting, kEstablished, kDraining, kDead, kGone };
  uint64_t token = 0;
  Fd fd;
  State state = kAwaitLine;
  bool host_initiated = false;
  bool stdio = false;
  uint32_t local_port = 0;  // the host side's port
  uint32_t peer_port = 0;   // the guest's port
  uint32_t watched = 0;     // events registered with the watcher (0: not registered)
  bool hup = false;         // the host end hung up: unwatched, reads never block
  bool readable = true;     // worth trying a read (cleared on EAGAIN)
  bool host_eof = false;    // the host will send no more
  bool rst_after_drain = false;
  bool deferred = false;    // a stdio CONNECT waiting for the next run (one stdio connection per run)
  bool unbound = false;     // opened by preconnect(): no host client (fd) yet
  uint32_t peer_shutdown = 0;
  uint32_t pending = 0;     // Pending bits
  uint32_t shutdown_flags = 0;
  // guest -> host
  std::vector<uint8_t> buf;
  size_t buf_off = 0;
  uint32_t fwd_cnt = 0;
  uint32_t reported_fwd_cnt = 0;
  // host -> guest
  uint32_t rx_cnt = 0;
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  bool credit_requested = false;
  uint64_t deadline_ns = 0;  // kConnecting
  std::string line;          // kAwaitLine
  // The guest->host stream of a stdio connection, cut into frames, so that
  // the VMM knows whether it may append an exit frame of its own.
  abi::FrameReader frames{abi::FrameSource::kGuest};

  size_t buffered() const { return buf.size() - buf_off; }
};

VsockDevice::VsockDevice(uint64_t guest_cid, const Log* log, VsockLimits limits)
    : guest_cid_(guest_cid), log_(log), limits_(limits) {}

VsockDevice::~VsockDevice() {
  close_all(/*keep_waiting=*/false);
  if (watcher_ && listen_fd_.valid()) watcher_->watch(listen_fd_.get(), 0, kListenToken);
  if (watcher_ && timer_fd_.valid()) watcher_->watch(timer_fd_.get(), 0, kTimerToken);
  // unlinkat: what the seccomp allow-list has (for snapshots too).
  if (!uds_path_.empty() && listen_fd_.valid()) ::unlinkat(AT_FDCWD, uds_path_.c_str(), 0);
}

void VsockDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
  // struct virtio_vsock_config { le64 guest_cid; }
  for (size_t i = 0; i < data.size(); i++) {
    const uint64_t at = offset + i;
    data[i] = at < 8 ? static_cast<uint8_t>(guest_cid_ >> (8 * at)) : 0;
  }
}

Result<void> VsockDevice::activate(const VirtioContext& ctx, uint64_t) {
  ctx_ = ctx;
  active_ = true;
  rx_starved_ = false;
  promote_deferred();  // a stdio client that came during the last run goes first
  if (!process_tx()) return Error{"vsock transmitq: " + ctx_.queues[abi::kVsockTxq].broken_reason()};
  if (!pump_rx()) return Error{"vsock receiveq: " + ctx_.queues[abi::kVsockRxq].broken_reason()};
  return Ok();
}

void VsockDevice::reset() {
  close_all(/*keep_waiting=*/true);
  active_ = false;
  ctx_ = {};
}

void VsockDevice::finish_used(Virtqueue& q) {
  q.publish_used();
  if (q.should_interrupt()) ctx_.interrupt->raise(abi::kVirtioIntUsedBuffer);
}

bool VsockDevice::process_queue(uint32_t q) {
  if (!active_) return true;
  bool ok = true;
  if (q == abi::kVsockRxq) {
    rx_starved_ = false;
  } else if (q == abi::kVsockTxq) {
    ok = process_tx();
  }
  // The event queue: its buffers stay with us; we have no events to report
  // (connections never outlive a restore, so no TRANSPORT_RESET).
  if (ok) ok = pump_rx();
  for (auto& c : conns_) update_interest(*c);
  return ok;
}

// ---------------------------------------------------------------- host side

Result<void> VsockDevice::listen(const std::string& uds_path, FdWatcher* watcher) {
  watcher_ = watcher;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds_path.empty() || uds_path.size() >= sizeof addr.sun_path)
    return Error{"vsock socket path '" + uds_path + "' is empty or longer than " +
                 std::to_string(sizeof addr.sun_path - 1) + " bytes"};
  std::memcpy(addr.sun_path, uds_path.data(), uds_path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error("vsock socket");
  // A socket file left behind by an earlier VMM is replaced; anything else
  // at that path is not ours to remove.
  struct stat st;
  if (::lstat(uds_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error{"vsock socket path " + uds_path + " exists and is not a socket"};
    ::unlink(uds_path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno_error("bind " + uds_path);
  if (::listen(fd.get(), 64) < 0) return errno_error("listen " + uds_path);
  timer_fd_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer_fd_.valid()) return errno_error("timerfd_create");
  listen_fd_ = std::move(fd);
  uds_path_ = uds_path;
  watcher_->watch(listen_fd_.get(), EPOLLIN, kListenToken);
  watcher_->watch(timer_fd_.get(), EPOLLIN, kTimerToken);
  return Ok();
}

VsockDevice::Conn* VsockDevice::find(uint32_t local_port, uint32_t peer_port) {
  for (auto& c : conns_)
    if (c->state != Conn::kAwaitLine && c->state != Conn::kGone && c->local_port == local_port &&
        c->peer_port == peer_port)
      return c.get();
  return nullptr;
}

VsockDevice::Conn* VsockDevice::by_token(uint64_t token) {
  for (auto& c : conns_)
    if (c->token == token && c->state != Conn::kGone) return c.get();
  return nullptr;
}

uint32_t VsockDevice::allocate_port() {
  for (;;) {
    const uint32_t p = next_port_++;
    if (next_port_ == 0) next_port_ = 1u << 30;
    bool used = false;
    for (auto& c : conns_) used |= c->local_port == p;
    if (!used) return p;
  }
}

uint32_t VsockDevice::peer_credit(const Conn& c) const {
  return abi::vsock_credit(c.peer_buf_alloc, c.peer_fwd_cnt, c.rx_cnt);  // rx_cnt: what we sent the guest
}

void VsockDevice::update_interest(Conn& c) {
  uint32_t want = 0;
  if (c.fd.valid() && !c.hup) {
    switch (c.state) {
      case Conn::kAwaitLine: want = EPOLLIN; break;
      case Conn::kEstablished:
        if (!c.host_eof && !rx_starved_ && peer_credit(c) > 0) want |= EPOLLIN;
        if (c.buffered()) want |= EPOLLOUT;
        break;
      case Conn::kDraining:
        if (c.buffered()) want |= EPOLLOUT;
        break;
      default: break;
    }
  }
  if (want == c.watched || !watcher_) return;
  watcher_->watch(c.fd.get(), want, c.token);
  c.watched = want;
}

void VsockDevice::destroy_conn(uint64_t token) {
  Conn* c = by_token(token);
  if (!c) return;
  if (c->watched && watcher_) watcher_->watch(c->fd.get(), 0, c->token);
  c->watched = 0;
  c->fd.reset();
  c->state = Conn::kGone;  // removed by the sweep at the end of pump_rx()
}

void VsockDevice::reset_conn(Conn& c, bool tell_guest) {
  // A request the guest never saw needs no reset either.
  const bool guest_knows = c.state != Conn::kAwaitLine && !(c.state == Conn::kConnecting && (c.pending & kPendRequest));
  if (c.watched && watcher_) watcher_->watch(c.fd.get(), 0, c.token);
  c.watched = 0;
  c.fd.reset();
  std::vector<uint8_t>().swap(c.buf);
  c.buf_off = 0;
  if (tell_guest && guest_knows && active_) {
    c.state = Conn::kDead;
    c.pending = kPendRst;
  } else {
    c.state = Conn::kGone;
  }
}

void VsockDevice::maybe_credit_update(Conn& c) {
  if (c.state == Conn::kEstablished && c.fwd_cnt - c.reported_fwd_cnt >= limits_.conn_buf / 2)
    c.pending |= kPendCreditUpdate;
}

void VsockDevice::accept_clients() {
  for (int i = 0; i < kAcceptBatch; i++) {
    Fd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR) continue;
      return;  // EAGAIN, or the client already left
    }
    size_t live = 0;
    for (auto& c : conns_) live += c->state != Conn::kGone;
    if (live >= limits_.max_conns) {
      if (log_) log_->debug("vsock: %u connections open: refusing a host client", limits_.max_conns);
      continue;  // closed: the client sees EOF
    }
    auto c = std::make_unique<Conn>();
    c->token = next_token_++;
    c->fd = std::move(fd);
    c->host_initiated = true;
    c->state = Conn::kAwaitLine;
    Conn& raw = *c;
    conns_.push_back(std::move(c));
    // The line is usually there already (clients send it right after
    // connecting): read it now rather than after another epoll round.
    read_connect_line(raw);
    if (raw.state == Conn::kAwaitLine) update_interest(raw);
  }
}

void VsockDevice::read_connect_line(Conn& c) {
  // Peek first and consume only up to the newline: what the client sends
  // after the line belongs to the guest.
  char buf[kMaxLine];
  const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    destroy_conn(c.token);
    return;
  }
  const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
  const size_t take = nl ? static_cast<size_t>(nl - buf) + 1 : static_cast<size_t>(n);
  if (::recv(c.fd.get(), buf, take, MSG_DONTWAIT) != static_cast<ssize_t>(take)) {
    destroy_conn(c.token);
    return;
  }
  c.line.append(buf, take);
  if (c.line.size() > kMaxLine) {
    if (log_) log_->debug("vsock: host client sent an over-long line: closing it");
    destroy_conn(c.token);
    return;
  }
  if (!nl) return;
  // "CONNECT <port>\n"
  uint64_t port = 0;
  bool ok = c.line.rfind("CONNECT ", 0) == 0 && c.line.size() > 9;
  for (size_t i = 8; ok && i + 1 < c.line.size(); i++) {
    const char ch = c.line[i];
    if (ch < '0' || ch > '9' || i > 18) ok = false;
    else port = port * 10 + static_cast<uint64_t>(ch - '0');
  }
  if (ok && port > 0xffffffffu) ok = false;
  if (!ok) {
    if (log_) log_->debug("vsock: host client did not send \"CONNECT <port>\\n\": closing it");
    destroy_conn(c.token);
    return;
  }
  c.line.clear();
  c.line.shrink_to_fit();
  // A connection opened ahead of this client (preconnect()) takes it over.
  for (auto& p : conns_) {
    if (!p->unbound || p->peer_port != port || p->state == Conn::kGone || p->state == Conn::kDead) continue;
    p->unbound = false;
    p->fd = std::move(c.fd);
    c.state = Conn::kGone;
    if (c.watched && watcher_) watcher_->watch(p->fd.get(), 0, c.token);
    c.watched = 0;
    if (p->state == Conn::kEstablished) {
      if (p->stdio) stdio_used_ = true;
      const std::string ok = "OK " + std::to_string(p->local_port) + "\n";
      if (::send(p->fd.get(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(ok.size())) {
        reset_conn(*p, true);
        return;
      }
      p->readable = true;
      flush_tx_buf(*p);  // what the guest sent before the client came
    }
    return;
  }
  c.peer_port = static_cast<uint32_t>(port);
  c.local_port = allocate_port();
  c.stdio = c.peer_port == abi::kStdioPort;
  c.state = Conn::kConnecting;
  if (c.stdio && stdio_busy(&c)) {
    // The guest takes one stdio connection per run: this one waits, unread
    // beyond its line, for the next run (restore --repeat) or the VM's end.
    c.deferred = true;
    return;
  }
  c.pending |= kPendRequest;
  c.deadline_ns = monotonic_ns() + uint64_t{limits_.connect_timeout_ms} * 1000000;
  arm_timer();
}

void VsockDevice::arm_timer() {
  if (!timer_fd_.valid()) return;
  uint64_t first = 0;
  for (auto& c : conns_)
    if (c->state == Conn::kConnecting && !c->deferred && !c->unbound && (first == 0 || c->deadline_ns < first))
      first = c->deadline_ns;
  itimerspec its{};
  if (first) {
    const uint64_t now = monotonic_ns();
    const uint64_t in = first > now ? first - now : 1;
    its.it_value.tv_sec = static_cast<time_t>(in / 1000000000);
    its.it_value.tv_nsec = static_cast<long>(in % 1000000000);
  }
  ::timerfd_settime(timer_fd_.get(), 0, &its, nullptr);
}

void VsockDevice::on_timer() {
  uint64_t expirations;
  while (::read(timer_fd_.get(), &expirations, sizeof expirations) < 0 && errno == EINTR) {
  }
  const uint64_t now = monotonic_ns();
  for (auto& c : conns_) {
    if (c->state != Conn::kConnecting || c->deferred || c->unbound || c->deadline_ns > now) continue;
    if (log_) log_->debug("vsock: guest did not answer the connection to port %u: closing the host client", c->peer_port);
    reset_conn(*c, true);
  }
  arm_timer();
}

bool VsockDevice::flush_tx_buf(Conn& c) {
  if (c.unbound) return true;  // kept until a client comes
  while (c.buffered() && c.fd.valid()) {
    const ssize_t n = ::send(c.fd.get(), c.buf.data() + c.buf_off, c.buffered(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.buf_off += static_cast<size_t>(n);
      c.fwd_cnt += static_cast<uint32_t>(n);
      stats_.tx_bytes += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (log_) log_->debug("vsock: host socket of port %u: %s: resetting", c.local_port, n < 0 ? std::strerror(errno) : "closed");
    reset_conn(c, true);
    return false;
  }
  if (c.buffered() == 0) {
    c.buf.clear();
    c.buf_off = 0;
    if (c.state == Conn::kDraining) {
      if (c.rst_after_drain) reset_conn(c, true);
      else destroy_conn(c.token);
      return true;
    }
    if ((c.peer_shutdown & abi::kVsockShutdownSend) && c.fd.valid()) ::shutdown(c.fd.get(), SHUT_WR);
  } else if (c.buf_off > c.buf.size() / 2) {
    c.buf.erase(c.buf.begin(), c.buf.begin() + static_cast<std::ptrdiff_t>(c.buf_off));
    c.buf_off = 0;
  }
  maybe_credit_update(c);
  return true;
}

void VsockDevice::on_fd_event(uint64_t token, uint32_t events) {
  if (token == kListenToken) {
    if (listen_fd_.valid()) accept_clients();
  } else if (token == kTimerToken) {
    on_timer();
  } else if (Conn* c = by_token(token)) {
    if (events & (EPOLLHUP | EPOLLERR)) {
      // Level-triggered HUP never stops firing: stop watching; reads on a
      // hung-up socket never block, and writes fail.
      c->hup = true;
      c->readable = true;
    }
    switch (c->state) {
      case Conn::kAwaitLine:
        read_connect_line(*c);
        if (c->state == Conn::kAwaitLine && c->hup) destroy_conn(c->token);
        break;
      case Conn::kEstablished:
      case Conn::kDraining:
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) flush_tx_buf(*c);
        if (events & EPOLLIN) c->readable = true;
        break;
      default:
        break;
    }
  }
  if (active_ && !pump_rx()) {
    ctx_.interrupt->needs_reset("vsock receiveq: " + ctx_.queues[abi::kVsockRxq].broken_reason());
    return;
  }
  if (!active_) {
    // No guest to talk to: only host clients waiting for their line exist.
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](auto& c) { return c->state == Conn::kGone; }),
                 conns_.end());
  }
  for (auto& c : conns_) update_interest(*c);
}

// ---------------------------------------------------------------- guest -> host

bool VsockDevice::process_tx() {
  Virtqueue& q = ctx_.queues[abi::kVsockTxq];
  bool any = false;
  for (;;) {
    const auto r = q.pop(scratch_);
    if (r == Virtqueue::Pop::kBroken) {
      if (any) finish_used(q);
      return false;
    }
    if (r == Virtqueue::Pop::kEmpty) break;
    stats_.tx_packets++;
    abi::VsockHeader h;
    if (scratch_.readable_bytes < sizeof h) {
      stats_.dropped++;
      if (log_) log_->debug("vsock: transmit buffer %u shorter than a packet header: dropped", scratch_.head);
    } else {
      gather(scratch_, 0, &h, sizeof h);
      handle_packet(h, scratch_);
    }
    q.add_used(scratch_.head, 0);
    any = true;
  }
  if (any) finish_used(q);
  return true;
}

void VsockDevice::handle_packet(const abi::VsockHeader& h, const DescriptorChain& chain) {
  if (h.src_cid != guest_cid_ || h.dst_cid != abi::kVsockHostCid) {
    stats_.dropped++;
    if (log_) log_->debug("vsock: packet from cid %llu to cid %llu: not ours, dropped",
                          static_cast<unsigned long long>(h.src_cid), static_cast<unsigned long long>(h.dst_cid));
    return;
  }
  Conn* c = find(h.dst_port, h.src_port);
  const bool bad_len = h.len > chain.readable_bytes - sizeof(abi::VsockHeader) || (h.op != abi::kVsockOpRw && h.len != 0);
  if (h.type != abi::kVsockTypeStream || bad_len) {
    stats_.dropped++;
    if (log_) log_->debug("vsock: malformed packet (type %u, op %u, len %u): reset", h.type, h.op, h.len);
    if (c) reset_conn(*c, true);
    else if (h.op != abi::kVsockOpRst && pending_rst_.size() < limits_.max_pending_rst)
      pending_rst_.push_back(PendingRst{h.src_port, h.dst_port});
    return;
  }
  if (!c) {
    if (h.op == abi::kVsockOpRequest) {
      guest_connect(h);
    } else if (h.op != abi::kVsockOpRst && pending_rst_.size() < limits_.max_pending_rst) {
      pending_rst_.push_back(PendingRst{h.src_port, h.dst_port});
    }
    return;
  }
  if (h.buf_alloc != c->peer_buf_alloc || h.fwd_cnt != c->peer_fwd_cnt) c->credit_requested = false;
  c->peer_buf_alloc = h.buf_alloc;
  c->peer_fwd_cnt = h.fwd_cnt;
  if (c->state == Conn::kDead) return;  // a reset is on its way
  if (c->state == Conn::kDraining) {
    if (h.op == abi::kVsockOpRst) c->rst_after_drain = false;
    return;
  }
  switch (h.op) {
    case abi::kVsockOpResponse: {
      if (c->state != Conn::kConnecting || (c->pending & kPendRequest)) {
        reset_conn(*c, true);
        break;
      }
      c->state = Conn::kEstablished;
      if (c->unbound) break;  // preconnect(): the client comes later
      if (c->stdio) stdio_used_ = true;
      const std::string ok = "OK " + std::to_string(c->local_port) + "\n";
      if (::send(c->fd.get(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(ok.size())) {
        reset_conn(*c, true);
        break;
      }
      c->readable = true;
      arm_timer();
      break;
    }
    case abi::kVsockOpRst:
      if (c->state == Conn::kEstablished && c->buffered()) {
        c->state = Conn::kDraining;  // deliver what the guest sent before its reset
        c->rst_after_drain = false;
      } else {
        destroy_conn(c->token);
      }
      break;
    case abi::kVsockOpShutdown:
      if (c->state != Conn::kEstablished) {
        reset_conn(*c, true);
        break;
      }
      c->peer_shutdown |= h.flags & (abi::kVsockShutdownRcv | abi::kVsockShutdownSend);
      if (c->peer_shutdown == (abi::kVsockShutdownRcv | abi::kVsockShutdownSend)) {
        // The guest closed: write out what it sent, then reset (the
        // spec's close handshake).
        if (c->buffered()) {
          c->state = Conn::kDraining;
          c->rst_after_drain = true;
        } else {
          reset_conn(*c, true);
        }
      } else if ((c->peer_shutdown & abi::kVsockShutdownSend) && !c->buffered()) {
        ::shutdown(c->fd.get(), SHUT_WR);
      }
      break;
    case abi::kVsockOpRw:
      handle_rw(*c, h, chain);
      break;
    case abi::kVsockOpCreditUpdate:
      break;  // the credit fields are all it carries
    case abi::kVsockOpCreditRequest:
      if (c->state == Conn::kEstablished) c->pending |= kPendCreditUpdate;
      break;
    default:  // a second REQUEST, INVALID, unknown ops
      reset_conn(*c, true);
      break;
  }
}

void VsockDevice::guest_connect(const abi::VsockHeader& h) {
  size_t live = 0;
  for (auto& c : conns_) live += c->state != Conn::kGone;
  auto refuse = [&](const char* why) {
    if (log_) log_->debug("vsock: guest connection to host port %u refused: %s", h.dst_port, why);
    if (pending_rst_.size() < limits_.max_pending_rst) pending_rst_.push_back(PendingRst{h.src_port, h.dst_port});
  };
  if (uds_path_.empty()) return refuse("no --vsock-uds");
  if (live >= limits_.max_conns) return refuse("too many connections");
  const std::string path = uds_path_ + "_" + std::to_string(h.dst_port);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return refuse("socket path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return refuse(std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return refuse(std::strerror(errno));
  auto c = std::make_unique<Conn>();
  c->token = next_token_++;
  c->fd = std::move(fd);
  c->state = Conn::kEstablished;
  c->local_port = h.dst_port;
  c->peer_port = h.src_port;
  c->peer_buf_alloc = h.buf_alloc;
  c->peer_fwd_cnt = h.fwd_cnt;
  c->pending = kPendResponse;
  conns_.push_back(std::move(c));
}

void VsockDevice::handle_rw(Conn& c, const abi::VsockHeader& h, const DescriptorChain& chain) {
  if (c.state != Conn::kEstablished || (c.peer_shutdown & abi::kVsockShutdownSend)) {
    reset_conn(c, true);
    return;
  }
  const uint32_t len = h.len;
  if (len == 0) return;
  if (c.buffered() + len > limits_.conn_buf) {
    stats_.credit_violations++;
    if (log_) log_->debug("vsock: guest sent %u bytes on port %u beyond its credit (%zu buffered, %u allowed): reset",
                          len, c.local_port, c.buffered(), limits_.conn_buf);
    reset_conn(c, true);
    return;
  }
  // The data: readable bytes [44, 44 + len).
  iovec iov[kMaxIov];
  size_t n_iov = 0;
  uint64_t skip = sizeof(abi::VsockHeader), want = len;
  for (const auto& s : chain.readable) {
    if (want == 0) break;
    if (skip >= s.size()) {
      skip -= s.size();
      continue;
    }
    const size_t k = static_cast<size_t>(std::min<uint64_t>(s.size() - skip, want));
    if (c.stdio) c.frames.skim(s.data() + skip, k);
    if (n_iov < kMaxIov) iov[n_iov++] = iovec{const_cast<uint8_t*>(s.data()) + skip, k};
    want -= k;
    skip = 0;
  }
  size_t written = 0;
  if (c.buffered() == 0 && !c.hup && c.fd.valid()) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = n_iov;
    ssize_t w;
    do {
      w = ::sendmsg(c.fd.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      if (log_) log_->debug("vsock: host socket of port %u: %s: resetting", c.local_port, std::strerror(errno));
      reset_conn(c, true);
      return;
    }
    if (w > 0) written = static_cast<size_t>(w);
  }
  c.fwd_cnt += static_cast<uint32_t>(written);
  stats_.tx_bytes += written;
  if (written < len) {
    // The rest waits for EPOLLOUT; bounded by conn_buf (checked above).
    const size_t old = c.buf.size();
    c.buf.resize(old + (len - written));
    gather(chain, sizeof(abi::VsockHeader) + written, c.buf.data() + old, len - written);
  }
  maybe_credit_update(c);
}

// ---------------------------------------------------------------- host -> guest

bool VsockDevice::fill_rx(Conn* c, uint16_t op, uint32_t flags, uint32_t src_port, uint32_t dst_port, bool data,
                          bool* progress) {
  *progress = false;
  Virtqueue& q = ctx_.queues[abi::kVsockRxq];
  const auto r = q.pop(scratch_);
  if (r == Virtqueue::Pop::kBroken) return false;
  if (r == Virtqueue::Pop::kEmpty) {
    rx_starved_ = true;
    return true;
  }
  if (scratch_.writable_bytes < sizeof(abi::VsockHeader)) {
    ctx_.interrupt->needs_reset("vsock receive buffer " + std::to_string(scratch_.head) + " shorter than a header");
    return false;
  }
  uint32_t n = 0;
  if (data) {
    const uint64_t room =
        std::min<uint64_t>({scratch_.writable_bytes - sizeof(abi::VsockHeader), limits_.max_packet, peer_credit(*c)});
    iovec iov[kMaxIov];
    size_t n_iov = 0;
    uint64_t skip = sizeof(abi::VsockHeader), want = room;
    for (const auto& s : scratch_.writable) {
      if (want == 0 || n_iov == kMaxIov) break;
      if (skip >= s.size()) {
        skip -= s.size();
        continue;
      }
      const size_t k = static_cast<size_t>(std::min<uint64_t>(s.size() - skip, want));
      iov[n_iov++] = iovec{s.data() + skip, k};
      want -= k;
      skip = 0;
    }
    ssize_t got;
    do {
      got = ::readv(c->fd.get(), iov, static_cast<int>(n_iov));
    } while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      q.undo_pop();
      c->readable = false;
      return true;
    }
    if (got <= 0) {
      // End of the host's data (or an error that amounts to it).
      q.undo_pop();
      c->host_eof = true;
      c->shutdown_flags = abi::kVsockShutdownSend | (got < 0 || c->hup ? abi::kVsockShutdownRcv : 0);
      c->pending |= kPendShutdown;
      *progress = true;
      return true;
    }
    n = static_cast<uint32_t>(got);
    c->rx_cnt += n;
    stats_.rx_bytes += n;
  }
  abi::VsockHeader h{};
  h.src_cid = abi::kVsockHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = n;
  h.type = abi::kVsockTypeStream;
  h.op = op;
  h.flags = flags;
  if (c && op != abi::kVsockOpRst) {
    h.buf_alloc = limits_.conn_buf;
    h.fwd_cnt = c->fwd_cnt;
    c->reported_fwd_cnt = c->fwd_cnt;
  }
  scatter(scratch_, 0, &h, sizeof h);
  q.add_used(scratch_.head, static_cast<uint32_t>(sizeof h) + n);
  stats_.rx_packets++;
  if (op == abi::kVsockOpRst) stats_.resets_sent++;
  *progress = true;
  return true;
}

bool VsockDevice::pump_rx() {
  Virtqueue& q = ctx_.queues[abi::kVsockRxq];
  bool any = false, ok = true;
  while (active_ && ok && !rx_starved_) {
    bool progress = false;
    // 1. Resets for packets of connections we do not know.
    if (!pending_rst_.empty()) {
      const PendingRst r = pending_rst_.front();
      ok = fill_rx(nullptr, abi::kVsockOpRst, 0, r.dst_port, r.src_port, false, &progress);
      if (progress) {
        pending_rst_.pop_front();
        any = true;
      }
      continue;
    }
    // 2. Control packets.
    Conn* ctl = nullptr;
    for (auto& c : conns_)
      if (c->pending && c->state != Conn::kGone) {
        ctl = c.get();
        break;
      }
    if (ctl) {
      static constexpr struct {
        uint32_t bit;
        uint16_t op;
      } kOrder[] = {{kPendRst, abi::kVsockOpRst},
                    {kPendRequest, abi::kVsockOpRequest},
                    {kPendResponse, abi::kVsockOpResponse},
                    {kPendShutdown, abi::kVsockOpShutdown},
                    {kPendCreditUpdate, abi::kVsockOpCreditUpdate},
                    {kPendCreditRequest, abi::kVsockOpCreditRequest}};
      for (const auto& o : kOrder) {
        if (!(ctl->pending & o.bit)) continue;
        const uint32_t flags = o.bit == kPendShutdown ? ctl->shutdown_flags : 0;
        ok = fill_rx(ctl, o.op, flags, ctl->local_port, ctl->peer_port, false, &progress);
        if (progress) {
          any = true;
          ctl->pending &= ~o.bit;
          if (o.bit == kPendRst) {
            ctl->pending = 0;
            ctl->state = Conn::kGone;
          } else if (o.bit == kPendRequest) {
            // It is out: from now on a timeout must reset it in the guest too.
          }
        }
        break;
      }
      continue;
    }
    // 3. Data from host sockets, round robin.
    const size_t n = conns_.size();
    bool sent = false;
    for (size_t i = 0; i < n && ok && !rx_starved_; i++) {
      Conn& c = *conns_[(rr_ + i) % n];
      if (c.state != Conn::kEstablished || c.host_eof || !c.readable || !c.fd.valid()) continue;
      if (peer_credit(c) == 0) {
        if (!c.credit_requested) {
          c.credit_requested = true;
          c.pending |= kPendCreditRequest;
          sent = true;
        }
        continue;
      }
      bool p = false;
      ok = fill_rx(&c, abi::kVsockOpRw, 0, c.local_port, c.peer_port, true, &p);
      if (p) {
        any = true;
        sent = true;
        rr_ = (rr_ + i + 1) % n;
        break;
      }
    }
    if (!sent) break;
  }
  if (any) finish_used(q);
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](auto& c) { return c->state == Conn::kGone; }),
               conns_.end());
  return ok;
}

// ---------------------------------------------------------------- end of a run

void VsockDevice::finish(const abi::ExitPayload& exit, int deadline_ms) {
  if (active_) (void)process_tx();
  for (auto& c : conns_) {
    if (!c->stdio || !c->host_initiated) continue;
    if (c->state != Conn::kEstablished && c->state != Conn::kDraining) continue;
    if (!c->frames.at_boundary() || c->frames.ended() || c->frames.error() != abi::FrameError::kNone) continue;
    const size_t old = c->buf.size();
    c->buf.resize(old + sizeof(abi::FrameHeader) + sizeof exit);
    abi::put_frame_header(c->buf.data() + old, abi::kFrameExit, sizeof exit);
    std::memcpy(c->buf.data() + old + sizeof(abi::FrameHeader), &exit, sizeof exit);
    c->frames.skim(c->buf.data() + old, c->buf.size() - old);
  }
  const uint64_t end = monotonic_ns() + uint64_t(deadline_ms > 0 ? deadline_ms : 0) * 1000000;
  for (;;) {
    std::vector<pollfd> fds;
    for (auto& c : conns_) {
      if ((c->state != Conn::kEstablished && c->state != Conn::kDraining) || !c->fd.valid() || !c->buffered()) continue;
      if (!flush_tx_buf(*c)) continue;
      if (c->fd.valid() && c->buffered()) fds.push_back(pollfd{c->fd.get(), POLLOUT, 0});
    }
    if (fds.empty()) break;
    const uint64_t now = monotonic_ns();
    if (now >= end) {
      if (log_) log_->debug("vsock: %zu host clients did not read their output in time", fds.size());
      break;
    }
    ::poll(fds.data(), fds.size(), static_cast<int>((end - now) / 1000000) + 1);
  }
  close_all(/*keep_waiting=*/true);
}

void VsockDevice::close_all(bool keep_waiting) {
  // Host clients the guest has not heard of yet (no CONNECT line read, or a
  // stdio request deferred to the next run) may stay: they belong to no run.
  for (auto& c : conns_) {
    const bool keep = keep_waiting && (c->state == Conn::kAwaitLine || c->deferred);
    if (keep || !c->watched || !watcher_) continue;
    watcher_->watch(c->fd.get(), 0, c->token);
    c->watched = 0;
  }
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                              [&](auto& c) { return !(keep_waiting && (c->state == Conn::kAwaitLine || c->deferred)); }),
               conns_.end());
  pending_rst_.clear();
  rx_starved_ = false;
  stdio_used_ = false;
  if (timer_fd_.valid()) {
    itimerspec its{};
    ::timerfd_settime(timer_fd_.get(), 0, &its, nullptr);
  }
}

bool VsockDevice::stdio_busy(const Conn* except) const {
  if (stdio_used_) return true;
  for (auto& c : conns_)
    if (c.get() != except && c->stdio && c->host_initiated && !c->deferred && !c->unbound &&
        (c->state == Conn::kConnecting || c->state == Conn::kEstablished || c->state == Conn::kDraining))
      return true;
  return false;
}

void VsockDevice::preconnect(uint32_t port) {
  if (!active_ || listen_fd_.valid() == false) return;
  for (auto& c : conns_)
    if (c->unbound && c->peer_port == port) return;
  auto c = std::make_unique<Conn>();
  c->token = next_token_++;
  c->host_initiated = true;
  c->unbound = true;
  c->state = Conn::kConnecting;
  c->peer_port = port;
  c->local_port = allocate_port();
  c->stdio = port == abi::kStdioPort;
  c->pending = kPendRequest;
  conns_.push_back(std::move(c));
  if (!pump_rx()) ctx_.interrupt->needs_reset("vsock receiveq: " + ctx_.queues[abi::kVsockRxq].broken_reason());
}

void VsockDevice::promote_deferred() {
  for (auto& c : conns_) {
    if (!c->deferred || stdio_busy(c.get())) continue;
    c->deferred = false;
    c->pending |= kPendRequest;
    c->deadline_ns = monotonic_ns() + uint64_t{limits_.connect_timeout_ms} * 1000000;
  }
  arm_timer();
}

}  // namespace ember
