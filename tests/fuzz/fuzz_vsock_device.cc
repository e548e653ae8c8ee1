// libFuzzer target for the virtio-vsock device behind its virtio-mmio
// transport (vmm/vsock.cc, vmm/virtio_mmio.cc): everything a hostile guest
// can do to it — write any register, rewrite its rings and packets at any
// moment, notify any queue — interleaved with what host programs do on the
// device's Unix sockets (connect, CONNECT lines, bytes, hang-ups) and with
// the VMM's own end-of-run calls (finish, close_all, reset in place). The
// device must never crash, read or write outside guest memory, or hold more
// host connections than its limits allow.
//
// The guest's register accesses run where they run in ember-vmm: on a thread
// confined by the real vCPU seccomp filter (seccomp/seccomp_filters.cc), with
// the device work a Status write asks for handed to the "event loop" (this
// thread) as the VMM does. A register write whose handling makes a syscall
// outside the vCPU filter kills the process with SIGSYS: a crash.
//
// Input: a program of operations, each one opcode byte and its operands
// (see the switch); the rings sit at fixed places as Ember preconfigures
// them, and helpers write honest-looking descriptors and packet headers so
// that the fuzzer reaches established connections quickly, while the raw
// memory and register operations let it break everything they describe.
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/stdio_protocol.h"
#include "seccomp/seccomp.h"
#include "tests/unit/vmm_test_epoll.h"
#include "tests/unit/vmm_test_virtq.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vsock.h"

