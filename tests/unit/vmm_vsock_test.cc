// The virtio-vsock device (vmm/vsock.h) driven like a guest would drive it
// (rings in guest memory, tests/unit/vmm_test_virtq.h) and like host
// programs would use it (real Unix sockets, Firecracker's CONNECT
// convention), with an epoll set standing in for the VMM's event loop.
// Honest traffic in both directions, credit-based flow control, and hostile
// guests: lies about credit and lengths, malformed and misaddressed
// packets, floods. Needs no /dev/kvm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "api/guest_layout.h"
#include "api/stdio_protocol.h"
#include "tests/unit/test_temp_dir.h"
#include "tests/unit/vmm_test_epoll.h"
#include "tests/unit/vmm_test_virtq.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vsock.h"

namespace ember {
namespace {

using testing::Epoll;
using testing::TestDriver;

constexpr uint64_t kGuestCid = 3;
constexpr uint64_t kRxBufs = 0x100000;  // 64 receive buffers of kRxBufSize
constexpr uint32_t kRxBufSize = 0x1000 + sizeof(abi::VsockHeader);
constexpr uint32_t kRxStride = 0x2000;
constexpr uint64_t kTxBufs = 0x200000;  // transmit buffers, 0x11000 each
constexpr uint32_t kTxStride = 0x11000;

struct Packet {
  abi::VsockHeader h{};
  std::string data;
};

class VsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(16 << 20);
    ASSERT_TRUE(m.ok());
    mem_ = std::move(*m);
    for (uint32_t q = 0; q < 3; q++) drv_[q] = std::make_unique<TestDriver>(mem_, abi::queue_gpa(2, q), 256);
    uds_ = dir_ + "/v.sock";
  }
  void TearDown() override {
    transport_.reset();
    for (int fd : to_close_) ::close(fd);
  }

  void make(VsockLimits limits = {}, bool listen = true) {
    auto dev = std::make_unique<VsockDevice>(kGuestCid, &log_, limits);
    dev_ = dev.get();
    transport_ = std::make_unique<VirtioMmioTransport>(std::move(dev), mem_, [this] { irqs_++; }, &log_);
    ASSERT_TRUE(transport_->preconfigure([](uint32_t q) { return abi::queue_gpa(2, q); }, 256, 0x1000, 0x2000).ok());
    if (listen) {
      auto r = transport_->locked([&](VirtioDevice&) { return dev_->listen(uds_, &ep_); });
      ASSERT_TRUE(r.ok()) << r.message();
    }
  }

  // The event loop: dispatch whatever is ready (without blocking).
  void pump(int timeout_ms = 0) {
    for (int round = 0; round < 64; round++) {
      epoll_event ev[16];
      const int n = ::epoll_wait(ep_.ep, ev, 16, round == 0 ? timeout_ms : 0);
      if (n <= 0) return;
      for (int i = 0; i < n; i++)
        transport_->locked([&](VirtioDevice&) { dev_->on_fd_event(ev[i].data.u64, ev[i].events); });
    }
  }

