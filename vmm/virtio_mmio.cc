#include "vmm/virtio_mmio.h"

#include <cstring>

namespace ember {

VirtioMmioTransport::VirtioMmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
                                         std::function<void()> raise_irq, const Log* log)
    : device_(std::move(device)), memory_(memory), raise_irq_(std::move(raise_irq)), log_(log) {
  const uint32_t n = device_->queue_count();
  queue_config_.assign(n, VirtqueueConfig{});
  queue_ready_.assign(n, false);
  queues_.resize(n);
}

Result<void> VirtioMmioTransport::preconfigure(std::function<uint64_t(uint32_t)> queue_gpa, uint16_t size,
                                               uint64_t avail_off, uint64_t used_off) {
  std::lock_guard<std::mutex> g(mutex_);
  reset_locked();
  for (uint32_t q = 0; q < queues_.size(); q++) {
    const uint64_t base = queue_gpa(q);
    queue_config_[q] = VirtqueueConfig{size, base, base + avail_off, base + used_off};
    queue_ready_[q] = true;
  }
  driver_features_ = abi::kVirtioFVersion1;
  status_ = abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver | abi::kVirtioStatusFeaturesOk;
  write_status(status_ | abi::kVirtioStatusDriverOk);
  run_device_work_locked();
  if (status_ & abi::kVirtioStatusNeedsReset) return Error{"virtio device " + std::to_string(device_->device_id()) +
                                                      ": pre-configuration failed"};
  return Ok();
}

uint32_t VirtioMmioTransport::status() const {
  std::lock_guard<std::mutex> g(mutex_);
  return status_;
}

void VirtioMmioTransport::raise(uint32_t bits) {
  // Called with mutex_ held (from the device's processing).
  interrupt_status_ |= bits;
  if (raise_irq_) raise_irq_();
}

void VirtioMmioTransport::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> g(mutex_);
  std::fill(data.begin(), data.end(), 0);
  if (offset >= abi::kMmioConfig) {
    device_->read_config(offset - abi::kMmioConfig, data);
    return;
  }
  // Registers below the config space are 32-bit wide, 32-bit accessed.
  if (data.size() != 4 || offset % 4) return;
  const uint32_t v = read_register(static_cast<uint32_t>(offset));
  std::memcpy(data.data(), &v, 4);
}

void VirtioMmioTransport::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  std::function<void(uint32_t)> hook;
  uint32_t notified = 0;
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (offset >= abi::kMmioConfig) {
      device_->write_config(offset - abi::kMmioConfig, data);
      return;
    }
    if (data.size() != 4 || offset % 4) return;
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    if (offset == abi::kMmioQueueNotify) {
      if (!(status_ & abi::kVirtioStatusDriverOk) || v >= queues_.size()) return;
      if (!notify_hook_) {
        notify_locked(v);
        return;
      }
      hook = notify_hook_;
      notified = v;
    } else {
      write_register(static_cast<uint32_t>(offset), v);
      return;
    }
  }
  hook(notified);  // outside the lock: the hook may be processed elsewhere
}

uint32_t VirtioMmioTransport::read_register(uint32_t offset) {
  const bool qok = queue_sel_ < queues_.size();
  switch (offset) {
    case abi::kMmioMagic: return abi::kVirtioMmioMagic;
    case abi::kMmioVersion: return 2;
    case abi::kMmioDeviceId: return device_->device_id();
    case abi::kMmioVendorId: return abi::kVirtioMmioVendor;
    case abi::kMmioDeviceFeatures:
      return device_features_sel_ == 0 ? static_cast<uint32_t>(offered_features())
             : device_features_sel_ == 1 ? static_cast<uint32_t>(offered_features() >> 32)
                                         : 0;
    case abi::kMmioQueueNumMax: return qok ? device_->queue_max_size() : 0;
    case abi::kMmioQueueNum: return qok ? queue_config_[queue_sel_].size : 0;
    case abi::kMmioQueueReady: return qok && queue_ready_[queue_sel_] ? 1 : 0;
    case abi::kMmioInterruptStatus: return interrupt_status_;
    case abi::kMmioStatus: return status_;
    case abi::kMmioQueueDescLow: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].desc_gpa) : 0;
    case abi::kMmioQueueDescHigh: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].desc_gpa >> 32) : 0;
    case abi::kMmioQueueDriverLow: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].avail_gpa) : 0;
    case abi::kMmioQueueDriverHigh: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].avail_gpa >> 32) : 0;
    case abi::kMmioQueueDeviceLow: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].used_gpa) : 0;
    case abi::kMmioQueueDeviceHigh: return qok ? static_cast<uint32_t>(queue_config_[queue_sel_].used_gpa >> 32) : 0;
    case abi::kMmioConfigGeneration: return 0;  // the config space never changes
    default: return 0;
  }
}

