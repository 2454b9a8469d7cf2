#include "arch/x86/elf.h"

#include <algorithm>

#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

constexpr uint8_t kElfClass32 = 1;
constexpr uint8_t kElfClass64 = 2;
constexpr uint8_t kElfDataLsb = 1;
constexpr uint16_t kEm386 = 3;
constexpr uint16_t kEmX86_64 = 62;
constexpr uint16_t kPnXnum = 0xffff;  // extended program header numbering

// gABI "ELF Header" and "Program Header": field offsets per class.
struct Layout {
  uint64_t ehsize, entry, phoff, phentsize_off, phnum_off, phdr_size;
};
constexpr Layout kElf32{52, 24, 28, 42, 44, 32};
constexpr Layout kElf64{64, 24, 32, 54, 56, 56};

uint64_t align_up_pow2(uint64_t v, uint64_t align) {
  return (v + align - 1) & ~(align - 1);
}

std::unexpected<Error> truncated(std::string_view name, std::string_view what) {
  return fail("'{}': ELF file is truncated or corrupt: {} extends past the end of the file", name,
              what);
}

Result<ElfSegment> parse_phdr(std::string_view name, const ImageBytes& f, bool is64, uint64_t off) {
  ElfSegment s;
  auto bad = [&] { return truncated(name, "a program header"); };
  auto word = [&](uint64_t off64, uint64_t off32) -> std::optional<uint64_t> {
    if (is64) return f.u64(off + off64);
    auto v = f.u32(off + off32);
    if (!v) return std::nullopt;
    return *v;
  };
  auto type = f.u32(off);
  auto poff = word(8, 4), vaddr = word(16, 8), paddr = word(24, 12), filesz = word(32, 16),
       memsz = word(40, 20), align = word(48, 28);
  if (!type || !poff || !vaddr || !paddr || !filesz || !memsz || !align) return bad();
  s = {*type, *poff, *vaddr, *paddr, *filesz, *memsz, *align};
  return s;
}

}  // namespace

bool has_elf_magic(const ImageBytes& file) {
  return file.matches(0,
                      "\x7f"
                      "ELF");
}

Result<ElfFile> parse_elf(std::string_view name, const ImageBytes& f) {
  if (!has_elf_magic(f)) return fail("'{}': not an ELF file (no \\x7fELF magic)", name);
  auto cls = f.u8(4), data = f.u8(5);
  if (!cls || !data) return truncated(name, "the ELF identification");
  if (*cls != kElfClass32 && *cls != kElfClass64)
    return fail("'{}': unknown ELF class {} (expected 1 for ELF32 or 2 for ELF64)", name, *cls);
  if (*data != kElfDataLsb) return fail("'{}': big-endian ELF cannot be an x86 kernel", name);

  ElfFile elf;
  elf.is64 = *cls == kElfClass64;
  const Layout& l = elf.is64 ? kElf64 : kElf32;
  if (!f.has(0, l.ehsize)) return truncated(name, "the ELF header");
  elf.machine = *f.u16(18);
  if (elf.machine != kEm386 && elf.machine != kEmX86_64)
    return fail("'{}': ELF machine {} is not x86 (expected 3 or 62)", name, elf.machine);
  elf.entry = elf.is64 ? *f.u64(l.entry) : *f.u32(l.entry);
  uint64_t phoff = elf.is64 ? *f.u64(l.phoff) : *f.u32(l.phoff);
  uint16_t phentsize = *f.u16(l.phentsize_off);
  uint16_t phnum = *f.u16(l.phnum_off);
  if (phnum == kPnXnum)
    return fail("'{}': ELF uses extended program header numbering, not supported", name);
  if (phnum > 0 && phentsize < l.phdr_size)
    return fail("'{}': ELF program header size {} is smaller than {}", name, phentsize,
                l.phdr_size);
  // phnum and phentsize are 16-bit, so the product cannot overflow 64 bits.
  if (!f.has(phoff, uint64_t{phnum} * phentsize))
    return truncated(name, "the program header table");

  for (uint16_t i = 0; i < phnum; ++i)
    elf.segments.push_back(
        SKIFF_TRY(parse_phdr(name, f, elf.is64, phoff + uint64_t{i} * phentsize)));
  return elf;
}

Result<std::vector<ElfNote>> elf_notes(std::string_view name, const ImageBytes& f,
                                       const ElfFile& elf) {
  std::vector<ElfNote> notes;
  for (const auto& seg : elf.segments) {
    if (seg.type != kPtNote) continue;
    if (!f.has(seg.offset, seg.filesz)) return truncated(name, "a PT_NOTE segment");
    // gABI "Note Section": namesz, descsz, type, then name and desc, each
    // padded to 4 bytes (8 when the segment asks for 8-byte alignment).
    uint64_t pad = seg.align == 8 ? 8 : 4;
    uint64_t off = seg.offset;
    uint64_t end = seg.offset + seg.filesz;
    while (end - off >= 12) {
      uint32_t namesz = *f.u32(off), descsz = *f.u32(off + 4), type = *f.u32(off + 8);
      uint64_t name_off = off + 12;
      uint64_t desc_off = name_off + align_up_pow2(namesz, pad);
      uint64_t next = desc_off + align_up_pow2(descsz, pad);
      if (desc_off + descsz > end) return truncated(name, "an ELF note");
      auto nm = *f.range(name_off, namesz);
      std::string_view note_name(reinterpret_cast<const char*>(nm.data()), nm.size());
      while (!note_name.empty() && note_name.back() == '\0') note_name.remove_suffix(1);
      notes.push_back({note_name, type, *f.range(desc_off, descsz)});
      if (next >= end) break;
      off = next;
    }
  }
  return notes;
}

Result<> load_image_piece(const GuestMemory& mem, std::string_view what, const ImageBytes& file,
                          uint64_t offset, uint64_t filesz, uint64_t gpa, uint64_t memsz) {
  if (filesz > memsz)
    return fail("{}: file size {:#x} is larger than its memory size {:#x}", what, filesz, memsz);
  auto src = file.range(offset, filesz);
  if (!src)
    return fail("{}: file bytes [{:#x}, +{:#x}) run past the end of the {}-byte file", what, offset,
                filesz, file.size());
  if (gpa < kHighMemStart)
    return fail("{}: load address {:#x} is below 1 MiB, where skiff keeps boot data", what, gpa);
  auto dst = mem.slice(gpa, memsz);
  if (!dst)
    return fail("{}: guest range [{:#x}, +{:#x}) is not in guest RAM; give the VM more memory",
                what, gpa, memsz);
  std::copy(src->begin(), src->end(), dst->begin());
  std::fill(dst->begin() + static_cast<ptrdiff_t>(filesz), dst->end(), uint8_t{0});
  return {};
}

Result<uint64_t> load_elf_segments(const GuestMemory& mem, std::string_view name,
                                   const ImageBytes& f, const ElfFile& elf) {
  uint64_t highest = 0;
  bool any = false;
  for (size_t i = 0; i < elf.segments.size(); ++i) {
    const auto& s = elf.segments[i];
    if (s.type != kPtLoad || s.memsz == 0) continue;
    auto what = fmt::format("'{}': program header {} (PT_LOAD)", name, i);
    SKIFF_TRY_VOID(load_image_piece(mem, what, f, s.offset, s.filesz, s.paddr, s.memsz));
    highest = std::max(highest, s.paddr + s.memsz);
    any = true;
  }
  if (!any) return fail("'{}': ELF file has no loadable (PT_LOAD) segment", name);
  return highest;
}

}  // namespace skiff::x86
