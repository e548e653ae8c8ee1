// The program's stdin, stdout and stderr: the consoles (console.h), or the
// vsock stdio connection (vsock.h) once the host made one.
//
// Without a vsock device everything goes to the consoles exactly as before.
// With one, a read of stdin that finds nothing blocks until console data or
// EOF arrives, or a connection (and its data) does: the wait wakes on any
// interrupt and re-checks every source. The first such block is the "ready"
// point (control page), where template snapshots are taken. Once a
// connection is accepted, all three streams are the connection's for the
// rest of the run, and the exit status travels as its last frame.
#pragma once

#include <stdint.h>

namespace ember::guest {

class Stdio {
 public:
  void init();  // consoles, then the vsock device

  // stdin, like read(2) on a pipe; -1 instead of blocking if !block.
  int64_t read(uint8_t* out, uint64_t n, bool block);
  bool readable();  // a read would not block
  bool at_eof();
  uint64_t buffered();  // bytes readable without blocking (what there is, maybe fewer)
  // Waits until readable() or monotonic time reaches deadline_ns (~0: none).
  void wait_readable(uint64_t deadline_ns);

  // stdout (1) / stderr (2): append, then one notify decision per write(v).
  void append(uint32_t stream, const uint8_t* data, uint64_t n);
  void commit(uint32_t stream);
  // Deferred notifications: all now (before blocking), or those overdue
  // (every syscall).
  void flush_all();
  void flush_due();

  // The program ends (kExitCode/kExitSignal, api/stdio_protocol.h): over
  // vsock, the exit frame, and every packet taken by the device.
  void before_exit(uint32_t kind, uint32_t value);

 private:
  // One wait for console input, a connection or vsock data, until the TSC
  // deadline (~0: none).
  void wait_any(uint64_t tsc_deadline);
};

extern constinit Stdio g_stdio;

}  // namespace ember::guest
