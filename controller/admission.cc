#include "controller/admission.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

namespace ember::controller {

struct Admission::State {
  mutable std::mutex mu;
  Capacity cap;
  struct Held {
    int64_t mem_bytes, tasks;
    uint32_t uid;
  };
  std::map<uint64_t, Held> slots;
  uint64_t next_id = 1;
  AdmissionUsage used;
  uint32_t uid_base = 0;
  std::vector<bool> uid_taken;  // by offset from uid_base
  size_t uid_cursor = 0;        // round robin: a uid freed is not the next one handed out
  size_t uids_taken = 0;

  // Why `c` does not fit, or "" when it does (mu held).
  std::string refusal(const VmCost& c) const {
    if (used.vms + 1 > cap.max_vms)
      return "limits.max_vms (" + std::to_string(cap.max_vms) + ") VMs are running";
    const int64_t mem = used.mem_bytes + static_cast<int64_t>(used.vms + 1) * cap.host_overhead_bytes + c.mem_bytes;
    if (mem > cap.mem_bytes)
      return "the host's memory budget for VMs (" + std::to_string(cap.mem_bytes >> 20) + " MiB) is used up";
    if (used.tasks + c.tasks > cap.tasks)
      return "the host's task limit (" + cap.tasks_limit + ") leaves room for " +
             std::to_string(std::max<int64_t>(0, cap.tasks)) + " tasks of VMs, " + std::to_string(used.tasks) +
             " are used and a VM needs " + std::to_string(c.tasks);
    if (!uid_taken.empty() && uids_taken == uid_taken.size())
      return "all jailer.uid_count (" + std::to_string(uid_taken.size()) + ") uids are held by live VMs";
    return "";
  }
};

Admission::Admission(uint32_t uid_base, uint32_t uid_count) : state_(std::make_shared<State>()) {
  state_->uid_base = uid_base;
  state_->uid_taken.assign(uid_count, false);
}

void Admission::set_capacity(Capacity c) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->cap = std::move(c);
}

Capacity Admission::capacity() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->cap;
}

std::optional<Admission::Slot> Admission::reserve(const VmCost& cost, std::string* why) {
  State& s = *state_;
  std::lock_guard<std::mutex> l(s.mu);
  if (std::string no = s.refusal(cost); !no.empty()) {
    if (why) *why = std::move(no);
    return std::nullopt;
  }
  Slot slot;
  if (!s.uid_taken.empty()) {
    while (s.uid_taken[s.uid_cursor]) s.uid_cursor = (s.uid_cursor + 1) % s.uid_taken.size();
    s.uid_taken[s.uid_cursor] = true;
    s.uids_taken++;
    slot.uid_ = s.uid_base + static_cast<uint32_t>(s.uid_cursor);
    s.uid_cursor = (s.uid_cursor + 1) % s.uid_taken.size();
  }
  slot.state_ = state_;
  slot.id_ = s.next_id++;
  s.slots[slot.id_] = {cost.mem_bytes, cost.tasks, slot.uid_};
  s.used.vms++;
  s.used.mem_bytes += cost.mem_bytes;
  s.used.tasks += cost.tasks;
  return slot;
}

bool Admission::fits(const VmCost& cost) const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->refusal(cost).empty();
}

void Admission::update_memory(const Slot& slot, int64_t mem_bytes) {
  if (slot.state_ != state_) return;
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->slots.find(slot.id_);
  if (it == state_->slots.end()) return;
  state_->used.mem_bytes += mem_bytes - it->second.mem_bytes;
  it->second.mem_bytes = mem_bytes;
}

AdmissionUsage Admission::usage() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->used;
}

uint64_t Admission::most_vms(const VmCost& cost) const {
  std::lock_guard<std::mutex> l(state_->mu);
  const Capacity& c = state_->cap;
  uint64_t n = c.max_vms;
  if (const int64_t per = cost.mem_bytes + c.host_overhead_bytes; per > 0)
    n = std::min<uint64_t>(n, static_cast<uint64_t>(std::max<int64_t>(0, c.mem_bytes / per)));
  if (cost.tasks > 0) n = std::min<uint64_t>(n, static_cast<uint64_t>(std::max<int64_t>(0, c.tasks / cost.tasks)));
  if (!state_->uid_taken.empty()) n = std::min<uint64_t>(n, state_->uid_taken.size());
  return n;
}

Admission::Slot& Admission::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    id_ = o.id_;
    uid_ = o.uid_;
  }
  return *this;
}

// The slot keeps pointing at the ledger (another thread may be reading it
// while this one releases); the ledger's entry is what goes.
void Admission::Slot::release() {
  if (!state_) return;
  {
    State& s = *state_;
    std::lock_guard<std::mutex> l(s.mu);
    auto it = s.slots.find(id_);
    if (it != s.slots.end()) {
      s.used.vms--;
      s.used.mem_bytes -= it->second.mem_bytes;
      s.used.tasks -= it->second.tasks;
      if (!s.uid_taken.empty()) {
        s.uid_taken[it->second.uid - s.uid_base] = false;
        s.uids_taken--;
      }
      s.slots.erase(it);
    }
  }
}

bool Admission::Slot::held() const {
  if (!state_) return false;
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->slots.count(id_) > 0;
}

}  // namespace ember::controller
