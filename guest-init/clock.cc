#include "guest-init/clock.h"

#include "guest-init/klib.h"
#include "guest-init/platform.h"

namespace ember::guest {

uint64_t Clock::tsc_now() { return rdtsc(); }

void Clock::init(uint64_t tsc_khz, uint64_t boot_tsc, uint64_t realtime_ns) {
  if (tsc_khz == 0) {
    // CPUID 0x15 (TSC/crystal ratio) or 0x16 (base MHz) where the CPU has
    // them; QEMU TCG has neither, and its TSC runs at the host's rate.
    Cpuid max = cpuid(0);
    if (max.eax >= 0x15) {
      Cpuid c = cpuid(0x15);
      if (c.eax && c.ebx && c.ecx) tsc_khz = uint64_t{c.ecx} * c.ebx / c.eax / 1000;
    }
    if (tsc_khz == 0 && max.eax >= 0x16) tsc_khz = uint64_t{cpuid(0x16).eax & 0xffff} * 1000;
    if (tsc_khz == 0) tsc_khz = 2000000;
  }
  tsc_khz_ = tsc_khz;
  boot_tsc_ = boot_tsc ? boot_tsc : rdtsc();
  realtime_at_boot_ns_ = realtime_ns;
  ns_per_tick_q32_ = (uint64_t{1000000} << 32) / tsc_khz;
}

uint64_t Clock::realtime_ns() const {
  if (!pair_tsc_) return realtime_at_boot_ns_ + monotonic_ns();
  uint64_t base_tsc = *pair_tsc_;
  const uint64_t base_ns = *pair_realtime_;
  if (base_tsc == 0) base_tsc = boot_tsc_;
  // Signed: the pair may have been taken a little after "now" (a VMM
  // reading the host clock and the guest TSC not quite together).
  const uint64_t d = tsc_now() - base_tsc;
  if (static_cast<int64_t>(d) >= 0) return base_ns + ticks_to_ns(d);
  const uint64_t back = ticks_to_ns(0 - d);
  return base_ns > back ? base_ns - back : 0;
}

uint64_t Clock::ns_to_ticks(uint64_t ns) const {
  // ticks = ns * khz / 1e6, without overflow for any ns below ~584 years.
  unsigned __int128 t = static_cast<unsigned __int128>(ns) * tsc_khz_;
  uint64_t hi = static_cast<uint64_t>(t >> 64);
  if (hi >= 1000000) return ~0ull;
  // 128/64 division without libgcc: divq with rdx:rax.
  uint64_t lo = static_cast<uint64_t>(t), q, r;
  asm("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "r"(uint64_t{1000000}));
  (void)r;
  return q;
}

void Clock::sleep_until(uint64_t deadline_ns) const {
  static volatile uint16_t never_changes = 0;
  constexpr uint64_t kSpinBelowNs = 50000;  // a halt round trip costs more than this
  while (true) {
    const uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return;
    if (deadline_ns - now < kSpinBelowNs) {
      cpu_relax();
      continue;
    }
    const uint64_t ticks = ns_to_ticks(deadline_ns);
    const uint64_t tsc = ticks > ~0ull - boot_tsc_ ? ~0ull : boot_tsc_ + ticks;
    g_platform.wait_word_until(&never_changes, 0, tsc);  // woken by the timer or any interrupt
  }
}

}  // namespace ember::guest
