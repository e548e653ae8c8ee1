// Bus: ranges are checked when added, and every access lands at the right
// device and offset or is counted as a miss (reads as zero).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vmm/bus.h"

namespace ember {
namespace {

struct Recorder : MmioDevice {
  struct Access {
    bool write;
    uint64_t offset;
    size_t size;
    uint64_t value;
  };
  std::vector<Access> log;
  uint8_t fill = 0x5a;
  void mmio_read(uint64_t offset, std::span<uint8_t> data) override {
    std::memset(data.data(), fill, data.size());
    log.push_back({false, offset, data.size(), 0});
  }
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override {
    uint64_t v = 0;
    std::memcpy(&v, data.data(), data.size());
    log.push_back({true, offset, data.size(), v});
  }
};

TEST(Bus, RejectsEmptyWrappingAndOverlappingRanges) {
  Bus bus;
  Recorder a, b;
  EXPECT_FALSE(bus.add(0x1000, 0, &a, "empty").ok());
  EXPECT_FALSE(bus.add(UINT64_MAX - 0xff, 0x1000, &a, "wrap").ok());
  EXPECT_FALSE(bus.add(0x1000, 0x100, nullptr, "null").ok());
  ASSERT_TRUE(bus.add(0x1000, 0x1000, &a, "a").ok());
  auto r = bus.add(0x1800, 0x1000, &b, "b");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("overlaps a"), std::string::npos) << r.message();
  EXPECT_FALSE(bus.add(0x0800, 0x1000, &b, "b").ok());
  EXPECT_FALSE(bus.add(0x1100, 0x10, &b, "inside").ok());
  EXPECT_FALSE(bus.add(0x0000, 0x10000, &b, "around").ok());
  EXPECT_TRUE(bus.add(0x2000, 0x1000, &b, "adjacent").ok());
  EXPECT_TRUE(bus.add(0x0, 0x1000, &b, "below").ok());
}

TEST(Bus, DispatchesWithOffsets) {
  Bus bus;
  Recorder a, b;
  ASSERT_TRUE(bus.add(0xd0000000, 0x1000, &a, "a").ok());
  ASSERT_TRUE(bus.add(0xd0001000, 0x1000, &b, "b").ok());
  uint32_t v = 0x12345678;
  EXPECT_TRUE(bus.write(0xd0001050, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), 4)));
  ASSERT_EQ(b.log.size(), 1u);
  EXPECT_TRUE(b.log[0].write);
  EXPECT_EQ(b.log[0].offset, 0x50u);
  EXPECT_EQ(b.log[0].value, 0x12345678u);
  uint64_t got = 0;
  EXPECT_TRUE(bus.read(0xd0000ff8, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&got), 8)));
  ASSERT_EQ(a.log.size(), 1u);
  EXPECT_EQ(a.log[0].offset, 0xff8u);
  EXPECT_EQ(got, 0x5a5a5a5a5a5a5a5aull);
  for (size_t size : {1, 2, 4, 8}) {
    uint8_t buf[8] = {};
    EXPECT_TRUE(bus.read(0xd0000000, std::span<uint8_t>(buf, size)));
    EXPECT_EQ(a.log.back().size, size);
  }
}

TEST(Bus, MissesReadZeroAndAreCounted) {
  Bus bus;
  Recorder a;
  ASSERT_TRUE(bus.add(0x1000, 0x1000, &a, "a").ok());
  uint64_t got = ~0ull;
  EXPECT_FALSE(bus.read(0x0ff8, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&got), 8)));
  EXPECT_EQ(got, 0u);
  EXPECT_FALSE(bus.read(0x2000, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&got), 4)));
  // Straddling the device's end is a miss, not a partial access.
  got = ~0ull;
  EXPECT_FALSE(bus.read(0x1ffc, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&got), 8)));
  EXPECT_EQ(got, 0u);
  uint32_t v = 1;
  EXPECT_FALSE(bus.write(UINT64_MAX - 1, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), 4)));
  EXPECT_TRUE(a.log.empty());
  EXPECT_EQ(bus.misses(), 4u);
}

TEST(Bus, EmptyBusMissesEverything) {
  Bus bus;
  uint8_t b = 7;
  EXPECT_FALSE(bus.read(0, std::span<uint8_t>(&b, 1)));
  EXPECT_EQ(b, 0);
  EXPECT_EQ(bus.misses(), 1u);
}

}  // namespace
}  // namespace ember
