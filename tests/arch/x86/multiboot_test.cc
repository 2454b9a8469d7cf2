#include "arch/x86/multiboot.h"

#include <gtest/gtest.h>

#include "arch/x86/test_images.h"

namespace skiff::x86 {
namespace {

using testing::as_span;
using testing::ElfSpec;
using testing::make_elf;
using testing::multiboot_header;
using testing::MultibootAout;
using testing::TestRam;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kInfo = 0x6000;

// An ELF32 Multiboot kernel: the header opens the text segment at 1 MiB.
ElfSpec multiboot_elf(uint32_t flags = 0x3, bool good_checksum = true) {
  ElfSpec s;
  s.is64 = false;
  s.machine = 3;
  s.entry = 0x100010;
  auto text = multiboot_header(flags, {}, good_checksum);
  for (int i = 0; i < 500; ++i) text.push_back(static_cast<uint8_t>(i));
  s.segments.push_back({0x100000, text, 0});
  s.segments.push_back({0x180000, std::vector<uint8_t>(64, 0xab), 0x1000});
  return s;
}

Result<EntryState> load(const TestRam& ram, const std::vector<uint8_t>& file,
                        const std::vector<uint8_t>& initrd = {}, std::string_view cmdline = "") {
  return load_multiboot(ram.mem(), BootImage{"kernel.elf", as_span(file), "/boot/initrd.img",
                                             as_span(initrd), cmdline, 0});
}

std::string error_of(const Result<EntryState>& r) {
  return r ? "" : r.error().message;
}

TEST(Multiboot, LoadsElf32SegmentsAndEntersWithMagicInEax) {
  TestRam ram(64 * kMiB);
  auto spec = multiboot_elf();
  auto r = load(ram, make_elf(spec).bytes);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(r->mode, EntryMode::kProtected32);
  EXPECT_EQ(r->rip, 0x100010u);
  EXPECT_EQ(r->rax, 0x2BADB002u);
  EXPECT_EQ(r->rbx, kInfo);
  EXPECT_EQ(ram.bytes(0x100000, spec.segments[0].data.size()), spec.segments[0].data);
  EXPECT_EQ(ram.bytes(0x180040, 0x1000 - 64), std::vector<uint8_t>(0x1000 - 64, 0));
}

TEST(Multiboot, InfoHasMemoryCmdlineAndMmap) {
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(multiboot_elf()).bytes, {}, "quiet");
  ASSERT_TRUE(r) << error_of(r);
  uint32_t flags = ram.get<uint32_t>(kInfo);
  EXPECT_TRUE(flags & (1 << 0)) << "MEM";
  EXPECT_TRUE(flags & (1 << 2)) << "CMDLINE";
  EXPECT_TRUE(flags & (1 << 6)) << "MMAP";
  EXPECT_FALSE(flags & (1 << 3)) << "no MODS without an initramfs";
  EXPECT_EQ(ram.get<uint32_t>(kInfo + 4), 639u);        // mem_lower, KiB
  EXPECT_EQ(ram.get<uint32_t>(kInfo + 8), 63u * 1024);  // mem_upper, KiB above 1 MiB
  EXPECT_EQ(ram.cstring(ram.get<uint32_t>(kInfo + 16)), "quiet");

  uint32_t mmap_length = ram.get<uint32_t>(kInfo + 44);
  uint32_t mmap_addr = ram.get<uint32_t>(kInfo + 48);
  ASSERT_EQ(mmap_length, 4u * 24);
  // Walk the entries the way the spec says: next = this + size + 4.
  std::vector<std::tuple<uint64_t, uint64_t, uint32_t>> seen;
  for (uint32_t off = 0; off < mmap_length;) {
    uint32_t size = ram.get<uint32_t>(mmap_addr + off);
    ASSERT_EQ(size, 20u);
    seen.emplace_back(ram.get<uint64_t>(mmap_addr + off + 4),
                      ram.get<uint64_t>(mmap_addr + off + 12),
                      ram.get<uint32_t>(mmap_addr + off + 20));
    off += size + 4;
  }
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], std::make_tuple(uint64_t{0}, uint64_t{0x9fc00}, 1u));
  EXPECT_EQ(seen[2], std::make_tuple(uint64_t{0x100000}, 63 * kMiB, 1u));
  EXPECT_EQ(std::get<2>(seen[3]), 2u);
}

TEST(Multiboot, InitramfsIsOnePageAlignedModuleWithItsPathAsString) {
  TestRam ram(64 * kMiB);
  std::vector<uint8_t> initrd(7000, 0x42);
  auto r = load(ram, make_elf(multiboot_elf()).bytes, initrd);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_TRUE(ram.get<uint32_t>(kInfo) & (1 << 3));
  EXPECT_EQ(ram.get<uint32_t>(kInfo + 20), 1u);
  uint32_t mods = ram.get<uint32_t>(kInfo + 24);
  uint32_t start = ram.get<uint32_t>(mods), end = ram.get<uint32_t>(mods + 4);
  EXPECT_EQ(start % 4096, 0u);
  EXPECT_EQ(end - start, 7000u);
  EXPECT_GE(start, 0x181000u);
  EXPECT_EQ(ram.bytes(start, 7000), initrd);
  EXPECT_EQ(ram.cstring(ram.get<uint32_t>(mods + 8)), "/boot/initrd.img");
}

