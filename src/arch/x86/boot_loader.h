// The x86 kernel loader entry point: reads the kernel (and initramfs) files,
// recognises the format from the bytes — bzImage, PVH ELF or Multiboot v1 —
// and loads it into guest memory with that protocol. The result says how to
// start the BSP; boot_cpu_state.h turns it into registers.
//
// Everything here is pure over GuestMemory and the file bytes: no KVM, so
// the unit tests load synthetic and real kernels into plain buffers.
#pragma once

#include <string>
#include <string_view>

#include "arch/x86/boot_image.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

struct BootImageConfig {
  std::string kernel_path;
  std::string initramfs_path;  // empty: none
  std::string cmdline;
};

// Which protocol a kernel file speaks: bzImage ("HdrS"), then Multiboot (a
// valid header in the first 8 KiB), then PVH (an ELF note). An ELF with both
// a Multiboot header and a PVH note boots as Multiboot, as under QEMU.
[[nodiscard]] Result<KernelFormat> detect_kernel_format(std::string_view name,
                                                        std::span<const uint8_t> kernel);

// Detects the format and loads image into mem. detected (may be null)
// receives the format that was used.
[[nodiscard]] Result<EntryState> load_kernel_image(const GuestMemory& mem, const BootImage& image,
                                                   KernelFormat* detected);

// The kernel and initramfs files of a BootImageConfig, read and with the
// kernel's format recognised: everything about them that can be refused
// before there is a VM (so a bad --kernel is a usage error on any host).
struct BootFiles {
  BootImageConfig config;
  std::string kernel;
  std::string initramfs;  // empty: none
  KernelFormat format = KernelFormat::kBzImage;
};

// Reads and identifies the files named by config; ram_bytes bounds their
// size (a file larger than guest RAM is refused before it is read).
[[nodiscard]] Result<BootFiles> read_boot_files(const BootImageConfig& config, uint64_t ram_bytes);

// Loads files read by read_boot_files (see load_kernel_image). rsdp_addr:
// where the ACPI RSDP is, passed to protocols that carry it (0: none).
[[nodiscard]] Result<EntryState> load_boot_files(const GuestMemory& mem, const BootFiles& files,
                                                 uint64_t rsdp_addr);

// read_boot_files + load_boot_files.
[[nodiscard]] Result<EntryState> load_kernel(const GuestMemory& mem, const BootImageConfig& config,
                                             uint64_t rsdp_addr, KernelFormat* detected);

}  // namespace skiff::x86
