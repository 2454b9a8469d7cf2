#include "arch/x86/multiboot.h"

#include <algorithm>

#include "arch/x86/e820.h"
#include "arch/x86/elf.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

constexpr std::string_view kLoaderName = "skiff";

struct Loaded {
  uint64_t entry;
  uint64_t end;  // first byte after the kernel (incl. bss)
};

// §3.1.3: with flag 16 the kernel is one block of the file loaded so that
// the header itself lands at header_addr.
Result<Loaded> load_aout_kludge(const GuestMemory& mem, std::string_view name,
                                const ImageBytes& file, const MultibootHeader& h) {
  if (h.load_addr > h.header_addr)
    return fail("'{}': Multiboot load_addr {:#x} is above header_addr {:#x}", name, h.load_addr,
                h.header_addr);
  uint64_t header_delta = h.header_addr - h.load_addr;
  if (header_delta > h.offset)
    return fail(
        "'{}': Multiboot header_addr - load_addr ({:#x}) is larger than the header's "
        "file offset {:#x}",
        name, header_delta, h.offset);
  uint64_t file_off = h.offset - header_delta;
  uint64_t load_size = 0;
  if (h.load_end_addr == 0) {
    load_size = file.size() - file_off;  // "load to the end of the file"
  } else {
    if (h.load_end_addr <= h.load_addr)
      return fail("'{}': Multiboot load_end_addr {:#x} is not above load_addr {:#x}", name,
                  h.load_end_addr, h.load_addr);
    load_size = h.load_end_addr - h.load_addr;
  }
  uint64_t mem_size = load_size;
  if (h.bss_end_addr != 0) {
    if (h.bss_end_addr < h.load_addr + load_size)
      return fail("'{}': Multiboot bss_end_addr {:#x} is below the end of the loaded image {:#x}",
                  name, h.bss_end_addr, h.load_addr + load_size);
    mem_size = h.bss_end_addr - h.load_addr;
  }
  auto what = fmt::format("'{}': Multiboot image", name);
  SKIFF_TRY_VOID(load_image_piece(mem, what, file, file_off, load_size, h.load_addr, mem_size));
  return Loaded{h.entry_addr, h.load_addr + mem_size};
}

Result<Loaded> load_elf(const GuestMemory& mem, std::string_view name, const ImageBytes& file) {
  ElfFile elf = SKIFF_TRY(parse_elf(name, file));
  uint64_t end = SKIFF_TRY(load_elf_segments(mem, name, file, elf));
  return Loaded{elf.entry, end};
}

}  // namespace

Result<std::optional<MultibootHeader>> find_multiboot_header(std::string_view name,
                                                             const ImageBytes& file) {
  std::optional<uint64_t> bad_checksum_at;
  // §3.1.1: the magic, flags and checksum lie completely within the first
  // 8192 bytes, 32-bit aligned.
  uint64_t limit = std::min(file.size(), kMultibootSearchBytes);
  for (uint64_t off = 0; off + 12 <= limit; off += 4) {
    if (*file.u32(off) != kMultibootHeaderMagic) continue;
    auto flags = file.u32(off + 4), checksum = file.u32(off + 8);
    // §3.1.2: magic + flags + checksum == 0 (mod 2^32).
    if (static_cast<uint32_t>(kMultibootHeaderMagic + *flags + *checksum) != 0) {
      if (!bad_checksum_at) bad_checksum_at = off;
      continue;
    }
    MultibootHeader h;
    h.offset = off;
    h.flags = *flags;
    if (h.flags & kMbHeaderAoutKludge) {
      auto a = file.range(off + 12, 20);
      if (!a)
        return fail(
            "'{}': Multiboot address fields at offset {:#x} are cut off by the end of "
            "the file",
            name, off + 12);
      ImageBytes f(*a);
      h.header_addr = *f.u32(0);
      h.load_addr = *f.u32(4);
      h.load_end_addr = *f.u32(8);
      h.bss_end_addr = *f.u32(12);
      h.entry_addr = *f.u32(16);
    }
    return std::optional<MultibootHeader>(h);
  }
  if (bad_checksum_at)
    return fail(
        "'{}': Multiboot magic at offset {:#x} but the checksum is wrong (magic + flags "
        "+ checksum must be 0); the kernel file is corrupt",
        name, *bad_checksum_at);
  return std::optional<MultibootHeader>{};
}

