#include "vmm/kvm.h"

#include "api/kvm_abi.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace ember {

namespace {

constexpr uint32_t kMaxCpuidEntries = 256;

}  // namespace

Result<Kvm> Kvm::open(const char* path) {
  Kvm kvm;
  kvm.fd_ = Fd(::open(path, O_RDWR | O_CLOEXEC));
  if (!kvm.fd_.valid()) return errno_error(std::string("open ") + path);
  const int version = ::ioctl(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return Error{std::string(path) + ": KVM API version " + std::to_string(version) + ", expected " +
                 std::to_string(KVM_API_VERSION)};
  const int mmap_size = ::ioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size <= 0) return errno_error("KVM_GET_VCPU_MMAP_SIZE");
  kvm.vcpu_mmap_size_ = static_cast<size_t>(mmap_size);
  return kvm;
}

Result<void> Kvm::load_supported_cpuid() {
  if (!cpuid_.empty()) return Ok();
  const size_t bytes = sizeof(kvm_abi::CountHeader) + kMaxCpuidEntries * sizeof(kvm_cpuid_entry2);
  std::vector<uint64_t> buf((bytes + 7) / 8, 0);
  reinterpret_cast<kvm_abi::CountHeader*>(buf.data())->count = kMaxCpuidEntries;
  if (::ioctl(fd(), kvm_abi::kGetSupportedCpuid, buf.data()) < 0) return errno_error("KVM_GET_SUPPORTED_CPUID");
  cpuid_ = std::move(buf);
  return Ok();
}

std::span<const kvm_cpuid_entry2> Kvm::supported_cpuid_entries() const {
  if (cpuid_.empty()) return {};
  const auto* header = reinterpret_cast<const kvm_abi::CountHeader*>(cpuid_.data());
  const auto* entries = reinterpret_cast<const kvm_cpuid_entry2*>(header + 1);
  return {entries, header->count};
}

int Kvm::check_extension(long cap) const { return ::ioctl(fd(), KVM_CHECK_EXTENSION, cap); }

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  constexpr uint32_t kMax = 1024;
  std::vector<uint32_t> buf(1 + kMax, 0);
  buf[0] = kMax;
  if (::ioctl(fd(), kvm_abi::kGetMsrIndexList, buf.data()) < 0) return errno_error("KVM_GET_MSR_INDEX_LIST");
  const uint32_t n = buf[0] < kMax ? buf[0] : kMax;
  return std::vector<uint32_t>(buf.begin() + 1, buf.begin() + 1 + n);
}