  // Posts `n` receive buffers.
  void post_rx(int n, uint32_t size = kRxBufSize) {
    for (int i = 0; i < n; i++) {
      const uint16_t slot = rx_slot_++ % 64;
      drv_[0]->set_desc(slot, kRxBufs + uint64_t{slot} * kRxStride, size, abi::kVirtqDescFWrite, 0);
      drv_[0]->make_available(slot);
    }
    transport_->notify(abi::kVsockRxq);
  }
  // Packets the device put in the receive ring since the last call.
  std::vector<Packet> received() {
    std::vector<Packet> out;
    for (; rx_seen_ != drv_[0]->used_idx(); rx_seen_++) {
      const auto u = drv_[0]->used(rx_seen_);
      Packet p;
      EXPECT_GE(u.len, sizeof(abi::VsockHeader));
      const uint64_t at = kRxBufs + uint64_t{u.id} * kRxStride;
      (void)mem_.read(at, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&p.h), sizeof p.h));
      EXPECT_EQ(u.len, sizeof(abi::VsockHeader) + p.h.len);
      p.data.resize(p.h.len);
      (void)mem_.read(at + sizeof(abi::VsockHeader), std::span<uint8_t>(reinterpret_cast<uint8_t*>(p.data.data()), p.data.size()));
      out.push_back(p);
    }
    return out;
  }
  // The guest sends one packet (header and data in one descriptor unless
  // split_at > 0: then two descriptors split at that byte).
  void send(abi::VsockHeader h, const std::string& data = {}, size_t split_at = 0, bool set_len = true) {
    if (set_len) h.len = static_cast<uint32_t>(data.size());
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
    bytes += data;
    const uint16_t slot = tx_slot_++ % 128;
    const uint64_t at = kTxBufs + uint64_t{slot} * kTxStride;
    ASSERT_LE(bytes.size(), kTxStride);
    ASSERT_TRUE(mem_.write(at, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())).ok());
    if (split_at && split_at < bytes.size()) {
      const uint16_t second = static_cast<uint16_t>(128 + slot);
      drv_[1]->set_desc(slot, at, static_cast<uint32_t>(split_at), abi::kVirtqDescFNext, second);
      drv_[1]->set_desc(second, at + split_at, static_cast<uint32_t>(bytes.size() - split_at), 0, 0);
    } else {
      drv_[1]->set_desc(slot, at, static_cast<uint32_t>(bytes.size()), 0, 0);
    }
    drv_[1]->make_available(slot);
    transport_->notify(abi::kVsockTxq);
  }
  abi::VsockHeader hdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t buf_alloc = 1 << 20, uint32_t fwd_cnt = 0) {
    abi::VsockHeader h{};
    h.src_cid = kGuestCid;
    h.dst_cid = abi::kVsockHostCid;
    h.src_port = src_port;
    h.dst_port = dst_port;
    h.type = abi::kVsockTypeStream;
    h.op = op;
    h.buf_alloc = buf_alloc;
    h.fwd_cnt = fwd_cnt;
    return h;
  }

  int client_connect(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    to_close_.push_back(fd);
    return fd;
  }
  static std::string read_some(int fd, int timeout_ms = 1000, size_t max = 1 << 20) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return "<timeout>";
    std::string s(max, '\0');
    const ssize_t n = ::recv(fd, s.data(), s.size(), MSG_DONTWAIT);
    s.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return s;
  }
  static void write_all(int fd, const std::string& s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }

  // Host client connects to guest port `port`; the guest accepts. Returns
  // the client fd and the host port the device picked.
  std::pair<int, uint32_t> establish(uint32_t port, uint32_t guest_buf_alloc = 1 << 20) {
    const int fd = client_connect(uds_);
    write_all(fd, "CONNECT " + std::to_string(port) + "\n");
    pump(200);
    pump(50);
    auto req = received();
    EXPECT_EQ(req.size(), 1u);
    if (req.empty()) return {fd, 0};
    EXPECT_EQ(req[0].h.op, abi::kVsockOpRequest);
    EXPECT_EQ(req[0].h.dst_port, port);
    EXPECT_EQ(req[0].h.src_cid, abi::kVsockHostCid);
    EXPECT_EQ(req[0].h.dst_cid, kGuestCid);
    EXPECT_EQ(req[0].h.type, abi::kVsockTypeStream);
    const uint32_t host_port = req[0].h.src_port;
    send(hdr(abi::kVsockOpResponse, port, host_port, guest_buf_alloc));
    EXPECT_EQ(read_some(fd), "OK " + std::to_string(host_port) + "\n");
    return {fd, host_port};
  }

  Log log_{false};
  GuestMemory mem_;
  std::unique_ptr<TestDriver> drv_[3];
  std::unique_ptr<VirtioMmioTransport> transport_;
  VsockDevice* dev_ = nullptr;
  Epoll ep_;
  ember::testing::TempDir tmp_{"ember-vsock-test"};
  const std::string dir_ = tmp_.path();
  std::string uds_;
  std::vector<int> to_close_;
  uint16_t rx_slot_ = 0, tx_slot_ = 0, rx_seen_ = 0;
  int irqs_ = 0;
};

TEST_F(VsockTest, ConfigSpaceHoldsTheGuestCid) {
  make({}, false);
  EXPECT_EQ(transport_->device().device_id(), 19u);
  uint8_t cfg[12];
  std::memset(cfg, 0xff, sizeof cfg);
  transport_->mmio_read(0x100, cfg);
  uint64_t cid;
  std::memcpy(&cid, cfg, 8);
  EXPECT_EQ(cid, kGuestCid);
  EXPECT_EQ(cfg[8], 0);
  uint32_t hi = 0;
  transport_->mmio_read(0x104, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&hi), 4));
  EXPECT_EQ(hi, 0u);
}

