#include "arch/x86/e820.h"

#include <algorithm>
#include <cstring>

#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

// Appends the part of [start, end) that does not overlap [hole_start,
// hole_end) as RAM (zero, one or two entries).
void add_ram_outside(std::vector<E820Entry>& out, uint64_t start, uint64_t end, uint64_t hole_start,
                     uint64_t hole_end) {
  if (start >= end) return;
  if (end <= hole_start || start >= hole_end) {
    out.push_back({start, end - start, E820Type::kRam});
    return;
  }
  if (start < hole_start) out.push_back({start, hole_start - start, E820Type::kRam});
  if (end > hole_end) out.push_back({hole_end, end - hole_end, E820Type::kRam});
}

template <typename T>
void put(std::span<uint8_t> buf, size_t off, T v) {
  std::memcpy(buf.data() + off, &v, sizeof v);
}

}  // namespace

std::vector<E820Entry> build_e820(const GuestMemory& mem) {
  std::vector<E820Entry> ram;
  for (const auto& r : mem.regions()) {
    uint64_t end = r.gpa + r.size;
    // The legacy area [EBDA, 1 MiB) is backed by RAM (skiff writes the ACPI
    // tables there) but must not be handed out: split it off first, then the
    // 32-bit PCI hole, which should never be RAM but is cut defensively.
    std::vector<E820Entry> parts;
    add_ram_outside(parts, r.gpa, end, kEbdaStart, kHighMemStart);
    for (const auto& p : parts)
      add_ram_outside(ram, p.addr, p.addr + p.size, kPciHoleStart, kRam64Start);
  }

  std::vector<E820Entry> map = ram;
  // [EBDA, 1 MiB) is reported as reserved, not as ACPI (type 3), although
  // the ACPI tables live at kAcpiTablesAddr inside it: Linux forces
  // [0xa0000, 0x100000) to reserved anyway (arch/x86/kernel/e820.c,
  // trim_bios_range), and finds the RSDP by scanning 0xe0000-0xfffff or via
  // boot_params.acpi_rsdp_addr, mapping the tables whatever their E820 type.
  // "ACPI reclaimable" would invite the OS to free the tables' pages after
  // parsing them, which a later kexec'd kernel could not survive.
  map.push_back({kEbdaStart, kHighMemStart - kEbdaStart, E820Type::kReserved});
  // Linux accepts an MCFG window only if it is reserved in E820 or in ACPI
  // _CRS (arch/x86/pci/mmconfig-shared.c, is_mmconf_reserved).
  map.push_back({kPciEcamBase, kPciEcamSize, E820Type::kReserved});

  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  return map;
}

uint64_t low_ram_end(const GuestMemory& mem) {
  for (const auto& r : mem.regions()) {
    if (r.gpa <= kHighMemStart && kHighMemStart < r.gpa + r.size)
      return std::min(r.gpa + r.size, kPciHoleStart);
  }
  return kHighMemStart;
}

Result<> write_boot_params_e820(std::span<uint8_t> zero_page, std::span<const E820Entry> map) {
  constexpr size_t kEntriesOff = 0x1e8;  // zero-page.rst: e820_entries
  constexpr size_t kTableOff = 0x2d0;    // zero-page.rst: e820_table
  constexpr size_t kEntryBytes = 20;
  if (map.size() > kBootParamsE820Max)
    return fail("memory map has {} entries; boot_params holds at most {}", map.size(),
                kBootParamsE820Max);
  if (zero_page.size() < kTableOff + kBootParamsE820Max * kEntryBytes)
    return fail("boot_params buffer of {} bytes is too small for the e820 table", zero_page.size());
  put<uint8_t>(zero_page, kEntriesOff, static_cast<uint8_t>(map.size()));
  for (size_t i = 0; i < map.size(); ++i) {
    size_t off = kTableOff + i * kEntryBytes;
    put<uint64_t>(zero_page, off, map[i].addr);
    put<uint64_t>(zero_page, off + 8, map[i].size);
    put<uint32_t>(zero_page, off + 16, static_cast<uint32_t>(map[i].type));
  }
  return {};
}

std::vector<HvmMemmapEntry> to_pvh_memmap(std::span<const E820Entry> map) {
  std::vector<HvmMemmapEntry> out;
  out.reserve(map.size());
  for (const auto& e : map) out.push_back({e.addr, e.size, static_cast<uint32_t>(e.type), 0});
  return out;
}

std::vector<uint8_t> to_multiboot_mmap(std::span<const E820Entry> map) {
  std::vector<uint8_t> out(map.size() * kMultibootMmapEntrySize);
  std::span<uint8_t> buf(out);
  for (size_t i = 0; i < map.size(); ++i) {
    size_t off = i * kMultibootMmapEntrySize;
    put<uint32_t>(buf, off, kMultibootMmapEntrySize - 4);  // size excludes itself
    put<uint64_t>(buf, off + 4, map[i].addr);
    put<uint64_t>(buf, off + 12, map[i].size);
    put<uint32_t>(buf, off + 20, static_cast<uint32_t>(map[i].type));
  }
  return out;
}

}  // namespace skiff::x86
