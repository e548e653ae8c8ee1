#include "vmm/kvm.h"

#include "vmm/kvm_abi.h"

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

Result<Vm> Kvm::create_vm() const {
  int fd;
  do {
    fd = ::ioctl(this->fd(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("KVM_CREATE_VM");
  return Vm(Fd(fd), vcpu_mmap_size_);
}

Result<void> Vm::set_memory_region(uint32_t slot, uint64_t gpa, void* host, uint64_t size, bool readonly) {
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

Result<void> Vm::create_irqchip() {
  if (::ioctl(fd(), KVM_CREATE_IRQCHIP, 0) < 0) return errno_error("KVM_CREATE_IRQCHIP");
  return Ok();
}

Result<void> Vm::set_msi_routes(std::span<const MsiRoute> routes) {
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

Result<void> Vm::add_irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  if (::ioctl(fd(), KVM_IRQFD, &irqfd) < 0) return errno_error("KVM_IRQFD gsi " + std::to_string(gsi));
  return Ok();
}

Result<void> Vm::add_ioeventfd(int event_fd, uint64_t gpa, uint32_t len, std::optional<uint64_t> datamatch) {
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

Result<Vcpu> Vm::create_vcpu(uint32_t id) {
  Fd vcpu(::ioctl(fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id)));
  if (!vcpu.valid()) return errno_error("KVM_CREATE_VCPU");
  void* run = ::mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0);
  if (run == MAP_FAILED) return errno_error("mmap kvm_run");
  return Vcpu(std::move(vcpu), Mapping(run, vcpu_mmap_size_));
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

Result<void> Vcpu::set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs) {
  constexpr size_t kMax = 16;
  struct {
    kvm_abi::CountHeader header;
    kvm_msr_entry entries[kMax];
  } buf{};
  if (msrs.size() > kMax) return Error{"set_msrs: too many MSRs"};
  buf.header.count = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); i++) {
    buf.entries[i].index = msrs[i].first;
    buf.entries[i].data = msrs[i].second;
  }
  const int n = ::ioctl(fd(), kvm_abi::kSetMsrs, &buf);
  if (n < 0) return errno_error("KVM_SET_MSRS");
  if (static_cast<size_t>(n) != msrs.size()) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "KVM_SET_MSRS: MSR 0x%x was refused", msrs[n].first);
    return Error{msg};
  }
  return Ok();
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

Result<uint32_t> Vcpu::tsc_khz() const {
  const int khz = ::ioctl(fd(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return errno_error("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(khz);
}

}  // namespace ember