Result<KvmVm> Kvm::create_vm() const {
  int fd;
  do {
    fd = ::ioctl(this->fd(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("KVM_CREATE_VM");
  return KvmVm(Fd(fd), vcpu_mmap_size_);
}

Result<void> KvmVm::set_memory_region(uint32_t slot, uint64_t gpa, void* host, uint64_t size, bool readonly) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = readonly ? KVM_MEM_READONLY : 0;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
    return errno_error("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot));
  return Ok();
}

Result<void> KvmVm::create_irqchip() {
  if (::ioctl(fd(), KVM_CREATE_IRQCHIP, 0) < 0) return errno_error("KVM_CREATE_IRQCHIP");
  return Ok();
}

Result<void> KvmVm::set_msi_routes(std::span<const MsiRoute> routes) {
  std::vector<uint64_t> buf((sizeof(kvm_abi::CountHeader) + routes.size() * sizeof(kvm_irq_routing_entry) + 7) / 8, 0);
  auto* header = reinterpret_cast<kvm_abi::CountHeader*>(buf.data());
  auto* entries = reinterpret_cast<kvm_irq_routing_entry*>(header + 1);
  header->count = static_cast<uint32_t>(routes.size());
  for (size_t i = 0; i < routes.size(); i++) {
    kvm_irq_routing_entry& e = entries[i];
    e.gsi = routes[i].gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = static_cast<uint32_t>(routes[i].address);
    e.u.msi.address_hi = static_cast<uint32_t>(routes[i].address >> 32);
    e.u.msi.data = routes[i].data;
  }
  if (::ioctl(fd(), kvm_abi::kSetGsiRouting, buf.data()) < 0) return errno_error("KVM_SET_GSI_ROUTING");
  return Ok();
}

Result<void> KvmVm::add_irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  if (::ioctl(fd(), KVM_IRQFD, &irqfd) < 0) return errno_error("KVM_IRQFD gsi " + std::to_string(gsi));
  return Ok();
}

Result<void> KvmVm::add_ioeventfd(int event_fd, uint64_t gpa, uint32_t len, std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io{};
  io.addr = gpa;
  io.len = len;
  io.fd = event_fd;
  if (datamatch) {
    io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  if (::ioctl(fd(), KVM_IOEVENTFD, &io) < 0) return errno_error("KVM_IOEVENTFD");
  return Ok();
}

Result<Vcpu> KvmVm::create_vcpu(uint32_t id) {
  Fd vcpu(::ioctl(fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id)));
  if (!vcpu.valid()) return errno_error("KVM_CREATE_VCPU");
  void* run = ::mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0);
  if (run == MAP_FAILED) return errno_error("mmap kvm_run");
  return Vcpu(std::move(vcpu), Mapping(run, vcpu_mmap_size_));
}

int KvmVm::check_extension(long cap) const { return ::ioctl(fd(), KVM_CHECK_EXTENSION, cap); }

Result<kvm_irqchip> KvmVm::get_irqchip(uint32_t chip) const {
  kvm_irqchip c{};
  c.chip_id = chip;
  if (::ioctl(fd(), KVM_GET_IRQCHIP, &c) < 0) return errno_error("KVM_GET_IRQCHIP " + std::to_string(chip));
  return c;
}

Result<void> KvmVm::set_irqchip(const kvm_irqchip& chip) {
  if (::ioctl(fd(), KVM_SET_IRQCHIP, &chip) < 0) return errno_error("KVM_SET_IRQCHIP " + std::to_string(chip.chip_id));
  return Ok();
}

Result<kvm_clock_data> KvmVm::get_clock() const {
  kvm_clock_data c{};
  if (::ioctl(fd(), KVM_GET_CLOCK, &c) < 0) return errno_error("KVM_GET_CLOCK");
  return c;
}

Result<void> KvmVm::set_clock(const kvm_clock_data& clock) {
  if (::ioctl(fd(), KVM_SET_CLOCK, &clock) < 0) return errno_error("KVM_SET_CLOCK");
  return Ok();
}

Result<kvm_regs> Vcpu::get_regs() const {
  kvm_regs regs{};
  if (::ioctl(fd(), KVM_GET_REGS, &regs) < 0) return errno_error("KVM_GET_REGS");
  return regs;
}

Result<void> Vcpu::set_regs(const kvm_regs& regs) {
  if (::ioctl(fd(), KVM_SET_REGS, &regs) < 0) return errno_error("KVM_SET_REGS");
  return Ok();
}

Result<kvm_sregs> Vcpu::get_sregs() const {
  kvm_sregs sregs{};
  if (::ioctl(fd(), KVM_GET_SREGS, &sregs) < 0) return errno_error("KVM_GET_SREGS");
  return sregs;
}

Result<void> Vcpu::set_sregs(const kvm_sregs& sregs) {
  if (::ioctl(fd(), KVM_SET_SREGS, &sregs) < 0) return errno_error("KVM_SET_SREGS");
  return Ok();
}

Result<void> Vcpu::set_cpuid(const void* cpuid) {
  if (::ioctl(fd(), kvm_abi::kSetCpuid2, cpuid) < 0) return errno_error("KVM_SET_CPUID2");
  return Ok();
}

Result<void> Vcpu::set_cpuid_entries(std::span<const kvm_cpuid_entry2> entries) {
  std::vector<uint64_t> buf((sizeof(kvm_abi::CountHeader) + entries.size() * sizeof(kvm_cpuid_entry2) + 7) / 8, 0);
  auto* header = reinterpret_cast<kvm_abi::CountHeader*>(buf.data());
  header->count = static_cast<uint32_t>(entries.size());
  if (!entries.empty()) std::memcpy(header + 1, entries.data(), entries.size_bytes());
  return set_cpuid(buf.data());
}

namespace {
constexpr size_t kMaxMsrBatch = 1024;

// kvm_msrs in C layout: header, then the entries.
std::vector<uint64_t> msr_buffer(std::span<const std::pair<uint32_t, uint64_t>> msrs) {
  std::vector<uint64_t> buf((sizeof(kvm_abi::CountHeader) + msrs.size() * sizeof(kvm_msr_entry) + 7) / 8, 0);
  auto* header = reinterpret_cast<kvm_abi::CountHeader*>(buf.data());
  auto* entries = reinterpret_cast<kvm_msr_entry*>(header + 1);
  header->count = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); i++) {
    entries[i].index = msrs[i].first;
    entries[i].data = msrs[i].second;
  }
  return buf;
}
}  // namespace

