#include "guest-init/stdio.h"

#include "api/stdio_protocol.h"
#include "guest-init/console.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"
#include "guest-init/vsock.h"

namespace ember::guest {

constinit Stdio g_stdio;

void Stdio::init() {
  g_consoles.init();
  g_vsock.init();
}

void Stdio::wait_any(uint64_t tsc_deadline) {
  ConsoleIn& in = g_consoles.in();
  const uint16_t seen = g_platform.wake_count();
  if (!g_vsock.owns_stdio()) in.interrupts(true);
  g_vsock.arm_rx(true);
  full_barrier();  // the flags must be visible before the last look at the rings
  const bool something = g_vsock.rx_waiting() || (!g_vsock.owns_stdio() && in.attached() && in.readable());
  if (!something) {
    if (tsc_deadline == ~0ull) g_platform.wait_wake(seen);
    else g_platform.wait_wake_until(seen, tsc_deadline);
  }
  in.interrupts(false);
  g_vsock.arm_rx(false);
}

int64_t Stdio::read(uint8_t* out, uint64_t n, bool block) {
  if (!g_vsock.present()) return g_consoles.in().read(out, n, block);  // the console path as it always was
  ConsoleIn& in = g_consoles.in();
  while (true) {
    g_vsock.poll();  // accepts a connection that is waiting
    if (g_vsock.owns_stdio()) return g_vsock.read(out, n, block);
    if (in.attached()) {
      const int64_t got = in.read(out, n, false);
      if (got >= 0) return got;
    }
    if (!block) return -1;
    flush_all();  // whoever feeds stdin may be waiting for our output
    g_vsock.set_pending_read(out);
    g_platform.signal_ready();
    wait_any(~0ull);
  }
}

bool Stdio::readable() {
  if (!g_vsock.present()) return g_consoles.in().readable();
  g_vsock.poll();
  if (g_vsock.owns_stdio()) return g_vsock.readable();
  ConsoleIn& in = g_consoles.in();
  return in.attached() && in.readable();
}

bool Stdio::at_eof() {
  if (!g_vsock.present()) return g_consoles.in().at_eof();
  if (g_vsock.owns_stdio()) return g_vsock.at_eof();
  ConsoleIn& in = g_consoles.in();
  return in.attached() && in.at_eof();
}

uint64_t Stdio::buffered() {
  if (g_vsock.owns_stdio()) return g_vsock.buffered();
  return g_consoles.in().buffered();
}

void Stdio::wait_readable(uint64_t deadline_ns) {
  if (!g_vsock.present()) return g_consoles.in().wait_readable(deadline_ns);
  while (!readable()) {
    flush_all();
    if (deadline_ns == ~0ull) {
      if (!g_vsock.owns_stdio()) g_platform.signal_ready();
      wait_any(~0ull);
    } else {
      if (g_rt.clock.monotonic_ns() >= deadline_ns) return;
      wait_any(g_rt.clock.tsc_at(deadline_ns));
    }
  }
}

void Stdio::append(uint32_t stream, const uint8_t* data, uint64_t n) {
  if (g_vsock.present()) {
    g_vsock.poll();  // a connection that arrived takes the output from here on
    if (g_vsock.owns_stdio()) {
      g_vsock.write(stream == 2 ? abi::kFrameStderr : abi::kFrameStdout, data, n);
      return;
    }
  }
  g_consoles.append(stream, data, n);
}

void Stdio::commit(uint32_t stream) {
  if (g_vsock.owns_stdio()) g_vsock.commit();
  else g_consoles.commit(stream);
}

void Stdio::flush_all() {
  g_consoles.flush_all();
  g_vsock.flush();
}

void Stdio::flush_due() {
  g_consoles.flush_due();
  if (g_vsock.deferred()) g_vsock.flush_if_due(rdtsc());
}

void Stdio::before_exit(uint32_t kind, uint32_t value) {
  if (!g_vsock.present()) return;
  g_vsock.poll();  // a connection that just arrived still gets the status
  if (g_vsock.owns_stdio()) g_vsock.finish(kind, value);
}

}  // namespace ember::guest
