#include "arch/x86/boot_loader.h"

#include <filesystem>
#include <system_error>
#include <vector>

#include "arch/x86/bzimage.h"
#include "arch/x86/elf.h"
#include "arch/x86/multiboot.h"
#include "arch/x86/pvh.h"
#include "base/fd.h"

namespace skiff::x86 {

namespace {

// Reads a kernel or initramfs file, refusing what cannot fit in the guest
// before reading it: a device such as /dev/zero, or a file larger than RAM.
Result<std::string> read_image_file(const std::string& path, std::string_view what,
                                    uint64_t ram_bytes) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec) return fail("cannot open {} '{}': {}", what, path, ec.message());
  if (!std::filesystem::is_regular_file(status))
    return fail("{} '{}' is not a regular file", what, path);
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return fail("cannot stat {} '{}': {}", what, path, ec.message());
  if (size > ram_bytes)
    return fail("{} '{}' ({} bytes) is larger than guest RAM ({} bytes)", what, path, size,
                ram_bytes);
  return read_file(path);
}

}  // namespace

Result<KernelFormat> detect_kernel_format(std::string_view name, std::span<const uint8_t> kernel) {
  ImageBytes file(kernel);
  if (has_bzimage_magic(file)) return KernelFormat::kBzImage;
  // A valid Multiboot header wins over a PVH note, as in QEMU's -kernel (the
  // reference): an ELF32 Multiboot kernel built from PVH code keeps the note.
  // A broken Multiboot header does not stop a PVH kernel from booting.
  auto multiboot = find_multiboot_header(name, file);
  if (multiboot && *multiboot) return KernelFormat::kMultiboot;
  // A malformed ELF or note is reported as such rather than as
  // "unrecognised": the user gave us an ELF kernel.
  if (SKIFF_TRY(find_pvh_entry(name, file))) return KernelFormat::kPvhElf;
  if (!multiboot) return std::unexpected(multiboot.error());
  std::string_view elf_reason =
      has_elf_magic(file) ? "an ELF file without a PVH note" : "no ELF PVH note";
  return fail(
      "'{}': not a bzImage, PVH ELF or Multiboot kernel (no 'HdrS' magic, {}, no "
      "Multiboot header in the first 8 KiB; file is {} bytes)",
      name, elf_reason, kernel.size());
}

Result<EntryState> load_kernel_image(const GuestMemory& mem, const BootImage& image,
                                     KernelFormat* detected) {
  KernelFormat format = SKIFF_TRY(detect_kernel_format(image.kernel_name, image.kernel));
  if (detected != nullptr) *detected = format;
  switch (format) {
    case KernelFormat::kBzImage:
      return load_bzimage(mem, image);
    case KernelFormat::kPvhElf:
      return load_pvh(mem, image);
    case KernelFormat::kMultiboot:
      return load_multiboot(mem, image);
  }
  return fail("'{}': unknown kernel format", image.kernel_name);
}

namespace {

std::span<const uint8_t> bytes_of(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

}  // namespace

Result<BootFiles> read_boot_files(const BootImageConfig& config, uint64_t ram_bytes) {
  BootFiles files;
  files.config = config;
  files.kernel = SKIFF_TRY(read_image_file(config.kernel_path, "kernel", ram_bytes));
  if (!config.initramfs_path.empty()) {
    files.initramfs = SKIFF_TRY(read_image_file(config.initramfs_path, "initramfs", ram_bytes));
    if (files.initramfs.empty()) return fail("initramfs '{}' is empty", config.initramfs_path);
  }
  files.format = SKIFF_TRY(detect_kernel_format(config.kernel_path, bytes_of(files.kernel)));
  return files;
}

Result<EntryState> load_boot_files(const GuestMemory& mem, const BootFiles& files,
                                   uint64_t rsdp_addr) {
  BootImage image;
  image.kernel_name = files.config.kernel_path;
  image.kernel = bytes_of(files.kernel);
  image.initramfs_name = files.config.initramfs_path;
  image.initramfs = bytes_of(files.initramfs);
  image.cmdline = files.config.cmdline;
  image.rsdp_addr = rsdp_addr;
  return load_kernel_image(mem, image, nullptr);
}

Result<EntryState> load_kernel(const GuestMemory& mem, const BootImageConfig& config,
                               uint64_t rsdp_addr, KernelFormat* detected) {
  BootFiles files = SKIFF_TRY(read_boot_files(config, mem.total_size()));
  if (detected != nullptr) *detected = files.format;
  return load_boot_files(mem, files, rsdp_addr);
}

}  // namespace skiff::x86
