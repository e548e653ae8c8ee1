#include "vmm/vmstate.h"

#include <cstring>
#include <type_traits>

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "vmm/crc32c.h"

namespace ember {

namespace {

enum Tag : uint32_t {
  kTagMachine = 1,
  kTagCpuid = 2,
  kTagRegs = 3,
  kTagSregs = 4,
  kTagFpu = 5,
  kTagXsave = 6,
  kTagXcrs = 7,
  kTagMsrs = 8,
  kTagLapic = 9,
  kTagEvents = 10,
  kTagDebugregs = 11,
  kTagMpState = 12,
  kTagIrqchip = 13,
  kTagClock = 14,
  kTagDevice = 15,
  kTagControl = 16,
  kTagCount
};

const char* tag_name(uint32_t t) {
  static const char* const kNames[] = {"?",      "machine", "cpuid",     "regs",     "sregs",   "fpu",
                                       "xsave",  "xcrs",    "msrs",      "lapic",    "events",  "debugregs",
                                       "mp_state", "irqchip", "clock",   "device",   "control"};
  return t < std::size(kNames) ? kNames[t] : "?";
}

class Writer {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  template <typename T>
  void obj(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    raw(&v, sizeof v);
  }
  // Starts a section; end_section() patches its length.
  void begin_section(uint32_t tag) {
    u32(tag);
    section_at_ = buf_.size();
    u32(0);
  }
  void end_section() {
    const uint32_t len = static_cast<uint32_t>(buf_.size() - section_at_ - 4);
    std::memcpy(buf_.data() + section_at_, &len, 4);
  }
  std::vector<uint8_t>& bytes() { return buf_; }

 private:
  std::vector<uint8_t> buf_;
  size_t section_at_ = 0;
};

// Bounds-checked reader over one section.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool ok() const { return ok_; }
  size_t left() const { return b_.size() - at_; }
  bool raw(void* out, size_t n) {
    if (!ok_ || n > left()) {
      ok_ = false;
      std::memset(out, 0, n);
      return false;
    }
    std::memcpy(out, b_.data() + at_, n);
    at_ += n;
    return true;
  }
  uint8_t u8() {
    uint8_t v = 0;
    raw(&v, 1);
    return v;
  }
  uint16_t u16() {
    uint16_t v = 0;
    raw(&v, 2);
    return v;
  }
  uint32_t u32() {
    uint32_t v = 0;
    raw(&v, 4);
    return v;
  }
  uint64_t u64() {
    uint64_t v = 0;
    raw(&v, 8);
    return v;
  }
  template <typename T>
  T obj() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    raw(&v, sizeof v);
    return v;
  }

 private:
  std::span<const uint8_t> b_;
  size_t at_ = 0;
  bool ok_ = true;
};

uint32_t expected_queues(uint32_t device_id) {
  return device_id == abi::kVirtioIdConsole ? 2 : device_id == abi::kVirtioIdVsock ? 3 : 0;
}

void write_device(Writer& w, const DeviceSnapshot& d) {
  w.u32(d.device_id);
  w.u32(d.role);
  const VirtioMmioState& t = d.transport;
  w.u32(t.status);
  w.u32(t.device_features_sel);
  w.u32(t.driver_features_sel);
  w.u32(t.interrupt_status);
  w.u64(t.driver_features);
  w.u32(t.queue_sel);
  w.u32(static_cast<uint32_t>(t.queues.size()));
  for (const VirtqueueState& q : t.queues) {
    w.u16(q.config.size);
    w.u16(q.next_avail);
    w.u16(q.next_used);
    w.u8(q.active ? 1 : 0);
    w.u8(q.ready ? 1 : 0);
    w.u64(q.config.desc_gpa);
    w.u64(q.config.avail_gpa);
    w.u64(q.config.used_gpa);
  }
  if (d.device_id == abi::kVirtioIdConsole) {
    w.u8(d.console.input_eof ? 1 : 0);
    w.u8(d.console.output_closed ? 1 : 0);
    w.u16(0);
    w.u32(0);
  } else if (d.device_id == abi::kVirtioIdVsock) {
    w.u64(d.vsock.guest_cid);
  }
}

