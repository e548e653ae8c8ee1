// The virtio-mmio transport and the console device, driven like a guest
// would: register accesses through mmio_read/mmio_write, rings in guest
// memory (tests/unit/vmm_test_virtq.h), host fds as pipes and files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>

#include "api/guest_layout.h"
#include "tests/unit/vmm_test_virtq.h"
#include "vmm/console.h"
#include "vmm/virtio_mmio.h"

namespace ember {
namespace {

using testing::TestDriver;

constexpr uint64_t kRxRing = 0x10000;
constexpr uint64_t kTxRing = 0x13000;
constexpr uint64_t kBuf = 0x100000;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == 0) r = fds[0], w = fds[1];
  }
  ~Pipe() {
    close_r();
    close_w();
  }
  void close_r() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  std::string drain() {
    std::string out;
    char buf[4096];
    ::fcntl(r, F_SETFL, O_NONBLOCK);
    for (ssize_t n; (n = ::read(r, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

class VirtioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(4 << 20);
    ASSERT_TRUE(m.ok());
    mem_ = std::move(*m);
    rx_ = std::make_unique<TestDriver>(mem_, kRxRing, 256);
    tx_ = std::make_unique<TestDriver>(mem_, kTxRing, 256);
  }
  // A console on (in_fd, out_fd) behind a transport, pre-configured with its
  // queues at kRxRing / kTxRing like Ember's device 0.
  void make(int in_fd, int out_fd, bool pollable = true, bool preconfigure = true) {
    auto dev = std::make_unique<ConsoleDevice>(in_fd, out_fd, &log_);
    console_ = dev.get();
    console_->set_input_pollable(pollable);
    transport_ = std::make_unique<VirtioMmioTransport>(std::move(dev), mem_, [this] { irqs_++; }, &log_);
    if (preconfigure) {
      ASSERT_TRUE(transport_->preconfigure([](uint32_t q) { return abi::queue_gpa(0, q); }, 256, 0x1000, 0x2000).ok());
    }
  }
  uint32_t reg(uint32_t off) {
    uint32_t v = 0;
    transport_->mmio_read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void set(uint32_t off, uint32_t v) {
    transport_->mmio_write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), 4));
  }
  void put_tx(uint16_t slot, const std::string& s) {
    ASSERT_TRUE(mem_.write(kBuf + slot * 0x1000, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size())).ok());
    tx_->set_desc(slot, kBuf + slot * 0x1000, static_cast<uint32_t>(s.size()), 0, 0);
    tx_->make_available(slot);
  }
  void post_rx(uint16_t slot, uint32_t len = 64) {
    rx_->set_desc(slot, kBuf + 0x80000 + slot * 0x1000, len, abi::kVirtqDescFWrite, 0);
    rx_->make_available(slot);
  }
  std::string rx_data(uint16_t used_i) {
    auto u = rx_->used(used_i);
    std::string s(u.len, '\0');
    (void)mem_.read(kBuf + 0x80000 + u.id * 0x1000, std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), s.size()));
    return s;
  }

  Log log_{false};
  GuestMemory mem_;
  std::unique_ptr<TestDriver> rx_, tx_;
  std::unique_ptr<VirtioMmioTransport> transport_;
  ConsoleDevice* console_ = nullptr;
  int irqs_ = 0;
};

TEST_F(VirtioTest, RegisterFile) {
  make(-1, -1, true, false);
  EXPECT_EQ(reg(abi::kMmioMagic), 0x74726976u);
  EXPECT_EQ(reg(abi::kMmioVersion), 2u);
  EXPECT_EQ(reg(abi::kMmioDeviceId), 3u);
  EXPECT_EQ(reg(abi::kMmioVendorId), abi::kVirtioMmioVendor);
  set(abi::kMmioDeviceFeaturesSel, 0);
  EXPECT_EQ(reg(abi::kMmioDeviceFeatures), 0u);
  set(abi::kMmioDeviceFeaturesSel, 1);
  EXPECT_EQ(reg(abi::kMmioDeviceFeatures), 1u);  // VIRTIO_F_VERSION_1 (bit 32)
  set(abi::kMmioDeviceFeaturesSel, 7);
  EXPECT_EQ(reg(abi::kMmioDeviceFeatures), 0u);
  set(abi::kMmioQueueSel, 0);
  EXPECT_EQ(reg(abi::kMmioQueueNumMax), 256u);
  set(abi::kMmioQueueSel, 2);  // the console has 2 queues
  EXPECT_EQ(reg(abi::kMmioQueueNumMax), 0u);
  EXPECT_EQ(reg(abi::kMmioStatus), 0u);
  EXPECT_EQ(reg(abi::kMmioConfigGeneration), 0u);
  // Non-32-bit accesses to registers read 0 and are ignored.
  uint16_t half = 0xffff;
  transport_->mmio_read(abi::kMmioMagic, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&half), 2));
  EXPECT_EQ(half, 0);
  // Config space: any width, zeros.
  uint8_t cfg[8];
  std::memset(cfg, 0xff, sizeof cfg);
  transport_->mmio_read(abi::kMmioConfig, cfg);
  EXPECT_EQ(cfg[0], 0);
}

