// Unit tests of the guest's vsock and stdio-frame logic (guest-init/
// vsock_proto.*, stdio_frames.*), compiled for the host: the packet header,
// the connection state machine with credit-based flow control, the frame
// decoder and the stream ring, fed well-formed and hostile input.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "api/stdio_protocol.h"
#include "guest-init/stdio_frames.cc"
#include "guest-init/vsock_proto.cc"

namespace ember::guest {
namespace {

constexpr uint64_t kCid = 3;
constexpr uint32_t kPort = abi::kStdioPort;
constexpr uint32_t kBuf = 256 * 1024;
constexpr uint32_t kHostPort = 50000;

abi::VsockHeader hdr(uint16_t op, uint32_t len = 0, uint32_t src_port = kHostPort, uint32_t dst_port = kPort) {
  abi::VsockHeader h{};
  h.src_cid = abi::kVsockHostCid;
  h.dst_cid = kCid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = len;
  h.type = abi::kVsockTypeStream;
  h.op = op;
  h.buf_alloc = 64 * 1024;
  h.fwd_cnt = 0;
  return h;
}

VsockConn listening() {
  VsockConn c;
  c.init(kPort, kBuf);
  return c;
}

VsockConn connected() {
  VsockConn c = listening();
  VsockRx r = c.receive(hdr(abi::kVsockOpRequest), 0, kCid);
  EXPECT_TRUE(r.accepted);
  return c;
}

// ------------------------------------------------------------ header

TEST(GuestVsockHeader, LayoutIsTheSpecs) {
  EXPECT_EQ(sizeof(abi::VsockHeader), 44u);
  EXPECT_EQ(offsetof(abi::VsockHeader, src_cid), 0u);
  EXPECT_EQ(offsetof(abi::VsockHeader, dst_cid), 8u);
  EXPECT_EQ(offsetof(abi::VsockHeader, src_port), 16u);
  EXPECT_EQ(offsetof(abi::VsockHeader, dst_port), 20u);
  EXPECT_EQ(offsetof(abi::VsockHeader, len), 24u);
  EXPECT_EQ(offsetof(abi::VsockHeader, type), 28u);
  EXPECT_EQ(offsetof(abi::VsockHeader, op), 30u);
  EXPECT_EQ(offsetof(abi::VsockHeader, flags), 32u);
  EXPECT_EQ(offsetof(abi::VsockHeader, buf_alloc), 36u);
  EXPECT_EQ(offsetof(abi::VsockHeader, fwd_cnt), 40u);
}

// ------------------------------------------------------------ connections

TEST(GuestVsockConn, AcceptsTheHostOnTheStdioPort) {
  VsockConn c = listening();
  EXPECT_FALSE(c.ever_connected());
  VsockRx r = c.receive(hdr(abi::kVsockOpRequest), 0, kCid);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.reply.op, abi::kVsockOpResponse);
  EXPECT_EQ(r.reply.src_port, kPort);
  EXPECT_EQ(r.reply.dst_port, kHostPort);
  EXPECT_TRUE(c.open());
  EXPECT_EQ(c.peer_port(), kHostPort);
  EXPECT_EQ(c.tx_credit(), 64u * 1024);  // the peer's buf_alloc from the request

