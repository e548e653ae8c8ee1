#include "vmm/elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace ember {

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

// [off, off+len) inside a buffer of `size` bytes, without overflow.
bool in_bounds(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

template <typename T>
T load(std::span<const uint8_t> bytes, uint64_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof(T));
  return v;
}

struct NoteScan {
  bool found_ember = false;
  abi::GuestNote ember{};
  uint32_t ember_descsz = 0;
  std::optional<uint32_t> pvh_entry;
};

// Walks the notes in file bytes [off, off+size) (already bounds-checked).
void scan_notes(std::span<const uint8_t> file, uint64_t off, uint64_t size, uint64_t align, NoteScan& out) {
  const uint64_t a = align == 8 ? 8 : 4;  // binutils' rule: 8-byte notes only when the segment says so
  auto round = [a](uint64_t v) { return (v + a - 1) & ~(a - 1); };
  uint64_t pos = 0;
  while (size - pos >= 12) {
    const uint32_t namesz = load<uint32_t>(file, off + pos);
    const uint32_t descsz = load<uint32_t>(file, off + pos + 4);
    const uint32_t type = load<uint32_t>(file, off + pos + 8);
    const uint64_t name_off = pos + 12;
    const uint64_t desc_off = name_off + round(namesz);  // namesz is 32-bit: no overflow in 64
    if (desc_off > size || descsz > size - desc_off) return;  // truncated note: stop scanning
    const uint8_t* name = file.data() + off + name_off;
    const uint8_t* desc = file.data() + off + desc_off;
    if (namesz == sizeof(abi::kGuestNoteName) && std::memcmp(name, abi::kGuestNoteName, namesz) == 0 &&
        type == abi::kGuestNoteType && !out.found_ember) {
      out.found_ember = true;
      out.ember_descsz = descsz;
      std::memcpy(&out.ember, desc, std::min<uint64_t>(descsz, sizeof(abi::GuestNote)));
    } else if (namesz == 4 && std::memcmp(name, "Xen", 4) == 0 && type == abi::kXenElfNotePhys32Entry &&
               descsz >= 4 && !out.pvh_entry) {
      out.pvh_entry = load<uint32_t>(file, off + desc_off);
    }
    pos = desc_off + round(descsz);
    if (pos > size) return;
  }
}

}  // namespace

