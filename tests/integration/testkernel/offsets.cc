// Prints the ABI constants the test kernel needs as GNU as `.set` lines
// (built and run at build time), so that testkernel.S follows every change
// of api/ instead of hard-coding offsets.
#include <cstddef>
#include <cstdio>

#include "api/boot_info.h"
#include "api/control.h"
#include "api/guest_layout.h"
#include "api/virtio.h"

int main() {
  using namespace ember::abi;
  auto set = [](const char* name, unsigned long long v) { std::printf("        .set %s, 0x%llx\n", name, v); };
  set("CONTROL", kControlGpa);
  set("CONTROL_EXIT_CODE", kControlExitCode);
  set("CONTROL_EXIT_SIGNAL", kControlExitSignal);
  set("CONTROL_FAULT", kControlFault);
  set("CONTROL_LOG", kControlLog);
  set("VIRTIO_MMIO", kVirtioMmioBase);
  set("VIRTIO_STRIDE", kVirtioMmioStride);
  set("MMIO_STATUS", kMmioStatus);
  set("MMIO_DRIVER_FEATURES", kMmioDriverFeatures);
  set("MMIO_DRIVER_FEATURES_SEL", kMmioDriverFeaturesSel);
  set("NOTIFY0", kVirtioMmioBase + kMmioQueueNotify);                     // console 0 QueueNotify
  set("NOTIFY1", kVirtioMmioBase + kVirtioMmioStride + kMmioQueueNotify); // console 1 QueueNotify
  set("RXQ", queue_gpa(0, 0));     // console 0 receiveq
  set("TXQ", queue_gpa(0, 1));     // console 0 transmitq
  set("ERRTXQ", queue_gpa(1, 1));  // console 1 transmitq
  set("AVAIL", kQueueAvailOffset);
  set("USED", kQueueUsedOffset);
  set("CMDLINE", offsetof(BootInfo, cmdline));
  set("NOTE_TYPE", kGuestNoteType);
  set("ABI_VERSION", kGuestAbiVersion);
  set("LAPIC_EOI", kLapicGpa + 0xb0);
  return 0;
}
