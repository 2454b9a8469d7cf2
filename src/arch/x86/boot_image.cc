#include "arch/x86/boot_image.h"

#include <algorithm>

#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {

std::string_view kernel_format_name(KernelFormat f) {
  switch (f) {
    case KernelFormat::kBzImage:
      return "bzImage";
    case KernelFormat::kPvhElf:
      return "PVH ELF";
    case KernelFormat::kMultiboot:
      return "Multiboot";
  }
  return "unknown";
}

Result<> write_cstring(const GuestMemory& mem, uint64_t gpa, std::string_view s) {
  auto dst = SKIFF_TRY(mem.slice(gpa, s.size() + 1));
  std::copy(s.begin(), s.end(), dst.begin());
  dst[s.size()] = 0;
  return {};
}

Result<> write_cmdline(const GuestMemory& mem, std::string_view cmdline, uint64_t max_len) {
  uint64_t limit = std::min(max_len, kCmdlineMax - 1);
  if (cmdline.size() > limit)
    return fail(
        "kernel command line is {} bytes; at most {} are allowed (kernel limit {}, "
        "skiff limit {}): shorten it",
        cmdline.size(), limit, max_len, kCmdlineMax - 1);
  return write_cstring(mem, kCmdlineAddr, cmdline);
}

Result<uint64_t> place_initramfs(const GuestMemory& mem, const BootImage& image, uint64_t min_addr,
                                 uint64_t max_end) {
  if (image.initramfs.empty()) return 0;
  uint64_t size = image.initramfs.size();
  uint64_t top = std::min(max_end, low_ram_end(mem));
  uint64_t bottom = align_up(min_addr, 4096);
  if (top < bottom || top - bottom < size)
    return fail(
        "initramfs '{}' ({} bytes) does not fit in guest RAM: only [{:#x}, {:#x}) is "
        "free above the kernel; give the VM more memory or use a smaller initramfs",
        image.initramfs_name, size, bottom, std::max(top, bottom));
  uint64_t addr = align_down(top - size, 4096);
  if (auto r = mem.write(addr, image.initramfs); !r)
    return context(r.error(), fmt::format("writing initramfs '{}'", image.initramfs_name));
  return addr;
}

}  // namespace skiff::x86