TEST_F(VsockTest, HostConnectsAndBytesFlowBothWays) {
  make();
  post_rx(8);
  auto [fd, host_port] = establish(abi::kStdioPort);
  // host -> guest
  write_all(fd, "hello guest");
  pump(200);
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpRw);
  EXPECT_EQ(p[0].h.src_port, host_port);
  EXPECT_EQ(p[0].h.dst_port, abi::kStdioPort);
  EXPECT_EQ(p[0].data, "hello guest");
  EXPECT_EQ(p[0].h.buf_alloc, VsockLimits{}.conn_buf);
  // guest -> host, header and data in separate descriptors, and split
  // inside the header too
  send(hdr(abi::kVsockOpRw, abi::kStdioPort, host_port), "hello host", sizeof(abi::VsockHeader));
  EXPECT_EQ(read_some(fd), "hello host");
  send(hdr(abi::kVsockOpRw, abi::kStdioPort, host_port), "again", 10);
  EXPECT_EQ(read_some(fd), "again");
  EXPECT_EQ(dev_->connection_count(), 1u);
  EXPECT_GT(irqs_, 0);
}

TEST_F(VsockTest, BytesWrittenBeforeTheAnswerWaitForTheGuest) {
  make();
  post_rx(4);
  const int fd = client_connect(uds_);
  write_all(fd, "CONNECT 77\nearly bytes");  // the data after the line is the guest's
  pump(200);
  auto req = received();
  ASSERT_EQ(req.size(), 1u);
  send(hdr(abi::kVsockOpResponse, 77, req[0].h.src_port));
  EXPECT_EQ(read_some(fd), "OK " + std::to_string(req[0].h.src_port) + "\n");
  pump(200);
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].data, "early bytes");
}

TEST_F(VsockTest, BadConnectLinesCloseTheClient) {
  make();
  post_rx(4);
  for (const std::string& line : std::vector<std::string>{"HELLO 5\n", "CONNECT\n", "CONNECT x\n", "CONNECT 99999999999\n",
                                 std::string(100, 'C')}) {
    const int fd = client_connect(uds_);
    write_all(fd, line);
    pump(200);
    EXPECT_EQ(read_some(fd), "") << line;  // EOF
  }
  EXPECT_TRUE(received().empty());
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockTest, GuestRefusesTheConnection) {
  make();
  post_rx(4);
  const int fd = client_connect(uds_);
  write_all(fd, "CONNECT 9\n");
  pump(200);
  auto req = received();
  ASSERT_EQ(req.size(), 1u);
  send(hdr(abi::kVsockOpRst, 9, req[0].h.src_port));
  EXPECT_EQ(read_some(fd), "");
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockTest, GuestThatNeverAnswersTimesOut) {
  VsockLimits l;
  l.connect_timeout_ms = 50;
  make(l);
  post_rx(4);
  const int fd = client_connect(uds_);
  write_all(fd, "CONNECT 9\n");
  pump(100);
  EXPECT_EQ(received().size(), 1u);  // the request
  pump(300);
  EXPECT_EQ(read_some(fd), "");
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpRst);
}

TEST_F(VsockTest, HostToGuestHonoursTheGuestsCredit) {
  make();
  post_rx(16);
  auto [fd, host_port] = establish(5, /*guest_buf_alloc=*/100);
  write_all(fd, std::string(250, 'a'));
  pump(200);
  auto p = received();
  // 100 bytes of data, then a credit request (the guest's window is full).
  size_t data = 0;
  bool asked = false;
  for (auto& x : p) {
    if (x.h.op == abi::kVsockOpRw) data += x.data.size();
    if (x.h.op == abi::kVsockOpCreditRequest) asked = true;
  }
  EXPECT_EQ(data, 100u);
  EXPECT_TRUE(asked);
  // The guest consumed 100 bytes: 100 more may come.
  send(hdr(abi::kVsockOpCreditUpdate, 5, host_port, 100, 100));
  pump(100);
  data = 0;
  for (auto& x : received())
    if (x.h.op == abi::kVsockOpRw) data += x.data.size();
  EXPECT_EQ(data, 100u);
  // A guest that claims to have consumed more than it ever got stalls its
  // own connection (no credit) and costs the host nothing: data is never
  // buffered on the host.
  send(hdr(abi::kVsockOpCreditUpdate, 5, host_port, 100, 4000000000u));
  pump(100);
  data = 0;
  for (auto& x : received())
    if (x.h.op == abi::kVsockOpRw) data += x.data.size();
  EXPECT_EQ(data, 0u);
  EXPECT_EQ(dev_->connection_count(), 1u);
}