  abi::VsockHeader out{};
  c.fill_reply(&out, r.reply, kCid);
  EXPECT_EQ(out.src_cid, kCid);
  EXPECT_EQ(out.dst_cid, abi::kVsockHostCid);
  EXPECT_EQ(out.src_port, kPort);
  EXPECT_EQ(out.dst_port, kHostPort);
  EXPECT_EQ(out.op, abi::kVsockOpResponse);
  EXPECT_EQ(out.type, abi::kVsockTypeStream);
  EXPECT_EQ(out.buf_alloc, kBuf);
  EXPECT_EQ(out.fwd_cnt, 0u);
  EXPECT_EQ(out.len, 0u);
}

TEST(GuestVsockConn, UnknownPortsGetRst) {
  VsockConn c = listening();
  VsockRx r = c.receive(hdr(abi::kVsockOpRequest, 0, kHostPort, 9999), 0, kCid);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_EQ(r.reply.src_port, 9999u);
  EXPECT_EQ(r.reply.dst_port, kHostPort);
  EXPECT_FALSE(c.ever_connected());
  // Data for a connection that does not exist.
  r = c.receive(hdr(abi::kVsockOpRw, 5), 5, kCid);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_EQ(r.data, 0u);
  // Never an answer to an RST.
  r = c.receive(hdr(abi::kVsockOpRst, 0, kHostPort, 9999), 0, kCid);
  EXPECT_EQ(r.reply.op, 0);
  r = c.receive(hdr(abi::kVsockOpRst), 0, kCid);
  EXPECT_EQ(r.reply.op, 0);
}

TEST(GuestVsockConn, WrongCidsAreIgnored) {
  VsockConn c = listening();
  abi::VsockHeader h = hdr(abi::kVsockOpRequest);
  h.dst_cid = 4;
  EXPECT_EQ(c.receive(h, 0, kCid).reply.op, 0);
  h = hdr(abi::kVsockOpRequest);
  h.src_cid = 7;  // only the host talks to us
  EXPECT_EQ(c.receive(h, 0, kCid).reply.op, 0);
  h = hdr(abi::kVsockOpRequest);
  h.dst_cid = 0;
  EXPECT_EQ(c.receive(h, 0, 0).reply.op, 0);  // no CID known: nothing is ours
  h.dst_cid = ~0ull;
  EXPECT_EQ(c.receive(h, 0, kCid).reply.op, 0);
  EXPECT_FALSE(c.ever_connected());
  // The CID is the caller's current one (a restored VM may have another).
  h = hdr(abi::kVsockOpRequest);
  h.dst_cid = 42;
  EXPECT_TRUE(c.receive(h, 0, 42).accepted);
}

TEST(GuestVsockConn, OtherSocketTypesGetRst) {
  VsockConn c = listening();
  abi::VsockHeader h = hdr(abi::kVsockOpRequest);
  h.type = 2;  // SEQPACKET
  VsockRx r = c.receive(h, 0, kCid);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_FALSE(c.ever_connected());
  // Also on an open connection's ports: not the connection.
  c = connected();
  h = hdr(abi::kVsockOpRw, 1);
  h.type = 0xffff;
  r = c.receive(h, 1, kCid);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_EQ(r.data, 0u);
}

TEST(GuestVsockConn, OneConnectionPerRun) {
  VsockConn c = connected();
  // A second connection from another port: refused.
  VsockRx r = c.receive(hdr(abi::kVsockOpRequest, 0, kHostPort + 1), 0, kCid);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_EQ(r.reply.dst_port, kHostPort + 1);
  EXPECT_TRUE(c.open());
  // The same request again: already answered, nothing happens.
  r = c.receive(hdr(abi::kVsockOpRequest), 0, kCid);
  EXPECT_EQ(r.reply.op, 0);
  EXPECT_TRUE(c.open());
  // After it ends, nobody else gets in.
  r = c.receive(hdr(abi::kVsockOpRst), 0, kCid);
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.reply.op, 0);
  EXPECT_FALSE(c.open());
  EXPECT_TRUE(c.ever_connected());
  EXPECT_TRUE(c.input_ended());
  EXPECT_TRUE(c.output_dead());
  r = c.receive(hdr(abi::kVsockOpRequest), 0, kCid);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
}