TEST(Multiboot, AoutKludgeLoadsTheFileSoTheHeaderLandsAtHeaderAddr) {
  // A flat binary: 0x40 bytes of code, the header at 0x40, more code after.
  std::vector<uint8_t> file(0x40, 0xf4);
  auto h = multiboot_header(0x10003, MultibootAout{0x100040, 0x100000, 0, 0x110000, 0x100080});
  file.insert(file.end(), h.begin(), h.end());
  for (int i = 0; i < 0x200; ++i) file.push_back(static_cast<uint8_t>(i));
  TestRam ram(64 * kMiB);
  std::vector<uint8_t> junk(0x10000, 0x77);
  ASSERT_TRUE(ram.mem().write(0x100000, junk));
  auto r = load(ram, file);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(r->rip, 0x100080u);
  EXPECT_EQ(ram.bytes(0x100000, file.size()), file);
  EXPECT_EQ(ram.get<uint32_t>(0x100040), 0x1BADB002u);
  // bss up to bss_end_addr is zeroed.
  EXPECT_EQ(ram.bytes(0x100000 + file.size(), 0x10000 - file.size()),
            std::vector<uint8_t>(0x10000 - file.size(), 0));
}

TEST(Multiboot, RejectsBadChecksum) {
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(multiboot_elf(0x3, false)).bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("checksum"), std::string::npos) << error_of(r);
  EXPECT_NE(error_of(r).find("'kernel.elf'"), std::string::npos);
}

TEST(Multiboot, IgnoresHeaderBeyondTheFirst8KiB) {
  std::vector<uint8_t> file(8192, 0);
  auto h = multiboot_header(0);
  file.insert(file.end(), h.begin(), h.end());
  auto found = find_multiboot_header("k", ImageBytes(as_span(file)));
  ASSERT_TRUE(found);
  EXPECT_FALSE(found->has_value());
  // Straddling the 8 KiB boundary is not "completely within" it (§3.1.1).
  std::vector<uint8_t> straddle(8188, 0);
  straddle.insert(straddle.end(), h.begin(), h.end());
  auto found1 = find_multiboot_header("k", ImageBytes(as_span(straddle)));
  ASSERT_TRUE(found1);
  EXPECT_FALSE(found1->has_value());
  // The last aligned slot that fits is found.
  std::vector<uint8_t> file2(8180, 0);
  file2.insert(file2.end(), h.begin(), h.end());
  auto found2 = find_multiboot_header("k", ImageBytes(as_span(file2)));
  ASSERT_TRUE(found2);
  ASSERT_TRUE(found2->has_value());
  EXPECT_EQ((*found2)->offset, 8180u);
}

TEST(Multiboot, IgnoresMisalignedMagic) {
  std::vector<uint8_t> file(2, 0);
  auto h = multiboot_header(0);
  file.insert(file.end(), h.begin(), h.end());
  file.resize(64);
  auto found = find_multiboot_header("k", ImageBytes(as_span(file)));
  ASSERT_TRUE(found);
  EXPECT_FALSE(found->has_value());
}

TEST(Multiboot, RejectsUnknownRequiredFlag) {
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(multiboot_elf(0x3 | (1 << 3))).bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("requires features"), std::string::npos) << error_of(r);
}

TEST(Multiboot, RejectsHeaderCutOffByEndOfFile) {
  auto h = multiboot_header(0x10000, MultibootAout{0x100000, 0x100000, 0, 0, 0x100000});
  h.resize(20);  // a.out fields cut off
  auto found = find_multiboot_header("k", ImageBytes(as_span(h)));
  ASSERT_FALSE(found);
  EXPECT_NE(found.error().message.find("cut off"), std::string::npos);
}

TEST(Multiboot, RejectsAoutLoadEndPastEndOfFile) {
  auto file = multiboot_header(0x10000, MultibootAout{0x100000, 0x100000, 0x200000, 0, 0x100000});
  file.resize(256);
  TestRam ram(64 * kMiB);
  auto r = load(ram, file);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("past the end"), std::string::npos) << error_of(r);
}

TEST(Multiboot, RejectsAoutHeaderAddrBelowLoadAddr) {
  auto file = multiboot_header(0x10000, MultibootAout{0x100000, 0x200000, 0, 0, 0x200000});
  file.resize(256);
  TestRam ram(64 * kMiB);
  auto r = load(ram, file);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("load_addr"), std::string::npos) << error_of(r);
}

TEST(Multiboot, RejectsAoutImageOutsideGuestRam) {
  auto file = multiboot_header(0x10000, MultibootAout{0x8000000, 0x8000000, 0, 0, 0x8000000});
  file.resize(256);
  TestRam ram(64 * kMiB);
  auto r = load(ram, file);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("not in guest RAM"), std::string::npos) << error_of(r);
}

TEST(Multiboot, RejectsNonElfWithoutAddressFields) {
  auto file = multiboot_header(0x3);
  file.resize(256);
  TestRam ram(64 * kMiB);
  auto r = load(ram, file);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("not ELF"), std::string::npos) << error_of(r);
}

}  // namespace
}  // namespace skiff::x86
