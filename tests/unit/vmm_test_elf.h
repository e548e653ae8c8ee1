// Builds small ELF64 files in memory for the VMM's kernel-loader tests (and
// its fuzzer's seeds): headers, program headers and notes laid out exactly
// as a linker would, each field overridable to make a malformed file.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "api/boot_info.h"
#include "api/guest_layout.h"

namespace ember::testing {

struct TestSegment {
  uint32_t type = PT_LOAD;
  uint64_t paddr = abi::kKernelMin;
  uint64_t filesz = 0x1000;
  uint64_t memsz = 0x1000;
  uint64_t offset = 0;  // 0: placed after the previous data, 4 KiB aligned
  uint64_t align = 0x1000;
};

struct TestNote {
  std::string name;
  uint32_t type;
  std::vector<uint8_t> desc;
};

// A valid Ember note whose handler addresses all point at `code`.
inline TestNote ember_note(uint64_t code = abi::kKernelMin, uint64_t fault_table = abi::kKernelMin + 0x100,
                           uint32_t version = abi::kGuestAbiVersion) {
  abi::GuestNote n{};
  n.abi_version = version;
  n.runtime_entry = code;
  n.syscall_entry = code;
  n.wait_gate = code;
  n.irq_handler = code;
  n.fault_handlers = fault_table;
  TestNote t{std::string("Ember\0", 6), abi::kGuestNoteType, {}};
  t.desc.resize(sizeof n);
  std::memcpy(t.desc.data(), &n, sizeof n);
  return t;
}

inline TestNote pvh_note(uint32_t entry) {
  TestNote t{std::string("Xen\0", 4), abi::kXenElfNotePhys32Entry, std::vector<uint8_t>(4)};
  std::memcpy(t.desc.data(), &entry, 4);
  return t;
}

struct TestElf {
  Elf64_Ehdr eh{};
  std::vector<TestSegment> segments{TestSegment{}};
  std::vector<TestNote> notes{ember_note()};
  bool note_segment = true;

  TestElf() {
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = abi::kKernelMin;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
  }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> notes_blob;
    for (const TestNote& n : notes) {
      auto put32 = [&](uint32_t v) {
        const size_t at = notes_blob.size();
        notes_blob.resize(at + 4);
        std::memcpy(notes_blob.data() + at, &v, 4);
      };
      put32(static_cast<uint32_t>(n.name.size()));
      put32(static_cast<uint32_t>(n.desc.size()));
      put32(n.type);
      notes_blob.insert(notes_blob.end(), n.name.begin(), n.name.end());
      while (notes_blob.size() % 4) notes_blob.push_back(0);
      notes_blob.insert(notes_blob.end(), n.desc.begin(), n.desc.end());
      while (notes_blob.size() % 4) notes_blob.push_back(0);
    }
    const size_t phnum = segments.size() + (note_segment ? 1 : 0);
    Elf64_Ehdr h = eh;
    if (h.e_phnum == 0) h.e_phnum = static_cast<uint16_t>(phnum);
    std::vector<uint8_t> out(sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr), 0);
    const size_t notes_at = out.size();
    out.insert(out.end(), notes_blob.begin(), notes_blob.end());
    std::vector<Elf64_Phdr> ph;
    for (const TestSegment& s : segments) {
      Elf64_Phdr p{};
      p.p_type = s.type;
      p.p_flags = PF_R | PF_W | PF_X;
      p.p_paddr = p.p_vaddr = s.paddr;
      p.p_filesz = s.filesz;
      p.p_memsz = s.memsz;
      p.p_align = s.align;
      if (s.offset) {
        p.p_offset = s.offset;
      } else {
        while (out.size() % 0x1000) out.push_back(0);
        p.p_offset = out.size();
        // Segment bytes: a recognisable pattern, 0xcc (int3) filler.
        out.resize(out.size() + s.filesz, 0xcc);
      }
      ph.push_back(p);
    }
    if (note_segment) {
      Elf64_Phdr p{};
      p.p_type = PT_NOTE;
      p.p_offset = notes_at;
      p.p_filesz = p.p_memsz = notes_blob.size();
      p.p_align = 4;
      ph.push_back(p);
    }
    std::memcpy(out.data(), &h, sizeof h);
    std::memcpy(out.data() + sizeof(Elf64_Ehdr), ph.data(), std::min(ph.size(), phnum) * sizeof(Elf64_Phdr));
    return out;
  }
};

// A minimal static x86-64 program (what image::check_static_program and
// the guest's loader accept: ET_EXEC, one PT_LOAD), padded with 'p' to
// `size` bytes (at least 120: the ELF and program headers).
inline std::string static_program_elf(size_t size = 0) {
  TestElf e;
  e.notes.clear();
  e.note_segment = false;
  e.segments[0].offset = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);  // the bytes after the headers
  e.segments[0].filesz = e.segments[0].memsz = 0;
  const std::vector<uint8_t> b = e.build();
  std::string s(b.begin(), b.end());
  if (size > s.size()) s.resize(size, 'p');
  return s;
}

}  // namespace ember::testing
