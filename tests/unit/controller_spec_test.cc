// Function names, deploy options (JSON header and query parameters), the
// persisted record, and what a deploy body turns into.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "controller/config.h"
#include "controller/fsutil.h"
#include "controller/function_spec.h"
#include "controller/image_build.h"
#include "images/image_reader.h"
#include "images/image_writer.h"
#include "tests/unit/test_temp_dir.h"
#include "tests/unit/vmm_test_elf.h"

namespace ember::controller {
namespace {

using nlohmann::json;

TEST(ControllerNames, Rule) {
  for (const char* ok : {"a", "echo", "my-fn_2", "0abc", "a23456789012345678901234567890123456789012345678901234567890123"})
    EXPECT_TRUE(valid_function_name(ok)) << ok;
  for (const char* bad : {"", "../x", "..", ".", "Echo", "-x", "_x", "a/b", "a b", "a.b", "é",
                          "a234567890123456789012345678901234567890123456789012345678901234", "x\n"})
    EXPECT_FALSE(valid_function_name(bad)) << bad;
}

TEST(ControllerSpec, JsonOptions) {
  Config cfg = default_config();
  FunctionSpec s = spec_defaults(cfg);
  auto r = merge_spec_json(&s, json::parse(R"({"memory_mib": 256, "timeout_ms": 500, "pool": 3,
      "max_concurrency": 7, "env": {"A": "1", "B": "x=y"}, "args": ["--fast", "x"]})"), cfg);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(s.memory_mib, 256u);
  EXPECT_EQ(s.timeout_ms, 500u);
  EXPECT_EQ(s.pool, 3u);
  EXPECT_EQ(s.max_concurrency, 7u);
  EXPECT_EQ(s.env, (std::vector<std::string>{"A=1", "B=x=y"}));
  EXPECT_EQ(s.args, (std::vector<std::string>{"--fast", "x"}));
  // env as an array; a later value replaces an earlier one.
  ASSERT_TRUE(merge_spec_json(&s, json::parse(R"({"env": ["A=2", "C=3"]})"), cfg));
  EXPECT_EQ(s.env, (std::vector<std::string>{"A=2", "B=x=y", "C=3"}));
}

TEST(ControllerSpec, JsonErrorsNameTheField) {
  Config cfg = default_config();
  struct Case {
    const char* j;
    const char* needle;
  } cases[] = {
      {R"({"memory_mib": 15})", "memory_mib"},
      {R"({"memory_mib": 4000})", "memory_mib"},
      {R"({"memory_mib": "big"})", "memory_mib"},
      {R"({"memory_mib": -2})", "negative"},
      {R"({"vcpus": 2})", "vcpus"},
      {R"({"timeout_ms": 0})", "timeout_ms"},
      {R"({"pool": 1000000})", "pool"},
      {R"({"max_concurrency": 0})", "max_concurrency"},
      {R"({"env": {"1A": "x"}})", "env"},
      {R"({"env": {"A": 1}})", "env.A"},
      {R"({"env": "A=1"})", "env"},
      {R"({"args": "x"})", "args"},
      {R"({"args": [1]})", "args"},
      {R"({"colour": "red"})", "unknown function option 'colour'"},
      {R"([1, 2])", "object"},
  };
  for (const auto& tc : cases) {
    FunctionSpec s = spec_defaults(cfg);
    auto r = merge_spec_json(&s, json::parse(tc.j), cfg);
    ASSERT_FALSE(r) << tc.j;
    EXPECT_NE(r.message().find(tc.needle), std::string::npos) << tc.j << " -> " << r.message();
  }
}

TEST(ControllerSpec, QueryParameters) {
  Config cfg = default_config();
  FunctionSpec s = spec_defaults(cfg);
  ASSERT_TRUE(merge_spec_param(&s, "memory_mib", "64", cfg));
  ASSERT_TRUE(merge_spec_param(&s, "env", "K=V", cfg));
  ASSERT_TRUE(merge_spec_param(&s, "args", "a", cfg));
  ASSERT_TRUE(merge_spec_param(&s, "args", "b", cfg));
  EXPECT_EQ(s.memory_mib, 64u);
  EXPECT_EQ(s.env, std::vector<std::string>{"K=V"});
  EXPECT_EQ(s.args, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(merge_spec_param(&s, "memory_mib", "6x", cfg));
  EXPECT_FALSE(merge_spec_param(&s, "env", "=V", cfg));
  EXPECT_FALSE(merge_spec_param(&s, "nope", "1", cfg));
}

TEST(ControllerSpec, RecordRoundTrip) {
  Config cfg = default_config();
  FunctionRecord r;
  r.name = "fn";
  r.version = 7;
  r.spec = spec_defaults(cfg);
  r.spec.env = {"A=1"};
  r.spec.args = {"x"};
  r.mechanism = Mechanism::kSnapshot;
  r.source = "elf";
  r.created_at = rfc3339_now();
  r.image_bytes = 123;
  r.snapshot_bytes = 456;
  r.template_us = 789;
  auto back = record_from_json(json::parse(record_to_json(r).dump()), cfg);
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(back->name, "fn");
  EXPECT_EQ(back->version, 7u);
  EXPECT_EQ(back->spec.env, r.spec.env);
  EXPECT_EQ(back->spec.args, r.spec.args);
  EXPECT_EQ(back->mechanism, Mechanism::kSnapshot);
  EXPECT_EQ(back->snapshot_bytes, 456u);
  EXPECT_FALSE(record_from_json(json::parse(R"({"name": "../x", "version": 1})"), cfg));
  EXPECT_FALSE(record_from_json(json::parse(R"({"name": "x"})"), cfg));
}

// A record's numbers are whole and non-negative; a float out of range once
// reached a plain cast (found by fuzz_function_spec).
TEST(ControllerSpec, RecordNumbersMustBeWhole) {
  const Config cfg;
  const std::string cfg_json = R"("config": {"memory_mib": 16}, "mechanism": "boot")";
  for (const char* bad : {R"("version": 5e30)", R"("version": -1)", R"("version": 1, "image_bytes": 2.5)",
                          R"("version": 1, "template_us": "7")"}) {
    auto r = record_from_json(json::parse(std::string("{\"name\": \"x\", ") + bad + ", " + cfg_json + "}"), cfg);
    EXPECT_FALSE(r) << bad;
  }
  auto ok = record_from_json(json::parse(R"({"name": "x", "version": 2, )" + cfg_json + "}"), cfg);
  ASSERT_TRUE(ok) << ok.message();
  EXPECT_EQ(ok->version, 2u);
  EXPECT_EQ(ok->image_bytes, 0u);
}

class ControllerImage : public ::testing::Test {
 protected:
  // /bin/true is an ELF; good enough for packing (never run here).
  // A minimal static x86-64 executable (what the guest can run).
  std::string elf() { return ember::testing::static_program_elf(); }
  ember::testing::TempDir tmp_{"ember-ctl-image"};
  const std::string dir_ = tmp_.path();
};

TEST_F(ControllerImage, DetectsTheBody) {
  EXPECT_EQ(detect_body(elf()), BodyKind::kElf);
  EXPECT_EQ(detect_body("EMBERIMG........"), BodyKind::kImage);
  EXPECT_EQ(detect_body("#!/bin/sh\n"), BodyKind::kUnknown);
  EXPECT_EQ(detect_body(""), BodyKind::kUnknown);
}

TEST_F(ControllerImage, ElfIsPackedWithArgsAndEnv) {
  FunctionSpec spec = spec_defaults(default_config());
  spec.args = {"--flag"};
  spec.env = {"K=V"};
  auto b = build_function_image("fn", elf(), spec, dir_ + "/work", dir_ + "/fn.img");
  ASSERT_TRUE(b) << b.message();
  EXPECT_EQ(b->source, "elf");
  EXPECT_FALSE(path_exists(dir_ + "/work"));
  auto bytes = read_file(dir_ + "/fn.img", 64 << 20);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(b->bytes, bytes->size());
  image::ImageReader r;
  ASSERT_EQ(r.open(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), image::ImageStatus::kOk);
  ASSERT_EQ(r.arg_count(), 2u);
  EXPECT_EQ(std::string(r.arg(0).data), "/bin/fn");
  EXPECT_EQ(std::string(r.arg(1).data), "--flag");
  ASSERT_EQ(r.env_count(), 1u);
  EXPECT_EQ(std::string(r.env(0).data), "K=V");
}

TEST_F(ControllerImage, ImageIsKeptOrRepacked) {
  // An image with a data file and its own env.
  {
    std::ofstream(dir_ + "/data.txt") << "payload";
    std::ofstream(dir_ + "/prog", std::ios::binary) << elf();
    ::chmod((dir_ + "/prog").c_str(), 0755);
    image::ImageSpec is;
    is.exec_host_path = dir_ + "/prog";
    is.exec_guest_path = "/app/prog";
    is.files = {{dir_ + "/data.txt", "/app/data.txt"}};
    is.args = {"prog", "a"};
    is.env = {"A=1", "B=2"};
    ASSERT_TRUE(image::write_image_file(dir_ + "/in.img", is));
  }
  auto body = read_file(dir_ + "/in.img", 64 << 20);
  ASSERT_TRUE(body);
  FunctionSpec plain = spec_defaults(default_config());
  auto kept = build_function_image("fn", *body, plain, dir_ + "/w1", dir_ + "/kept.img");
  ASSERT_TRUE(kept) << kept.message();
  EXPECT_EQ(*read_file(dir_ + "/kept.img", 64 << 20), *body);

  FunctionSpec over = plain;
  over.env = {"B=3", "C=4"};
  over.args = {"z"};
  auto re = build_function_image("fn", *body, over, dir_ + "/w2", dir_ + "/re.img");
  ASSERT_TRUE(re) << re.message();
  auto bytes = read_file(dir_ + "/re.img", 64 << 20);
  image::ImageReader r;
  ASSERT_EQ(r.open(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), image::ImageStatus::kOk);
  ASSERT_EQ(r.arg_count(), 2u);
  EXPECT_EQ(std::string(r.arg(0).data), "prog");
  EXPECT_EQ(std::string(r.arg(1).data), "z");
  ASSERT_EQ(r.env_count(), 3u);
  EXPECT_EQ(std::string(r.env(0).data), "A=1");
  EXPECT_EQ(std::string(r.env(1).data), "B=3");
  EXPECT_EQ(std::string(r.env(2).data), "C=4");
  image::ImageFile f;
  ASSERT_TRUE(r.find("/app/data.txt", 13, &f));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data), f.size), "payload");
  EXPECT_EQ(std::string(r.file(r.exec_index()).path.data), "/app/prog");
}

