// ember-vmm's command line: every option, the PROGRAM/ARGS split, and one
// clear usage error for each mistake.
#include <gtest/gtest.h>

#include "vmm/cli.h"

namespace ember {
namespace {

Result<CliOptions> parse(std::vector<std::string> a) { return parse_cli(a); }

void expect_usage_error(std::vector<std::string> a, const std::string& needle) {
  auto r = parse(a);
  ASSERT_FALSE(r.ok()) << "accepted";
  EXPECT_NE(r.message().find(needle), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << "one line: " << r.message();
}

TEST(VmmCli, Help) {
  EXPECT_EQ(parse({"--help"})->command, CliOptions::Command::kHelp);
  EXPECT_EQ(parse({"-h"})->command, CliOptions::Command::kHelp);
  EXPECT_EQ(parse({"run", "--help"})->command, CliOptions::Command::kRunHelp);
  EXPECT_EQ(parse({"run", "-v", "-h", "prog"})->command, CliOptions::Command::kRunHelp);
  for (const char* word : {"--kernel", "--mem-mib", "--timeout-ms", "--env", "--image", "--verbose", "example"})
    EXPECT_NE(run_usage_text().find(word), std::string::npos) << word;
  EXPECT_NE(usage_text().find("ember-vmm run"), std::string::npos);
}

TEST(VmmCli, MinimalRun) {
  auto r = parse({"run", "./hello"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->command, CliOptions::Command::kRun);
  EXPECT_EQ(r->program, "./hello");
  EXPECT_TRUE(r->args.empty());
  EXPECT_EQ(r->mem_mib, 128u);
  EXPECT_EQ(r->timeout_ms, 0u);
  EXPECT_FALSE(r->verbose);
  EXPECT_TRUE(r->kernel.empty());
}

TEST(VmmCli, AllOptions) {
  auto r = parse({"run", "--kernel", "k.elf", "--mem-mib", "64", "--timeout-ms=2500", "--env", "A=1", "--env=B=",
                  "--verbose", "--cmdline", "x y", "prog", "a", "b"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->kernel, "k.elf");
  EXPECT_EQ(r->mem_mib, 64u);
  EXPECT_EQ(r->timeout_ms, 2500u);
  EXPECT_EQ(r->env, (std::vector<std::string>{"A=1", "B="}));
  EXPECT_TRUE(r->verbose);
  EXPECT_EQ(r->cmdline, "x y");
  EXPECT_EQ(r->program, "prog");
  EXPECT_EQ(r->args, (std::vector<std::string>{"a", "b"}));
}

TEST(VmmCli, ArgsAfterProgramAreThePrograms) {
  auto r = parse({"run", "prog", "--", "--verbose", "-x", "--"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_FALSE(r->verbose);
  EXPECT_EQ(r->args, (std::vector<std::string>{"--verbose", "-x", "--"}));
  r = parse({"run", "prog", "--mem-mib", "1"});  // after PROGRAM: not ours
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"--mem-mib", "1"}));
  r = parse({"run", "--", "-weird-name", "x"});  // `--` ends our options
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->program, "-weird-name");
  EXPECT_EQ(r->args, (std::vector<std::string>{"x"}));
  r = parse({"run", "prog", "", "two words"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->args, (std::vector<std::string>{"", "two words"}));
}

TEST(VmmCli, Image) {
  auto r = parse({"run", "--image", "fn.img", "--timeout-ms", "5"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->image, "fn.img");
  EXPECT_TRUE(r->program.empty());
  expect_usage_error({"run", "--image", "fn.img", "prog"}, "image carries");
  expect_usage_error({"run", "--image", "fn.img", "--", "a"}, "image carries");
  expect_usage_error({"run", "--env", "A=1", "--image", "fn.img"}, "--env applies only to a PROGRAM");
}

TEST(VmmCli, FilesAndTreesOfAProgram) {
  auto r = parse({"run", "--file", "in.txt:/data/in.txt", "--tree=/usr/lib/python3.11", "/usr/bin/python3", "-c", "1"});
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->files.size(), 1u);
  EXPECT_EQ(r->files[0], std::make_pair(std::string("in.txt"), std::string("/data/in.txt")));
  ASSERT_EQ(r->trees.size(), 1u);
  EXPECT_EQ(r->trees[0].second, "/usr/lib/python3.11");
  EXPECT_EQ(r->program, "/usr/bin/python3");
  expect_usage_error({"run", "--file", "relative", "p"}, "--file 'relative': expected HOST:GUEST");
  expect_usage_error({"run", "--tree", "/t", "--image", "fn.img"}, "apply only to a PROGRAM");
}

TEST(VmmCli, MemoryLimits) {
  for (const char* ok : {"16", "18", "128", "3072"}) EXPECT_TRUE(parse({"run", "--mem-mib", ok, "p"}).ok()) << ok;
  for (const char* bad : {"15", "14", "17", "3074", "0", "-128", "12x", "", "99999999999999999999", "0x80"})
    expect_usage_error({"run", "--mem-mib", bad, "p"}, "--mem-mib");
}

TEST(VmmCli, Errors) {
  expect_usage_error({}, "missing command");
  expect_usage_error({"boot"}, "unknown command 'boot'");
  expect_usage_error({"run"}, "missing PROGRAM or --image");
  expect_usage_error({"run", "--verbose"}, "missing PROGRAM");
  expect_usage_error({"run", "--frobnicate", "p"}, "unknown option '--frobnicate'");
  expect_usage_error({"run", "--kernel"}, "--kernel needs a value");
  expect_usage_error({"run", "--kernel="}, "--kernel needs a path");
  expect_usage_error({"run", "--timeout-ms", "soon", "p"}, "--timeout-ms soon");
  expect_usage_error({"run", "--env", "NOEQUALS", "p"}, "expected KEY=VALUE");
  expect_usage_error({"run", "--env", "=v", "p"}, "expected KEY=VALUE");
  expect_usage_error({"run", "--verbose=yes", "p"}, "takes no value");
}

TEST(VmmCli, SnapshotAndVsockOptionsOfRun) {
  auto r = parse({"run", "--snapshot-at-ready", "snap/", "--vsock-uds=/tmp/v.sock", "prog"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->snapshot_at_ready, "snap/");
  EXPECT_EQ(r->vsock_uds, "/tmp/v.sock");
  EXPECT_EQ(r->program, "prog");
  expect_usage_error({"run", "--snapshot-at-ready", "", "p"}, "needs a directory");
  expect_usage_error({"run", "--vsock-uds", std::string(101, 'x'), "p"}, "1-100 bytes");
  for (const char* word : {"--snapshot-at-ready", "--vsock-uds"})
    EXPECT_NE(run_usage_text().find(word), std::string::npos) << word;
}

TEST(VmmCli, Restore) {
  auto r = parse({"restore", "snap"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->command, CliOptions::Command::kRestore);
  EXPECT_EQ(r->restore_dir, "snap");
  EXPECT_EQ(r->repeat, 1u);
  EXPECT_TRUE(r->vsock_uds.empty());
  EXPECT_TRUE(r->seccomp);
  r = parse({"restore", "-v", "--repeat", "100", "snap", "--timeout-ms=500", "--vsock-uds", "/tmp/s", "--no-seccomp",
             "--id", "vm-1"});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->repeat, 100u);
  EXPECT_EQ(r->timeout_ms, 500u);
  EXPECT_EQ(r->vsock_uds, "/tmp/s");
  EXPECT_TRUE(r->verbose);
  EXPECT_FALSE(r->seccomp);
  EXPECT_EQ(r->id, "vm-1");
  EXPECT_EQ(parse({"restore", "--", "-odd-name"})->restore_dir, "-odd-name");
  EXPECT_EQ(parse({"restore", "--help"})->command, CliOptions::Command::kRestoreHelp);
  for (const char* word : {"--vsock-uds", "--repeat", "--timeout-ms", "example", "exit status"})
    EXPECT_NE(restore_usage_text().find(word), std::string::npos) << word;
  EXPECT_NE(usage_text().find("ember-vmm restore"), std::string::npos);
  expect_usage_error({"restore"}, "missing snapshot directory");
  expect_usage_error({"restore", "a", "b"}, "one snapshot directory");
  expect_usage_error({"restore", "--repeat", "0", "a"}, "--repeat 0");
  expect_usage_error({"restore", "--repeat", "x", "a"}, "--repeat x");
  expect_usage_error({"restore", "--repeat"}, "needs a value");
  expect_usage_error({"restore", "--mem-mib", "64", "a"}, "unknown option '--mem-mib'");
  expect_usage_error({"restore", "--id", "a b", "a"}, "--id");
}

}  // namespace
}  // namespace ember
