// Virtqueue on synthetic guest memory: honest chains come out translated and
// in order; every hostile ring (loops, bad indices, addresses outside guest
// memory or wrapping, huge lengths, an avail index that jumps) breaks the
// queue instead of the host.
#include <gtest/gtest.h>

#include "tests/unit/vmm_test_virtq.h"
#include "vmm/virtqueue.h"

namespace ember {
namespace {

using testing::TestDriver;

class VirtqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(kRam);
    ASSERT_TRUE(m.ok()) << m.message();
    mem_ = std::move(*m);
    image_.assign(4096, 'I');
    ASSERT_TRUE(mem_.add_borrowed(1ull << 32, image_, false).ok());
    drv_ = std::make_unique<TestDriver>(mem_, kRing, kSize);
    ASSERT_TRUE(q_.activate(mem_, drv_->config(), 256).ok());
  }
  Virtqueue::Pop pop() { return q_.pop(chain_); }

  static constexpr uint64_t kRam = 4 << 20;
  static constexpr uint64_t kRing = 0x10000;
  static constexpr uint16_t kSize = 16;
  GuestMemory mem_;
  std::vector<uint8_t> image_;
  std::unique_ptr<TestDriver> drv_;
  Virtqueue q_;
  DescriptorChain chain_;
};

TEST_F(VirtqueueTest, EmptyQueuePopsNothing) {
  EXPECT_FALSE(q_.has_available());
  EXPECT_EQ(pop(), Virtqueue::Pop::kEmpty);
  EXPECT_FALSE(q_.broken());
}

TEST_F(VirtqueueTest, PopsAChainReadableThenWritable) {
  drv_->set_desc(3, 0x100000, 10, abi::kVirtqDescFNext, 7);
  drv_->set_desc(7, 0x200000, 20, abi::kVirtqDescFNext, 1);
  drv_->set_desc(1, 0x300000, 30, abi::kVirtqDescFWrite, 0);
  drv_->make_available(3);
  EXPECT_TRUE(q_.has_available());
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain_.head, 3);
  ASSERT_EQ(chain_.readable.size(), 2u);
  ASSERT_EQ(chain_.writable.size(), 1u);
  EXPECT_EQ(chain_.readable[0].data(), mem_.ram() + 0x100000);
  EXPECT_EQ(chain_.readable_bytes, 30u);
  EXPECT_EQ(chain_.writable_bytes, 30u);
  EXPECT_EQ(chain_.writable[0].data(), mem_.ram() + 0x300000);
  EXPECT_EQ(pop(), Virtqueue::Pop::kEmpty);
}

TEST_F(VirtqueueTest, UsedRingAndIndexArePublished) {
  drv_->set_desc(0, 0x100000, 8, abi::kVirtqDescFWrite, 0);
  drv_->set_desc(1, 0x100100, 8, abi::kVirtqDescFWrite, 0);
  drv_->make_available(0);
  drv_->make_available(1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q_.add_used(chain_.head, 5);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q_.add_used(chain_.head, 6);
  EXPECT_EQ(drv_->used_idx(), 0);  // not yet published
  q_.publish_used();
  EXPECT_EQ(drv_->used_idx(), 2);
  EXPECT_EQ(drv_->used(0).id, 0u);
  EXPECT_EQ(drv_->used(0).len, 5u);
  EXPECT_EQ(drv_->used(1).id, 1u);
  EXPECT_EQ(drv_->used(1).len, 6u);
}

TEST_F(VirtqueueTest, IndicesWrapAt65536) {
  q_.restore_indices(0xfffe, 0xfffe);
  drv_->set_avail_idx(0xfffe);
  drv_->set_desc(0, 0x100000, 8, 0, 0);
  for (int i = 0; i < 4; i++) {
    drv_->make_available(0);
    ASSERT_EQ(pop(), Virtqueue::Pop::kChain) << i;
    q_.add_used(chain_.head, 0);
  }
  q_.publish_used();
  EXPECT_EQ(drv_->used_idx(), 2);
  EXPECT_FALSE(q_.broken());
}

TEST_F(VirtqueueTest, InterruptSuppression) {
  EXPECT_TRUE(q_.should_interrupt());
  drv_->set_avail_flags(abi::kVirtqAvailFNoInterrupt);
  EXPECT_FALSE(q_.should_interrupt());
}

TEST_F(VirtqueueTest, UndoPopReturnsTheChain) {
  drv_->set_desc(2, 0x100000, 8, abi::kVirtqDescFWrite, 0);
  drv_->make_available(2);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q_.undo_pop();
  EXPECT_TRUE(q_.has_available());
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain_.head, 2);
}

TEST_F(VirtqueueTest, ReadableBuffersMayLieInTheImageSlot) {
  drv_->set_desc(0, 1ull << 32, 4096, 0, 0);
  drv_->make_available(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain_.readable[0][0], 'I');
}

// --- hostile rings -------------------------------------------------------

void expect_broken(VirtqueueTest* t, Virtqueue& q, DescriptorChain& c, const std::string& needle) {
  (void)t;
  EXPECT_EQ(q.pop(c), Virtqueue::Pop::kBroken);
  EXPECT_TRUE(q.broken());
  EXPECT_NE(q.broken_reason().find(needle), std::string::npos) << q.broken_reason();
  // Stays broken: nothing is popped afterwards.
  EXPECT_EQ(q.pop(c), Virtqueue::Pop::kBroken);
  EXPECT_FALSE(q.has_available());
}

TEST_F(VirtqueueTest, HeadIndexOutOfRange) {
  drv_->make_available(kSize);
  expect_broken(this, q_, chain_, "available ring entry 16");
}