TEST(GuestVsockConn, DataWithinCredit) {
  VsockConn c = connected();
  VsockRx r = c.receive(hdr(abi::kVsockOpRw, 1000), 1000, kCid);
  EXPECT_EQ(r.data, 1000u);
  EXPECT_EQ(r.reply.op, 0);
  EXPECT_EQ(c.rx_pending(), 1000u);
  // Up to exactly buf_alloc in flight is fine.
  r = c.receive(hdr(abi::kVsockOpRw, kBuf - 1000), kBuf - 1000, kCid);
  EXPECT_EQ(r.data, kBuf - 1000);
  EXPECT_EQ(c.rx_pending(), kBuf);
  c.consumed(kBuf);
  EXPECT_EQ(c.rx_pending(), 0u);
  // A zero-length RW only carries credit.
  abi::VsockHeader h = hdr(abi::kVsockOpRw, 0);
  h.buf_alloc = 5000;
  r = c.receive(h, 0, kCid);
  EXPECT_EQ(r.data, 0u);
  EXPECT_EQ(c.tx_credit(), 5000u);
}

TEST(GuestVsockConn, OverrunningTheCreditResets) {
  VsockConn c = connected();
  EXPECT_EQ(c.receive(hdr(abi::kVsockOpRw, kBuf - 10), kBuf - 10, kCid).data, kBuf - 10);
  VsockRx r = c.receive(hdr(abi::kVsockOpRw, 11), 11, kCid);
  EXPECT_EQ(r.data, 0u);
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_EQ(r.reply.dst_port, kHostPort);
  EXPECT_FALSE(c.open());
}

TEST(GuestVsockConn, LengthBeyondTheBufferResets) {
  VsockConn c = connected();
  VsockRx r = c.receive(hdr(abi::kVsockOpRw, 100), 99, kCid);  // the header claims more than arrived
  EXPECT_EQ(r.data, 0u);
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  c = connected();
  r = c.receive(hdr(abi::kVsockOpRw, 0xffffffffu), 16000, kCid);
  EXPECT_EQ(r.data, 0u);
  EXPECT_TRUE(r.ended);
}

TEST(GuestVsockConn, CreditAccountingOfWhatWeSend) {
  VsockConn c = connected();  // peer buf_alloc 64 KiB, fwd_cnt 0
  abi::VsockHeader h{};
  c.fill(&h, abi::kVsockOpRw, 40000, 0, kCid);
  EXPECT_EQ(h.len, 40000u);
  EXPECT_EQ(h.op, abi::kVsockOpRw);
  EXPECT_EQ(c.tx_cnt(), 40000u);
  EXPECT_EQ(c.tx_credit(), 64u * 1024 - 40000);
  c.fill(&h, abi::kVsockOpRw, 64 * 1024 - 40000, 0, kCid);
  EXPECT_EQ(c.tx_credit(), 0u);
  // The peer read 30000 bytes.
  abi::VsockHeader u = hdr(abi::kVsockOpCreditUpdate);
  u.fwd_cnt = 30000;
  EXPECT_EQ(c.receive(u, 0, kCid).reply.op, 0);
  EXPECT_EQ(c.tx_credit(), 30000u);
  // Control packets do not count.
  c.fill(&h, abi::kVsockOpCreditUpdate, 0, 0, kCid);
  EXPECT_EQ(c.tx_cnt(), 64u * 1024);
}

TEST(GuestVsockConn, HostileCreditOnlyStallsTheHost) {
  VsockConn c = connected();
  abi::VsockHeader h{};
  c.fill(&h, abi::kVsockOpRw, 1000, 0, kCid);
  // Claims to have consumed more than we ever sent.
  abi::VsockHeader u = hdr(abi::kVsockOpCreditUpdate);
  u.fwd_cnt = 5000;
  c.receive(u, 0, kCid);
  EXPECT_EQ(c.tx_credit(), 0u);
  // Shrinks its buffer below what is in flight.
  u.fwd_cnt = 0;
  u.buf_alloc = 10;
  c.receive(u, 0, kCid);
  EXPECT_EQ(c.tx_credit(), 0u);
  // Huge buffer: credit is what it says, never more than u32.
  u.buf_alloc = 0xffffffffu;
  u.fwd_cnt = 1000;
  c.receive(u, 0, kCid);
  EXPECT_EQ(c.tx_credit(), 0xffffffffu);
}

