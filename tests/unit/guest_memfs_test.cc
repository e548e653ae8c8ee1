// The guest's in-memory file system (guest-init/memfs.*), compiled for the
// host with malloc behind it: Linux's answers for creating, writing,
// renaming and removing, including the errors and running out of memory.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "guest-init/memfs.cc"

namespace ember::guest {
namespace {

uint64_t g_budget = ~0ull;  // bytes the allocator may still hand out
uint64_t test_alloc(uint64_t len) {
  if (len > g_budget) return 0;
  g_budget -= len;
  return reinterpret_cast<uint64_t>(std::calloc(1, len));
}
void test_free(uint64_t addr, uint64_t len) {
  g_budget += len;
  std::free(reinterpret_cast<void*>(addr));
}
void test_copy(uint64_t dst, uint64_t src, uint64_t len) {
  std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), len);
}

class GuestMemFs : public ::testing::Test {
 protected:
  void SetUp() override {
    g_budget = ~0ull;
    fs_ = new MemFs;
    fs_->init(MemFs::Alloc{test_alloc, test_free, test_copy});
  }
  void TearDown() override { delete fs_; }
  uint32_t at(const std::string& p) const { return fs_->lookup(p.data(), static_cast<uint32_t>(p.size())); }
  int32_t mk(const std::string& p, MemFs::Kind k = MemFs::Kind::kFile) {
    uint32_t id;
    return fs_->create(p.data(), static_cast<uint32_t>(p.size()), k, 0644, 1, &id);
  }
  int32_t rm(const std::string& p, bool dir = false) { return fs_->remove(p.data(), static_cast<uint32_t>(p.size()), dir); }
  int32_t mv(const std::string& a, const std::string& b, bool no_replace = false) {
    return fs_->rename(a.data(), static_cast<uint32_t>(a.size()), b.data(), static_cast<uint32_t>(b.size()), no_replace, 2);
  }
  std::string read(const std::string& p) {
    std::string out(1 << 16, '\0');
    out.resize(fs_->read(at(p), 0, out.data(), out.size()));
    return out;
  }
  int64_t write(const std::string& p, uint64_t off, const std::string& s) {
    return fs_->write(at(p), off, s.data(), s.size(), 3);
  }
  MemFs* fs_ = nullptr;
};

TEST_F(GuestMemFs, CreateWriteReadAndTheErrors) {
  EXPECT_EQ(mk("/tmp", MemFs::Kind::kDir), 0);
  EXPECT_EQ(mk("/tmp/f"), 0);
  EXPECT_EQ(mk("/tmp/f"), MemFs::kExist);
  EXPECT_EQ(mk("/nodir/f"), MemFs::kNoEnt);
  EXPECT_EQ(mk("/tmp/f/g"), MemFs::kNoEnt);  // its parent is a file
  EXPECT_EQ(mk("/tmp/" + std::string(256, 'n')), MemFs::kNameTooLong);
  EXPECT_EQ(write("/tmp/f", 0, "hello"), 5);
  EXPECT_EQ(write("/tmp/f", 10, "world"), 5);  // a hole between
  EXPECT_EQ(read("/tmp/f"), std::string("hello\0\0\0\0\0world", 15));
  EXPECT_EQ(fs_->node(at("/tmp/f")).size, 15u);
  EXPECT_EQ(fs_->truncate(at("/tmp/f"), 3, 4), 0);
  EXPECT_EQ(fs_->truncate(at("/tmp/f"), 6, 4), 0);  // grows with zeros, not the old bytes
  EXPECT_EQ(read("/tmp/f"), std::string("hel\0\0\0", 6));
  EXPECT_EQ(fs_->write(at("/tmp"), 0, "x", 1, 5), -MemFs::kIsDir);
  char path[64];
  EXPECT_EQ(std::string(path, fs_->path_of(at("/tmp/f"), path, sizeof path)), "/tmp/f");
}