TEST_F(VirtqueueTest, NextIndexOutOfRange) {
  drv_->set_desc(0, 0x100000, 8, abi::kVirtqDescFNext, 0xffff);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "links to 65535");
}

TEST_F(VirtqueueTest, SelfLoop) {
  drv_->set_desc(5, 0x100000, 8, abi::kVirtqDescFNext, 5);
  drv_->make_available(5);
  expect_broken(this, q_, chain_, "loops");
}

TEST_F(VirtqueueTest, LongLoopThroughEveryDescriptor) {
  for (uint16_t i = 0; i < kSize; i++) drv_->set_desc(i, 0x100000, 1, abi::kVirtqDescFNext, (i + 1) % kSize);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "loops");
}

TEST_F(VirtqueueTest, ChainOfExactlyQueueSizeIsFine) {
  for (uint16_t i = 0; i < kSize; i++)
    drv_->set_desc(i, 0x100000 + i, 1, i + 1 < kSize ? abi::kVirtqDescFNext : 0, i + 1);
  drv_->make_available(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain_.readable.size(), kSize);
}

TEST_F(VirtqueueTest, AddressOutsideGuestMemory) {
  drv_->set_desc(0, kRam - 4, 8, 0, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "not in guest memory");
}

TEST_F(VirtqueueTest, AddressWrapsAround) {
  drv_->set_desc(0, 0xfffffffffffffff0ull, 0x20, abi::kVirtqDescFWrite, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "not in guest memory");
}

TEST_F(VirtqueueTest, WritableBufferInReadOnlySlot) {
  drv_->set_desc(0, 1ull << 32, 16, abi::kVirtqDescFWrite, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "read-only");
}

TEST_F(VirtqueueTest, HugeLengthsAreRefused) {
  drv_->set_desc(0, 0, 0xffffffff, 0, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "not in guest memory");
}

TEST_F(VirtqueueTest, TotalChainLengthIsCapped) {
  // Each descriptor is valid on its own (256 MiB of a 512 MiB RAM, the same
  // range again and again); the sum reaches 4 GiB.
  const uint16_t n = kSize;
  auto big = GuestMemory::create(512ull << 20);
  ASSERT_TRUE(big.ok());
  TestDriver d(*big, kRing, kSize);
  for (uint16_t i = 0; i < n; i++) d.set_desc(i, 0x100000, 0x10000000, i + 1 < n ? abi::kVirtqDescFNext : 0, i + 1);
  d.make_available(0);
  Virtqueue q;
  ASSERT_TRUE(q.activate(*big, d.config(), 256).ok());
  expect_broken(this, q, chain_, "more than 4 GiB");
}

TEST_F(VirtqueueTest, ReadableAfterWritable) {
  drv_->set_desc(0, 0x100000, 8, abi::kVirtqDescFWrite | abi::kVirtqDescFNext, 1);
  drv_->set_desc(1, 0x100100, 8, 0, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "device-readable after device-writable");
}

TEST_F(VirtqueueTest, IndirectDescriptorsAreRefused) {
  drv_->set_desc(0, 0x100000, 16, abi::kVirtqDescFIndirect, 0);
  drv_->make_available(0);
  expect_broken(this, q_, chain_, "indirect");
}

TEST_F(VirtqueueTest, AvailIndexJumpsTooFar) {
  drv_->set_avail_idx(kSize + 1);
  EXPECT_FALSE(q_.has_available());
  EXPECT_TRUE(q_.broken());
  EXPECT_NE(q_.broken_reason().find("moved by 17"), std::string::npos) << q_.broken_reason();
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
}

TEST_F(VirtqueueTest, AvailIndexGoingBackwardsIsAJump) {
  drv_->set_avail_idx(0xffff);  // 65535 ahead of 0: far more than the queue holds
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
}

TEST_F(VirtqueueTest, ExactlyQueueSizePendingIsFine) {
  for (uint16_t i = 0; i < kSize; i++) {
    drv_->set_desc(i, 0x100000, 1, 0, 0);
    drv_->make_available(i);
  }
  for (uint16_t i = 0; i < kSize; i++) ASSERT_EQ(pop(), Virtqueue::Pop::kChain) << i;
  EXPECT_EQ(pop(), Virtqueue::Pop::kEmpty);
}

TEST(VirtqueueActivate, ValidatesPlacement) {
  auto m = GuestMemory::create(1 << 20);
  ASSERT_TRUE(m.ok());
  Virtqueue q;
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{0, 0x1000, 0x2000, 0x3000}, 256).ok());
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{3, 0x1000, 0x2000, 0x3000}, 256).ok());    // not a power of 2
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{512, 0x1000, 0x4000, 0x8000}, 256).ok());  // above max
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{16, 0x1008, 0x2000, 0x3000}, 256).ok());   // desc misaligned
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{16, 0x1000, 0x2001, 0x3000}, 256).ok());   // avail misaligned
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{16, 0x1000, 0x2000, 0x3002}, 256).ok());   // used misaligned
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{16, 0xffff0, 0x2000, 0x3000}, 256).ok());  // desc past RAM
  EXPECT_FALSE(q.activate(*m, VirtqueueConfig{16, 0x1000, 0x2000, 0xffffc}, 256).ok());  // used past RAM
  EXPECT_FALSE(q.active());
  EXPECT_TRUE(q.activate(*m, VirtqueueConfig{16, 0x1000, 0x2000, 0x3000}, 256).ok());
  EXPECT_TRUE(q.active());
}

}  // namespace
}  // namespace ember