TEST(GuestVsockConn, CountersWrapAround) {
  VsockConn c = connected();
  abi::VsockHeader h{};
  // Send 5 GiB in 64 KiB steps, the peer keeping up: u32 counters wrap.
  abi::VsockHeader u = hdr(abi::kVsockOpCreditUpdate);
  for (uint64_t sent = 0; sent < (5ull << 30); sent += 65536) {
    ASSERT_EQ(c.tx_credit(), 65536u);
    c.fill(&h, abi::kVsockOpRw, 65536, 0, kCid);
    u.fwd_cnt = c.tx_cnt();
    c.receive(u, 0, kCid);
  }
  // Receive side too.
  for (int i = 0; i < 100000; i++) {
    ASSERT_EQ(c.receive(hdr(abi::kVsockOpRw, 60000), 60000, kCid).data, 60000u);
    c.consumed(60000);
  }
  EXPECT_EQ(c.rx_pending(), 0u);
  EXPECT_TRUE(c.open());
}

TEST(GuestVsockConn, CreditUpdatesWhenHalfTheBufferWasRead) {
  VsockConn c = connected();
  EXPECT_FALSE(c.credit_update_due());
  c.receive(hdr(abi::kVsockOpRw, kBuf), kBuf, kCid);
  c.consumed(kBuf / 2 - 1);
  EXPECT_FALSE(c.credit_update_due());
  c.consumed(1);
  EXPECT_TRUE(c.credit_update_due());
  abi::VsockHeader h{};
  c.fill(&h, abi::kVsockOpCreditUpdate, 0, 0, kCid);
  EXPECT_EQ(h.fwd_cnt, kBuf / 2);
  EXPECT_FALSE(c.credit_update_due());
  // Any packet we send carries fwd_cnt.
  c.consumed(kBuf / 2);
  EXPECT_TRUE(c.credit_update_due());
  c.fill(&h, abi::kVsockOpRw, 1, 0, kCid);
  EXPECT_EQ(h.fwd_cnt, kBuf);
  EXPECT_FALSE(c.credit_update_due());
  // Whenever the reader has consumed everything and no update is due,
  // the peer still has at least half the buffer as credit.
  c.receive(hdr(abi::kVsockOpRw, 1000), 1000, kCid);
  c.consumed(1000);
  EXPECT_FALSE(c.credit_update_due());
}

TEST(GuestVsockConn, CreditRequestIsAnswered) {
  VsockConn c = connected();
  VsockRx r = c.receive(hdr(abi::kVsockOpCreditRequest), 0, kCid);
  EXPECT_EQ(r.reply.op, abi::kVsockOpCreditUpdate);
  EXPECT_EQ(r.reply.src_port, kPort);
  EXPECT_EQ(r.reply.dst_port, kHostPort);
}

TEST(GuestVsockConn, Shutdown) {
  VsockConn c = connected();
  abi::VsockHeader h = hdr(abi::kVsockOpShutdown);
  h.flags = abi::kVsockShutdownSend;
  VsockRx r = c.receive(h, 0, kCid);
  EXPECT_FALSE(r.ended);
  EXPECT_TRUE(c.input_ended());
  EXPECT_FALSE(c.output_dead());
  EXPECT_GT(c.tx_credit(), 0u);
  // Data after the peer said it sends no more: reset.
  r = c.receive(hdr(abi::kVsockOpRw, 4), 4, kCid);
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.data, 0u);

  c = connected();
  h.flags = abi::kVsockShutdownRcv;
  c.receive(h, 0, kCid);
  EXPECT_FALSE(c.input_ended());
  EXPECT_TRUE(c.output_dead());
  EXPECT_EQ(c.tx_credit(), 0u);
  h.flags = abi::kVsockShutdownSend;
  r = c.receive(h, 0, kCid);  // now both: over
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.reply.op, abi::kVsockOpRst);
  EXPECT_FALSE(c.open());
}