Result<EntryState> load_multiboot(const GuestMemory& mem, const BootImage& image) {
  std::string_view name = image.kernel_name;
  ImageBytes file(image.kernel);
  auto found = SKIFF_TRY(find_multiboot_header(name, file));
  if (!found) return fail("'{}': no Multiboot header in the first 8 KiB", name);
  const MultibootHeader& h = *found;

  // §3.1.2: bits 0-15 are requirements; a loader must refuse ones it does
  // not know. Page-aligned modules and memory info are always given; the
  // video-mode request (bit 2) is a preference, and skiff boots in text mode.
  constexpr uint32_t kKnownRequired = kMbHeaderPageAlign | kMbHeaderMemoryInfo | kMbHeaderVideoMode;
  if (uint32_t unknown = h.flags & 0xffff & ~kKnownRequired; unknown != 0)
    return fail("'{}': Multiboot header requires features skiff does not provide (flags {:#x})",
                name, unknown);

  Loaded k;
  if (h.flags & kMbHeaderAoutKludge) {
    k = SKIFF_TRY(load_aout_kludge(mem, name, file, h));
  } else if (has_elf_magic(file)) {
    k = SKIFF_TRY(load_elf(mem, name, file));
  } else {
    return fail(
        "'{}': Multiboot kernel is not ELF and does not give load addresses (header "
        "flag bit 16)",
        name);
  }
  if (k.entry > UINT32_MAX || !mem.contains(k.entry, 1))
    return fail("'{}': Multiboot entry point {:#x} is not in 32-bit guest RAM", name, k.entry);

  SKIFF_TRY_VOID(write_cmdline(mem, image.cmdline, kCmdlineMax - 1));
  uint64_t top = std::min(low_ram_end(mem), uint64_t{UINT32_MAX} + 1);
  uint64_t initrd = SKIFF_TRY(place_initramfs(mem, image, k.end, top));

  auto map = build_e820(mem);
  auto mmap = to_multiboot_mmap(map);
  if (mmap.size() > kMbModStringOffset - kMbMmapOffset)
    return fail("memory map has {} entries, too many for the Multiboot info page", map.size());

  MultibootInfo info{};
  info.flags = kMbInfoMem | kMbInfoCmdline | kMbInfoMmap | kMbInfoBootLoaderName;
  // mem_lower: conventional memory (the first RAM entry, which ends at the
  // EBDA); mem_upper: from 1 MiB up to the first hole.
  uint64_t lower =
      map.empty() || map[0].addr != 0 || map[0].type != E820Type::kRam ? 0 : map[0].size;
  info.mem_lower = static_cast<uint32_t>(lower / kKiB);
  info.mem_upper = static_cast<uint32_t>((low_ram_end(mem) - kHighMemStart) / kKiB);
  info.cmdline = static_cast<uint32_t>(kCmdlineAddr);
  info.mmap_length = static_cast<uint32_t>(mmap.size());
  info.mmap_addr = static_cast<uint32_t>(kMultibootInfoAddr + kMbMmapOffset);
  info.boot_loader_name = static_cast<uint32_t>(kMultibootInfoAddr + kMbLoaderNameOffset);

  if (initrd != 0) {
    // The module's string is its "command line"; like GRUB, skiff passes
    // the file name.
    std::string_view s = image.initramfs_name;
    if (s.size() + 1 > kMbInfoPageSize - kMbModStringOffset)
      return fail("initramfs path '{}' is too long for the Multiboot module string", s);
    SKIFF_TRY_VOID(write_cstring(mem, kMultibootInfoAddr + kMbModStringOffset, s));
    MultibootModule mod{static_cast<uint32_t>(initrd),
                        static_cast<uint32_t>(initrd + image.initramfs.size()),
                        static_cast<uint32_t>(kMultibootInfoAddr + kMbModStringOffset), 0};
    SKIFF_TRY_VOID(mem.write_obj(kMultibootInfoAddr + kMbModsOffset, mod));
    info.flags |= kMbInfoMods;
    info.mods_count = 1;
    info.mods_addr = static_cast<uint32_t>(kMultibootInfoAddr + kMbModsOffset);
  }
  SKIFF_TRY_VOID(write_cstring(mem, kMultibootInfoAddr + kMbLoaderNameOffset, kLoaderName));
  SKIFF_TRY_VOID(mem.write(kMultibootInfoAddr + kMbMmapOffset, mmap));
  SKIFF_TRY_VOID(mem.write_obj(kMultibootInfoAddr, info));

  EntryState st;
  st.mode = EntryMode::kProtected32;
  st.rip = k.entry;
  st.rax = kMultibootBootloaderMagic;
  st.rbx = kMultibootInfoAddr;
  return st;
}

}  // namespace skiff::x86
