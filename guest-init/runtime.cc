// The runtime's start: from the boot info to the program's first
// instruction, all in ring 3. Reads the image, loads the executable, builds
// its stack and jumps.
#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "guest-init/stdio.h"
#include "guest-init/direct_map.h"
#include "guest-init/elf_loader.h"
#include "guest-init/initial_stack.h"
#include "guest-init/klib.h"
#include "guest-init/path.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

constinit Runtime g_rt;

namespace {

using namespace lx;

constexpr uint64_t kStackReserve = 8ull << 20;
constexpr uint64_t kPieBase = 0x1000000;  // 16 MiB, where RAM allows
constexpr uint32_t kStatusCannotRun = 127;  // as a shell reports "cannot execute"

// Tells the user why nothing ran: on stderr (the VMM passes it through) and
// in the VMM's log; then exits with 127.
[[noreturn]] void fail(const char* what, const char* why) {
  char line[512];
  TextBuf t(line, sizeof line);
  t.str("ember-guest: ").str(what).str(": ").str(why).ch('\n');
  g_stdio.append(2, reinterpret_cast<const uint8_t*>(t.data()), t.size());
  g_stdio.commit(2);
  g_stdio.flush_all();
  TextBuf l(line, t.size() - 1);  // the same text, without the newline
  l.bytes(line, t.size() - 1);
  g_platform.log(LogLevel::kError, l);
  g_platform.exit_program(kStatusCannotRun);
}

void zero_range(uint64_t addr, uint64_t len) { memset(reinterpret_cast<void*>(addr), 0, len); }
void copy_range(uint64_t dst, uint64_t src, uint64_t len) {
  memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), len);
}

// File data lives in the program's address space, as tmpfs's in RAM.
uint64_t fs_alloc(uint64_t len) { return g_rt.mem.map(len); }
void fs_free(uint64_t addr, uint64_t len) { g_rt.mem.unmap(addr, len); }

const char* arg_at(const void* ctx, uint32_t i, uint32_t* len) {
  image::Bytes b = static_cast<const image::ImageReader*>(ctx)->arg(i);
  *len = b.size;
  return b.data;
}
const char* env_at(const void* ctx, uint32_t i, uint32_t* len) {
  image::Bytes b = static_cast<const image::ImageReader*>(ctx)->env(i);
  *len = b.size;
  return b.data;
}
// A dynamic program's interpreter (ld.so, named by its PT_INTERP), loaded
// from the image where Linux puts it: in the mmap area, anywhere. Returns its
// plan (entry, and lo: AT_BASE).
LoadPlan load_interpreter(const image::ImageFile& exec, const LoadPlan& program) {
  const char* raw = reinterpret_cast<const char*>(exec.data + program.interp_offset);
  char path[kPathMax];
  const int32_t len = normalise_path("", 0, raw, program.interp_len, path, sizeof path - 1);
  if (len < 0) fail(exec.path.data, "its dynamic loader's path is too long");
  path[len] = 0;
  const Lookup l = Files::lookup(path, static_cast<uint32_t>(len));
  if (l.kind != FileKind::kFile) {
    char why[kPathMax + 160];
    TextBuf t(why, sizeof why);
    t.str("it is dynamically linked and its loader ").str(path).str(" is not in the image (ember-image pack adds it with the libraries; or link -static)");
    fail(exec.path.data, t.ch(0).data());
  }
  const image::ImageFile file = g_rt.image.file(l.index);
  // Its span first, then a place for it (aligned as its segments ask, at
  // most 2 MiB), then the plan at that place.
  constexpr uint64_t kSlack = 2ull << 20;
  LoadPlan plan;
  ElfError e = plan_elf(file.data, file.size, RamWindow{g_rt.mem.low(), g_rt.mem.high(), g_rt.mem.low()}, &plan);
  if (e == ElfError::kOk && plan.interp_len) fail(path, "the dynamic loader is itself dynamically linked");
  if (e == ElfError::kOk) {
    const uint64_t room = plan.hi - plan.lo + kSlack;
    const uint64_t at = g_rt.mem.map(room);
    if (!at) fail(path, elf_error_text(ElfError::kNoRoom));
    e = plan_elf(file.data, file.size, RamWindow{at, at + room, at}, &plan);
  }
  if (e != ElfError::kOk) fail(path, elf_error_text(e));
  load_elf(file.data, plan, nullptr);
  return plan;
}

const char* exec_as_argv0(const void*, uint32_t, uint32_t* len) {
  *len = g_rt.exec_path_len;
  return g_rt.exec_path;
}

void init_rlimits() {
  for (auto& r : g_rt.rlimits) r = Rlimit{RLIM_INFINITY, RLIM_INFINITY};
  g_rt.rlimits[RLIMIT_STACK] = Rlimit{kStackReserve, RLIM_INFINITY};
  g_rt.rlimits[RLIMIT_NOFILE] = Rlimit{Files::kMaxFds, Files::kMaxFds};
  g_rt.rlimits[RLIMIT_CORE] = Rlimit{0, RLIM_INFINITY};
}

}  // namespace

void random_bytes(void* out, uint64_t n) {
  const uint64_t gen = g_platform.generation();
  if (gen != g_rt.rng_generation) {
    // Restored or reset: the snapshot's RNG state is shared by every VM
    // restored from it; the VMM's fresh seed makes this one's its own.
    uint8_t seed[32];
    g_platform.take_seed(seed);
    g_rt.rng.mix(seed);
    memset(seed, 0, sizeof seed);
    g_rt.rng_generation = gen;
  }
  g_rt.rng.fill(out, n);
}

