// Virtio as Ember speaks it (virtio 1.2), one copy for the VMM (device side)
// and the guest (driver side): the virtio-mmio version 2 register map, the
// status, feature and interrupt bits, the split ring's layout, and
// virtio-vsock's packet header and operations. Device ids: api/boot_info.h.
//
// Freestanding: included by the host and by the guest. Every field is
// little-endian, which both sides are (x86-64), so structs are read as laid
// out; whatever the other side wrote into them is checked by the reader.
#pragma once

#include <stdint.h>

namespace ember::abi {

// ---------------------------------------------------------------- virtio-mmio (4.2.2)

enum VirtioMmioRegister : uint32_t {
  kMmioMagic = 0x000,
  kMmioVersion = 0x004,
  kMmioDeviceId = 0x008,
  kMmioVendorId = 0x00c,
  kMmioDeviceFeatures = 0x010,
  kMmioDeviceFeaturesSel = 0x014,
  kMmioDriverFeatures = 0x020,
  kMmioDriverFeaturesSel = 0x024,
  kMmioQueueSel = 0x030,
  kMmioQueueNumMax = 0x034,
  kMmioQueueNum = 0x038,
  kMmioQueueReady = 0x044,
  kMmioQueueNotify = 0x050,
  kMmioInterruptStatus = 0x060,
  kMmioInterruptAck = 0x064,
  kMmioStatus = 0x070,
  kMmioQueueDescLow = 0x080,
  kMmioQueueDescHigh = 0x084,
  kMmioQueueDriverLow = 0x090,
  kMmioQueueDriverHigh = 0x094,
  kMmioQueueDeviceLow = 0x0a0,
  kMmioQueueDeviceHigh = 0x0a4,
  kMmioConfigGeneration = 0x0fc,
  kMmioConfig = 0x100,
};
inline constexpr uint32_t kVirtioMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVirtioMmioVendor = 0x52424d45;  // "EMBR"
inline constexpr uint32_t kVirtioMmioVersion = 2;          // modern only

// Device status (2.1).
inline constexpr uint32_t kVirtioStatusAcknowledge = 1;
inline constexpr uint32_t kVirtioStatusDriver = 2;
inline constexpr uint32_t kVirtioStatusDriverOk = 4;
inline constexpr uint32_t kVirtioStatusFeaturesOk = 8;
inline constexpr uint32_t kVirtioStatusNeedsReset = 0x40;
inline constexpr uint32_t kVirtioStatusFailed = 0x80;

// Feature bits (6): the only one Ember negotiates.
inline constexpr uint64_t kVirtioFVersion1 = 1ull << 32;

// InterruptStatus bits (4.2.2).
inline constexpr uint32_t kVirtioIntUsedBuffer = 1;
inline constexpr uint32_t kVirtioIntConfigChange = 2;

// ---------------------------------------------------------------- split virtqueues (2.7)

struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);
inline constexpr uint16_t kVirtqDescFNext = 1;
inline constexpr uint16_t kVirtqDescFWrite = 2;  // the device writes this buffer
inline constexpr uint16_t kVirtqDescFIndirect = 4;
inline constexpr uint16_t kVirtqAvailFNoInterrupt = 1;

// The avail ring: le16 flags, le16 idx, le16 ring[size] (then used_event).
// The used ring: le16 flags, le16 idx, VirtqUsedElem ring[size].
inline constexpr uint32_t kVirtqRingHeader = 4;  // flags + idx, before either ring's entries
struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

// ---------------------------------------------------------------- virtio-vsock (5.10)

inline constexpr uint32_t kVsockRxq = 0;
inline constexpr uint32_t kVsockTxq = 1;
inline constexpr uint32_t kVsockEventq = 2;
inline constexpr uint32_t kVsockQueueCount = 3;
inline constexpr uint64_t kVsockHostCid = 2;

// The packet header (5.10.6), 44 bytes, followed by `len` payload bytes for
// OP_RW.
struct [[gnu::packed]] VsockHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);

enum VsockOp : uint16_t {
  kVsockOpInvalid = 0,
  kVsockOpRequest = 1,
  kVsockOpResponse = 2,
  kVsockOpRst = 3,
  kVsockOpShutdown = 4,
  kVsockOpRw = 5,
  kVsockOpCreditUpdate = 6,
  kVsockOpCreditRequest = 7,
};
inline constexpr uint16_t kVsockTypeStream = 1;
// SHUTDOWN flags: the sender will receive / send no more.
inline constexpr uint32_t kVsockShutdownRcv = 1;
inline constexpr uint32_t kVsockShutdownSend = 2;
// The event queue's one event (struct virtio_vsock_event { le32 id; }).
inline constexpr uint32_t kVsockEventTransportReset = 0;

// Credit (5.10.6.3): how many bytes a sender may still send, from the
// receiver's last advertised buffer and count of consumed bytes, and its
// own count of bytes sent. Free-running u32 counters: the subtraction
// wraps as the spec means it to; a peer that advertises less than is in
// flight gets 0, never a huge number.
inline uint32_t vsock_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt) {
  const uint32_t in_flight = tx_cnt - peer_fwd_cnt;
  return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
}

}  // namespace ember::abi
