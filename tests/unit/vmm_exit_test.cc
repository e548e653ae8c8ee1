// Exit handling as a pure function of (devices, exit): synthetic kvm_run
// structs go through handle_exit() with a real Bus and control page.
#include <gtest/gtest.h>

#include <cstring>

#include "api/control.h"
#include "api/guest_layout.h"
#include "vmm/control_device.h"
#include "vmm/vcpu_exit.h"

namespace ember {
namespace {

class VmmExitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(16 << 20);
    ASSERT_TRUE(m.ok());
    mem_ = std::move(*m);
    control_ = std::make_unique<ControlDevice>(mem_, &log_);
    ASSERT_TRUE(bus_.add(abi::kControlGpa, 0x1000, control_.get(), "control").ok());
  }
  kvm_run mmio(uint64_t addr, bool write, uint64_t value, uint32_t len = 4) {
    kvm_run r{};
    r.exit_reason = KVM_EXIT_MMIO;
    r.mmio.phys_addr = addr;
    r.mmio.is_write = write;
    r.mmio.len = len;
    std::memcpy(r.mmio.data, &value, sizeof value);
    return r;
  }
  Log log_{false};
  GuestMemory mem_;
  Bus bus_;
  std::unique_ptr<ControlDevice> control_;
  ExitCounts counts_;
};

TEST_F(VmmExitTest, ExitCodeEndsTheRun) {
  auto r = mmio(abi::kControlGpa + abi::kControlExitCode, true, 42);
  auto d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kGuestDone);
  ASSERT_TRUE(control_->outcome().has_value());
  EXPECT_EQ(exit_status_for(*control_->outcome()), 42);
  EXPECT_EQ(counts_.by_reason[KVM_EXIT_MMIO], 1u);
  EXPECT_EQ(counts_.mmio_writes, 1u);
}

TEST_F(VmmExitTest, ExitCodeIsMaskedTo8Bits) {
  auto r = mmio(abi::kControlGpa + abi::kControlExitCode, true, 0x1ff);
  handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(exit_status_for(*control_->outcome()), 255);
}

TEST_F(VmmExitTest, FirstOutcomeWins) {
  auto a = mmio(abi::kControlGpa + abi::kControlExitSignal, true, 6);
  auto b = mmio(abi::kControlGpa + abi::kControlExitCode, true, 0);
  handle_exit(a, bus_, *control_, counts_);
  handle_exit(b, bus_, *control_, counts_);
  EXPECT_EQ(exit_status_for(*control_->outcome()), 134);
}

TEST_F(VmmExitTest, SignalsAndFaults) {
  EXPECT_EQ(exit_status_for(ControlOutcome{ControlOutcome::kSignal, 9}), 137);
  EXPECT_EQ(exit_status_for(ControlOutcome{ControlOutcome::kFault, 14}), 139);  // #PF: SIGSEGV
  EXPECT_EQ(exit_status_for(ControlOutcome{ControlOutcome::kFault, 6}), 132);   // #UD: SIGILL
  EXPECT_EQ(exit_status_for(ControlOutcome{ControlOutcome::kFault, 0}), 136);   // #DE: SIGFPE
  EXPECT_EQ(exit_status_for(ControlOutcome{ControlOutcome::kFault, 3}), 133);   // #BP: SIGTRAP
  auto r = mmio(abi::kControlGpa + abi::kControlExitSignal, true, 1000);  // nonsense: still ends, as SIGKILL
  handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(exit_status_for(*control_->outcome()), 137);
}

TEST_F(VmmExitTest, FaultRegisterEndsTheRun) {
  auto r = mmio(abi::kControlGpa + abi::kControlFault, true, 13);
  EXPECT_EQ(handle_exit(r, bus_, *control_, counts_).kind, ExitDecision::kGuestDone);
  EXPECT_EQ(control_->outcome()->kind, ControlOutcome::kFault);
  EXPECT_EQ(control_->outcome()->value, 13u);
}