Result<size_t> Vcpu::set_msrs_partial(std::span<const std::pair<uint32_t, uint64_t>> msrs) {
  if (msrs.size() > kMaxMsrBatch) return Error{"KVM_SET_MSRS: too many MSRs (" + std::to_string(msrs.size()) + ")"};
  if (msrs.size() <= 16) {
    // The common case without a heap allocation.
    struct {
      kvm_abi::CountHeader header;
      kvm_msr_entry entries[16];
    } buf{};
    buf.header.count = static_cast<uint32_t>(msrs.size());
    for (size_t i = 0; i < msrs.size(); i++) {
      buf.entries[i].index = msrs[i].first;
      buf.entries[i].data = msrs[i].second;
    }
    const int n = ::ioctl(fd(), kvm_abi::kSetMsrs, &buf);
    if (n < 0) return errno_error("KVM_SET_MSRS");
    return static_cast<size_t>(n);
  }
  auto buf = msr_buffer(msrs);
  const int n = ::ioctl(fd(), kvm_abi::kSetMsrs, buf.data());
  if (n < 0) return errno_error("KVM_SET_MSRS");
  return static_cast<size_t>(n);
}

Result<void> Vcpu::set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs) {
  EMBER_TRY(size_t n, set_msrs_partial(msrs));
  if (n != msrs.size()) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "KVM_SET_MSRS: MSR 0x%x was refused", msrs[n].first);
    return Error{msg};
  }
  return Ok();
}

Result<size_t> Vcpu::get_msrs(std::span<std::pair<uint32_t, uint64_t>> msrs) const {
  if (msrs.size() > kMaxMsrBatch) return Error{"KVM_GET_MSRS: too many MSRs (" + std::to_string(msrs.size()) + ")"};
  auto buf = msr_buffer(msrs);
  const int n = ::ioctl(fd(), kvm_abi::kGetMsrs, buf.data());
  if (n < 0) return errno_error("KVM_GET_MSRS");
  const auto* entries = reinterpret_cast<const kvm_msr_entry*>(reinterpret_cast<const kvm_abi::CountHeader*>(buf.data()) + 1);
  for (int i = 0; i < n && static_cast<size_t>(i) < msrs.size(); i++) msrs[i].second = entries[i].data;
  return static_cast<size_t>(n);
}

Result<uint64_t> Vcpu::get_msr(uint32_t index) const {
  struct {
    kvm_abi::CountHeader header;
    kvm_msr_entry entry;
  } buf{};
  buf.header.count = 1;
  buf.entry.index = index;
  if (::ioctl(fd(), kvm_abi::kGetMsrs, &buf) != 1) return errno_error("KVM_GET_MSRS");
  return uint64_t{buf.entry.data};
}

Result<kvm_lapic_state> Vcpu::get_lapic() const {
  kvm_lapic_state lapic{};
  if (::ioctl(fd(), KVM_GET_LAPIC, &lapic) < 0) return errno_error("KVM_GET_LAPIC");
  return lapic;
}

