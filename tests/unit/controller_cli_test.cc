// The `ember` command line.
#include <gtest/gtest.h>

#include "controller/cli.h"

namespace ember::controller {
namespace {

TEST(ControllerCli, Deploy) {
  auto c = parse_ember_cli({"--url", "http://h:1", "deploy", "fn", "prog", "--memory-mib", "256", "--pool", "3",
                            "--env", "A=1", "--env", "B=x=y", "--arg", "-v", "--timeout-ms", "500"},
                           "");
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->kind, CliCommand::Kind::kDeploy);
  EXPECT_EQ(c->url, "http://h:1");
  EXPECT_EQ(c->name, "fn");
  EXPECT_EQ(c->file, "prog");
  EXPECT_EQ(c->options["memory_mib"], 256);
  EXPECT_EQ(c->options["pool"], 3);
  EXPECT_EQ(c->options["timeout_ms"], 500);
  EXPECT_EQ(c->options["env"]["A"], "1");
  EXPECT_EQ(c->options["env"]["B"], "x=y");
  EXPECT_EQ(c->options["args"][0], "-v");
}

TEST(ControllerCli, OtherCommands) {
  auto i = parse_ember_cli({"invoke", "fn", "--stderr", "--json"}, "http://env:2/");
  ASSERT_TRUE(i) << i.message();
  EXPECT_EQ(i->kind, CliCommand::Kind::kInvoke);
  EXPECT_TRUE(i->with_stderr);
  EXPECT_TRUE(i->json);
  EXPECT_EQ(i->url, "http://env:2");
  EXPECT_EQ(parse_ember_cli({"ls"}, "")->kind, CliCommand::Kind::kList);
  EXPECT_EQ(parse_ember_cli({"ls"}, "")->url, "http://127.0.0.1:8080");
  EXPECT_EQ(parse_ember_cli({"rm", "fn"}, "")->kind, CliCommand::Kind::kRemove);
  EXPECT_EQ(parse_ember_cli({"vms"}, "")->kind, CliCommand::Kind::kVms);
  EXPECT_EQ(parse_ember_cli({"show", "fn"}, "")->kind, CliCommand::Kind::kShow);
  EXPECT_EQ(parse_ember_cli({"kill", "e1-2-3"}, "")->kind, CliCommand::Kind::kKillVm);
  EXPECT_EQ(parse_ember_cli({"--help"}, "")->kind, CliCommand::Kind::kHelp);
}

TEST(ControllerCli, Errors) {
  EXPECT_FALSE(parse_ember_cli({}, ""));
  EXPECT_FALSE(parse_ember_cli({"deploy", "fn"}, ""));
  EXPECT_FALSE(parse_ember_cli({"deploy", "fn", "f", "--pool", "many"}, ""));
  EXPECT_FALSE(parse_ember_cli({"deploy", "fn", "f", "--env", "novalue"}, ""));
  EXPECT_FALSE(parse_ember_cli({"deploy", "fn", "f", "--pool"}, ""));
  EXPECT_FALSE(parse_ember_cli({"invoke"}, ""));
  EXPECT_FALSE(parse_ember_cli({"invoke", "fn", "--pool", "1"}, ""));
  EXPECT_FALSE(parse_ember_cli({"ls", "extra"}, ""));
  EXPECT_FALSE(parse_ember_cli({"frobnicate"}, ""));
  EXPECT_FALSE(parse_ember_cli({"--bogus", "ls"}, ""));
  EXPECT_FALSE(parse_ember_cli({"--url", "ftp://x", "ls"}, ""));
  EXPECT_EQ(invoke_failure_exit(504), 124);
  EXPECT_EQ(invoke_failure_exit(502), 125);
  EXPECT_EQ(invoke_failure_exit(429), 125);
}

}  // namespace
}  // namespace ember::controller