Result<DeviceSnapshot> read_device(Reader& r, size_t index) {
  const std::string what = "device " + std::to_string(index);
  DeviceSnapshot d;
  d.device_id = r.u32();
  d.role = r.u32();
  const uint32_t want_queues = expected_queues(d.device_id);
  if (r.ok() && want_queues == 0) return Error{what + ": unknown device type " + std::to_string(d.device_id)};
  VirtioMmioState& t = d.transport;
  t.status = r.u32();
  t.device_features_sel = r.u32();
  t.driver_features_sel = r.u32();
  t.interrupt_status = r.u32();
  t.driver_features = r.u64();
  t.queue_sel = r.u32();
  const uint32_t nq = r.u32();
  if (r.ok() && nq != want_queues)
    return Error{what + ": " + std::to_string(nq) + " queues (a device of type " + std::to_string(d.device_id) +
                 " has " + std::to_string(want_queues) + ")"};
  for (uint32_t i = 0; i < nq && r.ok(); i++) {
    VirtqueueState q;
    q.config.size = r.u16();
    q.next_avail = r.u16();
    q.next_used = r.u16();
    const uint8_t active = r.u8(), ready = r.u8();
    if (active > 1 || ready > 1) return Error{what + " queue " + std::to_string(i) + ": bad flag byte"};
    q.active = active;
    q.ready = ready;
    q.config.desc_gpa = r.u64();
    q.config.avail_gpa = r.u64();
    q.config.used_gpa = r.u64();
    if (q.config.size > abi::kQueueSize)
      return Error{what + " queue " + std::to_string(i) + ": size " + std::to_string(q.config.size) + " > " +
                   std::to_string(abi::kQueueSize)};
    t.queues.push_back(q);
  }
  if (d.device_id == abi::kVirtioIdConsole) {
    const uint8_t eof = r.u8(), closed = r.u8();
    r.u16();
    r.u32();
    if (eof > 1 || closed > 1) return Error{what + ": bad console flag byte"};
    d.console.input_eof = eof;
    d.console.output_closed = closed;
  } else {
    d.vsock.guest_cid = r.u64();
  }
  if (!r.ok()) return Error{what + ": section truncated"};
  if (r.left()) return Error{what + ": " + std::to_string(r.left()) + " stray bytes at the end of the section"};
  return d;
}

}  // namespace

std::vector<uint8_t> serialize_vmstate(const VmSnapshot& s) {
  Writer w;
  // Header placeholder: filled in below.
  std::vector<uint8_t>& out = w.bytes();
  out.resize(kVmstateHeaderSize, 0);

  w.begin_section(kTagMachine);
  w.u64(s.machine.mem_size);
  w.u64(s.machine.image_size);
  w.u32(s.machine.image_crc32c);
  w.u32(0);
  w.u64(s.machine.guest_cid);
  w.u64(s.machine.boot_flags);
  w.u64(s.machine.tsc_khz);
  w.end_section();

  w.begin_section(kTagCpuid);
  w.u32(static_cast<uint32_t>(s.vcpu.cpuid.size()));
  w.u32(0);
  for (const auto& e : s.vcpu.cpuid) w.obj(e);
  w.end_section();

  w.begin_section(kTagRegs);
  w.obj(s.vcpu.regs);
  w.end_section();
  w.begin_section(kTagSregs);
  w.obj(s.vcpu.sregs);
  w.end_section();
  w.begin_section(kTagFpu);
  w.obj(s.vcpu.fpu);
  w.end_section();
  if (!s.vcpu.xsave.empty()) {
    w.begin_section(kTagXsave);
    w.raw(s.vcpu.xsave.data(), s.vcpu.xsave.size());
    w.end_section();
  }
  if (s.vcpu.has_xcrs) {
    w.begin_section(kTagXcrs);
    w.obj(s.vcpu.xcrs);
    w.end_section();
  }
  w.begin_section(kTagMsrs);
  w.u32(static_cast<uint32_t>(s.vcpu.msrs.size()));
  w.u32(0);
  for (const auto& [index, value] : s.vcpu.msrs) {
    w.u32(index);
    w.u32(0);
    w.u64(value);
  }
  w.end_section();
  w.begin_section(kTagLapic);
  w.obj(s.vcpu.lapic);
  w.end_section();
  w.begin_section(kTagEvents);
  w.obj(s.vcpu.events);
  w.end_section();
  w.begin_section(kTagDebugregs);
  w.obj(s.vcpu.debugregs);
  w.end_section();
  w.begin_section(kTagMpState);
  w.obj(s.vcpu.mp_state);
  w.end_section();
  w.begin_section(kTagIrqchip);
  for (const auto& c : s.irqchip) w.obj(c);
  w.end_section();
  w.begin_section(kTagClock);
  w.obj(s.clock);
  w.end_section();
  for (const DeviceSnapshot& d : s.devices) {
    w.begin_section(kTagDevice);
    write_device(w, d);
    w.end_section();
  }
  w.begin_section(kTagControl);
  w.u32(s.control_ready ? 1 : 0);
  w.u32(0);
  w.end_section();

  const uint64_t payload = out.size() - kVmstateHeaderSize;
  const uint32_t crc = crc32c(out.data() + kVmstateHeaderSize, payload);
  uint8_t* h = out.data();
  std::memcpy(h, kVmstateMagic, 8);
  const uint32_t version = kVmstateVersion, header_size = kVmstateHeaderSize;
  std::memcpy(h + 8, &version, 4);
  std::memcpy(h + 12, &header_size, 4);
  std::memcpy(h + 16, &payload, 8);
  std::memcpy(h + 24, &crc, 4);
  return out;
}

