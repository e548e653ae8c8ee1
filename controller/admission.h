// Admission: the host's room for VMs, reserved before a VM starts and given
// back once its process is gone. A VM holds one of limits.max_vms, memory
// (its VMM's private pages, estimated then measured, plus the host's share
// per VM), tasks (its threads plus KVM's worker) and, jailed, a uid that no
// other live VM has. reserve() checks and takes in one step under one lock:
// concurrent callers can never together overshoot what each was told fits.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace ember::controller {

struct VmCost {
  int64_t mem_bytes = 0;  // private memory of the VMM
  int64_t tasks = 0;
};

// What all of emberd's VMs together may use.
struct Capacity {
  uint64_t max_vms = 0;
  int64_t mem_bytes = 0;           // the memory budget
  int64_t host_overhead_bytes = 0; // per VM, on top of its cost's memory
  int64_t tasks = 0;               // tasks the VMs may hold (host limits less others' use and the reserve)
  std::string tasks_limit;         // the limit that sets `tasks`, for messages: "kernel.pid_max"
};

struct AdmissionUsage {
  uint64_t vms = 0;
  int64_t mem_bytes = 0;  // the VMs' own memory, without the host overhead
  int64_t tasks = 0;
};

class Admission {
  struct State;

 public:
  // A reservation; given back when released or destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&&) noexcept = default;
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { release(); }
    void release();
    bool held() const;
    // The jail uid reserved with the slot (0 when uids are not handed out).
    uint32_t uid() const { return uid_; }

   private:
    friend class Admission;
    std::shared_ptr<State> state_;
    uint64_t id_ = 0;
    uint32_t uid_ = 0;
  };

  // uid_count 0: no uids are handed out (VMs are not jailed).
  Admission(uint32_t uid_base = 0, uint32_t uid_count = 0);

  void set_capacity(Capacity c);
  Capacity capacity() const;
  // A slot for a VM of `cost`, or nullopt and *why names the limit reached.
  std::optional<Slot> reserve(const VmCost& cost, std::string* why);
  // Whether `cost` fits now, reserving nothing.
  bool fits(const VmCost& cost) const;
  // A live VM's measured memory replaces what its slot holds; no-op once released.
  void update_memory(const Slot& s, int64_t mem_bytes);
  AdmissionUsage usage() const;
  // How many VMs of `cost` would fit on an empty host.
  uint64_t most_vms(const VmCost& cost) const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ember::controller
