// Time from the TSC: CLOCK_REALTIME = the host's time at boot_tsc plus the
// TSC ticks since, CLOCK_MONOTONIC & co. = ticks since boot_tsc. rdtsc is
// native in ring 3 (PLATFORM.md), so reading a clock costs no exit.
#pragma once

#include <stdint.h>

namespace ember::guest {

class Clock {
 public:
  // tsc_khz == 0: unknown; the clock then asks CPUID, else assumes 2 GHz.
  void init(uint64_t tsc_khz, uint64_t boot_tsc, uint64_t realtime_ns);
  // CLOCK_REALTIME from a (tsc, realtime) pair that someone else rewrites:
  // the boot info's boot_tsc/realtime_ns, which the VMM sets afresh when it
  // restores the VM from a snapshot (the TSC continues from the snapshot's
  // value). Read at every realtime_ns(), never cached.
  void follow(const volatile uint64_t* pair_tsc, const volatile uint64_t* pair_realtime_ns) {
    pair_tsc_ = pair_tsc;
    pair_realtime_ = pair_realtime_ns;
  }
  // Since boot; never negative (0 if the TSC were set back below boot).
  uint64_t monotonic_ns() const {
    const uint64_t d = tsc_now() - boot_tsc_;
    return static_cast<int64_t>(d) < 0 ? 0 : ticks_to_ns(d);
  }
  uint64_t realtime_ns() const;
  uint64_t ticks_to_ns(uint64_t ticks) const {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * ns_per_tick_q32_) >> 32);
  }
  uint64_t ns_to_ticks(uint64_t ns) const;
  uint64_t tsc_khz() const { return tsc_khz_; }
  // Waits until monotonic_ns() >= deadline_ns: halted on the LAPIC timer
  // where there is one (long waits), spinning with pause otherwise.
  void sleep_until(uint64_t deadline_ns) const;
  uint64_t tsc_at(uint64_t monotonic_ns) const { return boot_tsc_ + ns_to_ticks(monotonic_ns); }

  static uint64_t tsc_now();

 private:
  uint64_t tsc_khz_ = 0;
  uint64_t boot_tsc_ = 0;
  uint64_t realtime_at_boot_ns_ = 0;
  uint64_t ns_per_tick_q32_ = 0;  // ns per tick, 32.32 fixed point
  const volatile uint64_t* pair_tsc_ = nullptr;
  const volatile uint64_t* pair_realtime_ = nullptr;
};

}  // namespace ember::guest
