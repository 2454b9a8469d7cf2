// The guest's physical memory map, as the firmware would report it through
// INT 15h E820: built once from the RAM regions and layout.h, then handed to
// the guest in the format each boot protocol wants (boot_params.e820_table,
// PVH hvm_memmap_table_entry, Multiboot mmap).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

// ACPI 6.5 §15.1 "Address Range Types"; PVH and Multiboot use the same values.
enum class E820Type : uint32_t {
  kRam = 1,
  kReserved = 2,
  kAcpi = 3,  // ACPI reclaimable
  kNvs = 4,
};

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  E820Type type = E820Type::kRam;
  bool operator==(const E820Entry&) const = default;
};

// The memory map for this guest, sorted by address, entries not overlapping:
//   RAM      [0, kEbdaStart)
//   reserved [kEbdaStart, kHighMemStart)   EBDA, VGA hole, BIOS area + ACPI tables
//   RAM      [kHighMemStart, end of low RAM)
//   reserved [kPciEcamBase, + kPciEcamSize)  so Linux trusts the MCFG window
//   RAM      every region at or above 4 GiB
// RAM regions are clipped to the layout: nothing inside the EBDA/BIOS area or
// the 32-bit PCI hole is ever reported as RAM.
[[nodiscard]] std::vector<E820Entry> build_e820(const GuestMemory& mem);

// End of the RAM that is contiguous from kHighMemStart (1 MiB), clipped to
// the PCI hole: the "first hole" above 1 MiB. Returns kHighMemStart if there
// is no RAM at 1 MiB.
[[nodiscard]] uint64_t low_ram_end(const GuestMemory& mem);

// boot_params (zero-page.rst): e820_entries at 0x1e8, e820_table[128] of
// packed {u64 addr, u64 size, u32 type} at 0x2d0. zero_page is the 4 KiB
// boot_params image.
inline constexpr size_t kBootParamsE820Max = 128;
[[nodiscard]] Result<> write_boot_params_e820(std::span<uint8_t> zero_page,
                                              std::span<const E820Entry> map);

// PVH: struct hvm_memmap_table_entry (Xen public/arch-x86/hvm/start_info.h).
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;  // must be zero in version 1
};
static_assert(sizeof(HvmMemmapEntry) == 24);
[[nodiscard]] std::vector<HvmMemmapEntry> to_pvh_memmap(std::span<const E820Entry> map);

// Multiboot 0.6.96 §3.3 "mmap_*": each entry is packed as {u32 size, u64
// base_addr, u64 length, u32 type}, where size (20) counts the bytes after
// itself. Returns the entries back to back, ready to copy to mmap_addr.
inline constexpr uint32_t kMultibootMmapEntrySize = 24;
[[nodiscard]] std::vector<uint8_t> to_multiboot_mmap(std::span<const E820Entry> map);

}  // namespace skiff::x86