TEST(GuestVsockConn, ResponsesAndUnknownOpsReset) {
  for (uint16_t op : {uint16_t{abi::kVsockOpResponse}, uint16_t{abi::kVsockOpInvalid}, uint16_t{8}, uint16_t{0xffff}}) {
    VsockConn c = connected();
    VsockRx r = c.receive(hdr(op), 0, kCid);
    EXPECT_TRUE(r.ended) << op;
    EXPECT_EQ(r.reply.op, abi::kVsockOpRst) << op;
    EXPECT_FALSE(c.open()) << op;
  }
}

TEST(GuestVsockConn, WeResetAndTransportReset) {
  VsockConn c = connected();
  VsockReply r = c.reset();
  EXPECT_EQ(r.op, abi::kVsockOpRst);
  EXPECT_EQ(r.dst_port, kHostPort);
  EXPECT_FALSE(c.open());
  EXPECT_EQ(c.reset().op, 0);  // once
  VsockConn l = listening();
  EXPECT_EQ(l.reset().op, 0);
  EXPECT_FALSE(l.ever_connected());

  c = connected();
  c.transport_reset();
  EXPECT_FALSE(c.open());
  EXPECT_TRUE(c.input_ended());
  l = listening();
  l.transport_reset();
  EXPECT_TRUE(l.receive(hdr(abi::kVsockOpRequest), 0, kCid).accepted);  // the listener survives
}

TEST(GuestVsockConn, RandomPacketsKeepTheInvariants) {
  std::mt19937_64 rng(1234);
  for (int round = 0; round < 200; round++) {
    VsockConn c = listening();
    uint64_t consumed = 0, received = 0;
    for (int i = 0; i < 2000; i++) {
      abi::VsockHeader h{};
      // Mostly plausible, sometimes wild.
      h.src_cid = rng() % 8 ? abi::kVsockHostCid : rng();
      h.dst_cid = rng() % 8 ? kCid : rng() % 5;
      h.src_port = rng() % 4 ? kHostPort : static_cast<uint32_t>(rng());
      h.dst_port = rng() % 4 ? kPort : static_cast<uint32_t>(rng());
      h.type = rng() % 8 ? abi::kVsockTypeStream : static_cast<uint16_t>(rng());
      h.op = static_cast<uint16_t>(rng() % 9);
      h.len = rng() % 4 ? static_cast<uint32_t>(rng() % 20000) : static_cast<uint32_t>(rng());
      h.flags = static_cast<uint32_t>(rng() % 4);
      h.buf_alloc = static_cast<uint32_t>(rng());
      h.fwd_cnt = static_cast<uint32_t>(rng());
      const uint32_t avail = static_cast<uint32_t>(rng() % 20000);
      VsockRx r = c.receive(h, avail, kCid);
      ASSERT_LE(r.data, avail);
      received += r.data;
      ASSERT_LE(c.rx_pending(), kBuf);
      if (r.reply.op) {
        ASSERT_NE(h.op, abi::kVsockOpRst);  // never answer an RST
        ASSERT_EQ(h.src_cid, abi::kVsockHostCid);
        ASSERT_EQ(h.dst_cid, kCid);
      }
      if (r.data) {
        ASSERT_TRUE(c.open());
      }
      if (rng() % 3 == 0 && c.rx_pending()) {
        const uint32_t n = static_cast<uint32_t>(rng() % c.rx_pending()) + 1;
        c.consumed(n);
        consumed += n;
      }
    }
    ASSERT_EQ(received - consumed, c.rx_pending());
  }
}

// ------------------------------------------------------------ frames

void put_frame(std::vector<uint8_t>* s, uint32_t type, const std::string& payload) {
  abi::FrameHeader h{type, static_cast<uint32_t>(payload.size())};
  const auto* p = reinterpret_cast<const uint8_t*>(&h);
  s->insert(s->end(), p, p + sizeof h);
  s->insert(s->end(), payload.begin(), payload.end());
}

