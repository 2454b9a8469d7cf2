// PVH boot (Xen's "x86/HVM direct boot ABI", docs/misc/pvh.pandoc, and the
// public header xen/include/public/arch-x86/hvm/start_info.h): an ELF kernel
// announces a 32-bit entry point in a XEN_ELFNOTE_PHYS32_ENTRY note; the
// loader copies its PT_LOAD segments to their physical addresses, writes an
// hvm_start_info (command line, RSDP, memory map, modules) and starts the
// BSP in 32-bit protected mode, paging off, with EBX = &hvm_start_info.
// Linux (CONFIG_PVH), FreeBSD and skiff's own test guests boot this way.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "arch/x86/boot_image.h"
#include "arch/x86/image_bytes.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

inline constexpr uint32_t kXenElfnotePhys32Entry = 18;
inline constexpr uint32_t kHvmStartMagic = 0x336ec578;  // "xEn3" with 0x80 set in 'E'

// start_info.h, version 1 layout (all fields little-endian).
struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version 1+
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

// Where the pieces go inside the page at kPvhStartInfoAddr.
inline constexpr uint64_t kPvhModlistOffset = 0x40;
inline constexpr uint64_t kPvhMemmapOffset = 0x80;

// The PVH entry point if the file is an ELF with a XEN_ELFNOTE_PHYS32_ENTRY
// note, nullopt if it is not ELF or has no such note, an error if it is a
// malformed ELF or the note is.
[[nodiscard]] Result<std::optional<uint32_t>> find_pvh_entry(std::string_view name,
                                                             const ImageBytes& file);

[[nodiscard]] Result<EntryState> load_pvh(const GuestMemory& mem, const BootImage& image);

}  // namespace skiff::x86