Result<VmSnapshot> parse_vmstate(std::span<const uint8_t> file) {
  const std::string f = "vm.vmstate: ";
  if (file.size() < kVmstateHeaderSize)
    return Error{f + "truncated (" + std::to_string(file.size()) + " bytes, the header alone is " +
                 std::to_string(kVmstateHeaderSize) + ")"};
  if (std::memcmp(file.data(), kVmstateMagic, 8) != 0) return Error{f + "bad magic (not an Ember snapshot)"};
  uint32_t version, header_size, crc;
  uint64_t payload_size;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&header_size, file.data() + 12, 4);
  std::memcpy(&payload_size, file.data() + 16, 8);
  std::memcpy(&crc, file.data() + 24, 4);
  if (version != kVmstateVersion)
    return Error{f + "format version " + std::to_string(version) + ", this ember-vmm reads version " +
                 std::to_string(kVmstateVersion)};
  if (header_size != kVmstateHeaderSize) return Error{f + "bad header size " + std::to_string(header_size)};
  const uint64_t have = file.size() - kVmstateHeaderSize;
  if (payload_size > have)
    return Error{f + "truncated (payload of " + std::to_string(payload_size) + " bytes, " + std::to_string(have) +
                 " present)"};
  if (payload_size < have)
    return Error{f + std::to_string(have - payload_size) + " stray bytes after the payload"};
  const std::span<const uint8_t> payload = file.subspan(kVmstateHeaderSize);
  if (crc32c(payload.data(), payload.size()) != crc) return Error{f + "CRC mismatch (the file is corrupt)"};

  VmSnapshot s;
  uint32_t seen[kTagCount] = {};
  size_t at = 0;
  while (at < payload.size()) {
    if (payload.size() - at < 8) return Error{f + "truncated section header at payload offset " + std::to_string(at)};
    uint32_t tag, len;
    std::memcpy(&tag, payload.data() + at, 4);
    std::memcpy(&len, payload.data() + at + 4, 4);
    at += 8;
    if (len > payload.size() - at)
      return Error{f + "section " + std::to_string(tag) + " runs past the end of the file"};
    Reader r(payload.subspan(at, len));
    at += len;
    if (tag == 0 || tag >= kTagCount) return Error{f + "unknown section " + std::to_string(tag)};
    if (tag != kTagDevice && seen[tag]) return Error{f + "duplicate section " + tag_name(tag)};
    seen[tag]++;
    const std::string sec = f + "section " + tag_name(tag) + ": ";
    auto fixed = [&](auto& obj) -> Result<void> {
      if (len != sizeof obj)
        return Error{sec + std::to_string(len) + " bytes, expected " + std::to_string(sizeof obj)};
      r.raw(&obj, sizeof obj);
      return Ok();
    };
    switch (tag) {
      case kTagMachine: {
        if (len != 48) return Error{sec + std::to_string(len) + " bytes, expected 48"};
        MachineSnapshot& m = s.machine;
        m.mem_size = r.u64();
        m.image_size = r.u64();
        m.image_crc32c = r.u32();
        r.u32();
        m.guest_cid = r.u64();
        m.boot_flags = r.u64();
        m.tsc_khz = r.u64();
        if (m.mem_size < abi::kMinMemSize || m.mem_size > abi::kMaxMemSize || m.mem_size % abi::kHugePageSize)
          return Error{sec + "memory size " + std::to_string(m.mem_size) +
                       " (must be a multiple of 2 MiB from 16 MiB to 3 GiB)"};
        if (m.image_size > abi::kMaxImageSize) return Error{sec + "image size " + std::to_string(m.image_size) + " too large"};
        if (m.guest_cid > 0xffffffffu || (m.guest_cid != 0 && m.guest_cid < 3))
          return Error{sec + "guest CID " + std::to_string(m.guest_cid) + " (must be 3..2^32-1)"};
        break;
      }
      case kTagCpuid: {
        const uint32_t n = r.u32();
        r.u32();
        if (!r.ok() || n > kMaxSnapshotCpuid || len != 8 + uint64_t{n} * sizeof(kvm_cpuid_entry2))
          return Error{sec + "bad entry count or length"};
        s.vcpu.cpuid.resize(n);
        for (auto& e : s.vcpu.cpuid) e = r.obj<kvm_cpuid_entry2>();
        break;
      }
      case kTagRegs: EMBER_TRY_VOID(fixed(s.vcpu.regs)); break;
      case kTagSregs: EMBER_TRY_VOID(fixed(s.vcpu.sregs)); break;
      case kTagFpu: EMBER_TRY_VOID(fixed(s.vcpu.fpu)); break;
      case kTagXsave:
        if (len < 4096 || len > kMaxSnapshotXsave || len % 64)
          return Error{sec + std::to_string(len) + " bytes (must be a multiple of 64 from 4096 to 65536)"};
        s.vcpu.xsave.resize(len);
        r.raw(s.vcpu.xsave.data(), len);
        break;
      case kTagXcrs:
        EMBER_TRY_VOID(fixed(s.vcpu.xcrs));
        if (s.vcpu.xcrs.nr_xcrs > KVM_MAX_XCRS) return Error{sec + "too many XCRs"};
        s.vcpu.has_xcrs = true;
        break;
      case kTagMsrs: {
        const uint32_t n = r.u32();
        r.u32();
        if (!r.ok() || n > kMaxSnapshotMsrs || len != 8 + uint64_t{n} * 16) return Error{sec + "bad entry count or length"};
        s.vcpu.msrs.resize(n);
        for (auto& [index, value] : s.vcpu.msrs) {
          index = r.u32();
          r.u32();
          value = r.u64();
        }
        break;
      }
      case kTagLapic: EMBER_TRY_VOID(fixed(s.vcpu.lapic)); break;
      case kTagEvents: EMBER_TRY_VOID(fixed(s.vcpu.events)); break;
      case kTagDebugregs: EMBER_TRY_VOID(fixed(s.vcpu.debugregs)); break;
      case kTagMpState: EMBER_TRY_VOID(fixed(s.vcpu.mp_state)); break;
      case kTagIrqchip:
        EMBER_TRY_VOID(fixed(s.irqchip));
        for (uint32_t i = 0; i < 3; i++)
          if (s.irqchip[i].chip_id != i) return Error{sec + "chip " + std::to_string(i) + " has id " +
                                                      std::to_string(s.irqchip[i].chip_id)};
        break;
      case kTagClock: EMBER_TRY_VOID(fixed(s.clock)); break;
      case kTagDevice: {
        if (s.devices.size() >= kMaxSnapshotDevices) return Error{f + "more than " + std::to_string(kMaxSnapshotDevices) + " devices"};
        auto d = read_device(r, s.devices.size());
        if (!d) return Error{f + d.message()};
        s.devices.push_back(std::move(*d));
        break;
      }
      case kTagControl: {
        if (len != 8) return Error{sec + std::to_string(len) + " bytes, expected 8"};
        const uint32_t ready = r.u32();
        r.u32();
        if (ready > 1) return Error{sec + "bad ready flag"};
        s.control_ready = ready;
        break;
      }
      default: break;
    }
    if (!r.ok()) return Error{sec + "truncated"};
  }
  for (uint32_t t : {kTagMachine, kTagCpuid, kTagRegs, kTagSregs, kTagFpu, kTagMsrs, kTagLapic, kTagEvents,
                     kTagDebugregs, kTagMpState, kTagIrqchip, kTagClock, kTagControl})
    if (!seen[t]) return Error{f + "missing section " + tag_name(t)};
  return s;
}

}  // namespace ember
