// Unit tests of the guest kernel's pure logic (guest-init/), compiled for
// the host: path normalisation, the address-space allocator, ELF load
// planning, the initial stack, ChaCha20 (with the reseed after a restore).
//
// The guest sources are freestanding and not part of any host library, so
// they are compiled into this test directly (each .cc exactly once).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "guest-init/address_space.cc"
#include "guest-init/chacha20.cc"
#include "guest-init/elf_loader.cc"
#include "guest-init/initial_stack.cc"
#include "guest-init/path.cc"

namespace ember::guest {
namespace {

// ------------------------------------------------------------------ paths

std::string norm(const std::string& base, const std::string& path) {
  char out[kPathMax];
  int32_t n = normalise_path(base.data(), static_cast<uint32_t>(base.size()), path.data(),
                             static_cast<uint32_t>(path.size()), out, sizeof out);
  return n < 0 ? "<error>" : std::string(out, static_cast<size_t>(n));
}

TEST(GuestPath, Normalises) {
  EXPECT_EQ(norm("", "/"), "/");
  EXPECT_EQ(norm("", "/a/b"), "/a/b");
  EXPECT_EQ(norm("", "//a///b/"), "/a/b");
  EXPECT_EQ(norm("", "/a/./b/."), "/a/b");
  EXPECT_EQ(norm("", "/a/../b"), "/b");
  EXPECT_EQ(norm("", "/../../x"), "/x");
  EXPECT_EQ(norm("", "/a/b/../.."), "/");
  EXPECT_EQ(norm("", "x"), "/x");
  EXPECT_EQ(norm("/app", "main.lua"), "/app/main.lua");
  EXPECT_EQ(norm("/app/lib", "../main.lua"), "/app/main.lua");
  EXPECT_EQ(norm("/app", "/etc/x"), "/etc/x");
  EXPECT_EQ(norm("/app", "."), "/app");
  EXPECT_EQ(norm("/app", ""), "/app");
}

TEST(GuestPath, RejectsWhatDoesNotFit) {
  char out[8];
  EXPECT_EQ(normalise_path("", 0, "/abcdefgh", 9, out, sizeof out), -1);
  EXPECT_EQ(normalise_path("", 0, "/abcdef", 7, out, sizeof out), 7);
  EXPECT_STREQ(out, "/abcdef");
}

// ------------------------------------------------------------------ address space

struct Touches {
  std::vector<std::pair<uint64_t, uint64_t>> zeroed;
  std::vector<std::pair<uint64_t, uint64_t>> copied;  // (dst, len)
  uint64_t zeroed_bytes() const {
    uint64_t n = 0;
    for (auto& z : zeroed) n += z.second;
    return n;
  }
};
Touches* g_touches = nullptr;
void record_zero(uint64_t a, uint64_t n) { g_touches->zeroed.push_back({a, n}); }
void record_copy(uint64_t d, uint64_t, uint64_t n) { g_touches->copied.push_back({d, n}); }

class GuestAddressSpace : public ::testing::Test {
 protected:
  void SetUp() override {
    g_touches = &t;
    as.init(0x400000, 0x8000000, record_zero, record_copy);  // 4 MiB .. 128 MiB
    ASSERT_TRUE(as.set_layout(0x512345, 8 << 20));
  }
  Touches t;
  AddressSpace as;
};

TEST_F(GuestAddressSpace, Layout) {
  EXPECT_EQ(as.brk_current(), 0x513000u);
  EXPECT_EQ(as.stack_bottom(), 0x8000000u - (8 << 20));
  EXPECT_EQ(as.mmap_low(), as.stack_bottom());
}

TEST_F(GuestAddressSpace, FreshMemoryIsNeverTouched) {
  uint64_t a = as.map(3 * 4096);
  EXPECT_EQ(a, as.stack_bottom() - 3 * 4096);
  uint64_t b = as.map(1);
  EXPECT_EQ(b, a - 4096);
  EXPECT_EQ(as.brk(0x600000), 0x600000u);
  EXPECT_EQ(as.brk(0x700001), 0x700001u);
  EXPECT_TRUE(t.zeroed.empty());
}

TEST_F(GuestAddressSpace, ReusedMemoryIsZeroedOnce) {
  uint64_t a = as.map(8 * 4096);
  as.unmap(a, 8 * 4096);
  EXPECT_TRUE(t.zeroed.empty()) << "munmap itself touches nothing";
  uint64_t b = as.map(2 * 4096);
  EXPECT_EQ(b, a + 6 * 4096) << "reuses the hole, top end first";
  ASSERT_EQ(t.zeroed.size(), 1u);
  EXPECT_EQ(t.zeroed[0], std::make_pair(b, uint64_t{2 * 4096}));
  uint64_t c = as.map(6 * 4096);
  EXPECT_EQ(c, a);
  EXPECT_EQ(t.zeroed_bytes(), 8u * 4096);
  EXPECT_EQ(as.holes(), 0u);
}

TEST_F(GuestAddressSpace, BrkShrinkAndRegrowZeroesOnlyUsedPages) {
  as.brk(0x600000);
  as.brk(0x520000);
  EXPECT_TRUE(t.zeroed.empty());
  as.brk(0x580000);
  ASSERT_EQ(t.zeroed.size(), 1u);
  EXPECT_EQ(t.zeroed[0], std::make_pair(uint64_t{0x520000}, uint64_t{0x60000}));
  as.brk(0x700000);  // beyond the old maximum: only [0x580000, 0x600000) was used
  ASSERT_EQ(t.zeroed.size(), 2u);
  EXPECT_EQ(t.zeroed[1], std::make_pair(uint64_t{0x580000}, uint64_t{0x80000}));
}

TEST_F(GuestAddressSpace, BrkCannotEnterMmapArea) {
  uint64_t a = as.map(1 << 20);
  EXPECT_EQ(as.brk(a + 1), as.brk_current());
  EXPECT_EQ(as.brk(a), a);
  EXPECT_EQ(as.map(4096), 0u) << "no room left between brk and mmap";
}

TEST_F(GuestAddressSpace, UnmappingTwiceTouchesNothing) {
  uint64_t a = as.map(4 * 4096);
  as.unmap(a, 4 * 4096);
  as.unmap(a, 4 * 4096);
  as.unmap(a + 4096, 4096);
  EXPECT_TRUE(t.zeroed.empty());
  EXPECT_EQ(as.holes(), 1u);
  EXPECT_EQ(as.map(4 * 4096), a);
  EXPECT_EQ(t.zeroed_bytes(), 4u * 4096);
}

TEST_F(GuestAddressSpace, HolesMerge) {
  uint64_t a = as.map(4096), b = as.map(4096), c = as.map(4096);
  as.unmap(a, 4096);
  as.unmap(c, 4096);
  EXPECT_EQ(as.holes(), 2u);
  as.unmap(b, 4096);
  EXPECT_EQ(as.holes(), 1u);
  EXPECT_EQ(as.map(3 * 4096), c);
}

TEST_F(GuestAddressSpace, RemapGrowsInPlaceOrMoves) {
  uint64_t a = as.map(4 * 4096);
  uint64_t b = as.map(4 * 4096);  // below a
  as.unmap(a + 2 * 4096, 2 * 4096);
  // Shrink in place.
  EXPECT_EQ(as.remap(b, 4 * 4096, 2 * 4096, false), b);
  // Grow in place into the hole it just left.
  EXPECT_EQ(as.remap(b, 2 * 4096, 3 * 4096, false), b);
  // Grow a beyond its hole: must move (and copy the old bytes).
  EXPECT_EQ(as.remap(a, 2 * 4096, 8 * 4096, false), 0u);
  uint64_t moved = as.remap(a, 2 * 4096, 8 * 4096, true);
  ASSERT_NE(moved, 0u);
  EXPECT_NE(moved, a);
  ASSERT_EQ(t.copied.size(), 1u);
  EXPECT_EQ(t.copied[0], std::make_pair(moved, uint64_t{2 * 4096}));
}

TEST_F(GuestAddressSpace, MapFixedZeroesUsedPartsOnly) {
  uint64_t a = as.map(4 * 4096);
  // Over used memory: zeroed.
  EXPECT_TRUE(as.map_fixed(a, 2 * 4096));
  EXPECT_EQ(t.zeroed_bytes(), 2u * 4096);
  // In the untouched gap: not zeroed, and the mmap area grows to cover it.
  t.zeroed.clear();
  uint64_t low = as.mmap_low();
  EXPECT_TRUE(as.map_fixed(low - 16 * 4096, 4 * 4096));
  EXPECT_TRUE(t.zeroed.empty());
  EXPECT_EQ(as.mmap_low(), low - 16 * 4096);
  // The rest of the gap between the fixed range and the old mmap_low is a
  // clean hole: handing it out touches nothing.
  uint64_t h = as.map(12 * 4096);
  EXPECT_EQ(h, low - 12 * 4096);
  EXPECT_TRUE(t.zeroed.empty());
  // Outside the program's RAM: refused.
  EXPECT_FALSE(as.map_fixed(0x100000, 4096));
  EXPECT_FALSE(as.map_fixed(0x8000000, 4096));
}

TEST_F(GuestAddressSpace, DiscardZeroes) {
  uint64_t a = as.map(4 * 4096);
  as.discard(a + 10, 4096);  // page-rounded outwards
  ASSERT_EQ(t.zeroed.size(), 1u);
  EXPECT_EQ(t.zeroed[0], std::make_pair(a, uint64_t{2 * 4096}));
}

TEST_F(GuestAddressSpace, ManyHolesNeverDoubleAllocate) {
  std::vector<uint64_t> blocks;
  for (int i = 0; i < 600; i++) blocks.push_back(as.map(4096));
  for (size_t i = 0; i < blocks.size(); i += 2) as.unmap(blocks[i], 4096);  // 300 holes > kMaxHoles
  EXPECT_LE(as.holes(), AddressSpace::kMaxHoles);
  std::vector<uint64_t> again;
  for (int i = 0; i < 300; i++) again.push_back(as.map(4096));
  std::sort(again.begin(), again.end());
  for (size_t i = 1; i < again.size(); i++) EXPECT_NE(again[i], again[i - 1]);
  for (size_t i = 1; i < blocks.size(); i += 2)
    EXPECT_FALSE(std::binary_search(again.begin(), again.end(), blocks[i])) << "still in use";
}

// ------------------------------------------------------------------ ELF planning

struct ElfBuilder {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(4096, 0);
  uint16_t phnum = 0;
  ElfBuilder(uint16_t type, uint64_t entry) {
    const uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    std::memcpy(bytes.data(), ident, sizeof ident);
    put16(16, type);
    put16(18, 62);
    put32(20, 1);
    put64(24, entry);
    put64(32, 64);  // phoff
    put16(52, 64);
    put16(54, 56);
  }
  void put16(size_t at, uint16_t v) { std::memcpy(&bytes[at], &v, 2); }
  void put32(size_t at, uint32_t v) { std::memcpy(&bytes[at], &v, 4); }
  void put64(size_t at, uint64_t v) { std::memcpy(&bytes[at], &v, 8); }
  ElfBuilder& ph(uint32_t type, uint64_t off, uint64_t vaddr, uint64_t filesz, uint64_t memsz, uint64_t align = 4096) {
    size_t at = 64 + size_t{phnum} * 56;
    put32(at, type);
    put32(at + 4, 5);
    put64(at + 8, off);
    put64(at + 16, vaddr);
    put64(at + 24, vaddr);
    put64(at + 32, filesz);
    put64(at + 40, memsz);
    put64(at + 48, align);
    put16(56, ++phnum);
    return *this;
  }
};

const RamWindow kRam{0x400000, 0x7800000, 0x1000000};

ElfError plan(const ElfBuilder& b, LoadPlan* p, const RamWindow& ram = kRam) {
  return plan_elf(b.bytes.data(), b.bytes.size(), ram, p);
}

TEST(GuestElf, StaticExecutable) {
  ElfBuilder b(2, 0x400100);
  b.ph(1, 0, 0x400000, 0x800, 0x800).ph(1, 0x800, 0x401800, 0x100, 0x5000);
  LoadPlan p;
  ASSERT_EQ(plan(b, &p), ElfError::kOk);
  EXPECT_EQ(p.bias, 0u);
  EXPECT_EQ(p.entry, 0x400100u);
  EXPECT_EQ(p.lo, 0x400000u);
  EXPECT_EQ(p.hi, 0x407000u);
  EXPECT_EQ(p.phdr, 0x400040u) << "headers inside the first segment";
  EXPECT_EQ(p.segment_count, 2u);
}

TEST(GuestElf, StaticPieGetsTheBase) {
  ElfBuilder b(3, 0x100);
  b.ph(1, 0, 0, 0x800, 0x800, 0x200000).ph(1, 0x800, 0x201800, 0x100, 0x100, 0x200000);
  LoadPlan p;
  ASSERT_EQ(plan(b, &p), ElfError::kOk);
  EXPECT_EQ(p.bias, 0x1000000u);
  EXPECT_EQ(p.entry, 0x1000100u);
  EXPECT_EQ(p.segments[1].vaddr, 0x1201800u);
  // Too little RAM for the preferred base: the lowest legal one.
  RamWindow small{0x400000, 0xc00000, 0x1000000};
  ASSERT_EQ(plan(b, &p, small), ElfError::kOk);
  EXPECT_EQ(p.bias, 0x400000u);
}

TEST(GuestElf, DynamicProgramsNameTheirInterpreter) {
  ElfBuilder b(3, 0x1040);
  const char interp[] = "/lib64/ld-linux-x86-64.so.2";
  std::memcpy(&b.bytes[0x200], interp, sizeof interp);
  b.ph(3, 0x200, 0x200, sizeof interp, sizeof interp).ph(1, 0, 0, 0x800, 0x2000);
  LoadPlan p;
  ASSERT_EQ(plan(b, &p), ElfError::kOk);
  EXPECT_EQ(p.interp_offset, 0x200u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b.bytes[p.interp_offset]), p.interp_len), interp);
  ElfBuilder s(2, 0x400100);
  s.ph(1, 0, 0x400000, 0x800, 0x800);
  ASSERT_EQ(plan(s, &p), ElfError::kOk);
  EXPECT_EQ(p.interp_len, 0u);  // static
}

