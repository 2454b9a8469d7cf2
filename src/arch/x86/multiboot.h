// Multiboot v1 (Multiboot Specification 0.6.96): a kernel carries a header
// (magic 0x1BADB002, flags, checksum) 4-byte aligned in its first 8 KiB. The
// loader copies the kernel either from its ELF program headers or, when
// header flag bit 16 is set, from the a.out-kludge address fields; it writes
// a multiboot_info (memory sizes, command line, modules, memory map) and
// starts the BSP in 32-bit protected mode with EAX = 0x2BADB002 and EBX =
// &multiboot_info (§3.2 "Machine state").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "arch/x86/boot_image.h"
#include "arch/x86/image_bytes.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

inline constexpr uint32_t kMultibootHeaderMagic = 0x1BADB002;
inline constexpr uint32_t kMultibootBootloaderMagic = 0x2BADB002;
inline constexpr uint64_t kMultibootSearchBytes = 8192;

// §3.1.2 header flags.
inline constexpr uint32_t kMbHeaderPageAlign = 1u << 0;
inline constexpr uint32_t kMbHeaderMemoryInfo = 1u << 1;
inline constexpr uint32_t kMbHeaderVideoMode = 1u << 2;
inline constexpr uint32_t kMbHeaderAoutKludge = 1u << 16;

// §3.3 multiboot_info flags.
inline constexpr uint32_t kMbInfoMem = 1u << 0;
inline constexpr uint32_t kMbInfoCmdline = 1u << 2;
inline constexpr uint32_t kMbInfoMods = 1u << 3;
inline constexpr uint32_t kMbInfoMmap = 1u << 6;
inline constexpr uint32_t kMbInfoBootLoaderName = 1u << 9;

struct MultibootHeader {
  uint64_t offset = 0;  // of the magic, in the file
  uint32_t flags = 0;
  // Valid only with kMbHeaderAoutKludge (§3.1.3 "address fields").
  uint32_t header_addr = 0;
  uint32_t load_addr = 0;
  uint32_t load_end_addr = 0;
  uint32_t bss_end_addr = 0;
  uint32_t entry_addr = 0;
};

// §3.3 multiboot_info, up to apm_table (skiff sets no VBE/framebuffer info).
struct MultibootInfo {
  uint32_t flags;
  uint32_t mem_lower;  // KiB below 640 KiB
  uint32_t mem_upper;  // KiB from 1 MiB to the first hole
  uint32_t boot_device;
  uint32_t cmdline;
  uint32_t mods_count;
  uint32_t mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length;  // bytes
  uint32_t mmap_addr;
  uint32_t drives_length;
  uint32_t drives_addr;
  uint32_t config_table;
  uint32_t boot_loader_name;
  uint32_t apm_table;
};
static_assert(sizeof(MultibootInfo) == 72);

struct MultibootModule {
  uint32_t mod_start;
  uint32_t mod_end;  // first byte after the module
  uint32_t string;
  uint32_t reserved;
};

// Where the pieces go inside the page at kMultibootInfoAddr.
inline constexpr uint64_t kMbModsOffset = 0x80;
inline constexpr uint64_t kMbLoaderNameOffset = 0x90;
inline constexpr uint64_t kMbMmapOffset = 0x100;
inline constexpr uint64_t kMbModStringOffset = 0x800;
inline constexpr uint64_t kMbInfoPageSize = 0x1000;

// The first valid header in the first 8 KiB; nullopt if there is no magic,
// an error if the only candidates have a bad checksum or the header is cut
// off by the end of the file.
[[nodiscard]] Result<std::optional<MultibootHeader>> find_multiboot_header(std::string_view name,
                                                                           const ImageBytes& file);

[[nodiscard]] Result<EntryState> load_multiboot(const GuestMemory& mem, const BootImage& image);

}  // namespace skiff::x86