void VirtioMmioTransport::write_register(uint32_t offset, uint32_t value) {
  auto set_low = [](uint64_t& field, uint32_t v) { field = (field & ~0xffffffffull) | v; };
  auto set_high = [](uint64_t& field, uint32_t v) { field = (field & 0xffffffffull) | (uint64_t{v} << 32); };
  // Queue registers may change only while that queue is not ready and the
  // driver has not finished (virtio 1.2, 4.2.3.2).
  const bool qw = queue_sel_ < queues_.size() && !queue_ready_[queue_sel_] && !(status_ & abi::kVirtioStatusDriverOk);
  switch (offset) {
    case abi::kMmioDeviceFeaturesSel: device_features_sel_ = value; break;
    case abi::kMmioDriverFeatures:
      if (status_ & abi::kVirtioStatusFeaturesOk) break;
      if (driver_features_sel_ == 0) set_low(driver_features_, value);
      else if (driver_features_sel_ == 1) set_high(driver_features_, value);
      break;
    case abi::kMmioDriverFeaturesSel: driver_features_sel_ = value; break;
    case abi::kMmioQueueSel: queue_sel_ = value; break;
    case abi::kMmioQueueNum:
      if (qw) queue_config_[queue_sel_].size = static_cast<uint16_t>(value > 0xffff ? 0 : value);
      break;
    case abi::kMmioQueueReady:
      if (queue_sel_ < queues_.size() && !(status_ & abi::kVirtioStatusDriverOk)) queue_ready_[queue_sel_] = value == 1;
      break;
    case abi::kMmioInterruptAck: interrupt_status_ &= ~value; break;
    case abi::kMmioStatus: write_status(value); break;
    case abi::kMmioQueueDescLow: if (qw) set_low(queue_config_[queue_sel_].desc_gpa, value); break;
    case abi::kMmioQueueDescHigh: if (qw) set_high(queue_config_[queue_sel_].desc_gpa, value); break;
    case abi::kMmioQueueDriverLow: if (qw) set_low(queue_config_[queue_sel_].avail_gpa, value); break;
    case abi::kMmioQueueDriverHigh: if (qw) set_high(queue_config_[queue_sel_].avail_gpa, value); break;
    case abi::kMmioQueueDeviceLow: if (qw) set_low(queue_config_[queue_sel_].used_gpa, value); break;
    case abi::kMmioQueueDeviceHigh: if (qw) set_high(queue_config_[queue_sel_].used_gpa, value); break;
    default: break;  // read-only or unknown: ignored
  }
}

void VirtioMmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    reset_registers_locked();
    pending_reset_ = true;
    pending_activate_ = false;
    hand_off_device_work_locked();
    return;
  }
  // The driver only ever adds bits; keep NEEDS_RESET sticky until a reset.
  uint32_t next = value | (status_ & abi::kVirtioStatusNeedsReset);
  if ((next & abi::kVirtioStatusFeaturesOk) && !(status_ & abi::kVirtioStatusFeaturesOk)) {
    // FEATURES_OK sticks only for a subset of what we offer, VERSION_1
    // included (no legacy interface).
    if ((driver_features_ & ~offered_features()) || !(driver_features_ & abi::kVirtioFVersion1))
      next &= ~abi::kVirtioStatusFeaturesOk;
  }
  const bool go = (next & abi::kVirtioStatusDriverOk) && !(status_ & abi::kVirtioStatusDriverOk);
  status_ = next;
  if (go) {
    if (!(status_ & abi::kVirtioStatusFeaturesOk)) {
      mark_broken_locked("DRIVER_OK without FEATURES_OK");
      return;
    }
    pending_activate_ = true;
    hand_off_device_work_locked();
  }
}

void VirtioMmioTransport::hand_off_device_work_locked() {
  if (device_work_hook_) device_work_hook_();
  else run_device_work_locked();
}

void VirtioMmioTransport::run_device_work() {
  std::lock_guard<std::mutex> g(mutex_);
  run_device_work_locked();
}

void VirtioMmioTransport::run_device_work_locked() {
  if (pending_reset_) {
    pending_reset_ = false;
    device_->reset();
    for (auto& q : queues_) q.reset();
  }
  if (pending_activate_) {
    pending_activate_ = false;
    // The guest may have reset or broken the device again since.
    if ((status_ & abi::kVirtioStatusDriverOk) && !(status_ & abi::kVirtioStatusNeedsReset)) activate_locked();
  }
}