TEST(GuestElf, Rejects) {
  LoadPlan p;
  {
    ElfBuilder b(2, 0x401000);
    b.bytes[0] = 0;
    EXPECT_EQ(plan(b, &p), ElfError::kNotElf);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.put16(18, 40);  // ARM
    EXPECT_EQ(plan(b, &p), ElfError::kNotX86_64);
  }
  {
    ElfBuilder b(1, 0);  // ET_REL
    EXPECT_EQ(plan(b, &p), ElfError::kNotExecutable);
  }
  // Relative, empty, a NUL inside (each with its terminating NUL).
  for (const std::string& interp : {std::string("lib/ld.so", 10), std::string("", 1), std::string("/a\0b", 5)}) {
    ElfBuilder b(2, 0x401000);
    std::memcpy(&b.bytes[0x200], interp.data(), interp.size());
    b.ph(3, 0x200, 0, interp.size(), interp.size()).ph(1, 0, 0x400000, 0x800, 0x800);
    EXPECT_EQ(plan(b, &p), ElfError::kBadInterp) << interp;
  }
  {
    ElfBuilder b(2, 0x401000);
    std::memcpy(&b.bytes[0x200], "/ld.so", 6);  // no NUL
    b.ph(3, 0x200, 0, 6, 6).ph(1, 0, 0x400000, 0x800, 0x800);
    EXPECT_EQ(plan(b, &p), ElfError::kBadInterp);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(3, 4090, 0, 20, 20).ph(1, 0, 0x400000, 0x800, 0x800);  // past the end of the file
    EXPECT_EQ(plan(b, &p), ElfError::kBadInterp);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(1, 0, 0x400000, 0x2000, 0x2000);  // file is 4096 bytes
    EXPECT_EQ(plan(b, &p), ElfError::kBadSegment);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(1, 0, 0x400000, 0x800, 0x100);  // filesz > memsz
    EXPECT_EQ(plan(b, &p), ElfError::kBadSegment);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(1, 0, 0xffffffffffff0000ull, 0x800, 0x20000);  // wraps
    EXPECT_EQ(plan(b, &p), ElfError::kBadSegment);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(1, 0, 0x400000, 0x800, 0x2000).ph(1, 0x800, 0x401000, 0x100, 0x100);  // overlap
    EXPECT_EQ(plan(b, &p), ElfError::kBadSegment);
  }
  {
    ElfBuilder b(2, 0x201000);
    b.ph(1, 0, 0x200000, 0x800, 0x2000);  // inside the kernel's range
    EXPECT_EQ(plan(b, &p), ElfError::kNoRoom);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.ph(1, 0, 0x400000, 0x800, 0x10000000);  // beyond RAM
    EXPECT_EQ(plan(b, &p), ElfError::kNoRoom);
  }
  {
    ElfBuilder b(2, 0x900000);
    b.ph(1, 0, 0x400000, 0x800, 0x800);
    EXPECT_EQ(plan(b, &p), ElfError::kBadEntry);
  }
  {
    ElfBuilder b(2, 0x401000);
    b.put64(32, 4000);  // phoff past the end with one header
    b.ph(1, 0, 0x400000, 0x800, 0x800);
    b.put64(32, 4090);
    EXPECT_EQ(plan(b, &p), ElfError::kBadHeaders);
  }
  {
    ElfBuilder b(2, 0x401000);
    EXPECT_EQ(plan(b, &p), ElfError::kBadHeaders) << "no program headers";
  }
}

