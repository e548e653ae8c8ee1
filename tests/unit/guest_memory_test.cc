// GuestMemory: the only guest-address-to-pointer translation. Bounds checks
// must hold for every hostile (gpa, len): wrap-around, zero length, ranges
// that start inside a region and end outside it, the read-only image slot.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "vmm/guest_memory.h"

namespace ember {
namespace {

class GuestMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(kRam);
    ASSERT_TRUE(m.ok()) << m.message();
    mem_ = std::move(*m);
    image_.assign(kImage, 0xab);
    ASSERT_TRUE(mem_.add_borrowed(kImageGpa, image_, false).ok());
  }
  static constexpr uint64_t kRam = 2 << 20;
  static constexpr uint64_t kImageGpa = 1ull << 32;
  static constexpr uint64_t kImage = 8192;
  GuestMemory mem_;
  std::vector<uint8_t> image_;
};

TEST_F(GuestMemoryTest, TranslatesInsideRam) {
  auto s = mem_.slice(0x1000, 16);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(s->data(), mem_.ram() + 0x1000);
  EXPECT_EQ(s->size(), 16u);
  // The very last byte of RAM.
  ASSERT_TRUE(mem_.slice(kRam - 1, 1).ok());
  ASSERT_TRUE(mem_.slice(0, kRam).ok());
}

TEST_F(GuestMemoryTest, RejectsRangesCrossingTheEnd) {
  EXPECT_FALSE(mem_.slice(kRam - 1, 2).ok());
  EXPECT_FALSE(mem_.slice(kRam, 1).ok());
  EXPECT_FALSE(mem_.slice(0, kRam + 1).ok());
  EXPECT_FALSE(mem_.const_slice(kImageGpa + kImage - 4, 8).ok());
  EXPECT_FALSE(mem_.const_slice(kImageGpa - 4, 8).ok());  // starts in the hole below the slot
}

TEST_F(GuestMemoryTest, RejectsWrapAround) {
  EXPECT_FALSE(mem_.slice(0xfffffffffffffff0ull, 0x20).ok());
  EXPECT_FALSE(mem_.slice(0x1000, 0xfffffffffffff000ull).ok());
  EXPECT_FALSE(mem_.slice(0x1000, UINT64_MAX).ok());
  EXPECT_FALSE(mem_.const_slice(UINT64_MAX, 1).ok());
  EXPECT_FALSE(mem_.const_slice(kImageGpa + 16, UINT64_MAX - 8).ok());
}

TEST_F(GuestMemoryTest, ZeroLengthIsAnEmptySpanAnywhere) {
  for (uint64_t gpa : {uint64_t{0}, kRam, UINT64_MAX, kImageGpa + kImage}) {
    auto s = mem_.slice(gpa, 0);
    ASSERT_TRUE(s.ok()) << gpa;
    EXPECT_TRUE(s->empty());
    auto c = mem_.const_slice(gpa, 0);
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->empty());
  }
}

TEST_F(GuestMemoryTest, ImageSlotIsReadOnly) {
  auto c = mem_.const_slice(kImageGpa, kImage);
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ((*c)[0], 0xab);
  auto w = mem_.slice(kImageGpa, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.message().find("read-only"), std::string::npos) << w.message();
  EXPECT_FALSE(mem_.write_obj<uint32_t>(kImageGpa, 1).ok());
  auto v = mem_.read_obj<uint32_t>(kImageGpa);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0xababababu);
}

TEST_F(GuestMemoryTest, ReadWriteObjects) {
  ASSERT_TRUE(mem_.write_obj<uint64_t>(0x2000, 0x1122334455667788ull).ok());
  auto v = mem_.read_obj<uint64_t>(0x2000);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x1122334455667788ull);
  EXPECT_FALSE(mem_.read_obj<uint64_t>(kRam - 4).ok());
  EXPECT_FALSE(mem_.write_obj<uint64_t>(kRam - 4, 0).ok());
}

TEST_F(GuestMemoryTest, RejectsOverlappingRegions) {
  std::vector<uint8_t> more(4096);
  EXPECT_FALSE(mem_.add_borrowed(kRam - 4096, more, true).ok());
  EXPECT_FALSE(mem_.add_borrowed(kImageGpa + kImage - 1, more, true).ok());
  EXPECT_FALSE(mem_.add_borrowed(UINT64_MAX - 100, more, true).ok());  // wraps
  EXPECT_TRUE(mem_.add_borrowed(kRam, more, true).ok());                // adjacent is fine
  // Adjacent regions never merge: a range across the seam is refused.
  EXPECT_FALSE(mem_.slice(kRam - 8, 16).ok());
  EXPECT_TRUE(mem_.slice(kRam, 4096).ok());
}

TEST(GuestMemory, CreateRejectsZeroSize) { EXPECT_FALSE(GuestMemory::create(0).ok()); }

}  // namespace
}  // namespace ember
