// Types and steps shared by the x86 kernel loaders (bzImage, PVH, Multiboot):
// what the loader was given (the files' bytes), what it hands to the vCPU
// setup (EntryState), and the two jobs every protocol does the same way —
// the command line at kCmdlineAddr and the initramfs at the top of low RAM.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

enum class KernelFormat { kBzImage, kPvhElf, kMultiboot };

[[nodiscard]] std::string_view kernel_format_name(KernelFormat f);

// How the BSP starts: 32-bit protected mode with paging off (PVH,
// Multiboot), or 64-bit long mode on identity page tables (bzImage).
enum class EntryMode { kProtected32, kLong64 };

struct EntryState {
  EntryMode mode = EntryMode::kProtected32;
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rax = 0;
  uint64_t rbx = 0;
  uint64_t rsi = 0;
};

// A kernel, optional initramfs and command line, already read into memory.
// The names are only used in error messages.
struct BootImage {
  std::string_view kernel_name;
  std::span<const uint8_t> kernel;
  std::string_view initramfs_name;
  std::span<const uint8_t> initramfs;  // empty: no initramfs
  std::string_view cmdline;
  uint64_t rsdp_addr = 0;  // 0: do not pass an RSDP address
};

// Writes s followed by a NUL at gpa.
[[nodiscard]] Result<> write_cstring(const GuestMemory& mem, uint64_t gpa, std::string_view s);

// Writes cmdline plus its NUL at kCmdlineAddr. max_len is the longest
// command line (without NUL) the kernel accepts; kCmdlineMax bounds it too.
[[nodiscard]] Result<> write_cmdline(const GuestMemory& mem, std::string_view cmdline,
                                     uint64_t max_len);

// Copies the initramfs to the highest 4 KiB-aligned address where it fits in
// [min_addr, max_end) and in the RAM contiguous from 1 MiB. Returns its
// guest address, or 0 if the image has no initramfs.
[[nodiscard]] Result<uint64_t> place_initramfs(const GuestMemory& mem, const BootImage& image,
                                               uint64_t min_addr, uint64_t max_end);

// Rounding for guest addresses; align must be a power of two.
[[nodiscard]] constexpr uint64_t align_up(uint64_t v, uint64_t align) {
  return (v + align - 1) & ~(align - 1);
}
[[nodiscard]] constexpr uint64_t align_down(uint64_t v, uint64_t align) {
  return v & ~(align - 1);
}

}  // namespace skiff::x86