TEST(GuestElf, NeverReadsPastTheFile) {
  // Every truncation of a valid file is either rejected or planned, never a
  // read past `size` (run under ASan to see it).
  ElfBuilder b(2, 0x400100);
  b.ph(1, 0, 0x400000, 0x800, 0x800).ph(1, 0x800, 0x401800, 0x100, 0x5000);
  for (size_t n = 0; n <= 0x900; n++) {
    std::vector<uint8_t> cut(b.bytes.begin(), b.bytes.begin() + static_cast<long>(n));
    LoadPlan p;
    ElfError e = plan_elf(cut.data(), cut.size(), kRam, &p);
    if (n < 0x900) {
      EXPECT_NE(e, ElfError::kOk) << n;
    }
  }
}

// ------------------------------------------------------------------ initial stack

const char* vec_at(const void* ctx, uint32_t i, uint32_t* len) {
  auto& v = *static_cast<const std::vector<std::string>*>(ctx);
  *len = static_cast<uint32_t>(v[i].size());
  return v[i].data();
}

TEST(GuestInitialStack, LinuxLayout) {
  std::vector<std::string> argv = {"prog", "two words", ""};
  std::vector<std::string> envp = {"A=1", "EMPTY="};
  std::vector<uint8_t> window(64 * 1024);
  const uint64_t top = 0x8000000;
  const uint64_t bottom = top - window.size();
  StackSpec s{};
  s.argv = {3, &argv, vec_at};
  s.envp = {2, &envp, vec_at};
  s.execfn = "/prog";
  s.execfn_len = 5;
  for (int i = 0; i < 16; i++) s.random[i] = static_cast<uint8_t>(i);
  s.phdr = 0x400040, s.phent = 56, s.phnum = 9, s.entry = 0x401000, s.hwcap = 0x178bfbff, s.clktck = 100;
  const uint64_t sp = build_initial_stack(window.data(), window.size(), top, s);
  ASSERT_NE(sp, 0u);
  EXPECT_EQ(sp % 16, 0u);
  auto word = [&](uint64_t gpa) {
    uint64_t v;
    std::memcpy(&v, &window[gpa - bottom], 8);
    return v;
  };
  auto str = [&](uint64_t gpa) { return std::string(reinterpret_cast<const char*>(&window[gpa - bottom])); };
  EXPECT_EQ(word(sp), 3u);
  EXPECT_EQ(str(word(sp + 8)), "prog");
  EXPECT_EQ(str(word(sp + 16)), "two words");
  EXPECT_EQ(str(word(sp + 24)), "");
  EXPECT_EQ(word(sp + 32), 0u);
  EXPECT_EQ(str(word(sp + 40)), "A=1");
  EXPECT_EQ(str(word(sp + 48)), "EMPTY=");
  EXPECT_EQ(word(sp + 56), 0u);
  std::map<uint64_t, uint64_t> aux;
  for (uint64_t at = sp + 64;; at += 16) {
    aux[word(at)] = word(at + 8);
    if (word(at) == 0) break;
  }
  EXPECT_EQ(aux[3], 0x400040u);   // AT_PHDR
  EXPECT_EQ(aux[5], 9u);          // AT_PHNUM
  EXPECT_EQ(aux[6], 4096u);       // AT_PAGESZ
  EXPECT_EQ(aux[9], 0x401000u);   // AT_ENTRY
  EXPECT_EQ(aux[17], 100u);       // AT_CLKTCK
  EXPECT_EQ(aux[23], 0u);         // AT_SECURE
  EXPECT_EQ(str(aux[15]), "x86_64");
  EXPECT_EQ(str(aux[31]), "/prog");
  ASSERT_TRUE(aux.count(25));
  for (int i = 0; i < 16; i++) EXPECT_EQ(window[aux[25] - bottom + static_cast<uint64_t>(i)], i);
  EXPECT_TRUE(aux.count(0));
}

