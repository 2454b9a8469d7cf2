#include "arch/x86/bzimage.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {

using namespace bzimage;

namespace {

// The zero page being built, with bounds-checked little-endian stores.
class BootParams {
 public:
  std::span<uint8_t> bytes() { return bytes_; }
  template <typename T>
  void put(uint64_t off, T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(bytes_.data() + off, &v, sizeof v);
  }
  template <typename T>
  T get(uint64_t off) const {
    T v;
    std::memcpy(&v, bytes_.data() + off, sizeof v);
    return v;
  }

 private:
  std::array<uint8_t, kBootParamsSize> bytes_{};
};

// boot.rst: the heap ends at 0xe000 from the start of the setup code for
// loaders that place it at 0x90000; with no real-mode code running the
// value only has to be plausible for the decompressor's early heap checks.
constexpr uint16_t kHeapEnd = 0xe000;

}  // namespace

bool has_bzimage_magic(const ImageBytes& file) {
  return file.matches(kHeaderMagic, "HdrS");
}

Result<EntryState> load_bzimage(const GuestMemory& mem, const BootImage& image) {
  std::string_view name = image.kernel_name;
  ImageBytes file(image.kernel);
  if (!has_bzimage_magic(file)) return fail("'{}': not a bzImage (no 'HdrS' magic at 0x202)", name);
  // The header's own length: 0x202 + the byte at 0x201 (the jump offset).
  auto jump_len = file.u8(kJump + 1);
  auto version = file.u16(kVersion);
  if (!jump_len || !version) return fail("'{}': bzImage setup header is truncated", name);
  uint64_t header_end = std::min<uint64_t>(kHeaderMagic + *jump_len, kHeaderEnd);
  if (*version < kMinVersion)
    return fail(
        "'{}': Linux boot protocol {}.{:02} is too old; skiff needs 2.06 or newer "
        "(kernel 2.6.22+) for the 64-bit entry",
        name, *version >> 8, *version & 0xff);
  if (header_end < kCmdlineSize + 4 || !file.has(kSetupSects, header_end - kSetupSects))
    return fail(
        "'{}': bzImage setup header is truncated (file is {} bytes, header ends at "
        "{:#x})",
        name, file.size(), std::max(header_end, kCmdlineSize + 4));

  // boot.rst "64-bit Boot Protocol": a zeroed boot_params with the setup
  // header copied in at 0x1f1.
  BootParams bp;
  auto hdr = *file.range(kSetupSects, header_end - kSetupSects);
  std::copy(hdr.begin(), hdr.end(), bp.bytes().begin() + kSetupSects);

  // xloadflags exists from protocol 2.12; in older headers the field is
  // padding (zero), so those kernels are refused here too: nothing in them
  // promises the entry point at +0x200.
  auto xloadflags = bp.get<uint16_t>(kXloadflags);
  if ((xloadflags & kXlfKernel64) == 0)
    return fail(
        "'{}': bzImage has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags, "
        "boot protocol {}.{:02}); skiff boots only x86-64 kernels with protocol 2.12+",
        name, *version >> 8, *version & 0xff);
  auto loadflags = bp.get<uint8_t>(kLoadflags);
  if ((loadflags & kLoadedHigh) == 0)
    return fail("'{}': zImage kernels (LOADED_HIGH clear) are not supported; use a bzImage", name);

  // boot.rst: the protected-mode kernel starts at (setup_sects + 1) * 512;
  // setup_sects == 0 means 4.
  uint64_t setup_sects = bp.get<uint8_t>(kSetupSects);
  if (setup_sects == 0) setup_sects = 4;
  uint64_t kernel_off = (setup_sects + 1) * 512;
  if (kernel_off >= file.size())
    return fail(
        "'{}': bzImage is truncated: the protected-mode kernel should start at {:#x} "
        "but the file is {} bytes",
        name, kernel_off, file.size());
  auto kernel = *file.range(kernel_off, file.size() - kernel_off);

  // Load at pref_address (2.10+) when it fits; a relocatable kernel may go
  // at 1 MiB instead and relocates itself; a non-relocatable 64-bit kernel
  // also starts from anywhere and copies itself to its link address.
  uint64_t ram_end = low_ram_end(mem);
  uint64_t init_size = *version >= 0x020a ? bp.get<uint32_t>(kInitSize) : 0;
  uint64_t footprint = std::max<uint64_t>(init_size, kernel.size());
  uint64_t load_addr = kHighMemStart;
  uint64_t pref = *version >= 0x020a ? bp.get<uint64_t>(kPrefAddress) : 0;
  if (pref >= kHighMemStart && pref <= ram_end && ram_end - pref >= footprint) load_addr = pref;
  if (load_addr + footprint > ram_end)
    return fail(
        "'{}': kernel needs {:#x} bytes at {:#x} but low guest RAM ends at {:#x}; give "
        "the VM more memory",
        name, footprint, load_addr, ram_end);
  if (auto r = mem.write(load_addr, kernel); !r)
    return context(r.error(), fmt::format("loading '{}'", name));

  // Command line: cmdline_size (2.06+) excludes the terminating NUL.
  SKIFF_TRY_VOID(write_cmdline(mem, image.cmdline, bp.get<uint32_t>(kCmdlineSize)));

  // initrd: as high as possible below initrd_addr_max (the highest byte it
  // may occupy) and the end of low RAM, above the kernel's footprint.
  uint64_t initrd_max_end = uint64_t{bp.get<uint32_t>(kInitrdAddrMax)} + 1;
  uint64_t initrd = SKIFF_TRY(
      place_initramfs(mem, image, load_addr + footprint, std::min(initrd_max_end, ram_end)));

  bp.put<uint8_t>(kTypeOfLoader, kLoaderTypeUndefined);
  bp.put<uint8_t>(kLoadflags, static_cast<uint8_t>(loadflags | kCanUseHeap));
  bp.put<uint16_t>(kHeapEndPtr, kHeapEnd - 0x200);
  bp.put<uint32_t>(kCode32Start, static_cast<uint32_t>(load_addr));
  bp.put<uint32_t>(kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr));
  bp.put<uint32_t>(kRamdiskImage, static_cast<uint32_t>(initrd));
  bp.put<uint32_t>(kRamdiskSize, static_cast<uint32_t>(initrd ? image.initramfs.size() : 0));
  // acpi_rsdp_addr lives in boot_params, not the header; kernels from the
  // 2.14 era on read it (older ones have padding there and scan the BIOS
  // area, where skiff's RSDP also is).
  if (image.rsdp_addr != 0 && *version >= 0x020e) bp.put<uint64_t>(kAcpiRsdpAddr, image.rsdp_addr);
  SKIFF_TRY_VOID(write_boot_params_e820(bp.bytes(), build_e820(mem)));
  if (auto r = mem.write(kZeroPageAddr, bp.bytes()); !r)
    return context(r.error(), "writing boot_params");

  EntryState st;
  st.mode = EntryMode::kLong64;
  st.rip = load_addr + 0x200;
  st.rsp = kBootStackTop;
  st.rsi = kZeroPageAddr;
  return st;
}

}  // namespace skiff::x86
