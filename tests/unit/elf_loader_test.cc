// The guest-kernel ELF loader on well-formed and hostile inputs: every
// malformed file is refused with an error that says what is wrong, never
// read out of bounds (the fuzzer, tests/fuzz/fuzz_elf_loader.cc, checks that
// part harder).
#include <gtest/gtest.h>

#include "tests/unit/vmm_test_elf.h"
#include "vmm/elf_loader.h"

namespace ember {
namespace {

using testing::TestElf;
using testing::TestSegment;

Result<KernelImage> parse(const std::vector<uint8_t>& f) { return parse_kernel_elf(f, "k.elf"); }

void expect_error(const std::vector<uint8_t>& f, const std::string& needle) {
  auto r = parse(f);
  ASSERT_FALSE(r.ok()) << "accepted; expected an error containing: " << needle;
  EXPECT_NE(r.message().find(needle), std::string::npos) << r.message();
  EXPECT_EQ(r.message().rfind("kernel k.elf: ", 0), 0u) << r.message();
}

TEST(ElfLoader, AcceptsAMinimalKernel) {
  TestElf e;
  e.notes.push_back(testing::pvh_note(0x100040));
  auto r = parse(e.build());
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->segments.size(), 1u);
  EXPECT_EQ(r->segments[0].paddr, abi::kKernelMin);
  EXPECT_EQ(r->note.abi_version, abi::kGuestAbiVersion);
  EXPECT_EQ(r->note.runtime_entry, abi::kKernelMin);
  ASSERT_TRUE(r->pvh_entry.has_value());
  EXPECT_EQ(*r->pvh_entry, 0x100040u);
  EXPECT_EQ(r->lowest, abi::kKernelMin);
  EXPECT_EQ(r->highest, abi::kKernelMin + 0x1000);
}

TEST(ElfLoader, RejectsNonElf) {
  expect_error({}, "not an ELF file");
  expect_error(std::vector<uint8_t>(100, 0x90), "not an ELF file");
  expect_error({0x7f, 'E', 'L'}, "not an ELF file");
}

TEST(ElfLoader, RejectsWrongClassEndiannessMachineType) {
  TestElf e;
  auto f = e.build();
  f[EI_CLASS] = ELFCLASS32;
  expect_error(f, "not a 64-bit ELF");
  f = e.build();
  f[EI_DATA] = ELFDATA2MSB;
  expect_error(f, "little-endian");
  e.eh.e_machine = EM_AARCH64;
  expect_error(e.build(), "wrong architecture (e_machine=183");
  e = TestElf();
  e.eh.e_type = ET_DYN;
  expect_error(e.build(), "e_type=3");
}

TEST(ElfLoader, RejectsTruncatedHeaders) {
  auto f = TestElf().build();
  expect_error(std::vector<uint8_t>(f.begin(), f.begin() + 20), "truncated ELF header");
  // Header complete, program headers cut off.
  expect_error(std::vector<uint8_t>(f.begin(), f.begin() + sizeof(Elf64_Ehdr) + 10), "program headers");
}

TEST(ElfLoader, RejectsProgramHeadersOutsideTheFile) {
  TestElf e;
  e.eh.e_phoff = 0xfffffffffffffff0ull;  // offset + size overflows
  expect_error(e.build(), "run past the end of the file");
  e.eh.e_phoff = 1ull << 40;
  expect_error(e.build(), "run past the end of the file");
  e = TestElf();
  e.eh.e_phentsize = 8;
  expect_error(e.build(), "bad program header size");
  e = TestElf();
  e.eh.e_phnum = 0xffff;  // claims far more headers than the file holds
  expect_error(e.build(), "run past the end of the file");
}

TEST(ElfLoader, RejectsSegmentFileRangeOutsideTheFile) {
  TestElf e;
  e.segments[0].offset = 1ull << 30;
  expect_error(e.build(), "segment 0: file range");
  e.segments[0].offset = 0xffffffffffff0000ull;  // offset + filesz overflows
  expect_error(e.build(), "segment 0: file range");
}

TEST(ElfLoader, RejectsFileSizeAboveMemorySize) {
  TestElf e;
  e.segments[0].memsz = 0x800;
  expect_error(e.build(), "exceeds memory size");
}

TEST(ElfLoader, RejectsSegmentsOutsideTheKernelWindow) {
  TestElf e;
  e.segments.push_back(TestSegment{PT_LOAD, abi::kProgramMin - 0x800, 0x1000, 0x1000});
  expect_error(e.build(), "segment 1 [0x3ff800,0x400800) outside [0x100000,0x400000)");
  e = TestElf();
  e.segments[0].paddr = 0x1000;  // below the window: would overwrite the page tables
  expect_error(e.build(), "outside [0x100000,0x400000)");
  e = TestElf();
  e.segments[0].memsz = 0xfffffffffffff000ull;  // paddr + memsz overflows
  e.segments[0].filesz = 0x1000;
  expect_error(e.build(), "segment 0 [0x100000,overflow)");
}

TEST(ElfLoader, RejectsOverlappingSegments) {
  TestElf e;
  e.segments.push_back(TestSegment{PT_LOAD, abi::kKernelMin + 0x800, 0x100, 0x100});
  expect_error(e.build(), "segments 0 and 1 overlap");
  // Listed out of order: still found, named by their indices.
  e = TestElf();
  e.segments = {TestSegment{PT_LOAD, abi::kKernelMin + 0x2000, 0x1000, 0x3000},
                TestSegment{PT_LOAD, abi::kKernelMin, 0x1000, 0x1000},
                TestSegment{PT_LOAD, abi::kKernelMin + 0x4000, 0x100, 0x100}};
  expect_error(e.build(), "segments 0 and 2 overlap");
}

TEST(ElfLoader, AcceptsAdjacentSegmentsAndBss) {
  TestElf e;
  e.segments = {TestSegment{PT_LOAD, abi::kKernelMin, 0x1000, 0x1000},
                TestSegment{PT_LOAD, abi::kKernelMin + 0x1000, 0x10, 0x5000}};
  auto r = parse(e.build());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->highest, abi::kKernelMin + 0x6000);
}