// Feeds `stream` in pieces of `step` bytes into a decoder with an output
// buffer of `cap` bytes per call; returns what came out.
std::string decode(const std::vector<uint8_t>& stream, size_t step, size_t cap, FrameDecoder* d) {
  std::string out;
  size_t at = 0;
  std::vector<uint8_t> buf(cap);
  while (at < stream.size()) {
    const uint32_t n = static_cast<uint32_t>(std::min(step, stream.size() - at));
    uint32_t off = 0;
    while (off < n) {
      uint64_t got = 0;
      const uint32_t used = d->feed(stream.data() + at + off, n - off, buf.data(), cap, &got);
      out.append(reinterpret_cast<char*>(buf.data()), got);
      off += used;
      if (d->error()) return out;
      if (used == 0 && got == 0) {
        ADD_FAILURE() << "no progress";
        return out;
      }
    }
    at += n;
  }
  return out;
}

TEST(GuestStdioFrames, DecodesStdinFrames) {
  std::vector<uint8_t> s;
  put_frame(&s, abi::kFrameStdin, "hello ");
  put_frame(&s, abi::kFrameStdin, "");
  put_frame(&s, abi::kFrameStdin, "world");
  put_frame(&s, abi::kFrameStdinEof, "");
  FrameDecoder d;
  EXPECT_EQ(decode(s, s.size(), 4096, &d), "hello world");
  EXPECT_TRUE(d.eof());
  EXPECT_FALSE(d.error());
}

TEST(GuestStdioFrames, AnySplitAnyCap) {
  std::vector<uint8_t> s;
  std::string want;
  std::mt19937 rng(7);
  for (int i = 0; i < 50; i++) {
    std::string p(rng() % 300, '\0');
    for (char& ch : p) ch = static_cast<char>(rng());
    put_frame(&s, abi::kFrameStdin, p);
    want += p;
  }
  put_frame(&s, abi::kFrameStdinEof, "");
  for (size_t step : {size_t{1}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t{64}, s.size()}) {
    for (size_t cap : {size_t{1}, size_t{5}, size_t{100}, size_t{65536}}) {
      FrameDecoder d;
      EXPECT_EQ(decode(s, step, cap, &d), want) << step << " " << cap;
      EXPECT_TRUE(d.eof());
    }
  }
}

TEST(GuestStdioFrames, StopsAtTheCapWithPayloadPending) {
  std::vector<uint8_t> s;
  put_frame(&s, abi::kFrameStdin, "abcdef");
  FrameDecoder d;
  uint8_t out[4];
  uint64_t got = 0;
  uint32_t used = d.feed(s.data(), static_cast<uint32_t>(s.size()), out, 4, &got);
  EXPECT_EQ(got, 4u);
  EXPECT_EQ(used, 12u);
  EXPECT_EQ(d.payload_left(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), 4), "abcd");
  used = d.feed(s.data() + 12, 2, out, 4, &got);
  EXPECT_EQ(got, 2u);
  EXPECT_EQ(used, 2u);
  EXPECT_EQ(d.payload_left(), 0u);
}

TEST(GuestStdioFrames, CountsWithoutCopying) {
  std::vector<uint8_t> s;
  put_frame(&s, abi::kFrameStdin, "12345");
  put_frame(&s, abi::kFrameStdin, "678");
  s.resize(s.size() + 3);  // a partial header after
  FrameDecoder d;
  uint64_t got = 0;
  EXPECT_EQ(d.feed(s.data(), static_cast<uint32_t>(s.size()), nullptr, ~0ull, &got), s.size());
  EXPECT_EQ(got, 8u);
}

TEST(GuestStdioFrames, DropsWhatFollowsEof) {
  std::vector<uint8_t> s;
  put_frame(&s, abi::kFrameStdin, "a");
  put_frame(&s, abi::kFrameStdinEof, "");
  put_frame(&s, abi::kFrameStdin, "ignored");
  FrameDecoder d;
  uint8_t out[64];
  uint64_t got = 0;
  EXPECT_EQ(d.feed(s.data(), static_cast<uint32_t>(s.size()), out, sizeof out, &got), s.size());
  EXPECT_EQ(got, 1u);
  EXPECT_TRUE(d.eof());
  EXPECT_FALSE(d.error());
}