Result<void> Vcpu::set_lapic(const kvm_lapic_state& lapic) {
  if (::ioctl(fd(), KVM_SET_LAPIC, &lapic) < 0) return errno_error("KVM_SET_LAPIC");
  return Ok();
}

Result<kvm_vcpu_events> Vcpu::get_events() const {
  kvm_vcpu_events events{};
  if (::ioctl(fd(), KVM_GET_VCPU_EVENTS, &events) < 0) return errno_error("KVM_GET_VCPU_EVENTS");
  return events;
}

Result<void> Vcpu::set_events(const kvm_vcpu_events& events) {
  if (::ioctl(fd(), KVM_SET_VCPU_EVENTS, &events) < 0) return errno_error("KVM_SET_VCPU_EVENTS");
  return Ok();
}

Result<kvm_fpu> Vcpu::get_fpu() const {
  kvm_fpu fpu{};
  if (::ioctl(fd(), KVM_GET_FPU, &fpu) < 0) return errno_error("KVM_GET_FPU");
  return fpu;
}

Result<void> Vcpu::set_fpu(const kvm_fpu& fpu) {
  if (::ioctl(fd(), KVM_SET_FPU, &fpu) < 0) return errno_error("KVM_SET_FPU");
  return Ok();
}

Result<std::vector<uint8_t>> Vcpu::get_xsave(size_t size) const {
  if (size < kvm_abi::kXsaveLegacySize) size = kvm_abi::kXsaveLegacySize;
  std::vector<uint8_t> buf(size, 0);
  if (::ioctl(fd(), kvm_abi::kGetXsave2, buf.data()) == 0) return buf;
  if (size != kvm_abi::kXsaveLegacySize) return errno_error("KVM_GET_XSAVE2");
  if (::ioctl(fd(), kvm_abi::kGetXsave, buf.data()) < 0) return errno_error("KVM_GET_XSAVE");
  return buf;
}

Result<void> Vcpu::set_xsave(std::span<const uint8_t> xsave) {
  // KVM reads KVM_CAP_XSAVE2 bytes (at least 4096): never hand it less.
  if (xsave.size() < kvm_abi::kXsaveLegacySize) return Error{"KVM_SET_XSAVE: area shorter than 4096 bytes"};
  if (::ioctl(fd(), kvm_abi::kSetXsave, xsave.data()) < 0) return errno_error("KVM_SET_XSAVE");
  return Ok();
}

Result<kvm_xcrs> Vcpu::get_xcrs() const {
  kvm_xcrs x{};
  if (::ioctl(fd(), KVM_GET_XCRS, &x) < 0) return errno_error("KVM_GET_XCRS");
  return x;
}

Result<void> Vcpu::set_xcrs(const kvm_xcrs& xcrs) {
  if (::ioctl(fd(), KVM_SET_XCRS, &xcrs) < 0) return errno_error("KVM_SET_XCRS");
  return Ok();
}

Result<kvm_debugregs> Vcpu::get_debugregs() const {
  kvm_debugregs d{};
  if (::ioctl(fd(), KVM_GET_DEBUGREGS, &d) < 0) return errno_error("KVM_GET_DEBUGREGS");
  return d;
}

Result<void> Vcpu::set_debugregs(const kvm_debugregs& regs) {
  if (::ioctl(fd(), KVM_SET_DEBUGREGS, &regs) < 0) return errno_error("KVM_SET_DEBUGREGS");
  return Ok();
}

Result<kvm_mp_state> Vcpu::get_mp_state() const {
  kvm_mp_state m{};
  if (::ioctl(fd(), KVM_GET_MP_STATE, &m) < 0) return errno_error("KVM_GET_MP_STATE");
  return m;
}

Result<void> Vcpu::set_mp_state(const kvm_mp_state& state) {
  if (::ioctl(fd(), KVM_SET_MP_STATE, &state) < 0) return errno_error("KVM_SET_MP_STATE");
  return Ok();
}

Result<uint32_t> Vcpu::tsc_khz() const {
  const int khz = ::ioctl(fd(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return errno_error("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(khz);
}

}  // namespace ember
