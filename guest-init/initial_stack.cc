#include "guest-init/initial_stack.h"

#include "guest-init/klib.h"

namespace ember::guest {
namespace {
// auxv keys (include/uapi/linux/auxvec.h); spelled out here because the
// host build of this file (unit tests) has libc macros of the usual names.
enum : uint64_t {
  kAtNull = 0, kAtPhdr = 3, kAtPhent = 4, kAtPhnum = 5, kAtPagesz = 6, kAtBase = 7, kAtFlags = 8, kAtEntry = 9,
  kAtUid = 11, kAtEuid = 12, kAtGid = 13, kAtEgid = 14, kAtPlatform = 15, kAtHwcap = 16, kAtClktck = 17,
  kAtSecure = 23, kAtRandom = 25, kAtHwcap2 = 26, kAtExecfn = 31,
};
}  // namespace

uint64_t build_initial_stack(uint8_t* window, uint64_t window_size, uint64_t top, const StackSpec& spec) {
  const uint64_t bottom = top - window_size;
  auto host = [&](uint64_t gpa) { return window + (gpa - bottom); };
  uint64_t sp = top;
  bool overflow = false;
  // Pushes bytes (plus a NUL if asked) and returns their guest address.
  auto push_bytes = [&](const void* data, uint64_t n, bool nul) -> uint64_t {
    uint64_t need = n + (nul ? 1 : 0);
    if (overflow || sp - bottom < need + 4096) {  // keep a page for the vectors' start
      overflow = true;
      return 0;
    }
    sp -= need;
    memcpy(host(sp), data, n);
    if (nul) host(sp)[n] = 0;
    return sp;
  };

  const uint64_t random_at = push_bytes(spec.random, 16, false);
  const uint64_t platform_at = push_bytes("x86_64", 6, true);
  const uint64_t execfn_at = push_bytes(spec.execfn, spec.execfn_len, true);
  // Strings in reverse so that argv[0] ends lowest, as Linux lays them out.
  // Their addresses are recomputed below instead of being stored.
  for (uint32_t i = spec.envp.count; i-- > 0;) {
    uint32_t len;
    const char* s = spec.envp.at(spec.envp.ctx, i, &len);
    push_bytes(s, len, true);
  }
  for (uint32_t i = spec.argv.count; i-- > 0;) {
    uint32_t len;
    const char* s = spec.argv.at(spec.argv.ctx, i, &len);
    push_bytes(s, len, true);
  }
  if (overflow) return 0;
  const uint64_t strings_at = sp;

  struct Aux {
    uint64_t key, value;
  };
  const Aux aux[] = {
      {kAtPhdr, spec.phdr},       {kAtPhent, spec.phent},   {kAtPhnum, spec.phnum},     {kAtPagesz, kPage},
      {kAtBase, spec.base},               {kAtFlags, 0},            {kAtEntry, spec.entry},     {kAtUid, 0},
      {kAtEuid, 0},               {kAtGid, 0},              {kAtEgid, 0},               {kAtSecure, 0},
      {kAtRandom, random_at},     {kAtHwcap, spec.hwcap},   {kAtHwcap2, spec.hwcap2},   {kAtClktck, spec.clktck},
      {kAtPlatform, platform_at}, {kAtExecfn, execfn_at},   {kAtNull, 0},
  };
  const uint64_t naux = sizeof(aux) / sizeof(aux[0]);
  const uint64_t words = 1 + uint64_t{spec.argv.count} + 1 + uint64_t{spec.envp.count} + 1 + 2 * naux;
  uint64_t vec = (strings_at - words * 8) & ~uint64_t{15};
  if (vec < bottom || strings_at - bottom < words * 8 + 16) return 0;

  auto put = [&](uint64_t gpa, uint64_t v) { memcpy(host(gpa), &v, 8); };
  uint64_t w = vec;
  put(w, spec.argv.count), w += 8;
  uint64_t str = strings_at;
  for (uint32_t i = 0; i < spec.argv.count; i++) {
    uint32_t len;
    spec.argv.at(spec.argv.ctx, i, &len);
    put(w, str), w += 8;
    str += uint64_t{len} + 1;
  }
  put(w, 0), w += 8;
  for (uint32_t i = 0; i < spec.envp.count; i++) {
    uint32_t len;
    spec.envp.at(spec.envp.ctx, i, &len);
    put(w, str), w += 8;
    str += uint64_t{len} + 1;
  }
  put(w, 0), w += 8;
  for (uint64_t i = 0; i < naux; i++) put(w, aux[i].key), put(w + 8, aux[i].value), w += 16;
  return vec;
}

}  // namespace ember::guest