namespace {

using ember::VsockDevice;
namespace abi = ember::abi;
using abi::VsockHeader;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kQueueStride = 0x4000;  // desc +0, avail +0x1000, used +0x2000
constexpr uint64_t kRxBufs = 0x10000;      // 32 receive buffers, 0x2000 apart
constexpr uint64_t kTxBufs = 0x60000;      // 32 transmit buffers, 0x1000 apart
constexpr uint64_t kGuestCid = 3;
constexpr uint32_t kFirstHostPort = 1u << 30;  // where the device numbers its host ports
constexpr size_t kMaxClients = 8;

// The input, read front to back; past its end every read is zero.
struct Input {
  const uint8_t* p;
  size_t n;
  bool done() const { return n == 0; }
  uint8_t u8() {
    if (!n) return 0;
    n--;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
  uint32_t u32() { return u16() | static_cast<uint32_t>(u16()) << 16; }
  std::string bytes(size_t want) {
    const size_t k = want < n ? want : n;
    std::string s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
};

// One Unix-socket directory per process (a plain array: the exit handler
// that removes it runs after static destructors); the device's listen()
// replaces a stale socket file, so every run reuses the same path.
char g_dir[] = "/tmp/ember-fuzz-vsock-XXXXXX";

void remove_socket_dir() {
  ::unlink((std::string(g_dir) + "/v.sock").c_str());
  ::unlink((std::string(g_dir) + "/v.sock_1234").c_str());
  ::rmdir(g_dir);
}

const char* socket_dir() {
  static const bool made = [] {
    if (!::mkdtemp(g_dir)) abort();
    ::atexit(remove_socket_dir);
    return true;
  }();
  (void)made;
  return g_dir;
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  ::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  return a;
}

// A host program listening for guest-initiated connections to host port
// 1234 (the device connects to `uds`_1234).
int guest_port_listener(const std::string& uds) {
  static const int fd = [&] {
    const std::string path = uds + "_1234";
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const sockaddr_un a = unix_address(path);
    ::unlink(path.c_str());
    if (s < 0 || ::bind(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 64) != 0) abort();
    return s;
  }();
  return fd;
}

int connect_client(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const sockaddr_un a = unix_address(path);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A thread under ember-vmm's vCPU filter that runs one job at a time for the
// fuzzing thread (and is never joined: the filter forbids little else).
class VcpuThread {
 public:
  static VcpuThread& get() {
    static VcpuThread* t = new VcpuThread;
    return *t;
  }
  void run(std::function<void()> job) {
    std::unique_lock<std::mutex> l(mu_);
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(l, [&] { return !job_; });
  }

 private:
  VcpuThread() {
    std::thread([this] { loop(); }).detach();
  }
  void loop() {
    if (auto r = ember::seccomp::install(ember::seccomp::Thread::kVcpu); !r) {
      fprintf(stderr, "vcpu seccomp filter: %s\n", r.message().c_str());
      abort();
    }
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return static_cast<bool>(job_); });
      job_();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
};

uint32_t pick_port(Input& in) {
  switch (in.u8() % 4) {
    case 0: return ember::abi::kStdioPort;
    case 1: return kFirstHostPort + in.u8() % 8;
    case 2: return 1234;
    default: return in.u32();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  auto mem_r = ember::GuestMemory::create(kRam);
  if (!mem_r) abort();
  ember::GuestMemory mem = std::move(*mem_r);
  const std::string uds = std::string(socket_dir()) + "/v.sock";
  const int host_listener = guest_port_listener(uds);

  ember::VsockLimits limits;  // small, so that the fuzzer reaches every limit
  limits.conn_buf = 4096;
  limits.max_conns = 4;
  limits.max_pending_rst = 4;
  limits.max_packet = 2048;
  ember::Log log(false);
  ember::testing::Epoll ep;
  auto dev_owner = std::make_unique<VsockDevice>(kGuestCid, &log, limits);
  VsockDevice* dev = dev_owner.get();
  ember::VirtioMmioTransport transport(std::move(dev_owner), mem, [] {}, &log);
  if (!transport.preconfigure([](uint32_t q) { return q * kQueueStride; }, kQueueSize, 0x1000, 0x2000)) abort();
  const ember::VirtioMmioState fresh = transport.save();
  bool device_work = false;  // what ember-vmm's device-work eventfd says
  transport.set_device_work_hook([&] { device_work = true; });
  if (!transport.locked([&](ember::VirtioDevice&) { return dev->listen(uds, &ep); })) abort();
  std::vector<std::unique_ptr<ember::testing::TestDriver>> drv;
  for (uint32_t q = 0; q < 3; q++)
    drv.push_back(std::make_unique<ember::testing::TestDriver>(mem, q * kQueueStride, kQueueSize));
  std::vector<int> clients;
  uint16_t rx_slot = 0, tx_slot = 0;

  auto pump = [&] {
    if (device_work) {
      device_work = false;
      transport.run_device_work();
    }
    for (int round = 0; round < 8; round++) {
      epoll_event ev[16];
      const int k = ::epoll_wait(ep.ep, ev, 16, 0);
      if (k <= 0) break;
      for (int i = 0; i < k; i++) transport.locked([&](ember::VirtioDevice&) { dev->on_fd_event(ev[i].data.u64, ev[i].events); });
    }
    // Take (and hang up on) what the device connected to host port 1234.
    for (int fd; (fd = ::accept4(host_listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) ::close(fd);
  };

  for (int steps = 0; !in.done() && steps < 256; steps++) {
    switch (in.u8() % 14) {
      case 0: {  // the guest writes its memory anywhere
        const uint64_t at = in.u32() % kRam;
        std::string b = in.bytes(in.u8());
        if (b.size() > kRam - at) b.resize(kRam - at);
        (void)mem.write(at, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
        break;
      }
      case 1: {  // the guest writes a register (half the time Status: resets, re-activations)
        const bool status = in.u8() % 2;
        const uint64_t off = status ? uint64_t{abi::kMmioStatus} : in.u16() % 0x180;
        const size_t len = status ? 4 : size_t{1} << (in.u8() % 4);
        std::string b = in.bytes(len);
        b.resize(len, '\0');
        VcpuThread::get().run(
            [&] { transport.mmio_write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), len)); });
        break;
      }
      case 2: {  // the guest reads a register
        const uint64_t off = in.u16() % 0x180;
        uint8_t b[8];
        const size_t len = size_t{1} << (in.u8() % 4);
        VcpuThread::get().run([&] { transport.mmio_read(off, std::span<uint8_t>(b, len)); });
        break;
      }
      case 3:  // an ioeventfd fires
        transport.notify(in.u8() % 3);
        break;
      case 4: {  // the guest posts receive buffers
        const int k = 1 + in.u8() % 8;
        const uint32_t len = in.u8() % 2 ? 0x1000 + sizeof(abi::VsockHeader) : in.u16();
        const uint16_t flags = in.u8() % 4 ? abi::kVirtqDescFWrite : 0;
        for (int i = 0; i < k; i++) {
          const uint16_t slot = rx_slot++ % 32;
          drv[abi::kVsockRxq]->set_desc(slot, kRxBufs + uint64_t{slot} * 0x2000, len, flags, 0);
          drv[abi::kVsockRxq]->make_available(slot);
        }
        transport.notify(abi::kVsockRxq);
        break;
      }
      case 5: {  // the guest sends a packet
        abi::VsockHeader h{};
        const uint8_t shape = in.u8();
        h.src_cid = shape & 1 ? in.u32() : kGuestCid;
        h.dst_cid = shape & 2 ? in.u32() : abi::kVsockHostCid;
        h.type = shape & 4 ? in.u16() : abi::kVsockTypeStream;
        h.src_port = pick_port(in);
        h.dst_port = pick_port(in);
        h.op = in.u8() % 9;
        h.flags = in.u8() % 4;
        h.buf_alloc = shape & 8 ? in.u32() : 4096;
        h.fwd_cnt = shape & 16 ? in.u32() : 0;
        const std::string body = in.bytes(in.u16() % (0x1000 - sizeof h));
        h.len = shape & 32 ? in.u32() : static_cast<uint32_t>(body.size());
        std::string pkt(reinterpret_cast<const char*>(&h), sizeof h);
        pkt += body;
        const uint16_t slot = tx_slot++ % 32;
        const uint64_t at = kTxBufs + uint64_t{slot} * 0x1000;
        (void)mem.write(at, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size()));
        const uint32_t split = shape & 64 ? in.u8() : 0;
        auto& tx = *drv[abi::kVsockTxq];
        if (split && split < pkt.size()) {
          tx.set_desc(slot, at, split, abi::kVirtqDescFNext, static_cast<uint16_t>(32 + slot));
          tx.set_desc(static_cast<uint16_t>(32 + slot), at + split, static_cast<uint32_t>(pkt.size() - split), 0, 0);
        } else {
          tx.set_desc(slot, at, static_cast<uint32_t>(pkt.size()), shape & 128 ? abi::kVirtqDescFWrite : 0, 0);
        }
        tx.make_available(slot);
        transport.notify(abi::kVsockTxq);
        break;
      }
      case 6: {  // a host program connects and asks for a guest port
        const uint32_t port = pick_port(in);
        if (clients.size() >= kMaxClients) break;
        const int fd = connect_client(uds);
        if (fd < 0) break;
        const std::string line = in.u8() % 8 ? "CONNECT " + std::to_string(port) + "\n" : in.bytes(in.u8());
        (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        clients.push_back(fd);
        pump();
        break;
      }
      case 7: {  // a host program writes
        if (clients.empty()) break;
        const int fd = clients[in.u8() % clients.size()];
        const std::string b = in.bytes(in.u16() % 8192);
        (void)::send(fd, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        break;
      }
      case 8: {  // a host program reads what is there
        if (clients.empty()) break;
        char b[16384];
        (void)!::recv(clients[in.u8() % clients.size()], b, sizeof b, MSG_DONTWAIT);
        break;
      }
      case 9: {  // a host program hangs up, or half-closes
        if (clients.empty()) break;
        const size_t i = in.u8() % clients.size();
        if (in.u8() % 2) {
          ::shutdown(clients[i], SHUT_WR);
        } else {
          ::close(clients[i]);
          clients.erase(clients.begin() + static_cast<long>(i));
        }
        break;
      }
      case 10:  // the event loop runs
        pump();
        break;
      case 11:  // the VMM opens the stdio connection ahead of its client (after a restore or reset)
        transport.locked([&](ember::VirtioDevice&) { dev->preconnect(ember::abi::kStdioPort); });
        break;
      case 12: {  // the run ends
        const ember::abi::ExitPayload exit{in.u32(), in.u32()};
        transport.locked([&](ember::VirtioDevice&) { dev->finish(exit, 0); });
        break;
      }
      default: {  // the VM is reset in place, or every connection dropped
        const bool reset = in.u8() % 2;
        transport.locked([&](ember::VirtioDevice&) { dev->close_all(/*keep_waiting=*/reset); });
        if (reset) {
          // Guest memory goes back to the snapshot's too: empty rings.
          const std::vector<uint8_t> zeros(3 * kQueueStride);
          (void)mem.write(0, zeros);
          for (uint32_t q = 0; q < 3; q++)
            drv[q] = std::make_unique<ember::testing::TestDriver>(mem, q * kQueueStride, kQueueSize);
          rx_slot = tx_slot = 0;
          auto r = transport.restore(fresh);
          if (!r) {
            fprintf(stderr, "reset in place failed: %s\n", r.message().c_str());
            abort();
          }
        }
        break;
      }
    }
    // Connections gone are swept; live ones are bounded by max_conns.
    if (dev->connection_count() > 4 * limits.max_conns) abort();
  }
  for (int fd : clients) ::close(fd);
  return 0;
}
