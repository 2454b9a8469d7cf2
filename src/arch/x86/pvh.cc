#include "arch/x86/pvh.h"

#include "arch/x86/e820.h"
#include "arch/x86/elf.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {

Result<std::optional<uint32_t>> find_pvh_entry(std::string_view name, const ImageBytes& file) {
  if (!has_elf_magic(file)) return std::optional<uint32_t>{};
  ElfFile elf = SKIFF_TRY(parse_elf(name, file));
  for (const auto& note : SKIFF_TRY(elf_notes(name, file, elf))) {
    if (note.name != "Xen" || note.type != kXenElfnotePhys32Entry) continue;
    // Linux emits the entry with _ASM_PTR, so the descriptor is 8 bytes in a
    // 64-bit vmlinux and 4 in a 32-bit one; the value is always a 32-bit
    // physical address.
    ImageBytes desc(note.desc);
    uint64_t entry = 0;
    if (desc.size() == 4) {
      entry = *desc.u32(0);
    } else if (desc.size() == 8) {
      entry = *desc.u64(0);
    } else {
      return fail("'{}': XEN_ELFNOTE_PHYS32_ENTRY note has a {}-byte value (expected 4 or 8)", name,
                  desc.size());
    }
    if (entry > UINT32_MAX)
      return fail("'{}': PVH entry point {:#x} is above 4 GiB; it must be a 32-bit address", name,
                  entry);
    return std::optional<uint32_t>(static_cast<uint32_t>(entry));
  }
  return std::optional<uint32_t>{};
}

Result<EntryState> load_pvh(const GuestMemory& mem, const BootImage& image) {
  ImageBytes file(image.kernel);
  auto entry = SKIFF_TRY(find_pvh_entry(image.kernel_name, file));
  if (!entry)
    return fail("'{}': not a PVH kernel (no XEN_ELFNOTE_PHYS32_ENTRY note)", image.kernel_name);
  ElfFile elf = SKIFF_TRY(parse_elf(image.kernel_name, file));
  uint64_t kernel_end = SKIFF_TRY(load_elf_segments(mem, image.kernel_name, file, elf));
  if (!mem.contains(*entry, 1))
    return fail("'{}': PVH entry point {:#x} is not in guest RAM", image.kernel_name, *entry);

  SKIFF_TRY_VOID(write_cmdline(mem, image.cmdline, kCmdlineMax - 1));
  uint64_t initrd = SKIFF_TRY(place_initramfs(mem, image, kernel_end, low_ram_end(mem)));

  auto memmap = to_pvh_memmap(build_e820(mem));
  uint64_t memmap_bytes = memmap.size() * sizeof(HvmMemmapEntry);
  if (memmap_bytes > kPvhStartInfoSize - kPvhMemmapOffset)
    return fail("memory map has {} entries, too many for the PVH start info page", memmap.size());

  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;  // has the memmap fields
  info.flags = 0;
  info.cmdline_paddr = kCmdlineAddr;
  info.rsdp_paddr = image.rsdp_addr;
  info.memmap_paddr = kPvhStartInfoAddr + kPvhMemmapOffset;
  info.memmap_entries = static_cast<uint32_t>(memmap.size());
  if (initrd != 0) {
    // Module 0 is the initramfs; Linux's PVH entry takes it from there.
    HvmModlistEntry mod{initrd, image.initramfs.size(), 0, 0};
    SKIFF_TRY_VOID(mem.write_obj(kPvhStartInfoAddr + kPvhModlistOffset, mod));
    info.nr_modules = 1;
    info.modlist_paddr = kPvhStartInfoAddr + kPvhModlistOffset;
  }
  SKIFF_TRY_VOID(mem.write(
      info.memmap_paddr, std::span(reinterpret_cast<const uint8_t*>(memmap.data()), memmap_bytes)));
  SKIFF_TRY_VOID(mem.write_obj(kPvhStartInfoAddr, info));

  // pvh.pandoc: 32-bit protected mode, paging off, EBX = start info.
  EntryState st;
  st.mode = EntryMode::kProtected32;
  st.rip = *entry;
  st.rbx = kPvhStartInfoAddr;
  return st;
}

}  // namespace skiff::x86