TEST_F(VsockTest, NoReceiveBuffersMeansWaitingNotBuffering) {
  make();
  post_rx(2);
  auto [fd, host_port] = establish(5);
  (void)host_port;
  write_all(fd, std::string(3 * 4096, 'b'));
  pump(200);
  size_t got = 0;
  for (auto& x : received()) got += x.data.size();
  EXPECT_EQ(got, 4096u);  // one buffer of 4096 data bytes left after the request
  post_rx(4);
  pump(100);
  for (auto& x : received()) got += x.data.size();
  EXPECT_EQ(got, 3u * 4096);
}

TEST_F(VsockTest, GuestBeyondItsCreditIsReset) {
  VsockLimits l;
  l.conn_buf = 8192;
  make(l);
  post_rx(8);
  auto [fd, host_port] = establish(5);
  // The client never reads: once the socket buffer is full, what the guest
  // sends is buffered up to conn_buf and then the connection is reset.
  const std::string chunk(0x10000 - sizeof(abi::VsockHeader), 'z');
  bool reset = false;
  for (int i = 0; i < 64 && !reset; i++) {
    send(hdr(abi::kVsockOpRw, 5, host_port), chunk);
    for (auto& x : received()) reset |= x.h.op == abi::kVsockOpRst;
  }
  EXPECT_TRUE(reset);
  EXPECT_EQ(dev_->stats().credit_violations, 1u);
  EXPECT_EQ(dev_->connection_count(), 0u);
  (void)fd;
}

TEST_F(VsockTest, CreditUpdatesFollowTheHostReader) {
  VsockLimits l;
  l.conn_buf = 8192;
  make(l);
  post_rx(32);
  auto [fd, host_port] = establish(5);
  uint32_t sent = 0, last_fwd = 0;
  std::string got;
  for (int i = 0; i < 20; i++) {
    // An honest guest: never more than buf_alloc - (sent - fwd_cnt).
    const uint32_t window = 8192 - (sent - last_fwd);
    const uint32_t n = std::min<uint32_t>(window, 3000);
    if (n) {
      send(hdr(abi::kVsockOpRw, 5, host_port), std::string(n, static_cast<char>('a' + i % 26)));
      sent += n;
    }
    got += read_some(fd, 100);
    pump();
    for (auto& x : received()) {
      EXPECT_NE(x.h.op, abi::kVsockOpRst);
      last_fwd = x.h.fwd_cnt;
    }
  }
  while (got.size() < sent) got += read_some(fd, 100);
  EXPECT_EQ(got.size(), sent);
  EXPECT_GT(sent, 3u * 8192);  // the window moved
  EXPECT_EQ(dev_->stats().credit_violations, 0u);
}

TEST_F(VsockTest, MalformedPacketsAreDroppedOrReset) {
  make();
  post_rx(16);
  auto [fd, host_port] = establish(5);
  // Shorter than a header: dropped, the ring stays healthy.
  {
    const uint16_t slot = 200;
    drv_[1]->set_desc(slot, kTxBufs, 10, 0, 0);
    drv_[1]->make_available(slot);
    transport_->notify(abi::kVsockTxq);
  }
  // Misaddressed: another source CID, another destination CID: dropped.
  abi::VsockHeader h = hdr(abi::kVsockOpRw, 5, host_port);
  h.src_cid = 7;
  send(h, "x");
  h = hdr(abi::kVsockOpRw, 5, host_port);
  h.dst_cid = 9;
  send(h, "x");
  EXPECT_EQ(dev_->stats().dropped, 3u);
  EXPECT_EQ(dev_->connection_count(), 1u);
  // A length beyond the data: the connection is reset.
  h = hdr(abi::kVsockOpRw, 5, host_port);
  h.len = 5000;
  send(h, "short", 0, /*set_len=*/false);
  auto p = received();
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.back().h.op, abi::kVsockOpRst);
  EXPECT_EQ(read_some(fd), "");
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_FALSE(transport_->needs_reset());
}

