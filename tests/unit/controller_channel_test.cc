// The host side of the stdio protocol (api/stdio_client.h) against a fake
// guest on a socketpair, the vsock handshake against a fake VMM socket, and
// the pipes path; hostile peers end the exchange with a clear error.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "api/stdio_client.h"
#include "api/stdio_protocol.h"
#include "controller/fsutil.h"
#include "controller/stdio_channel.h"
#include "tests/unit/test_temp_dir.h"

namespace ember::controller {
namespace {

std::string frame(uint32_t type, const std::string& payload) {
  std::string f(8, '\0');
  for (int i = 0; i < 4; i++) f[i] = static_cast<char>(type >> (8 * i));
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; i++) f[4 + i] = static_cast<char>(n >> (8 * i));
  return f + payload;
}

std::string exit_frame(uint32_t kind, uint32_t value) {
  std::string p(8, '\0');
  for (int i = 0; i < 4; i++) p[i] = static_cast<char>(kind >> (8 * i));
  for (int i = 0; i < 4; i++) p[4 + i] = static_cast<char>(value >> (8 * i));
  return frame(abi::kFrameExit, p);
}

// An exchange over a stream that is already handshaken.
Exchange vsock_exchange(int fd, std::string_view input, std::string leftover, Clock::time_point deadline,
                        uint64_t max_output) {
  stdio::Connection c{Fd(::dup(fd)), std::move(leftover), 1, true};
  return stdio::exchange(c, input, deadline, max_output);
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    ASSERT_GT(w, 0);
    off += static_cast<size_t>(w);
  }
}

// Reads stdin frames up to EOF; returns the input.
std::string read_stdin_frames(int fd) {
  std::string in;
  for (;;) {
    char h[8];
    size_t got = 0;
    while (got < 8) {
      const ssize_t n = ::read(fd, h + got, 8 - got);
      if (n <= 0) return in + "<broken>";
      got += static_cast<size_t>(n);
    }
    uint32_t type, len;
    std::memcpy(&type, h, 4);
    std::memcpy(&len, h + 4, 4);
    if (type == abi::kFrameStdinEof) return in;
    std::string p(len, '\0');
    got = 0;
    while (got < len) {
      const ssize_t n = ::read(fd, p.data() + got, len - got);
      if (n <= 0) return in + "<broken>";
      got += static_cast<size_t>(n);
    }
    in += p;
  }
}

struct Pair {
  int host = -1, guest = -1;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    host = sv[0];
    guest = sv[1];
  }
  ~Pair() {
    if (host >= 0) ::close(host);
    if (guest >= 0) ::close(guest);
  }
};

const auto kSoon = [] { return Clock::now() + std::chrono::seconds(10); };

TEST(ControllerChannel, EchoWithLargeInputInterleaved) {
  Pair p;
  std::string input(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < input.size(); i++) input[i] = static_cast<char>(i * 7);
  // The fake guest answers while the input is still arriving: the host must
  // read and write at once or both block.
  std::thread guest([&] {
    std::string got = read_stdin_frames(p.guest);
    for (size_t off = 0; off < got.size(); off += abi::kMaxFramePayload)
      write_all(p.guest, frame(abi::kFrameStdout, got.substr(off, abi::kMaxFramePayload)));
    write_all(p.guest, frame(abi::kFrameStderr, "note\n"));
    write_all(p.guest, exit_frame(abi::kExitCode, 3));
  });
  Exchange x = vsock_exchange(p.host, input, "", kSoon(), 64 << 20);
  guest.join();
  ASSERT_EQ(x.end, Exchange::End::kExited) << x.error;
  EXPECT_EQ(x.out, input);
  EXPECT_EQ(x.err, "note\n");
  EXPECT_EQ(x.status(), 3);
}

TEST(ControllerChannel, EmptyInputAndSignalExit) {
  Pair p;
  std::thread guest([&] {
    EXPECT_EQ(read_stdin_frames(p.guest), "");
    write_all(p.guest, exit_frame(abi::kExitSignal, 11));
  });
  Exchange x = vsock_exchange(p.host, "", "", kSoon(), 1024);
  guest.join();
  ASSERT_EQ(x.end, Exchange::End::kExited);
  EXPECT_EQ(x.status(), 139);
}

TEST(ControllerChannel, LeftoverBytesCount) {
  Pair p;
  std::thread guest([&] {
    read_stdin_frames(p.guest);
    write_all(p.guest, exit_frame(abi::kExitCode, 0));
  });
  Exchange x = vsock_exchange(p.host, "x", frame(abi::kFrameStdout, "early"), kSoon(), 1024);
  guest.join();
  ASSERT_EQ(x.end, Exchange::End::kExited);
  EXPECT_EQ(x.out, "early");
}

TEST(ControllerChannel, HostilePeers) {
  struct Case {
    std::string bytes;
    const char* needle;
  } cases[] = {
      {frame(99, "x"), "unknown type"},
      {std::string("\x03\0\0\0\xff\xff\xff\x7f", 8), "frame of"},
      {frame(abi::kFrameExit, "abc"), "exit frame of 3 bytes"},
      {exit_frame(7, 1), "unknown kind"},
      {frame(abi::kFrameStdout, "partial"), "closed the stdio connection"},
      {"", "closed the stdio connection"},
  };
  for (const auto& tc : cases) {
    Pair p;
    write_all(p.guest, tc.bytes);
    ::shutdown(p.guest, SHUT_WR);
    Exchange x = vsock_exchange(p.host, "in", "", kSoon(), 1024);
    EXPECT_EQ(x.end, Exchange::End::kBroken) << tc.needle;
    EXPECT_NE(x.error.find(tc.needle), std::string::npos) << x.error;
  }
}