void VirtioMmioTransport::activate_locked() {
  for (uint32_t q = 0; q < queues_.size(); q++) {
    if (!queue_ready_[q]) continue;
    auto r = queues_[q].activate(memory_, queue_config_[q], device_->queue_max_size());
    if (!r) {
      mark_broken_locked("queue " + std::to_string(q) + ": " + r.message());
      return;
    }
  }
  auto r = device_->activate(VirtioContext{&memory_, std::span<Virtqueue>(queues_), this}, driver_features_);
  if (!r) mark_broken_locked(r.message());
}

void VirtioMmioTransport::mark_broken_locked(const std::string& why) {
  if (status_ & abi::kVirtioStatusNeedsReset) return;
  if (log_) log_->debug("virtio device %u: needs reset: %s", device_->device_id(), why.c_str());
  status_ |= abi::kVirtioStatusNeedsReset;
  // Tell a driver that listens for config changes (virtio 1.2, 2.1.2).
  if (status_ & abi::kVirtioStatusDriverOk) raise(abi::kVirtioIntConfigChange);
}

void VirtioMmioTransport::reset_locked() {
  reset_registers_locked();
  pending_reset_ = true;
  pending_activate_ = false;
  run_device_work_locked();
}

void VirtioMmioTransport::reset_registers_locked() {
  std::fill(queue_config_.begin(), queue_config_.end(), VirtqueueConfig{});
  std::fill(queue_ready_.begin(), queue_ready_.end(), false);
  status_ = 0;
  device_features_sel_ = driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  interrupt_status_ = 0;
}

void VirtioMmioTransport::notify(uint32_t q) {
  std::lock_guard<std::mutex> g(mutex_);
  notify_locked(q);
}

void VirtioMmioTransport::notify_locked(uint32_t q) {
  run_device_work_locked();
  if (!(status_ & abi::kVirtioStatusDriverOk) || (status_ & abi::kVirtioStatusNeedsReset) || q >= queues_.size()) return;
  if (!queues_[q].active()) return;
  if (!device_->process_queue(q)) {
    std::string why = queues_[q].broken() ? "queue " + std::to_string(q) + ": " + queues_[q].broken_reason()
                                          : "queue " + std::to_string(q) + " failed";
    mark_broken_locked(why);
  }
}

VirtioMmioState VirtioMmioTransport::save() const {
  std::lock_guard<std::mutex> g(mutex_);
  VirtioMmioState s;
  s.status = status_;
  s.device_features_sel = device_features_sel_;
  s.driver_features_sel = driver_features_sel_;
  s.driver_features = driver_features_;
  s.queue_sel = queue_sel_;
  s.interrupt_status = interrupt_status_;
  for (uint32_t q = 0; q < queues_.size(); q++) {
    VirtqueueState qs = queues_[q].save();
    qs.config = queue_config_[q];
    qs.ready = queue_ready_[q];
    s.queues.push_back(qs);
  }
  return s;
}

Result<void> VirtioMmioTransport::restore(const VirtioMmioState& s) {
  std::lock_guard<std::mutex> g(mutex_);
  const std::string what = "virtio device " + std::to_string(device_->device_id());
  if (s.queues.size() != queues_.size())
    return Error{what + ": " + std::to_string(s.queues.size()) + " queues saved, the device has " +
                 std::to_string(queues_.size())};
  reset_locked();
  status_ = s.status;
  device_features_sel_ = s.device_features_sel;
  driver_features_sel_ = s.driver_features_sel;
  driver_features_ = s.driver_features;
  queue_sel_ = s.queue_sel;
  interrupt_status_ = s.interrupt_status;
  for (uint32_t q = 0; q < queues_.size(); q++) {
    queue_config_[q] = s.queues[q].config;
    queue_ready_[q] = s.queues[q].ready;
  }
  if (!(status_ & abi::kVirtioStatusDriverOk) || (status_ & abi::kVirtioStatusNeedsReset)) return Ok();
  if (driver_features_ & ~offered_features()) return Error{what + ": saved driver features were never offered"};
  for (uint32_t q = 0; q < queues_.size(); q++) {
    if (!queue_ready_[q]) continue;
    auto r = queues_[q].activate(memory_, queue_config_[q], device_->queue_max_size());
    if (!r) {
      reset_locked();
      return Error{what + " queue " + std::to_string(q) + ": " + r.message()};
    }
    queues_[q].restore_indices(s.queues[q].next_avail, s.queues[q].next_used);
  }
  auto r = device_->activate(VirtioContext{&memory_, std::span<Virtqueue>(queues_), this}, driver_features_);
  if (!r) {
    reset_locked();
    return Error{what + ": " + r.message()};
  }
  return Ok();
}

}  // namespace ember