TEST_F(VsockTest, PacketsForUnknownConnectionsGetBoundedResets) {
  make();
  // No receive buffers: resets queue up, but only so many.
  for (uint32_t i = 0; i < 300; i++) send(hdr(abi::kVsockOpRw, 1000 + i, 2000), "x");
  post_rx(64);
  pump();
  post_rx(64);
  pump();
  const auto p = received();
  EXPECT_EQ(p.size(), VsockLimits{}.max_pending_rst);
  for (auto& x : p) EXPECT_EQ(x.h.op, abi::kVsockOpRst);
  // A reset is never answered with a reset.
  send(hdr(abi::kVsockOpRst, 1, 2));
  EXPECT_TRUE(received().empty());
}

TEST_F(VsockTest, GuestConnectsToTheHost) {
  make();
  post_rx(8);
  // A host program listens on uds_path_5000.
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  to_close_.push_back(lfd);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, (uds_ + "_5000").c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  send(hdr(abi::kVsockOpRequest, 4321, 5000));
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpResponse);
  EXPECT_EQ(p[0].h.src_port, 5000u);
  EXPECT_EQ(p[0].h.dst_port, 4321u);
  const int sfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(sfd, 0);
  to_close_.push_back(sfd);
  send(hdr(abi::kVsockOpRw, 4321, 5000), "ping");
  EXPECT_EQ(read_some(sfd), "ping");
  write_all(sfd, "pong");
  pump(200);
  p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].data, "pong");
  // Nobody listens on port 6000: refused.
  send(hdr(abi::kVsockOpRequest, 4322, 6000));
  p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpRst);
  EXPECT_EQ(p[0].h.dst_port, 4322u);
}

TEST_F(VsockTest, ShutdownAndEof) {
  make();
  post_rx(8);
  auto [fd, host_port] = establish(5);
  // Host half-closes: the guest learns SHUTDOWN(SEND).
  ::shutdown(fd, SHUT_WR);
  pump(200);
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpShutdown);
  EXPECT_TRUE(p[0].h.flags & abi::kVsockShutdownSend);
  // The guest still sends, then closes (both flags): the host reads the
  // data, then EOF, and the guest gets its reset.
  send(hdr(abi::kVsockOpRw, 5, host_port), "bye");
  send(hdr(abi::kVsockOpShutdown, 5, host_port), "");
  abi::VsockHeader h = hdr(abi::kVsockOpShutdown, 5, host_port);
  h.flags = abi::kVsockShutdownSend | abi::kVsockShutdownRcv;
  send(h);
  EXPECT_EQ(read_some(fd), "bye");
  EXPECT_EQ(read_some(fd), "");
  p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpRst);
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockTest, FinishReportsTheExitOnStdioConnections) {
  make();
  post_rx(8);
  auto [fd, host_port] = establish(abi::kStdioPort);
  // One complete stdout frame, no exit frame: the VMM adds one.
  abi::FrameHeader fh{abi::kFrameStdout, 2};
  std::string frame(reinterpret_cast<const char*>(&fh), sizeof fh);
  frame += "ok";
  send(hdr(abi::kVsockOpRw, abi::kStdioPort, host_port), frame);
  transport_->locked([&](VirtioDevice&) { dev_->finish(abi::ExitPayload{abi::kExitSignal, 11}, 1000); });
  std::string got;
  for (std::string s; (s = read_some(fd)) != "" && s != "<timeout>";) got += s;
  ASSERT_EQ(got.size(), frame.size() + 16);
  EXPECT_EQ(got.substr(0, frame.size()), frame);
  abi::FrameHeader eh;
  abi::ExitPayload ep;
  std::memcpy(&eh, got.data() + frame.size(), 8);
  std::memcpy(&ep, got.data() + frame.size() + 8, 8);
  EXPECT_EQ(eh.type, abi::kFrameExit);
  EXPECT_EQ(eh.length, 8u);
  EXPECT_EQ(ep.kind, abi::kExitSignal);
  EXPECT_EQ(ep.value, 11u);
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockTest, FinishAddsNothingMidFrame) {
  make();
  post_rx(8);
  auto [fd1, port1] = establish(abi::kStdioPort);
  abi::FrameHeader fh{abi::kFrameStdout, 10};
  std::string partial(reinterpret_cast<const char*>(&fh), sizeof fh);
  partial += "abc";  // 7 bytes of the payload missing
  send(hdr(abi::kVsockOpRw, abi::kStdioPort, port1), partial);
  EXPECT_EQ(read_some(fd1), partial);
  transport_->locked([&](VirtioDevice&) { dev_->finish(abi::ExitPayload{abi::kExitSignal, 11}, 1000); });
  EXPECT_EQ(read_some(fd1), "");
}

