// Loading an ELF64 x86-64 executable (ET_EXEC or ET_DYN) from the image into
// identity-mapped RAM: the program, and for a dynamic one (PT_INTERP) its
// interpreter (ld.so, itself ET_DYN), as Linux's binfmt_elf does. plan_elf()
// checks every field against the file size and the RAM the program may use
// and is pure (unit-tested on the host); load_elf() copies.
#pragma once

#include <stdint.h>

namespace ember::guest {

enum class ElfError : uint32_t {
  kOk = 0,
  kNotElf,           // no ELF magic / too short for a header
  kNotX86_64,        // class, data, version or machine
  kNotExecutable,    // e_type is not ET_EXEC or ET_DYN
  kBadInterp,        // PT_INTERP malformed (outside the file, not a NUL-terminated absolute path, twice)
  kBadHeaders,       // program header table outside the file or malformed
  kBadSegment,       // a PT_LOAD outside the file, filesz > memsz, overflow, overlap
  kTooManySegments,  // more PT_LOADs than kMaxSegments
  kNoSegments,       // no PT_LOAD
  kBadEntry,         // entry point not inside a loaded segment
  kNoRoom,           // the segments do not fit in the program's RAM
};
const char* elf_error_text(ElfError e);

struct LoadSegment {
  uint64_t vaddr;   // biased (where it goes in RAM)
  uint64_t memsz;
  uint64_t offset;  // in the file
  uint64_t filesz;
  uint32_t flags;   // PF_X 1, PF_W 2, PF_R 4
};
inline constexpr uint32_t kPfWrite = 2;

struct LoadPlan {
  static constexpr uint32_t kMaxSegments = 16;
  uint64_t bias = 0;      // added to every p_vaddr (0 for ET_EXEC)
  uint64_t entry = 0;     // biased
  uint64_t lo = 0, hi = 0;  // page-aligned biased span of all segments
  uint64_t phdr = 0;      // biased address of the program headers, 0 if no segment holds them
  uint64_t phoff = 0;     // their file offset (to copy them elsewhere when phdr == 0)
  uint16_t phnum = 0, phentsize = 0;
  // PT_INTERP: the interpreter's path (in the file, without its NUL); 0: static.
  uint64_t interp_offset = 0;
  uint32_t interp_len = 0;
  uint32_t segment_count = 0;
  LoadSegment segments[kMaxSegments] = {};
};

struct RamWindow {
  uint64_t low;        // lowest address a segment may use (kProgramMin or above)
  uint64_t high;       // segments end at or below this
  uint64_t pie_base;   // preferred base for ET_DYN (used if the program fits above it)
};

ElfError plan_elf(const uint8_t* file, uint64_t size, const RamWindow& ram, LoadPlan* plan);
// Copies each segment's file bytes to its address, except segments with
// skip[i] set (mapped some other way; skip may be null). The rest of each
// segment (.bss) is not written: RAM the program has not used yet is zero.
void load_elf(const uint8_t* file, const LoadPlan& plan, const bool* skip);

}  // namespace ember::guest
