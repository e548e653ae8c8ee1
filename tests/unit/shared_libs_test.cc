// images/shared_libs: a dynamic program's loader and libraries, found on
// this host as its ld.so finds them.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "images/image_writer.h"
#include "images/shared_libs.h"
#include "tests/unit/test_temp_dir.h"

namespace ember::image {
namespace {

TEST(SharedLibs, TheHostsTrueNeedsItsLoaderAndLibc) {
  auto bytes = read_whole_file("/bin/true");
  ASSERT_TRUE(bytes) << bytes.message();
  auto info = inspect_program(bytes->data(), bytes->size());
  ASSERT_TRUE(info) << info.message();
  auto deps = program_dependencies("/bin/true", *info);
  ASSERT_TRUE(deps) << deps.message();
  ASSERT_GE(deps->size(), 2u);
  EXPECT_EQ((*deps)[0].guest_path, info->interpreter);  // the loader first, where PT_INTERP says
  auto libc = std::find_if(deps->begin(), deps->end(), [](const Dependency& d) {
    return d.guest_path.size() > 10 && d.guest_path.compare(d.guest_path.size() - 10, 10, "/libc.so.6") == 0;
  });
  ASSERT_NE(libc, deps->end());
  // Each host file once: libc asks for ld.so by its soname, which is the loader.
  for (const Dependency& d : *deps)
    EXPECT_EQ(std::count_if(deps->begin(), deps->end(), [&](const Dependency& o) { return o.guest_path == d.guest_path; }), 1);
  // A static program needs nothing.
  ProgramInfo none;
  EXPECT_TRUE(program_dependencies("/bin/true", none)->empty());
}

TEST(SharedLibs, AMissingLibrarySaysWhoAskedForIt) {
  auto bytes = read_whole_file("/bin/true");
  ASSERT_TRUE(bytes);
  auto info = inspect_program(bytes->data(), bytes->size());
  ASSERT_TRUE(info);
  info->needed.push_back("libnot-on-any-host.so.9");
  auto deps = program_dependencies("/bin/true", *info);
  ASSERT_FALSE(deps);
  EXPECT_NE(deps.message().find("needs libnot-on-any-host.so.9 (asked for by /bin/true)"), std::string::npos)
      << deps.message();
}

TEST(SharedLibs, LdSoConfWithIncludesAndComments) {
  testing::TempDir tmp("ember-ldconf");
  const std::string dir = tmp.path();
  ASSERT_EQ(::mkdir((dir + "/conf.d").c_str(), 0755), 0);
  std::ofstream(dir + "/ld.so.conf") << "# comment\n/opt/a/lib\ninclude conf.d/*.conf\n/opt/b/lib, /opt/c/lib # trailing\n";
  std::ofstream(dir + "/conf.d/x.conf") << "/usr/local/lib/x\n/opt/a/lib\n";
  std::ofstream(dir + "/conf.d/y.notconf") << "/never\n";
  // An include's directories in its place, each directory once.
  const std::vector<std::string> want = {"/opt/a/lib", "/usr/local/lib/x", "/opt/b/lib", "/opt/c/lib"};
  EXPECT_EQ(ld_so_conf_dirs(dir + "/ld.so.conf"), want);
  EXPECT_TRUE(ld_so_conf_dirs(dir + "/missing.conf").empty());
}

}  // namespace
}  // namespace ember::image