TEST(ElfLoader, RequiresTheEmberNote) {
  TestElf e;
  e.notes.clear();
  expect_error(e.build(), "no Ember note (is this ember-guest.elf?)");
  e.notes = {testing::pvh_note(0x100000)};
  expect_error(e.build(), "no Ember note");
  e.note_segment = false;
  expect_error(e.build(), "no Ember note");
}

TEST(ElfLoader, ChecksTheNoteVersionAndSize) {
  TestElf e;
  e.notes = {testing::ember_note(abi::kKernelMin, abi::kKernelMin + 0x100, 7)};
  expect_error(e.build(), "ABI version 7");
  e.notes = {testing::ember_note()};
  e.notes[0].desc.resize(16);
  expect_error(e.build(), "Ember note too short");
}

TEST(ElfLoader, ChecksNoteAddressesLieInLoadedSegments) {
  TestElf e;
  e.notes = {testing::ember_note(0x300000)};
  expect_error(e.build(), "runtime_entry 0x300000 is not inside a loaded segment");
  // The fault table is read by the VMM: all 256 bytes must be inside.
  e.notes = {testing::ember_note(abi::kKernelMin, abi::kKernelMin + 0x1000 - 8)};
  expect_error(e.build(), "fault_handlers");
}

TEST(ElfLoader, SkipsTruncatedNotes) {
  TestElf e;
  e.notes = {testing::TestNote{"Ember", abi::kGuestNoteType, std::vector<uint8_t>(8)}};
  auto f = e.build();
  // Make the (only) note claim a huge descriptor: the scan must stop, not read past.
  const size_t notes_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  const uint32_t huge = 0xfffffff0u;
  std::memcpy(f.data() + notes_at + 4, &huge, 4);
  expect_error(f, "no Ember note");
}

TEST(ElfLoader, LoadCopiesSegmentsAndZeroesBss) {
  TestElf e;
  e.segments = {TestSegment{PT_LOAD, abi::kKernelMin, 0x1000, 0x1000},
                TestSegment{PT_LOAD, abi::kKernelMin + 0x1000, 0x10, 0x2000}};
  auto f = e.build();
  auto k = parse(f);
  ASSERT_TRUE(k.ok()) << k.message();
  auto mem = GuestMemory::create(16 << 20);
  ASSERT_TRUE(mem.ok()) << mem.message();
  std::memset(mem->ram() + abi::kKernelMin, 0x55, 0x4000);  // dirty: bss must be cleared
  ASSERT_TRUE(load_kernel(*k, f, *mem).ok());
  EXPECT_EQ(mem->ram()[abi::kKernelMin], 0xcc);
  EXPECT_EQ(mem->ram()[abi::kKernelMin + 0x1000 + 0xf], 0xcc);
  EXPECT_EQ(mem->ram()[abi::kKernelMin + 0x1000 + 0x10], 0);
  EXPECT_EQ(mem->ram()[abi::kKernelMin + 0x2fff], 0);
  EXPECT_EQ(mem->ram()[abi::kKernelMin + 0x3000], 0x55);
}

}  // namespace
}  // namespace ember