TEST_F(VmmExitTest, MagicReadAndUnknownAccesses) {
  auto r = mmio(abi::kControlGpa + abi::kControlMagic, false, 0);
  EXPECT_EQ(handle_exit(r, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  uint32_t v;
  std::memcpy(&v, r.mmio.data, 4);
  EXPECT_EQ(v, abi::kControlMagicValue);
  // Nothing mapped: reads 0, continues.
  auto miss = mmio(0xe0000000, false, 0xffffffff);
  std::memset(miss.mmio.data, 0xff, 8);
  EXPECT_EQ(handle_exit(miss, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  EXPECT_EQ(miss.mmio.data[0], 0);
  auto wmiss = mmio(0xe0000000, true, 1);
  EXPECT_EQ(handle_exit(wmiss, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  EXPECT_EQ(bus_.misses(), 2u);
  // An oversized length from a confused kernel is clamped, not trusted.
  auto big = mmio(abi::kControlGpa, false, 0, 4000);
  EXPECT_EQ(handle_exit(big, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  EXPECT_FALSE(control_->outcome().has_value());
}

TEST_F(VmmExitTest, ReadyAndLogDoNotEndTheRun) {
  auto ready = mmio(abi::kControlGpa + abi::kControlReady, true, 1);
  EXPECT_EQ(handle_exit(ready, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  EXPECT_TRUE(control_->ready());
  auto log = mmio(abi::kControlGpa + abi::kControlLog, true, 0xdead0000000ull, 8);  // not guest memory
  EXPECT_EQ(handle_exit(log, bus_, *control_, counts_).kind, ExitDecision::kContinue);
  EXPECT_EQ(control_->log_lines(), 1u);
}

TEST_F(VmmExitTest, FatalExits) {
  kvm_run r{};
  r.exit_reason = KVM_EXIT_SHUTDOWN;
  auto d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kFatal);
  EXPECT_EQ(describe_fatal_exit(r, d.error, 0x100123, 14u), "guest triple fault (rip=0x100123, last exception #PF)");
  EXPECT_EQ(describe_fatal_exit(r, d.error, 0x10, std::nullopt),
            "guest triple fault (rip=0x10, last exception unknown)");

  r = kvm_run{};
  r.exit_reason = KVM_EXIT_INTERNAL_ERROR;
  r.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  r.internal.ndata = 2;
  r.internal.data[0] = 0x1234;
  r.internal.data[1] = 0xabcd;
  d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kFatal);
  EXPECT_NE(d.error.find("suberror 1"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("emulation failed"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("0x1234 0xabcd"), std::string::npos) << d.error;
  r.internal.ndata = 1000;  // never trusted
  EXPECT_EQ(handle_exit(r, bus_, *control_, counts_).kind, ExitDecision::kFatal);

  r = kvm_run{};
  r.exit_reason = KVM_EXIT_FAIL_ENTRY;
  r.fail_entry.hardware_entry_failure_reason = 0x21;
  d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kFatal);
  EXPECT_NE(d.error.find("0x21"), std::string::npos);

  r = kvm_run{};
  r.exit_reason = KVM_EXIT_IO;
  r.io.direction = KVM_EXIT_IO_OUT;
  r.io.port = 0x3f8;
  d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kFatal);
  EXPECT_NE(d.error.find("port 0x3f8"), std::string::npos) << d.error;

  r = kvm_run{};
  r.exit_reason = KVM_EXIT_HLT;
  EXPECT_EQ(handle_exit(r, bus_, *control_, counts_).kind, ExitDecision::kFatal);
  r.exit_reason = 9999;  // beyond the counters: still handled
  d = handle_exit(r, bus_, *control_, counts_);
  EXPECT_EQ(d.kind, ExitDecision::kFatal);
  EXPECT_NE(d.error.find("9999"), std::string::npos);
  r.exit_reason = KVM_EXIT_INTR;
  EXPECT_EQ(handle_exit(r, bus_, *control_, counts_).kind, ExitDecision::kContinue);
}

TEST(VmmExit, DescribeFault) {
  // #PF has an error code: frame = rax, error, rip, cs, rflags, rsp, ss.
  const uint64_t pf[] = {0, 6, 0x401000, 0x2b, 0x202, 0x7ffff000, 0x23};
  EXPECT_EQ(describe_fault(14, 0xdead, pf),
            "program killed by SIGSEGV: #PF at rip=0x401000 addr=0xdead (error 0x6) rsp=0x7ffff000");
  // #UD has none: frame = rax, rip, cs, ...
  const uint64_t ud[] = {0, 0x401234, 0x2b, 0x202, 0x7fff0000, 0x23};
  EXPECT_EQ(describe_fault(6, 0, ud), "program killed by SIGILL: #UD at rip=0x401234 rsp=0x7fff0000");
  // An unreadable stack: no frame, still one line.
  EXPECT_EQ(describe_fault(13, 0, {}), "program killed by SIGSEGV: #GP");
  EXPECT_EQ(describe_fault(200, 0, {}), "program killed by SIGSEGV: exception");
}

TEST(VmmExit, CountsSummary) {
  ExitCounts c;
  EXPECT_EQ(c.summary(), "none");
  c.by_reason[KVM_EXIT_MMIO] = 3;
  c.by_reason[KVM_EXIT_IO] = 1;
  c.eintr = 2;
  EXPECT_EQ(c.summary(), "IO=1 MMIO=3 EINTR=2");
}

}  // namespace
}  // namespace ember