TEST_F(VsockTest, FinishAddsNothingAfterTheGuestsExitFrame) {
  make();
  post_rx(8);
  auto [fd2, port2] = establish(abi::kStdioPort);
  abi::FrameHeader eh{abi::kFrameExit, 8};
  abi::ExitPayload ep{abi::kExitCode, 3};
  std::string exit_frame(reinterpret_cast<const char*>(&eh), 8);
  exit_frame.append(reinterpret_cast<const char*>(&ep), 8);
  send(hdr(abi::kVsockOpRw, abi::kStdioPort, port2), exit_frame);
  EXPECT_EQ(read_some(fd2), exit_frame);
  transport_->locked([&](VirtioDevice&) { dev_->finish(abi::ExitPayload{abi::kExitSignal, 11}, 1000); });
  EXPECT_EQ(read_some(fd2), "");
}

TEST_F(VsockTest, TooManyConnectionsAreRefused) {
  VsockLimits l;
  l.max_conns = 2;
  make(l);
  post_rx(16);
  establish(1);
  establish(2);
  const int fd = client_connect(uds_);
  pump(200);
  EXPECT_EQ(read_some(fd), "");
  send(hdr(abi::kVsockOpRequest, 9, 9));
  auto p = received();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].h.op, abi::kVsockOpRst);
}

TEST_F(VsockTest, ResetDropsEveryConnection) {
  make();
  post_rx(8);
  auto [fd, host_port] = establish(5);
  (void)host_port;
  transport_->locked([&](VirtioDevice&) { dev_->close_all(); });
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(read_some(fd), "");
  // The listener lives on.
  auto [fd2, port2] = establish(6);
  EXPECT_NE(port2, 0u);
  (void)fd2;
}

TEST_F(VsockTest, OneStdioConnectionPerRunOthersWaitForTheNext) {
  make();
  const VirtioMmioState fresh = transport_->save();
  post_rx(8);
  auto [fd1, port1] = establish(abi::kStdioPort);
  // A second stdio client in the same run: its line is read, but the guest
  // hears nothing of it.
  const int fd2 = client_connect(uds_);
  write_all(fd2, "CONNECT 1024\n");
  pump(200);
  EXPECT_TRUE(received().empty());
  EXPECT_EQ(read_some(fd2, 100), "<timeout>");
  // Other ports are not limited.
  establish(77);
  // The run ends; the second client stays.
  transport_->locked([&](VirtioDevice&) { dev_->finish(abi::ExitPayload{abi::kExitCode, 0}, 1000); });
  std::string got;
  for (std::string x; (x = read_some(fd1)) != "" && x != "<timeout>";) got += x;
  EXPECT_EQ(got.size(), 16u);  // the VMM's exit frame
  EXPECT_EQ(dev_->connection_count(), 1u);
  // Reset in place: rings back to the snapshot (here: fresh), device restored.
  for (uint32_t q = 0; q < 3; q++) {
    std::vector<uint8_t> zero(0x3000, 0);
    ASSERT_TRUE(mem_.write(abi::queue_gpa(2, q), zero).ok());
    drv_[q] = std::make_unique<TestDriver>(mem_, abi::queue_gpa(2, q), 256);
  }
  rx_seen_ = rx_slot_ = tx_slot_ = 0;
  ASSERT_TRUE(transport_->restore(fresh).ok());
  post_rx(8);
  auto req = received();
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0].h.op, abi::kVsockOpRequest);
  EXPECT_EQ(req[0].h.dst_port, abi::kStdioPort);
  send(hdr(abi::kVsockOpResponse, abi::kStdioPort, req[0].h.src_port));
  EXPECT_EQ(read_some(fd2), "OK " + std::to_string(req[0].h.src_port) + "\n");
  (void)port1;
}

}  // namespace
}  // namespace ember