TEST_F(ControllerImage, BadBodiesAreRefused) {
  FunctionSpec spec = spec_defaults(default_config());
  auto a = build_function_image("fn", "#!/bin/sh\necho hi\n", spec, dir_ + "/w", dir_ + "/a.img");
  ASSERT_FALSE(a);
  EXPECT_NE(a.message().find("neither"), std::string::npos);
  std::string broken = "EMBERIMG";
  broken.resize(200, '\0');
  auto b = build_function_image("fn", broken, spec, dir_ + "/w", dir_ + "/b.img");
  ASSERT_FALSE(b);
  EXPECT_NE(b.message().find("invalid"), std::string::npos) << b.message();
  EXPECT_FALSE(path_exists(dir_ + "/b.img"));
  // A dynamically linked program comes with its loader and libraries.
  auto dynamic = read_file("/bin/true", 64 << 20);
  ASSERT_TRUE(dynamic);
  auto c = build_function_image("fn", *dynamic, spec, dir_ + "/w", dir_ + "/c.img");
  ASSERT_TRUE(c) << c.message();
  auto packed = read_file(dir_ + "/c.img", 64 << 20);
  ASSERT_TRUE(packed);
  EXPECT_NE(packed->find("/lib64/ld-linux-x86-64.so.2"), std::string::npos);
  EXPECT_NE(packed->find("/libc.so.6"), std::string::npos);
  std::string inside;
  {
    ember::image::ImageSpec is;
    is.exec_host_path = dir_ + "/static";
    std::ofstream(is.exec_host_path, std::ios::binary) << elf();
    auto img = ember::image::build_image(is);
    ASSERT_TRUE(img) << img.message();
    inside.assign(img->begin(), img->end());
    // Its program's one segment becomes a PT_INTERP that names no path:
    // the image stays well-formed, its program is not.
    const size_t at = inside.find(elf());
    ASSERT_NE(at, std::string::npos);
    const uint32_t interp = PT_INTERP;
    std::memcpy(inside.data() + at + sizeof(Elf64_Ehdr), &interp, sizeof interp);
  }
  auto d = build_function_image("fn", inside, spec, dir_ + "/w", dir_ + "/d.img");
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("malformed PT_INTERP"), std::string::npos) << d.message();
}

TEST_F(ControllerImage, AtomicWrite) {
  const std::string p = dir_ + "/rec.json";
  ASSERT_TRUE(write_file_atomic(p, "one"));
  ASSERT_TRUE(write_file_atomic(p, "two"));
  EXPECT_EQ(*read_file(p, 100), "two");
  EXPECT_FALSE(read_file(p, 2));  // over the cap
  EXPECT_FALSE(write_file_atomic(dir_ + "/missing/dir/x", "y"));
}

}  // namespace
}  // namespace ember::controller