[[noreturn]] void runtime_main(const abi::BootInfo* info) {
  if (!g_platform.init(info)) {
    for (;;) cpu_relax();  // not a boot info: nobody to tell; the VMM's deadline ends this
  }
  g_stats.tsc_runtime_start = rdtsc();
  const abi::BootInfo& bi = g_platform.boot();
  g_rt.clock.init(bi.tsc_khz, bi.boot_tsc, bi.realtime_ns);
  g_rt.clock.follow(&bi.boot_tsc, &bi.realtime_ns);
  uint8_t seed[32];
  g_platform.take_seed(seed);
  g_rt.rng.seed(seed, cpuid(1).ecx & (1u << 30));
  memset(seed, 0, sizeof seed);
  g_rt.rng_generation = g_platform.generation();
  g_stdio.init();
  g_rt.files.init();
  init_rlimits();
  g_rt.umask = 022;
  g_rt.cwd = Lookup{FileKind::kDir, 0, 0};

  // The image.
  image::ImageStatus st = g_rt.image.open(reinterpret_cast<const uint8_t*>(bi.image_gpa), bi.image_size);
  if (st != image::ImageStatus::kOk) fail("image", image::image_status_text(st));
  const image::ImageFile exec = g_rt.image.file(g_rt.image.exec_index());
  g_rt.exec_path = exec.path.data;
  g_rt.exec_path_len = exec.path.size;

  // The program's RAM: [kProgramMin, mem_size), minus an image that a PVH
  // loader placed inside RAM (keep the larger side).
  uint64_t low = abi::kProgramMin, high = page_down(bi.mem_size);
  const uint64_t img_lo = page_down(bi.image_gpa), img_hi = page_up(bi.image_gpa + bi.image_size);
  if (img_lo < high && img_hi > low) {
    if (img_lo > low && img_lo - low >= (high > img_hi ? high - img_hi : 0)) high = img_lo;
    else low = img_hi;
  }
  if (high <= low) fail(exec.path.data, "no RAM left for the program");
  uint64_t stack_reserve = kStackReserve;
  if ((high - low) / 2 < stack_reserve) stack_reserve = page_down((high - low) / 4);
  g_rt.mem.init(low, high, zero_range, copy_range);
  g_rt.fs.init(MemFs::Alloc{fs_alloc, fs_free, copy_range});
  uint32_t tmp;
  (void)g_rt.fs.create("/tmp", 4, MemFs::Kind::kDir, 01777, g_rt.clock.realtime_ns(), &tmp);

  LoadPlan plan;
  const RamWindow window{low, high - stack_reserve, kPieBase};
  ElfError e = plan_elf(exec.data, exec.size, window, &plan);
  if (e != ElfError::kOk) fail(exec.path.data, elf_error_text(e));
  // Read-only segments straight from the image where possible, the rest
  // copied (see direct_map.h).
  bool direct[LoadPlan::kMaxSegments] = {};
  plan_direct_map(plan, reinterpret_cast<uint64_t>(exec.data), direct);
  apply_direct_map(plan, reinterpret_cast<uint64_t>(exec.data), direct);
  load_elf(exec.data, plan, direct);
  if (!g_rt.mem.set_layout(plan.hi, stack_reserve)) fail(exec.path.data, elf_error_text(ElfError::kNoRoom));
  // A dynamic program starts in its interpreter, which finds the program
  // through AT_PHDR and AT_ENTRY and itself through AT_BASE.
  uint64_t entry = plan.entry, interp_base = 0;
  if (plan.interp_len) {
    const LoadPlan interp = load_interpreter(exec, plan);
    entry = interp.entry;
    interp_base = interp.lo;
  }

  // The stack, at the top of the program's RAM.
  StackSpec spec{};
  if (g_rt.image.arg_count()) spec.argv = StringSource{g_rt.image.arg_count(), &g_rt.image, arg_at};
  else spec.argv = StringSource{1, nullptr, exec_as_argv0};
  spec.envp = StringSource{g_rt.image.env_count(), &g_rt.image, env_at};
  spec.execfn = g_rt.exec_path;
  spec.execfn_len = g_rt.exec_path_len;
  random_bytes(spec.random, sizeof spec.random);
  spec.phdr = plan.phdr;
  spec.phent = plan.phentsize;
  spec.phnum = plan.phnum;
  spec.entry = plan.entry;
  spec.base = interp_base;
  spec.hwcap = cpuid(1).edx;
  spec.hwcap2 = 0;  // no FSGSBASE: user space must not use wrfsbase
  spec.clktck = 100;
  // Linux maps the program headers; if no segment holds them, copy them
  // just below the stack strings (AT_PHDR must point at real headers).
  const uint64_t top = high;
  uint8_t* window_lo = reinterpret_cast<uint8_t*>(top - stack_reserve);
  uint64_t stack_top = top;
  if (!spec.phdr) {
    const uint64_t bytes = uint64_t{plan.phnum} * plan.phentsize;
    stack_top = (top - bytes) & ~uint64_t{15};
    memcpy(reinterpret_cast<void*>(stack_top), exec.data + plan.phoff, bytes);
    spec.phdr = stack_top;
  }
  const uint64_t sp = build_initial_stack(window_lo, stack_top - (top - stack_reserve), stack_top, spec);
  if (!sp) fail(exec.path.data, "argv and environment do not fit in the stack");
  g_stats.tsc_program_start = rdtsc();
  ember_enter_program(entry, sp);
}

}  // namespace ember::guest

extern "C" [[noreturn]] void ember_runtime_main(const ember::abi::BootInfo* info) {
  ember::guest::runtime_main(info);
}
