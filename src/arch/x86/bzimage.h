// Linux bzImage, started through the 64-bit boot protocol (boot.rst,
// "64-bit Boot Protocol"): the loader builds a boot_params ("zero page",
// zero-page.rst) from the image's setup header, puts the command line and
// initrd where the header allows, copies the protected-mode kernel that
// follows the real-mode setup sectors, and jumps to its start + 0x200 in
// long mode with RSI = &boot_params. The 16-bit setup code never runs.
#pragma once

#include <cstdint>
#include <string_view>

#include "arch/x86/boot_image.h"
#include "arch/x86/image_bytes.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

// boot.rst "The Real-Mode Kernel Header": offsets in the file and in
// boot_params, which holds the header at the same offset.
namespace bzimage {
inline constexpr uint64_t kSetupSects = 0x1f1;
inline constexpr uint64_t kVidMode = 0x1fa;
inline constexpr uint64_t kJump = 0x200;
inline constexpr uint64_t kHeaderMagic = 0x202;  // "HdrS"
inline constexpr uint64_t kVersion = 0x206;
inline constexpr uint64_t kTypeOfLoader = 0x210;
inline constexpr uint64_t kLoadflags = 0x211;
inline constexpr uint64_t kCode32Start = 0x214;
inline constexpr uint64_t kRamdiskImage = 0x218;
inline constexpr uint64_t kRamdiskSize = 0x21c;
inline constexpr uint64_t kHeapEndPtr = 0x224;
inline constexpr uint64_t kCmdLinePtr = 0x228;
inline constexpr uint64_t kInitrdAddrMax = 0x22c;
inline constexpr uint64_t kRelocatableKernel = 0x234;
inline constexpr uint64_t kXloadflags = 0x236;
inline constexpr uint64_t kCmdlineSize = 0x238;
inline constexpr uint64_t kPrefAddress = 0x258;
inline constexpr uint64_t kInitSize = 0x260;
// zero-page.rst: fields outside the setup header.
inline constexpr uint64_t kAcpiRsdpAddr = 0x070;
inline constexpr uint64_t kHeaderEnd = 0x290;  // boot_params.edd_mbr_sig_buffer
inline constexpr uint64_t kBootParamsSize = 0x1000;

inline constexpr uint8_t kLoadedHigh = 0x01;
inline constexpr uint8_t kCanUseHeap = 0x80;
inline constexpr uint16_t kXlfKernel64 = 0x01;
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;
inline constexpr uint16_t kMinVersion = 0x0206;
}  // namespace bzimage

// True if the file has the "HdrS" signature at 0x202.
[[nodiscard]] bool has_bzimage_magic(const ImageBytes& file);

[[nodiscard]] Result<EntryState> load_bzimage(const GuestMemory& mem, const BootImage& image);

}  // namespace skiff::x86
