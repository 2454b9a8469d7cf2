// Just enough ELF (System V gABI, "ELF-64 Object File Format" 1.5) to load a
// kernel: the file header, program headers, PT_NOTE notes and PT_LOAD
// segments, for ELF32 and ELF64 little-endian x86 files. Used by the PVH
// and Multiboot loaders. Every offset and size comes from the file and is
// checked against its length before use.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "arch/x86/image_bytes.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

inline constexpr uint32_t kPtLoad = 1;
inline constexpr uint32_t kPtNote = 4;

struct ElfSegment {
  uint32_t type = 0;
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t paddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

struct ElfFile {
  bool is64 = false;
  uint16_t machine = 0;
  uint64_t entry = 0;
  std::vector<ElfSegment> segments;
};

struct ElfNote {
  std::string_view name;  // without the trailing NUL
  uint32_t type = 0;
  std::span<const uint8_t> desc;
};

// True if the file starts with the ELF magic (it may still be malformed).
[[nodiscard]] bool has_elf_magic(const ImageBytes& file);

// Parses the header and program headers; name is used in errors.
[[nodiscard]] Result<ElfFile> parse_elf(std::string_view name, const ImageBytes& file);

// All notes in the file's PT_NOTE segments.
[[nodiscard]] Result<std::vector<ElfNote>> elf_notes(std::string_view name, const ImageBytes& file,
                                                     const ElfFile& elf);

// Copies every PT_LOAD segment to guest memory at its p_paddr, zero-filling
// p_memsz beyond p_filesz. Segments must lie in RAM at or above 1 MiB (below
// is skiff's boot data, layout.h). Returns the end of the highest segment.
[[nodiscard]] Result<uint64_t> load_elf_segments(const GuestMemory& mem, std::string_view name,
                                                 const ImageBytes& file, const ElfFile& elf);

// Copies [offset, offset + filesz) of the file to gpa and zeroes up to
// memsz, after checking the file range, the guest range and that nothing
// lands below 1 MiB. what names the piece in errors.
[[nodiscard]] Result<> load_image_piece(const GuestMemory& mem, std::string_view what,
                                        const ImageBytes& file, uint64_t offset, uint64_t filesz,
                                        uint64_t gpa, uint64_t memsz);

}  // namespace skiff::x86
