#include "guest-init/elf_loader.h"

#include "guest-init/klib.h"

namespace ember::guest {
namespace {

constexpr uint16_t kEtExec = 2, kEtDyn = 3, kEmX86_64 = 62;
constexpr uint32_t kPtLoad = 1, kPtInterp = 3, kPtPhdr = 6;
constexpr uint64_t kMaxAlign = 1ull << 30;

// Little-endian field reads at any alignment (the image gives no promise).
uint16_t ld16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t ld32(const uint8_t* p) { return uint32_t(ld16(p)) | uint32_t(ld16(p + 2)) << 16; }
uint64_t ld64(const uint8_t* p) { return uint64_t(ld32(p)) | uint64_t(ld32(p + 4)) << 32; }

struct Phdr {
  uint32_t type, flags;
  uint64_t offset, vaddr, filesz, memsz, align;
};
Phdr read_phdr(const uint8_t* p) {
  return Phdr{ld32(p), ld32(p + 4), ld64(p + 8), ld64(p + 16), ld64(p + 32), ld64(p + 40), ld64(p + 48)};
}

}  // namespace

const char* elf_error_text(ElfError e) {
  switch (e) {
    case ElfError::kOk: return "ok";
    case ElfError::kNotElf: return "not an ELF file";
    case ElfError::kNotX86_64: return "not an ELF64 x86-64 little-endian file";
    case ElfError::kNotExecutable: return "not an ELF executable (ET_EXEC or ET_DYN)";
    case ElfError::kBadInterp: return "malformed ELF PT_INTERP (the dynamic loader's path)";
    case ElfError::kBadHeaders: return "malformed ELF program headers";
    case ElfError::kBadSegment: return "malformed ELF PT_LOAD segment";
    case ElfError::kTooManySegments: return "too many ELF PT_LOAD segments";
    case ElfError::kNoSegments: return "ELF file has no PT_LOAD segment";
    case ElfError::kBadEntry: return "ELF entry point outside the loaded segments";
    case ElfError::kNoRoom: return "ELF segments do not fit in the VM's memory (too little RAM, or an address below 0x400000)";
  }
  return "unknown ELF error";
}

ElfError plan_elf(const uint8_t* file, uint64_t size, const RamWindow& ram, LoadPlan* plan) {
  *plan = LoadPlan{};
  if (size < 64 || file[0] != 0x7f || file[1] != 'E' || file[2] != 'L' || file[3] != 'F') return ElfError::kNotElf;
  if (file[4] != 2 || file[5] != 1 || file[6] != 1 || ld16(file + 18) != kEmX86_64 || ld32(file + 20) != 1)
    return ElfError::kNotX86_64;
  const uint16_t type = ld16(file + 16);
  if (type != kEtExec && type != kEtDyn) return ElfError::kNotExecutable;
  const uint64_t entry = ld64(file + 24), phoff = ld64(file + 32);
  const uint16_t phentsize = ld16(file + 54), phnum = ld16(file + 56);
  uint64_t ph_end;
  if (phentsize != 56 || phnum == 0 || phnum > 256 || add_overflows(phoff, uint64_t{phnum} * 56, &ph_end) ||
      ph_end > size)
    return ElfError::kBadHeaders;

  uint64_t lo = ~0ull, hi = 0, max_align = kPage, phdr_vaddr = 0;
  bool phdr_found = false;
  for (uint16_t i = 0; i < phnum; i++) {
    Phdr ph = read_phdr(file + phoff + uint64_t{i} * 56);
    if (ph.type == kPtInterp) {
      // An absolute path with its NUL, inside the file, at most one.
      uint64_t end;
      if (plan->interp_len || ph.filesz < 3 || ph.filesz > 4096 || add_overflows(ph.offset, ph.filesz, &end) ||
          end > size || file[end - 1] != 0 || file[ph.offset] != '/')
        return ElfError::kBadInterp;
      for (uint64_t k = ph.offset; k + 1 < end; k++)
        if (file[k] == 0) return ElfError::kBadInterp;
      plan->interp_offset = ph.offset;
      plan->interp_len = static_cast<uint32_t>(ph.filesz - 1);
    }
    if (ph.type == kPtPhdr) {
      phdr_vaddr = ph.vaddr;
      phdr_found = true;
    }
    if (ph.type != kPtLoad) continue;
    uint64_t file_end, mem_end;
    if (ph.filesz > ph.memsz || add_overflows(ph.offset, ph.filesz, &file_end) || file_end > size ||
        add_overflows(ph.vaddr, ph.memsz, &mem_end) || mem_end > (1ull << 47))
      return ElfError::kBadSegment;
    if (ph.align > 1 && (ph.align & (ph.align - 1))) return ElfError::kBadSegment;
    if (ph.align > max_align && ph.align <= kMaxAlign) max_align = ph.align;
    if (ph.memsz == 0) continue;
    if (plan->segment_count == LoadPlan::kMaxSegments) return ElfError::kTooManySegments;
    // In ascending order and without overlap (the ELF spec's rule; it also
    // makes the byte-exact copy below well defined).
    if (plan->segment_count) {
      const LoadSegment& prev = plan->segments[plan->segment_count - 1];
      if (ph.vaddr < prev.vaddr + prev.memsz) return ElfError::kBadSegment;
    }
    plan->segments[plan->segment_count++] = LoadSegment{ph.vaddr, ph.memsz, ph.offset, ph.filesz, ph.flags};
    if (page_down(ph.vaddr) < lo) lo = page_down(ph.vaddr);
    if (page_up(mem_end) > hi) hi = page_up(mem_end);
    // The program headers are in memory if a segment maps their file bytes.
    if (!phdr_found && phoff >= ph.offset && ph_end <= ph.offset + ph.filesz) {
      phdr_vaddr = ph.vaddr + (phoff - ph.offset);
      phdr_found = true;
    }
  }
  if (plan->segment_count == 0) return ElfError::kNoSegments;

  uint64_t bias = 0;
  if (type == kEtDyn) {
    // Position-independent: choose where. The preferred base keeps small
    // static-pie programs at the same address as glibc's usual layouts do;
    // fall back to the lowest legal address.
    const uint64_t span = hi - lo;
    uint64_t base = (ram.pie_base + max_align - 1) & ~(max_align - 1);
    if (base < ram.low || base > ram.high || ram.high - base < span) base = (ram.low + max_align - 1) & ~(max_align - 1);
    bias = base - lo;  // lo is usually 0; wraps harmlessly otherwise
  }
  const uint64_t blo = lo + bias, bhi = hi + bias;
  if (blo < ram.low || bhi > ram.high || bhi < blo) return ElfError::kNoRoom;

  bool entry_ok = false;
  for (uint32_t i = 0; i < plan->segment_count; i++) {
    LoadSegment& s = plan->segments[i];
    if (entry >= s.vaddr && entry - s.vaddr < s.memsz) entry_ok = true;
    s.vaddr += bias;
  }
  if (!entry_ok) return ElfError::kBadEntry;
  plan->bias = bias;
  plan->entry = entry + bias;
  plan->lo = blo;
  plan->hi = bhi;
  plan->phdr = phdr_found ? phdr_vaddr + bias : 0;
  plan->phoff = phoff;
  plan->phnum = phnum;
  plan->phentsize = phentsize;
  return ElfError::kOk;
}

void load_elf(const uint8_t* file, const LoadPlan& plan, const bool* skip) {
  for (uint32_t i = 0; i < plan.segment_count; i++) {
    if (skip && skip[i]) continue;
    const LoadSegment& s = plan.segments[i];
    if (s.filesz) memcpy(reinterpret_cast<void*>(s.vaddr), file + s.offset, s.filesz);
  }
}

}  // namespace ember::guest
