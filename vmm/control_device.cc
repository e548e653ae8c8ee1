#include "vmm/control_device.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>

namespace ember {

void ControlDevice::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset == abi::kControlMagic && data.size() == 4) {
    const uint32_t v = abi::kControlMagicValue;
    std::memcpy(data.data(), &v, 4);
  }
}

void ControlDevice::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  uint64_t v = 0;
  std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 8));
  switch (offset) {
    case abi::kControlExitCode:
      set_outcome(ControlOutcome{ControlOutcome::kExit, static_cast<uint32_t>(v & 0xff)});
      break;
    case abi::kControlExitSignal: {
      const uint32_t sig = static_cast<uint32_t>(v);
      // Out-of-range numbers still end the run, as SIGKILL would.
      set_outcome(ControlOutcome{ControlOutcome::kSignal, sig >= 1 && sig <= 64 ? sig : 9u});
      break;
    }
    case abi::kControlFault:
      set_outcome(ControlOutcome{ControlOutcome::kFault, static_cast<uint32_t>(v & 0xff)});
      break;
    case abi::kControlLog:
      if (data.size() == 8) print_log(v);
      break;
    case abi::kControlReady:
      if (log_ && !ready_.load(std::memory_order_relaxed)) log_->debug("guest ready (program waits for stdin)");
      ready_.store(true, std::memory_order_release);
      break;
    default:
      break;
  }
}

void ControlDevice::set_outcome(ControlOutcome o) {
  std::lock_guard<std::mutex> g(mutex_);
  if (!outcome_) outcome_ = o;
}

std::optional<ControlOutcome> ControlDevice::outcome() const {
  std::lock_guard<std::mutex> g(mutex_);
  return outcome_;
}

void ControlDevice::print_log(uint64_t gpa) {
  log_lines_.fetch_add(1, std::memory_order_relaxed);
  if (!log_ || !log_->verbose()) return;
  auto header = memory_.read_obj<uint64_t>(gpa);  // length, level
  if (!header) {
    log_->debug("guest log record at 0x%" PRIx64 " is not in guest memory", gpa);
    return;
  }
  const uint32_t length = std::min<uint32_t>(static_cast<uint32_t>(*header), abi::kLogMax);
  const uint32_t level = static_cast<uint32_t>(*header >> 32);
  char text[abi::kLogMax + 1];
  if (!memory_.read(gpa + 8, std::span<uint8_t>(reinterpret_cast<uint8_t*>(text), length))) {
    log_->debug("guest log record at 0x%" PRIx64 " runs out of guest memory", gpa);
    return;
  }
  // Untrusted text: replace control characters so it cannot drive the terminal.
  for (uint32_t i = 0; i < length; i++)
    if (static_cast<unsigned char>(text[i]) < 0x20 || text[i] == 0x7f) text[i] = '.';
  text[length] = 0;
  static const char* const kLevels[] = {"debug", "info", "warning", "error"};
  log_->debug("guest %s: %s", level < 4 ? kLevels[level] : "log", text);
}

int exit_status_for(const ControlOutcome& o) {
  switch (o.kind) {
    case ControlOutcome::kExit: return static_cast<int>(o.value & 0xff);
    case ControlOutcome::kSignal: return abi::exit_status_for_signal(o.value);
    case ControlOutcome::kFault: return abi::exit_status_for_signal(abi::signal_for_vector(o.value));
  }
  return 125;
}

}  // namespace ember
