// copy_untrusted_files: how a jailed template snapshot leaves its jail.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "base/fd.h"
#include "controller/fsutil.h"
#include "tests/unit/test_temp_dir.h"

namespace ember::controller {
namespace {

namespace fs = std::filesystem;

class CopyUntrusted : public ::testing::Test {
 protected:
  void SetUp() override {
    from_ = dir_ + "/from";
    to_ = dir_ + "/to";
    fs::create_directory(from_);
  }
  void write(const std::string& name, const std::string& data, off_t at = 0) {
    Fd f(::open((from_ + "/" + name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(f.valid());
    ASSERT_EQ(::pwrite(f.get(), data.data(), data.size(), at), static_cast<ssize_t>(data.size()));
  }
  std::string read(const std::string& path) {
    auto r = read_file(path, 1 << 30);
    EXPECT_TRUE(r) << r.message();
    return r ? *r : "";
  }
  ember::testing::TempDir tmp_{"ember-fsutil"};
  const std::string dir_ = tmp_.path();
  std::string from_, to_;
};

TEST_F(CopyUntrusted, CopiesKeepingHolesAndContents) {
  write("a", "state");
  write("mem", "page one");
  write("mem", "page far away", 8 << 20);  // 8 MiB of hole in between
  ASSERT_EQ(::truncate((from_ + "/mem").c_str(), 12 << 20), 0);  // and a hole at the end
  auto r = copy_untrusted_files(from_, to_, {"a", "mem"}, 16 << 20);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(read(to_ + "/a"), "state");
  const std::string mem = read(to_ + "/mem");
  ASSERT_EQ(mem.size(), 12u << 20);
  EXPECT_EQ(mem.substr(0, 8), "page one");
  EXPECT_EQ(mem.substr(8 << 20, 13), "page far away");
  EXPECT_EQ(mem.find_first_not_of('\0', 8), static_cast<size_t>(8 << 20));
  EXPECT_LT(disk_usage(to_ + "/mem"), 1u << 20) << "holes were filled in";
  struct stat st;
  ASSERT_EQ(::stat((to_ + "/mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_FALSE(path_exists(to_ + ".tmp." + std::to_string(::getpid())));
}

TEST_F(CopyUntrusted, RefusesWhatIsNotAPlainFileAndLeavesNothing) {
  write("a", "x");
  const std::string outside = dir_ + "/outside";
  {
    Fd f(::open(outside.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(f.valid());
  }
  struct Case {
    const char* what;
    void (*make)(const std::string& from, const std::string& outside);
    const char* expect;
  };
  const Case cases[] = {
      {"symlink", [](const std::string& f, const std::string& o) { ASSERT_EQ(::symlink(o.c_str(), (f + "/b").c_str()), 0); },
       "open"},
      {"hard link", [](const std::string& f, const std::string& o) { ASSERT_EQ(::link(o.c_str(), (f + "/b").c_str()), 0); },
       "not a plain regular file"},
      {"fifo", [](const std::string& f, const std::string&) { ASSERT_EQ(::mkfifo((f + "/b").c_str(), 0600), 0); },
       "not a plain regular file"},
      {"directory", [](const std::string& f, const std::string&) { ASSERT_EQ(::mkdir((f + "/b").c_str(), 0700), 0); },
       "not a plain regular file"},
      {"missing", [](const std::string&, const std::string&) {}, "No such file"},
  };
  for (const Case& c : cases) {
    c.make(from_, outside);
    auto r = copy_untrusted_files(from_, to_, {"a", "b"}, 1 << 20);
    ASSERT_FALSE(r) << c.what;
    EXPECT_NE(r.message().find(c.expect), std::string::npos) << c.what << ": " << r.message();
    EXPECT_FALSE(path_exists(to_)) << c.what;
    fs::remove_all(from_ + "/b");
  }
  // The source directory itself must not be a symlink either.
  ASSERT_EQ(::symlink(from_.c_str(), (dir_ + "/link").c_str()), 0);
  EXPECT_FALSE(copy_untrusted_files(dir_ + "/link", to_, {"a"}, 1 << 20));
  // Nothing but from/, outside and link is left behind.
  int entries = 0;
  for (auto it = fs::directory_iterator(dir_); it != fs::directory_iterator(); ++it) entries++;
  EXPECT_EQ(entries, 3);
}

TEST_F(CopyUntrusted, RefusesMoreThanTheCap) {
  write("a", std::string(1000, 'a'));
  write("b", "b", (2 << 20) - 1);  // 2 MiB apparent, one byte on disk: the cap is on the size
  auto r = copy_untrusted_files(from_, to_, {"a", "b"}, 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("more than"), std::string::npos) << r.message();
  EXPECT_FALSE(path_exists(to_));
  EXPECT_TRUE(copy_untrusted_files(from_, to_, {"a", "b"}, 3 << 20));
}

TEST_F(CopyUntrusted, NeverReplacesAnExistingSnapshot) {
  write("a", "new");
  fs::create_directory(to_);
  {
    Fd f(::open((to_ + "/a").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_EQ(::write(f.get(), "old", 3), 3);
  }
  EXPECT_FALSE(copy_untrusted_files(from_, to_, {"a"}, 1 << 20));
  EXPECT_EQ(read(to_ + "/a"), "old");
}

}  // namespace
}  // namespace ember::controller