TEST_F(VirtioTest, StandardInitSequence) {
  make(-1, -1, true, false);
  set(abi::kMmioStatus, abi::kVirtioStatusAcknowledge);
  set(abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver);
  set(abi::kMmioDriverFeaturesSel, 1);
  set(abi::kMmioDriverFeatures, 1);
  set(abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver | abi::kVirtioStatusFeaturesOk);
  EXPECT_TRUE(reg(abi::kMmioStatus) & abi::kVirtioStatusFeaturesOk);
  for (uint32_t q = 0; q < 2; q++) {
    const uint64_t base = abi::queue_gpa(0, q);
    set(abi::kMmioQueueSel, q);
    set(abi::kMmioQueueNum, 256);
    set(abi::kMmioQueueDescLow, static_cast<uint32_t>(base));
    set(abi::kMmioQueueDescHigh, 0);
    set(abi::kMmioQueueDriverLow, static_cast<uint32_t>(base + 0x1000));
    set(abi::kMmioQueueDeviceLow, static_cast<uint32_t>(base + 0x2000));
    set(abi::kMmioQueueReady, 1);
    EXPECT_EQ(reg(abi::kMmioQueueReady), 1u);
    EXPECT_EQ(reg(abi::kMmioQueueDescLow), base);
  }
  set(abi::kMmioStatus, 0xf);
  EXPECT_EQ(reg(abi::kMmioStatus), 0xfu);
  EXPECT_FALSE(transport_->needs_reset());
  // Reset: everything back to 0.
  set(abi::kMmioStatus, 0);
  EXPECT_EQ(reg(abi::kMmioStatus), 0u);
  set(abi::kMmioQueueSel, 0);
  EXPECT_EQ(reg(abi::kMmioQueueReady), 0u);
  EXPECT_EQ(reg(abi::kMmioQueueDescLow), 0u);
}

TEST_F(VirtioTest, FeaturesOkNeedsVersion1AndOnlyOfferedBits) {
  make(-1, -1, true, false);
  set(abi::kMmioStatus, 3);
  set(abi::kMmioStatus, 3 | abi::kVirtioStatusFeaturesOk);  // no VERSION_1: legacy is not offered
  EXPECT_FALSE(reg(abi::kMmioStatus) & abi::kVirtioStatusFeaturesOk);
  set(abi::kMmioStatus, 0);
  set(abi::kMmioStatus, 3);
  set(abi::kMmioDriverFeaturesSel, 1);
  set(abi::kMmioDriverFeatures, 1 | 2);  // bit 33: not offered
  set(abi::kMmioStatus, 3 | abi::kVirtioStatusFeaturesOk);
  EXPECT_FALSE(reg(abi::kMmioStatus) & abi::kVirtioStatusFeaturesOk);
  // DRIVER_OK without FEATURES_OK: the device refuses to run.
  set(abi::kMmioStatus, 3 | abi::kVirtioStatusDriverOk);
  EXPECT_TRUE(reg(abi::kMmioStatus) & abi::kVirtioStatusNeedsReset);
}

TEST_F(VirtioTest, BadQueuePlacementNeedsReset) {
  make(-1, -1, true, false);
  set(abi::kMmioStatus, 3);
  set(abi::kMmioDriverFeaturesSel, 1);
  set(abi::kMmioDriverFeatures, 1);
  set(abi::kMmioStatus, 3 | abi::kVirtioStatusFeaturesOk);
  set(abi::kMmioQueueSel, 0);
  set(abi::kMmioQueueNum, 256);
  set(abi::kMmioQueueDescLow, 0xfffff000);  // not RAM
  set(abi::kMmioQueueReady, 1);
  set(abi::kMmioStatus, 0xf);
  EXPECT_TRUE(transport_->needs_reset());
}

