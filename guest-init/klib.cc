#include "guest-init/klib.h"

// The compiler may turn these very loops back into calls to themselves;
// -fno-builtin on this file alone would be needed for plain loops, so the
// bulk work uses rep movs/stos (fast on every x86-64, and allowed in ring 0
// under PVM).
extern "C" {

void* memcpy(void* dst, const void* src, size_t n) {
  void* d = dst;
  asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void* memmove(void* dst, const void* src, size_t n) {
  auto d = static_cast<unsigned char*>(dst);
  auto s = static_cast<const unsigned char*>(src);
  if (d == s || n == 0) return dst;
  if (d < s || d >= s + n) return memcpy(dst, src, n);
  // Overlap with dst above src: copy backwards.
  const unsigned char* se = s + n - 1;
  unsigned char* de = d + n - 1;
  asm volatile("std; rep movsb; cld" : "+D"(de), "+S"(se), "+c"(n) : : "memory", "cc");
  return dst;
}

void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  auto x = static_cast<const unsigned char*>(a);
  auto y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < n; i++)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

}  // extern "C"

namespace ember::guest {

TextBuf& TextBuf::bytes(const char* s, size_t n) {
  for (size_t i = 0; i < n && len_ < cap_; i++) buf_[len_++] = s[i];
  return *this;
}

TextBuf& TextBuf::udec(uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) ch(tmp[--n]);
  return *this;
}

TextBuf& TextBuf::dec(int64_t v) {
  if (v < 0) {
    ch('-');
    return udec(0 - static_cast<uint64_t>(v));
  }
  return udec(static_cast<uint64_t>(v));
}

TextBuf& TextBuf::hex(uint64_t v, bool prefix, int min_digits) {
  if (prefix) str("0x");
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  for (int i = n; i < min_digits; i++) ch('0');
  while (n) ch(tmp[--n]);
  return *this;
}

}  // namespace ember::guest
