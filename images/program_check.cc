#include "images/program_check.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace ember::image {

namespace {

constexpr size_t kMaxName = 4096;  // an interpreter path or a dynamic string

// A NUL-terminated string at [off, ...) inside the file, at most kMaxName
// bytes; false if it does not end in time.
bool string_at(const uint8_t* data, size_t size, uint64_t off, uint64_t limit, std::string* out) {
  out->clear();
  for (uint64_t i = off; i < size && i < limit; i++) {
    if (data[i] == 0) return true;
    if (out->size() == kMaxName) return false;
    out->push_back(static_cast<char>(data[i]));
  }
  return false;
}

std::vector<std::string> split_paths(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(':', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The file offset of virtual address `vaddr` (inside a PT_LOAD's file bytes).
bool file_offset(const std::vector<Elf64_Phdr>& phs, uint64_t vaddr, uint64_t* off) {
  for (const Elf64_Phdr& ph : phs) {
    if (ph.p_type != PT_LOAD || vaddr < ph.p_vaddr || vaddr - ph.p_vaddr >= ph.p_filesz) continue;
    *off = ph.p_offset + (vaddr - ph.p_vaddr);
    return true;
  }
  return false;
}

Result<ProgramInfo> inspect(const uint8_t* data, size_t size, bool executable) {
  Elf64_Ehdr eh;
  if (size < SELFMAG || std::memcmp(data, ELFMAG, SELFMAG) != 0) return Error{"is not an ELF file (no \\x7fELF magic)"};
  if (size < sizeof eh) return Error{"is a truncated ELF file (" + std::to_string(size) + " bytes)"};
  std::memcpy(&eh, data, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return Error{"is a 32-bit ELF file: Ember runs x86-64 (ELF64) programs"};
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return Error{"is a big-endian ELF file: Ember runs x86-64 programs"};
  if (eh.e_machine != EM_X86_64)
    return Error{"is built for another machine (ELF e_machine " + std::to_string(eh.e_machine) + "): Ember runs x86-64 programs"};
  if (executable ? (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) : eh.e_type != ET_DYN)
    return Error{std::string(executable ? "is not an executable" : "is not a shared library") + " (ELF e_type " +
                 std::to_string(eh.e_type) + ")"};
  if (eh.e_phnum == 0) return Error{"has no program headers: nothing to load"};
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    return Error{"has program headers of " + std::to_string(eh.e_phentsize) + " bytes (ELF64 has " +
                 std::to_string(sizeof(Elf64_Phdr)) + ")"};
  const uint64_t table = static_cast<uint64_t>(eh.e_phnum) * sizeof(Elf64_Phdr);
  if (eh.e_phoff > size || table > size - eh.e_phoff) return Error{"is truncated: its program headers lie past its end"};
  std::vector<Elf64_Phdr> phs(eh.e_phnum);
  std::memcpy(phs.data(), data + eh.e_phoff, table);
  ProgramInfo info;
  bool loads = false;
  const Elf64_Phdr* dynamic = nullptr;
  for (const Elf64_Phdr& ph : phs) {
    if (ph.p_type == PT_LOAD) loads = true;
    if (ph.p_type == PT_DYNAMIC) dynamic = &ph;
    if (ph.p_type == PT_INTERP && executable) {
      if (!info.interpreter.empty()) return Error{"has two PT_INTERP segments"};
      if (ph.p_offset >= size || !string_at(data, size, ph.p_offset, ph.p_offset + ph.p_filesz, &info.interpreter) ||
          info.interpreter.empty() || info.interpreter[0] != '/')
        return Error{"has a malformed PT_INTERP (its loader's path)"};
    }
  }
  if (!loads) return Error{"has no loadable segment (PT_LOAD)"};
  if (!dynamic || (executable && info.interpreter.empty())) return info;  // static (static-pie has a dynamic section)
  // The dynamic section: DT_NEEDED and the paths, as offsets into DT_STRTAB.
  if (dynamic->p_offset > size || dynamic->p_filesz > size - dynamic->p_offset)
    return Error{"is truncated: its dynamic section lies past its end"};
  uint64_t strtab = 0, strsz = 0;
  std::vector<uint64_t> needed;
  uint64_t runpath = ~0ull, rpath = ~0ull;
  for (uint64_t at = dynamic->p_offset; at + sizeof(Elf64_Dyn) <= dynamic->p_offset + dynamic->p_filesz;
       at += sizeof(Elf64_Dyn)) {
    Elf64_Dyn d;
    std::memcpy(&d, data + at, sizeof d);
    if (d.d_tag == DT_NULL) break;
    switch (d.d_tag) {
      case DT_STRTAB: strtab = d.d_un.d_ptr; break;
      case DT_STRSZ: strsz = d.d_un.d_val; break;
      case DT_NEEDED:
        if (needed.size() == 1024) return Error{"needs more than 1024 libraries"};
        needed.push_back(d.d_un.d_val);
        break;
      case DT_RUNPATH: runpath = d.d_un.d_val; break;
      case DT_RPATH: rpath = d.d_un.d_val; break;
      default: break;
    }
  }
  if (needed.empty() && runpath == ~0ull && rpath == ~0ull) return info;
  uint64_t str_off;
  if (!file_offset(phs, strtab, &str_off) || str_off > size || strsz > size - str_off)
    return Error{"has a dynamic string table outside the file"};
  auto name = [&](uint64_t off, std::string* out) -> Result<void> {
    if (off >= strsz || !string_at(data, size, str_off + off, str_off + strsz, out) || out->empty())
      return Error{"has a malformed dynamic string (DT_NEEDED, DT_RUNPATH or DT_RPATH)"};
    return Ok();
  };
  for (uint64_t off : needed) {
    std::string n;
    EMBER_TRY_VOID(name(off, &n));
    info.needed.push_back(std::move(n));
  }
  std::string s;
  if (runpath != ~0ull) {
    EMBER_TRY_VOID(name(runpath, &s));
    info.runpath = split_paths(s);
  }
  if (rpath != ~0ull) {
    EMBER_TRY_VOID(name(rpath, &s));
    info.rpath = split_paths(s);
  }
  return info;
}

}  // namespace

Result<ProgramInfo> inspect_program(const uint8_t* data, size_t size) { return inspect(data, size, true); }
Result<ProgramInfo> inspect_library(const uint8_t* data, size_t size) { return inspect(data, size, false); }

}  // namespace ember::image
