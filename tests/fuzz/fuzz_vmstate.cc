// libFuzzer target for vmm/vmstate.cc: the snapshot state file is untrusted
// input (a snapshot directory may be truncated, corrupt or crafted).
// parse_vmstate() must refuse or accept without reading out of bounds,
// crashing or allocating without bound; whatever it accepts must serialise
// back to a file it accepts again, with the same bytes.
//
// The CRC would stop almost every mutation at the door, so the input is the
// payload only: the header (magic, version, sizes, CRC-32C) is put in front
// of it here. Input byte 0 bit 0 set: take the input as a whole file
// instead (header included), to fuzz the header checks too.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "vmm/crc32c.h"
#include "vmm/vmstate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 1u << 20) return 0;
  const bool whole_file = data[0] & 1;
  std::vector<uint8_t> file;
  if (whole_file) {
    file.assign(data + 1, data + size);
  } else {
    const uint64_t payload = size - 1;
    file.resize(ember::kVmstateHeaderSize + payload);
    memcpy(file.data(), ember::kVmstateMagic, 8);
    const uint32_t version = ember::kVmstateVersion, header = ember::kVmstateHeaderSize;
    memcpy(file.data() + 8, &version, 4);
    memcpy(file.data() + 12, &header, 4);
    memcpy(file.data() + 16, &payload, 8);
    const uint32_t crc = ember::crc32c(data + 1, payload);
    memcpy(file.data() + 24, &crc, 4);
    if (payload) memcpy(file.data() + ember::kVmstateHeaderSize, data + 1, payload);
  }
  auto parsed = ember::parse_vmstate(file);
  if (!parsed) return 0;
  const std::vector<uint8_t> again = ember::serialize_vmstate(*parsed);
  auto reparsed = ember::parse_vmstate(again);
  if (!reparsed) __builtin_trap();  // accepted once, refused after a round trip
  if (ember::serialize_vmstate(*reparsed) != again) __builtin_trap();
  return 0;
}
