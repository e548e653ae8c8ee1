// inspect_program: what the guest can run is accepted with what it needs
// (its loader and libraries), everything else is refused with the reason a
// person needs (and never read out of bounds).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "images/program_check.h"
#include "tests/unit/vmm_test_elf.h"

namespace ember::image {
namespace {

using ember::testing::TestElf;
using ember::testing::TestSegment;

TestElf program() {
  TestElf e;
  e.notes.clear();
  e.note_segment = false;
  return e;
}

std::string check(const std::vector<uint8_t>& b) {
  auto r = inspect_program(b.data(), b.size());
  return r ? "ok" : r.message();
}

TEST(ProgramCheck, StaticExecutablesAndStaticPieAreAccepted) {
  EXPECT_EQ(check(program().build()), "ok");
  TestElf pie = program();
  pie.eh.e_type = ET_DYN;
  EXPECT_EQ(check(pie.build()), "ok");
}

TEST(ProgramCheck, DynamicProgramsNameTheirLoader) {
  TestElf e = program();
  TestSegment interp;
  interp.type = PT_INTERP;
  interp.filesz = interp.memsz = 28;
  e.segments.insert(e.segments.begin(), interp);
  std::vector<uint8_t> b = e.build();
  Elf64_Phdr ph;
  std::memcpy(&ph, b.data() + sizeof(Elf64_Ehdr), sizeof ph);
  const char loader[] = "/lib64/ld-linux-x86-64.so.2";
  std::memcpy(b.data() + ph.p_offset, loader, sizeof loader);
  auto info = inspect_program(b.data(), b.size());
  ASSERT_TRUE(info) << info.message();
  EXPECT_EQ(info->interpreter, loader);
  // A loader name that points past the end, or is not NUL-terminated in its
  // segment, is refused, not read.
  std::memcpy(b.data() + ph.p_offset, "/lib64/ld-linux-x86-64.so.2X", 28);
  EXPECT_NE(check(b).find("malformed PT_INTERP"), std::string::npos) << check(b);
  ph.p_offset = b.size() + 100;
  std::memcpy(b.data() + sizeof(Elf64_Ehdr), &ph, sizeof ph);
  EXPECT_NE(check(b).find("malformed PT_INTERP"), std::string::npos) << check(b);
}

TEST(ProgramCheck, TheHostsOwnDynamicBinaryNeedsLibc) {
  std::ifstream f("/bin/true", std::ios::binary);
  const std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(b.size(), 64u);
  auto info = inspect_program(b.data(), b.size());
  ASSERT_TRUE(info) << info.message();
  EXPECT_EQ(info->interpreter.rfind("/lib", 0), 0u) << info->interpreter;
  EXPECT_NE(std::find(info->needed.begin(), info->needed.end(), "libc.so.6"), info->needed.end());
  // A shared library is not a program's kind of file, and the reverse.
  std::ifstream lf("/lib/x86_64-linux-gnu/libc.so.6", std::ios::binary);
  const std::vector<uint8_t> libc((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
  ASSERT_GT(libc.size(), 64u);
  auto lib = inspect_library(libc.data(), libc.size());
  ASSERT_TRUE(lib) << lib.message();
  EXPECT_TRUE(lib->interpreter.empty());
  EXPECT_NE(std::find(lib->needed.begin(), lib->needed.end(), "ld-linux-x86-64.so.2"), lib->needed.end());
  const std::vector<uint8_t> exec = program().build();  // ET_EXEC
  EXPECT_FALSE(inspect_library(exec.data(), exec.size()));
}

TEST(ProgramCheck, WrongKindsOfFileSayWhy) {
  struct Case {
    void (*edit)(TestElf&);
    const char* needle;
  } cases[] = {
      {[](TestElf& e) { e.eh.e_ident[EI_CLASS] = ELFCLASS32; }, "32-bit"},
      {[](TestElf& e) { e.eh.e_ident[EI_DATA] = ELFDATA2MSB; }, "big-endian"},
      {[](TestElf& e) { e.eh.e_machine = EM_AARCH64; }, "another machine (ELF e_machine 183)"},
      {[](TestElf& e) { e.eh.e_type = ET_REL; }, "not an executable"},
      {[](TestElf& e) { e.eh.e_type = ET_CORE; }, "not an executable"},
      {[](TestElf& e) { e.segments[0].type = PT_NOTE; }, "no loadable segment"},
      {[](TestElf& e) { e.eh.e_phentsize = 32; }, "program headers of 32 bytes"},
      {[](TestElf& e) { e.eh.e_phnum = 0xffff; }, "truncated"},
      {[](TestElf& e) { e.eh.e_phoff = ~0ull - 8; }, "truncated"},
  };
  for (const auto& c : cases) {
    TestElf e = program();
    c.edit(e);
    EXPECT_NE(check(e.build()).find(c.needle), std::string::npos) << c.needle << " -> " << check(e.build());
  }
  TestElf none = program();
  none.segments.clear();
  EXPECT_NE(check(none.build()).find("no program headers"), std::string::npos);
  EXPECT_NE(check({'#', '!', '/', 'b'}).find("not an ELF file"), std::string::npos);
  std::vector<uint8_t> cut = program().build();
  cut.resize(40);
  EXPECT_NE(check(cut).find("truncated ELF file (40 bytes)"), std::string::npos);
}

}  // namespace
}  // namespace ember::image