TEST_F(GuestMemFs, RemoveFollowsLinuxRules) {
  ASSERT_EQ(mk("/d", MemFs::Kind::kDir), 0);
  ASSERT_EQ(mk("/d/f"), 0);
  EXPECT_EQ(rm("/d", true), MemFs::kNotEmpty);
  EXPECT_EQ(rm("/d"), MemFs::kIsDir);
  EXPECT_EQ(rm("/d/f", true), MemFs::kNotDir);
  EXPECT_EQ(rm("/", true), MemFs::kBusy);
  EXPECT_EQ(rm("/missing"), MemFs::kNoEnt);
  // Unlinked but open: the data stays until the last close.
  const uint32_t f = at("/d/f");
  ASSERT_EQ(write("/d/f", 0, "kept"), 4);
  fs_->opened(f);
  EXPECT_EQ(rm("/d/f"), 0);
  EXPECT_EQ(at("/d/f"), 0u);
  char buf[8] = {};
  EXPECT_EQ(fs_->read(f, 0, buf, sizeof buf), 4u);
  EXPECT_EQ(rm("/d", true), 0);  // empty now: the unlinked file is not in it
  fs_->closed(f);
  EXPECT_EQ(fs_->node(f).kind, MemFs::Kind::kFree);
}

TEST_F(GuestMemFs, RenameIsAtomicAndRefusesWhatLinuxRefuses) {
  ASSERT_EQ(mk("/a", MemFs::Kind::kDir), 0);
  ASSERT_EQ(mk("/a/b", MemFs::Kind::kDir), 0);
  ASSERT_EQ(mk("/a/x"), 0);
  ASSERT_EQ(mk("/a/y"), 0);
  ASSERT_EQ(write("/a/x", 0, "new"), 3);
  ASSERT_EQ(write("/a/y", 0, "old"), 3);
  EXPECT_EQ(mv("/a/x", "/a/y", true), MemFs::kExist);
  EXPECT_EQ(mv("/a/x", "/a/y"), 0);  // write-then-rename replaces in one step
  EXPECT_EQ(read("/a/y"), "new");
  EXPECT_EQ(at("/a/x"), 0u);
  EXPECT_EQ(mv("/a", "/a/b/c"), MemFs::kInval);  // into itself
  EXPECT_EQ(mv("/a/y", "/a/b"), MemFs::kIsDir);
  EXPECT_EQ(mv("/a/b", "/a/y"), MemFs::kNotDir);
  EXPECT_EQ(mv("/missing", "/a/z"), MemFs::kNoEnt);
  EXPECT_EQ(mv("/a/y", "/nodir/z"), MemFs::kNoEnt);
  ASSERT_EQ(mk("/a/b/inner"), 0);
  ASSERT_EQ(mk("/e", MemFs::Kind::kDir), 0);
  EXPECT_EQ(mv("/e", "/a/b"), MemFs::kNotEmpty);
  EXPECT_EQ(mv("/a/b", "/e"), 0);  // onto an empty directory
  EXPECT_NE(at("/e/inner"), 0u);
  EXPECT_EQ(mv("/e", "/e"), 0);
}

TEST_F(GuestMemFs, RunningOutIsEnospcNeverACrash) {
  ASSERT_EQ(mk("/f"), 0);
  g_budget = 64 * 1024;
  std::string chunk(4096, 'z');
  int64_t r = 0;
  uint64_t off = 0;
  while ((r = write("/f", off, chunk)) > 0) off += static_cast<uint64_t>(r);
  EXPECT_EQ(r, -MemFs::kNoSpc);
  EXPECT_GT(off, 0u);
  EXPECT_EQ(read("/f").size(), off);  // what was written is intact
  // Nodes run out too.
  for (uint32_t i = 0;; i++) {
    const int32_t e = mk("/n" + std::to_string(i));
    if (e) {
      EXPECT_EQ(e, MemFs::kNoSpc);
      EXPECT_GT(i, 1000u);
      break;
    }
  }
}

}  // namespace
}  // namespace ember::guest