TEST_F(VirtioTest, PreconfiguredTransmit) {
  Pipe out;
  make(-1, out.w);
  EXPECT_EQ(reg(abi::kMmioStatus), 0xfu);
  set(abi::kMmioQueueSel, 1);
  EXPECT_EQ(reg(abi::kMmioQueueDescLow), abi::queue_gpa(0, 1));
  EXPECT_EQ(reg(abi::kMmioQueueDriverLow), abi::queue_gpa(0, 1) + abi::kQueueAvailOffset);
  put_tx(0, "hello ");
  put_tx(1, "world\n");
  transport_->notify(kConsoleTransmitq);
  EXPECT_EQ(out.drain(), "hello world\n");
  EXPECT_EQ(tx_->used_idx(), 2);
  EXPECT_EQ(tx_->used(0).len, 0u);
  EXPECT_EQ(irqs_, 1);  // one interrupt per batch
  EXPECT_EQ(reg(abi::kMmioInterruptStatus), abi::kVirtioIntUsedBuffer);
  set(abi::kMmioInterruptAck, abi::kVirtioIntUsedBuffer);
  EXPECT_EQ(reg(abi::kMmioInterruptStatus), 0u);
  // Suppressed interrupts.
  tx_->set_avail_flags(abi::kVirtqAvailFNoInterrupt);
  put_tx(2, "x");
  transport_->notify(kConsoleTransmitq);
  EXPECT_EQ(out.drain(), "x");
  EXPECT_EQ(irqs_, 1);
}

TEST_F(VirtioTest, MmioNotifyGoesToTheHook) {
  Pipe out;
  make(-1, out.w);
  std::vector<uint32_t> hooked;
  transport_->set_notify_hook([&](uint32_t q) { hooked.push_back(q); });
  set(abi::kMmioQueueNotify, 1);
  set(abi::kMmioQueueNotify, 5);  // no such queue: dropped
  EXPECT_EQ(hooked, std::vector<uint32_t>{1});
}

// With a device-work hook (ember-vmm's), a Status write changes the register
// file at once and leaves the device's reset and activation to whoever the
// hook wakes; any other entry into the device runs them first, in order.
TEST_F(VirtioTest, StatusWritesLeaveDeviceWorkToTheHook) {
  Pipe out;
  make(-1, out.w);
  int hooked = 0;
  transport_->set_device_work_hook([&] { hooked++; });
  set(abi::kMmioStatus, 0);
  EXPECT_EQ(reg(abi::kMmioStatus), 0u);
  EXPECT_EQ(hooked, 1);
  set(abi::kMmioDriverFeaturesSel, 1);
  set(abi::kMmioDriverFeatures, 1);
  set(abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver | abi::kVirtioStatusFeaturesOk);
  for (uint32_t q = 0; q < 2; q++) {
    const uint64_t base = abi::queue_gpa(0, q);
    set(abi::kMmioQueueSel, q);
    set(abi::kMmioQueueNum, 256);
    set(abi::kMmioQueueDescLow, static_cast<uint32_t>(base));
    set(abi::kMmioQueueDriverLow, static_cast<uint32_t>(base + 0x1000));
    set(abi::kMmioQueueDeviceLow, static_cast<uint32_t>(base + 0x2000));
    set(abi::kMmioQueueReady, 1);
  }
  set(abi::kMmioStatus, 0xf);
  EXPECT_EQ(reg(abi::kMmioStatus), 0xfu);
  EXPECT_EQ(hooked, 2);
  // The notification runs the pending reset, then the activation.
  put_tx(0, "after a reset\n");
  transport_->notify(kConsoleTransmitq);
  EXPECT_EQ(out.drain(), "after a reset\n");
  EXPECT_FALSE(transport_->needs_reset());
  // Reset again: the device is quiet until the driver brings it back.
  set(abi::kMmioStatus, 0);
  transport_->run_device_work();
  put_tx(1, "dropped");
  transport_->notify(kConsoleTransmitq);
  EXPECT_EQ(out.drain(), "");
}

TEST_F(VirtioTest, HostileTransmitRingNeedsReset) {
  Pipe out;
  make(-1, out.w);
  tx_->set_desc(0, 0xffffffffff000000ull, 16, 0, 0);
  tx_->make_available(0);
  transport_->notify(kConsoleTransmitq);
  EXPECT_TRUE(transport_->needs_reset());
  EXPECT_TRUE(reg(abi::kMmioStatus) & abi::kVirtioStatusNeedsReset);
  EXPECT_TRUE(reg(abi::kMmioInterruptStatus) & abi::kVirtioIntConfigChange);
  // Further notifies are ignored; output untouched.
  put_tx(1, "late");
  transport_->notify(kConsoleTransmitq);
  EXPECT_EQ(out.drain(), "");
}