TEST(GuestInitialStack, TooBigIsRefused) {
  std::vector<std::string> argv(100, std::string(1000, 'x'));
  std::vector<std::string> none;
  std::vector<uint8_t> window(64 * 1024);
  StackSpec s{};
  s.argv = {100, &argv, vec_at};
  s.envp = {0, &none, vec_at};
  s.execfn = "/p";
  s.execfn_len = 2;
  EXPECT_EQ(build_initial_stack(window.data(), window.size(), 0x8000000, s), 0u);
}

// ------------------------------------------------------------------ ChaCha20

TEST(GuestChaCha20, Rfc8439BlockFunction) {
  // RFC 8439 section 2.3.2.
  uint32_t key[8];
  for (int i = 0; i < 8; i++)
    key[i] = uint32_t(4 * i) | uint32_t(4 * i + 1) << 8 | uint32_t(4 * i + 2) << 16 | uint32_t(4 * i + 3) << 24;
  const uint32_t nonce[3] = {0x09000000, 0x4a000000, 0x00000000};
  uint8_t out[64];
  chacha20_block(key, 1, nonce, out);
  const uint8_t expected[16] = {0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15,
                                0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4};
  EXPECT_EQ(std::memcmp(out, expected, 16), 0);
  EXPECT_EQ(out[63], 0x4e);
}