Result<KernelImage> parse_kernel_elf(std::span<const uint8_t> file, const std::string& name,
                                     const ElfLimits& limits) {
  const std::string who = "kernel " + name + ": ";
  auto fail = [&who](const std::string& what) { return Error{who + what}; };
  const uint64_t size = file.size();

  if (size < EI_NIDENT || std::memcmp(file.data(), ELFMAG, SELFMAG) != 0) return fail("not an ELF file");
  if (file[EI_CLASS] != ELFCLASS64) return fail("not a 64-bit ELF file (EI_CLASS=" + std::to_string(file[EI_CLASS]) + ")");
  if (file[EI_DATA] != ELFDATA2LSB) return fail("not a little-endian ELF file");
  if (size < sizeof(Elf64_Ehdr)) return fail("truncated ELF header");
  const auto eh = load<Elf64_Ehdr>(file, 0);
  if (eh.e_machine != EM_X86_64)
    return fail("wrong architecture (e_machine=" + std::to_string(eh.e_machine) + ", expected 62 for x86-64)");
  if (eh.e_type != ET_EXEC)
    return fail("not a static executable (e_type=" + std::to_string(eh.e_type) + ", expected ET_EXEC)");
  if (eh.e_phnum == 0) return fail("no program headers");
  if (eh.e_phentsize < sizeof(Elf64_Phdr))
    return fail("bad program header size " + std::to_string(eh.e_phentsize));
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * eh.e_phentsize;
  if (!in_bounds(eh.e_phoff, ph_bytes, size))
    return fail("program headers at " + hex(eh.e_phoff) + " (+" + hex(ph_bytes) + ") run past the end of the file (" +
                hex(size) + " bytes)");

  KernelImage out;
  out.entry = eh.e_entry;
  NoteScan notes;
  struct Indexed {
    KernelSegment seg;
    unsigned index;
  };
  std::vector<Indexed> loads;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    const auto ph = load<Elf64_Phdr>(file, eh.e_phoff + uint64_t{i} * eh.e_phentsize);
    const std::string seg = "segment " + std::to_string(i);
    if (ph.p_type == PT_NOTE) {
      if (!in_bounds(ph.p_offset, ph.p_filesz, size)) return fail(seg + " (note) lies outside the file");
      scan_notes(file, ph.p_offset, ph.p_filesz, ph.p_align, notes);
      continue;
    }
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz)
      return fail(seg + ": file size " + hex(ph.p_filesz) + " exceeds memory size " + hex(ph.p_memsz));
    if (!in_bounds(ph.p_offset, ph.p_filesz, size))
      return fail(seg + ": file range [" + hex(ph.p_offset) + ", +" + hex(ph.p_filesz) + ") lies outside the file (" +
                  hex(size) + " bytes)");
    if (ph.p_paddr < limits.min_paddr || ph.p_paddr > limits.max_paddr ||
        ph.p_memsz > limits.max_paddr - ph.p_paddr) {
      const std::string end = ph.p_paddr + ph.p_memsz < ph.p_paddr ? "overflow" : hex(ph.p_paddr + ph.p_memsz);
      return fail(seg + " [" + hex(ph.p_paddr) + "," + end + ") outside [" + hex(limits.min_paddr) + "," +
                  hex(limits.max_paddr) + ")");
    }
    loads.push_back(Indexed{KernelSegment{ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz}, i});
  }
  if (loads.empty()) return fail("no loadable segments");
  std::sort(loads.begin(), loads.end(), [](const Indexed& a, const Indexed& b) { return a.seg.paddr < b.seg.paddr; });
  for (size_t i = 1; i < loads.size(); i++) {
    const Indexed& p = loads[i - 1];
    const Indexed& c = loads[i];
    if (c.seg.paddr < p.seg.paddr + p.seg.mem_size) {  // both inside the window: no overflow
      const unsigned a = std::min(p.index, c.index), b = std::max(p.index, c.index);
      return fail("segments " + std::to_string(a) + " and " + std::to_string(b) + " overlap");
    }
  }
  for (const Indexed& l : loads) out.segments.push_back(l.seg);
  out.lowest = out.segments.front().paddr;
  out.highest = out.segments.back().paddr + out.segments.back().mem_size;

  // Section headers as a fallback note source (some link layouts keep notes
  // out of PT_NOTE); checked like everything else, ignored if malformed.
  if (!notes.found_ember && eh.e_shnum != 0 && eh.e_shentsize >= sizeof(Elf64_Shdr) &&
      in_bounds(eh.e_shoff, uint64_t{eh.e_shnum} * eh.e_shentsize, size)) {
    for (unsigned i = 0; i < eh.e_shnum; i++) {
      const auto sh = load<Elf64_Shdr>(file, eh.e_shoff + uint64_t{i} * eh.e_shentsize);
      if (sh.sh_type == SHT_NOTE && in_bounds(sh.sh_offset, sh.sh_size, size))
        scan_notes(file, sh.sh_offset, sh.sh_size, sh.sh_addralign, notes);
    }
  }
  if (!notes.found_ember) return fail("no Ember note (is this ember-guest.elf?)");
  if (notes.ember_descsz < sizeof(abi::GuestNote))
    return fail("Ember note too short (" + std::to_string(notes.ember_descsz) + " bytes, expected " +
                std::to_string(sizeof(abi::GuestNote)) + ")");
  out.note = notes.ember;
  if (out.note.abi_version != abi::kGuestAbiVersion)
    return fail("Ember note ABI version " + std::to_string(out.note.abi_version) + ", this ember-vmm speaks " +
                std::to_string(abi::kGuestAbiVersion));
  out.pvh_entry = notes.pvh_entry;

  // The note's addresses are used to build the IDT and MSRs (the fault table
  // is even read by the VMM), so each must lie inside a loaded segment.
  auto inside = [&out](uint64_t addr, uint64_t len) {
    for (const KernelSegment& s : out.segments)
      if (addr >= s.paddr && in_bounds(addr - s.paddr, len, s.mem_size)) return true;
    return false;
  };
  const struct {
    const char* what;
    uint64_t addr;
    uint64_t len;
  } checks[] = {
      {"runtime_entry", out.note.runtime_entry, 1}, {"syscall_entry", out.note.syscall_entry, 1},
      {"wait_gate", out.note.wait_gate, 1},         {"irq_handler", out.note.irq_handler, 1},
      {"fault_handlers", out.note.fault_handlers, 32 * sizeof(uint64_t)},
  };
  for (const auto& c : checks)
    if (!inside(c.addr, c.len)) return fail(std::string("Ember note: ") + c.what + " " + hex(c.addr) + " is not inside a loaded segment");
  return out;
}

Result<void> load_kernel(const KernelImage& kernel, std::span<const uint8_t> file, const GuestMemory& memory,
                         bool memory_is_zero) {
  for (const KernelSegment& s : kernel.segments) {
    if (!in_bounds(s.file_offset, s.file_size, file.size())) return Error{"kernel segment outside the file"};
    EMBER_TRY(auto dst, memory.slice(s.paddr, s.mem_size));
    if (s.file_size) std::memcpy(dst.data(), file.data() + s.file_offset, s.file_size);
    if (!memory_is_zero && s.mem_size > s.file_size) std::memset(dst.data() + s.file_size, 0, s.mem_size - s.file_size);
  }
  return Ok();
}

}  // namespace ember