TEST(ControllerChannel, OutputCapAndTimeout) {
  {
    Pair p;
    std::thread guest([&] {
      read_stdin_frames(p.guest);
      write_all(p.guest, frame(abi::kFrameStdout, std::string(2000, 'x')));
    });
    Exchange x = vsock_exchange(p.host, "", "", kSoon(), 1000);
    guest.join();
    EXPECT_EQ(x.end, Exchange::End::kTooMuchOutput);
  }
  {
    Pair p;  // a guest that never answers
    const auto t0 = Clock::now();
    Exchange x = vsock_exchange(p.host, "", "", Clock::now() + std::chrono::milliseconds(100), 1000);
    EXPECT_EQ(x.end, Exchange::End::kTimeout);
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  }
}

TEST(ControllerChannel, GuestStopsReadingEarly) {
  // The program exits without reading its input: our writes fail, and the
  // exit status still arrives.
  Pair p;
  write_all(p.guest, frame(abi::kFrameStdout, "bye") + exit_frame(abi::kExitCode, 0));
  ::shutdown(p.guest, SHUT_RD);
  Exchange x = vsock_exchange(p.host, std::string(4 << 20, 'z'), "", kSoon(), 1024);
  EXPECT_EQ(x.end, Exchange::End::kExited) << x.error;
  EXPECT_EQ(x.out, "bye");
}

class ControllerFakeVmm : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_ + "/v.sock";
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    ASSERT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(lfd_, 4), 0);
  }
  void TearDown() override {
    ::close(lfd_);
  }
  // Accepts one connection, reads the CONNECT line, answers `reply`.
  std::thread serve(std::string reply, std::string* line) {
    return std::thread([this, reply, line] {
      const int c = ::accept(lfd_, nullptr, nullptr);
      char buf[64];
      std::string l;
      while (l.find('\n') == std::string::npos) {
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        l.append(buf, static_cast<size_t>(n));
      }
      *line = l;
      write_all(c, reply);
      ::close(c);
    });
  }
  ember::testing::TempDir tmp_{"ember-ctl-vsock"};
  const std::string dir_ = tmp_.path();
  std::string path_;
  int lfd_ = -1;
};

TEST_F(ControllerFakeVmm, Handshake) {
  std::string line;
  auto t = serve("OK 1073741824\n" + frame(abi::kFrameStdout, "hi"), &line);
  auto c = stdio::connect(path_, kSoon(), {.port = 1024});
  t.join();
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(line, "CONNECT 1024\n");
  EXPECT_EQ(c->host_port, 1073741824u);
  // What came after the OK line is still there for the exchange.
  std::string after = c->leftover;
  char buf[64];
  for (ssize_t n; (n = ::recv(c->fd.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0;) after.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(after, frame(abi::kFrameStdout, "hi"));
}

TEST_F(ControllerFakeVmm, PipelinedHandshakeSendsStdinBehindTheConnectLine) {
  std::string line;
  auto t = serve("OK 7\n" + frame(abi::kFrameStdout, "hi") + exit_frame(abi::kExitCode, 4), &line);
  auto c = stdio::connect(path_, kSoon(), {.pipelined = true});
  ASSERT_TRUE(c) << c.message();
  Exchange x = stdio::exchange(*c, "in", kSoon(), 1024);
  t.join();
  EXPECT_EQ(line.substr(0, 13), "CONNECT 1024\n");
  ASSERT_EQ(x.end, Exchange::End::kExited) << x.error;
  EXPECT_EQ(x.out, "hi");
  EXPECT_EQ(x.status(), 4);
  EXPECT_EQ(c->host_port, 7u);
  // Refused: the socket closes without an answer.
  auto t2 = serve("", &line);
  auto c2 = stdio::connect(path_, kSoon(), {.pipelined = true});
  ASSERT_TRUE(c2) << c2.message();
  Exchange x2 = stdio::exchange(*c2, "in", kSoon(), 1024);
  t2.join();
  EXPECT_EQ(x2.end, Exchange::End::kBroken);
  EXPECT_NE(x2.error.find("refused"), std::string::npos) << x2.error;
}

TEST_F(ControllerFakeVmm, HandshakeRefused) {
  std::string line;
  auto t = serve("", &line);  // closes without OK: no listener in the guest
  auto fd = stdio::connect(path_, kSoon(), {.port = 1024});
  t.join();
  ASSERT_FALSE(fd);
  EXPECT_NE(fd.message().find("closed"), std::string::npos) << fd.message();
  auto t2 = serve("NOPE\n", &line);
  auto fd2 = stdio::connect(path_, kSoon(), {.port = 1024});
  t2.join();
  ASSERT_FALSE(fd2);
  EXPECT_NE(fd2.message().find("NOPE"), std::string::npos) << fd2.message();
  EXPECT_FALSE(stdio::connect(dir_ + "/missing.sock", kSoon()));
}

TEST(ControllerChannel, Pipes) {
  int in[2], out[2], err[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  ASSERT_EQ(::pipe(err), 0);
  // A "VMM" that copies stdin to stdout and says something on stderr.
  std::thread vmm([&] {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(in[0], buf, sizeof buf)) > 0) write_all(out[1], std::string(buf, static_cast<size_t>(n)));
    write_all(err[1], "done\n");
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
  });
  const std::string input(1 << 20, 'q');
  Exchange x = pipes_exchange(Fd(in[1]), out[0], err[0], input, kSoon(), 4 << 20);
  vmm.join();
  ::close(out[0]);
  ::close(err[0]);
  ASSERT_EQ(x.end, Exchange::End::kExited);
  EXPECT_EQ(x.out, input);
  EXPECT_EQ(x.err, "done\n");
}

}  // namespace
}  // namespace ember::controller