TEST(GuestStdioFrames, HostileFramesAreErrors) {
  auto bad = [](uint32_t type, uint32_t length) {
    abi::FrameHeader h{type, length};
    std::vector<uint8_t> s(sizeof h + 16, 'x');
    std::memcpy(s.data(), &h, sizeof h);
    FrameDecoder d;
    uint8_t out[64];
    uint64_t got = 0;
    d.feed(s.data(), static_cast<uint32_t>(s.size()), out, sizeof out, &got);
    return d.error() && got == 0;
  };
  EXPECT_TRUE(bad(abi::kFrameStdin, abi::kMaxFramePayload + 1));
  EXPECT_TRUE(bad(abi::kFrameStdin, 0xffffffffu));
  EXPECT_TRUE(bad(abi::kFrameStdinEof, 1));
  EXPECT_TRUE(bad(abi::kFrameStdout, 1));  // guest -> host types from the host
  EXPECT_TRUE(bad(abi::kFrameStderr, 0));
  EXPECT_TRUE(bad(abi::kFrameExit, 8));
  EXPECT_TRUE(bad(0, 0));
  EXPECT_TRUE(bad(99, 0));
  EXPECT_FALSE(bad(abi::kFrameStdin, abi::kMaxFramePayload));
  // An error is sticky: nothing more is consumed.
  FrameDecoder d;
  abi::FrameHeader h{77, 0};
  uint64_t got = 0;
  d.feed(reinterpret_cast<uint8_t*>(&h), sizeof h, nullptr, ~0ull, &got);
  ASSERT_TRUE(d.error());
  std::vector<uint8_t> s;
  put_frame(&s, abi::kFrameStdin, "abc");
  EXPECT_EQ(d.feed(s.data(), static_cast<uint32_t>(s.size()), nullptr, ~0ull, &got), 0u);
}

TEST(GuestStdioFrames, RandomBytesNeverOverrun) {
  std::mt19937 rng(99);
  for (int round = 0; round < 2000; round++) {
    std::vector<uint8_t> s(rng() % 200);
    for (auto& b : s) b = static_cast<uint8_t>(rng() % 4 == 0 ? rng() % 3 : rng());
    FrameDecoder d;
    uint8_t out[16];
    size_t at = 0;
    while (at < s.size() && !d.error()) {
      uint64_t got = 99;
      const uint32_t used = d.feed(s.data() + at, static_cast<uint32_t>(s.size() - at), out, sizeof out, &got);
      ASSERT_LE(got, sizeof out);
      ASSERT_LE(used, s.size() - at);
      if (used == 0) break;
      at += used;
    }
  }
}

// ------------------------------------------------------------ stream ring

TEST(GuestByteRing, WrapsAround) {
  std::vector<uint8_t> mem(16);
  ByteRing r;
  r.attach(mem.data(), 16);
  const uint8_t a[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  r.push(a, 10);
  EXPECT_EQ(r.used(), 10u);
  EXPECT_EQ(r.room(), 6u);
  r.pop(8);
  r.push(a, 10);  // 6 at the end, 4 at the start
  uint32_t n1, n2;
  const uint8_t* p1 = r.peek(&n1);
  const uint8_t* p2 = r.peek_second(&n2);
  EXPECT_EQ(n1, 8u);
  EXPECT_EQ(n2, 4u);
  std::vector<uint8_t> got(p1, p1 + n1);
  got.insert(got.end(), p2, p2 + n2);
  EXPECT_EQ(got, (std::vector<uint8_t>{8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  r.pop(12);
  EXPECT_EQ(r.used(), 0u);
  r.peek(&n1);
  r.peek_second(&n2);
  EXPECT_EQ(n1 + n2, 0u);
}

}  // namespace
}  // namespace ember::guest
