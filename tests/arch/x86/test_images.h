// Synthetic kernel images and a guest-RAM fixture for the loader tests.
// The images are built byte by byte from the specs (boot.rst, gABI ELF,
// Multiboot 0.6.96), independently of the loader code, so a test can also
// corrupt exactly one field.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "memory/guest_memory.h"

namespace skiff::x86::testing {

// Guest RAM over calloc'd buffers (lazily backed, so 512 MiB is cheap):
// low RAM at [0, low_size) and, if high_size, more at 4 GiB.
class TestRam {
 public:
  explicit TestRam(uint64_t low_size, uint64_t high_size = 0);
  [[nodiscard]] const GuestMemory& mem() const { return mem_; }
  // Host bytes of guest [gpa, gpa + len); aborts the test binary if not RAM.
  [[nodiscard]] std::vector<uint8_t> bytes(uint64_t gpa, uint64_t len) const;
  template <typename T>
  [[nodiscard]] T get(uint64_t gpa) const {
    T v;
    auto b = bytes(gpa, sizeof v);
    std::memcpy(&v, b.data(), sizeof v);
    return v;
  }
  [[nodiscard]] std::string cstring(uint64_t gpa) const;

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> low_, high_;
  GuestMemory mem_;
};

template <typename T>
void put(std::vector<uint8_t>& b, size_t off, T v) {
  if (b.size() < off + sizeof v) b.resize(off + sizeof v);
  std::memcpy(b.data() + off, &v, sizeof v);
}
template <typename T>
T get(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

// A bzImage: setup sectors with a setup header, then the protected-mode
// kernel bytes.
struct BzImageSpec {
  uint16_t version = 0x020f;
  uint8_t setup_sects = 4;
  uint8_t loadflags = 0x01;    // LOADED_HIGH
  uint16_t xloadflags = 0x03;  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  uint32_t initrd_addr_max = 0x7fffffff;
  uint8_t relocatable = 1;
  uint32_t cmdline_size = 2047;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x400000;
  std::vector<uint8_t> kernel = std::vector<uint8_t>(0x3000, 0x90);
};
std::vector<uint8_t> make_bzimage(const BzImageSpec& s);

// An ELF file with PT_LOAD segments and optional notes.
struct ElfSegmentSpec {
  uint64_t paddr = 0;
  std::vector<uint8_t> data;
  uint64_t memsz = 0;  // 0: same as data.size()
};
struct ElfNoteSpec {
  std::string name;
  uint32_t type = 0;
  std::vector<uint8_t> desc;
};
struct ElfSpec {
  bool is64 = true;
  uint16_t machine = 62;
  uint64_t entry = 0;
  std::vector<ElfNoteSpec> notes;  // in one PT_NOTE segment (program header 0)
  std::vector<ElfSegmentSpec> segments;
};
struct ElfImage {
  std::vector<uint8_t> bytes;
  size_t phoff = 0;
  size_t phentsize = 0;
  size_t first_load_phdr = 0;  // index of the first PT_LOAD program header
  std::vector<size_t> segment_file_offsets;
  // File offset of program header i's field at (off64 for ELF64, off32 for ELF32).
  [[nodiscard]] size_t phdr_field(size_t i, size_t off64, size_t off32, bool is64) const {
    return phoff + i * phentsize + (is64 ? off64 : off32);
  }
};
ElfImage make_elf(const ElfSpec& s);

// A PVH kernel: ELF64 with a Xen PHYS32_ENTRY note and two segments
// (code at 1 MiB, data + bss at 2 MiB).
ElfSpec pvh_spec(uint64_t entry = 0x100000);

// Multiboot header bytes: magic, flags, checksum (+ a.out fields if given).
struct MultibootAout {
  uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};
std::vector<uint8_t> multiboot_header(uint32_t flags, std::optional<MultibootAout> aout = {},
                                      bool good_checksum = true);

std::span<const uint8_t> as_span(const std::vector<uint8_t>& v);

}  // namespace skiff::x86::testing
