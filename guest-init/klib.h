// The few C library pieces the freestanding guest needs: the memory
// functions the compiler emits calls to, string helpers, and a tiny text
// builder for log lines. Integer-only, no allocation.
#pragma once

#include <stddef.h>
#include <stdint.h>

#if __STDC_HOSTED__
// Host builds (unit tests of the pure parts) use the C library's.
#include <string.h>
#else
extern "C" {
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
}
#endif

namespace ember::guest {

inline constexpr uint64_t kPage = 4096;
constexpr uint64_t page_down(uint64_t a) { return a & ~(kPage - 1); }
constexpr uint64_t page_up(uint64_t a) { return (a + kPage - 1) & ~(kPage - 1); }
// a + b without wrap-around; false on overflow.
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

inline bool str_eq(const char* a, size_t na, const char* b) {
  size_t nb = strlen(b);
  return na == nb && memcmp(a, b, na) == 0;
}

// Appends text and numbers into a fixed buffer; silently truncates.
class TextBuf {
 public:
  TextBuf(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  TextBuf& str(const char* s) { return bytes(s, strlen(s)); }
  TextBuf& bytes(const char* s, size_t n);
  TextBuf& dec(int64_t v);
  TextBuf& udec(uint64_t v);
  TextBuf& hex(uint64_t v, bool prefix = true, int min_digits = 1);  // 0x... (or bare, zero-padded)
  TextBuf& ch(char c) { return bytes(&c, 1); }
  size_t size() const { return len_; }
  const char* data() const { return buf_; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

// Index of the lowest set bit (v != 0). Plain bsf: GCC's __builtin_ctz
// emits `rep bsf` (tzcnt), a BMI encoding the ring-0 check rejects.
inline uint32_t lowest_bit(uint64_t v) {
  uint64_t r;
  asm("bsf %1, %0" : "=r"(r) : "rm"(v) : "cc");
  return static_cast<uint32_t>(r);
}

inline uint64_t rdtsc() {
  uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return uint64_t{hi} << 32 | lo;
}

inline void cpu_relax() { asm volatile("pause" ::: "memory"); }
inline void compiler_barrier() { asm volatile("" ::: "memory"); }
// Writes the byte at p without changing it (an atomic no-op, safe on memory
// a device writes concurrently): makes the page present and private now.
inline void touch_for_write(const volatile void* p) {
  asm volatile("lock orb $0, (%0)" : : "r"(p) : "memory", "cc");
}
// Full barrier (StoreLoad) without SSE2's mfence: a locked no-op on the stack.
inline void full_barrier() { asm volatile("lock orq $0, (%%rsp)" ::: "memory", "cc"); }

struct Cpuid {
  uint32_t eax, ebx, ecx, edx;
};
inline Cpuid cpuid(uint32_t leaf, uint32_t sub = 0) {
  Cpuid r;
  asm volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(sub));
  return r;
}

}  // namespace ember::guest