TEST(GuestChaCha20, RngNeverRepeatsAndSpansBlocks) {
  uint8_t seed[32] = {1, 2, 3};
  Rng a, b;
  a.seed(seed, false);
  b.seed(seed, false);
  uint8_t x[100], y[100];
  a.fill(x, 100);
  b.fill(y, 37);
  b.fill(y + 37, 63);
  EXPECT_EQ(std::memcmp(x, y, 100), 0) << "same stream however it is split";
  uint8_t z[100];
  a.fill(z, 100);
  EXPECT_NE(std::memcmp(x, z, 100), 0);
}

TEST(GuestChaCha20, RdrandMakesClonesDiverge) {
  // Two copies of one state (a snapshot restored twice) must not produce
  // the same bytes once the CPU's RDRAND is mixed in.
  uint8_t seed[32] = {9};
  Rng a;
  a.seed(seed, __builtin_cpu_supports("rdrnd"));
  if (!__builtin_cpu_supports("rdrnd")) GTEST_SKIP() << "no RDRAND on this CPU";
  Rng b = a;
  uint8_t x[64], y[64];
  a.fill(x, 64);
  b.fill(y, 64);
  EXPECT_NE(std::memcmp(x, y, 64), 0);
}

TEST(GuestChaCha20, FreshSeedMakesClonesDivergeWithoutRdrand) {
  // Restore awareness: two copies of one state (a snapshot restored twice),
  // each given its own seed by its VMM, share nothing from then on, not
  // even the rest of a block computed before the snapshot.
  uint8_t seed[32] = {5};
  Rng a;
  a.seed(seed, false);
  uint8_t first[8];
  a.fill(first, sizeof first);  // leaves 24 bytes of the block buffered
  Rng b = a, c = a;
  uint8_t s1[32] = {1}, s2[32] = {2};
  a.mix(s1);
  b.mix(s2);
  uint8_t x[64], y[64], z[64];
  a.fill(x, 64);
  b.fill(y, 64);
  c.fill(z, 64);  // not restored: carries on with the old stream
  EXPECT_NE(std::memcmp(x, y, 64), 0);
  EXPECT_NE(std::memcmp(x, z, 24), 0);
  EXPECT_NE(std::memcmp(y, z, 24), 0);
  // Deterministic given the seed (host tests run without RDRAND).
  Rng d;
  d.seed(seed, false);
  d.fill(first, sizeof first);
  d.mix(s1);
  uint8_t w[64];
  d.fill(w, 64);
  EXPECT_EQ(std::memcmp(x, w, 64), 0);
}

}  // namespace
}  // namespace ember::guest