TEST_F(VirtioTest, ReceiveFromAPipeThenEof) {
  Pipe in;
  make(in.r, -1);
  EXPECT_FALSE(transport_->locked([&](VirtioDevice&) { return console_->wants_input(); }));
  post_rx(0);
  transport_->notify(kConsoleReceiveq);
  // Pollable input: nothing read yet, the event loop would now watch the fd.
  EXPECT_EQ(rx_->used_idx(), 0);
  EXPECT_TRUE(transport_->locked([&](VirtioDevice&) { return console_->wants_input(); }));
  ASSERT_EQ(::write(in.w, "abc", 3), 3);
  transport_->locked([&](VirtioDevice&) { console_->on_input_ready(); });
  ASSERT_EQ(rx_->used_idx(), 1);
  EXPECT_EQ(rx_data(0), "abc");
  EXPECT_FALSE(transport_->locked([&](VirtioDevice&) { return console_->wants_input(); }));  // no buffer left
  // EOF: a zero-length used buffer, and every later buffer gets one too.
  in.close_w();
  post_rx(1);
  post_rx(2);
  transport_->locked([&](VirtioDevice&) { console_->on_input_ready(); });
  ASSERT_EQ(rx_->used_idx(), 3);
  EXPECT_EQ(rx_->used(1).len, 0u);
  EXPECT_EQ(rx_->used(2).len, 0u);
  post_rx(3);
  transport_->notify(kConsoleReceiveq);
  ASSERT_EQ(rx_->used_idx(), 4);
  EXPECT_EQ(rx_->used(3).len, 0u);
  EXPECT_TRUE(console_->save().input_eof);
}

TEST_F(VirtioTest, ReceiveNeverReadsMoreThanTheBuffer) {
  Pipe in;
  make(in.r, -1);
  ASSERT_EQ(::write(in.w, "0123456789", 10), 10);
  post_rx(0, 4);
  transport_->locked([&](VirtioDevice&) { console_->on_input_ready(); });
  EXPECT_EQ(rx_data(0), "0123");
  post_rx(1, 100);
  transport_->locked([&](VirtioDevice&) { console_->on_input_ready(); });
  EXPECT_EQ(rx_data(1), "456789");
}

TEST_F(VirtioTest, ReceiveFromARegularFileIsEager) {
  char path[] = "/tmp/ember-console-test-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  ASSERT_EQ(::write(fd, "file data", 9), 9);
  ::lseek(fd, 0, SEEK_SET);
  make(fd, -1, /*pollable=*/false);
  post_rx(0);
  post_rx(1);
  transport_->notify(kConsoleReceiveq);
  ASSERT_EQ(rx_->used_idx(), 2);
  EXPECT_EQ(rx_data(0), "file data");
  EXPECT_EQ(rx_->used(1).len, 0u);  // EOF straight away
  ::close(fd);
}

TEST_F(VirtioTest, ReceiveBufferWithoutRoomNeedsReset) {
  Pipe in;
  make(in.r, -1);
  ASSERT_EQ(::write(in.w, "a", 1), 1);
  rx_->set_desc(0, kBuf, 16, 0, 0);  // device-readable: no room to write into
  rx_->make_available(0);
  transport_->locked([&](VirtioDevice&) { console_->on_input_ready(); });
  EXPECT_TRUE(transport_->needs_reset());
}

TEST_F(VirtioTest, BrokenPipeIsReported) {
  Pipe out;
  make(-1, out.w);
  out.close_r();
  ::signal(SIGPIPE, SIG_IGN);
  put_tx(0, "nobody listens");
  transport_->notify(kConsoleTransmitq);
  EXPECT_TRUE(transport_->locked([&](VirtioDevice&) { return console_->broken_pipe(); }));
  EXPECT_EQ(tx_->used_idx(), 1);  // the chain is still returned
}

TEST_F(VirtioTest, FullPipeWaitsThenDrains) {
  Pipe out;
  ::fcntl(out.w, F_SETFL, O_NONBLOCK);
  ::fcntl(out.w, F_SETPIPE_SZ, 4096);
  make(-1, out.w);
  const std::string big(3000, 'x');
  put_tx(0, big);
  put_tx(1, big);
  put_tx(2, big);
  transport_->notify(kConsoleTransmitq);
  EXPECT_TRUE(console_->wants_output());  // EAGAIN part-way
  EXPECT_LT(tx_->used_idx(), 3);
  std::string got = out.drain();
  transport_->locked([&](VirtioDevice&) { console_->on_output_ready(); });
  got += out.drain();
  transport_->locked([&](VirtioDevice&) { console_->on_output_ready(); });
  got += out.drain();
  transport_->locked([&](VirtioDevice&) { console_->drain_output(); });
  got += out.drain();
  EXPECT_EQ(got, big + big + big);
  EXPECT_EQ(tx_->used_idx(), 3);
  EXPECT_FALSE(console_->wants_output());
}

TEST_F(VirtioTest, DrainWritesWhatWasNeverNotified) {
  Pipe out;
  make(-1, out.w);
  put_tx(0, "queued ");
  put_tx(1, "at exit");
  transport_->locked([&](VirtioDevice&) { console_->drain_output(); });
  EXPECT_EQ(out.drain(), "queued at exit");
}

}  // namespace
}  // namespace ember
