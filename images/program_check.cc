#include "images/program_check.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace ember::image {

namespace {

// The loader's name from a PT_INTERP segment, printable and short, for the
// error; the segment is hostile input like the rest.
std::string interpreter_name(const uint8_t* data, size_t size, const Elf64_Phdr& ph) {
  if (ph.p_offset >= size) return "";
  const size_t n = static_cast<size_t>(std::min<uint64_t>({ph.p_filesz, size - ph.p_offset, 128}));
  std::string s;
  for (size_t i = 0; i < n && data[ph.p_offset + i] != 0; i++) {
    const char c = static_cast<char>(data[ph.p_offset + i]);
    s += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return s;
}

}  // namespace

Result<void> check_static_program(const uint8_t* data, size_t size) {
  Elf64_Ehdr eh;
  if (size < SELFMAG || std::memcmp(data, ELFMAG, SELFMAG) != 0) return Error{"is not an ELF file (no \\x7fELF magic)"};
  if (size < sizeof eh) return Error{"is a truncated ELF file (" + std::to_string(size) + " bytes)"};
  std::memcpy(&eh, data, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return Error{"is a 32-bit ELF file: Ember runs x86-64 (ELF64) programs"};
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return Error{"is a big-endian ELF file: Ember runs x86-64 programs"};
  if (eh.e_machine != EM_X86_64)
    return Error{"is built for another machine (ELF e_machine " + std::to_string(eh.e_machine) + "): Ember runs x86-64 programs"};
  if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    return Error{"is not an executable (ELF e_type " + std::to_string(eh.e_type) + ": an object file or a core dump?)"};
  if (eh.e_phnum == 0) return Error{"has no program headers: nothing to load"};
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    return Error{"has program headers of " + std::to_string(eh.e_phentsize) + " bytes (ELF64 has " +
                 std::to_string(sizeof(Elf64_Phdr)) + ")"};
  const uint64_t table = static_cast<uint64_t>(eh.e_phnum) * sizeof(Elf64_Phdr);
  if (eh.e_phoff > size || table > size - eh.e_phoff) return Error{"is truncated: its program headers lie past its end"};
  bool loads = false;
  for (uint16_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    std::memcpy(&ph, data + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_LOAD) loads = true;
    if (ph.p_type == PT_INTERP) {
      const std::string loader = interpreter_name(data, size, ph);
      return Error{"is dynamically linked" + (loader.empty() ? std::string() : " (it asks for " + loader + ")") +
                   ": Ember runs static programs; link it with -static or -static-pie"};
    }
  }
  if (!loads) return Error{"has no loadable segment (PT_LOAD)"};
  return Ok();
}

}  // namespace ember::image
