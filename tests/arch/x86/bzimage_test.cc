#include "arch/x86/bzimage.h"

#include <gtest/gtest.h>

#include <string>

#include "arch/x86/test_images.h"

namespace skiff::x86 {
namespace {

using testing::as_span;
using testing::BzImageSpec;
using testing::make_bzimage;
using testing::TestRam;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kZeroPage = 0x7000;

struct Loaded {
  std::vector<uint8_t> file;
  std::vector<uint8_t> initrd;
  Result<EntryState> entry;
};

Loaded load(const TestRam& ram, const BzImageSpec& spec, std::string_view cmdline = "console=ttyS0",
            size_t initrd_size = 0, uint64_t rsdp = 0) {
  Loaded l{make_bzimage(spec), std::vector<uint8_t>(initrd_size), {}};
  for (size_t i = 0; i < initrd_size; ++i) l.initrd[i] = static_cast<uint8_t>(i * 13 + 5);
  BootImage img{"bz", as_span(l.file), "initrd.img", as_span(l.initrd), cmdline, rsdp};
  l.entry = load_bzimage(ram.mem(), img);
  return l;
}

std::string error_of(const Result<EntryState>& r) {
  return r ? "" : r.error().message;
}

TEST(BzImage, LoadsKernelAtPrefAddressAndEntersAt0x200InLongMode) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  auto l = load(ram, spec);
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  EXPECT_EQ(l.entry->mode, EntryMode::kLong64);
  EXPECT_EQ(l.entry->rip, 0x1000000u + 0x200);
  EXPECT_EQ(l.entry->rsi, kZeroPage);
  EXPECT_EQ(ram.bytes(0x1000000, spec.kernel.size()), spec.kernel);
  EXPECT_EQ(ram.get<uint32_t>(kZeroPage + 0x214), 0x1000000u);  // code32_start
}

TEST(BzImage, LoadsAtOneMiBWhenPrefAddressDoesNotFit) {
  TestRam ram(12 * kMiB);  // pref_address 16 MiB is past the end of RAM
  BzImageSpec spec;
  auto l = load(ram, spec);
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  EXPECT_EQ(l.entry->rip, 0x100000u + 0x200);
  EXPECT_EQ(ram.bytes(0x100000, spec.kernel.size()), spec.kernel);
}

TEST(BzImage, SetupSectsZeroMeansFour) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.setup_sects = 0;
  auto l = load(ram, spec);
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  // The kernel starts at (4 + 1) * 512 in the file.
  EXPECT_EQ(l.file.size(), 5 * 512 + spec.kernel.size());
  EXPECT_EQ(ram.bytes(0x1000000, spec.kernel.size()), spec.kernel);
}

TEST(BzImage, ZeroPageHasSetupHeaderLoaderTypeHeapAndCommandLine) {
  TestRam ram(64 * kMiB);
  auto l = load(ram, BzImageSpec{}, "console=ttyS0 root=/dev/vda1");
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  EXPECT_EQ(ram.get<uint32_t>(kZeroPage + 0x202), 0x53726448u);  // "HdrS" copied
  EXPECT_EQ(ram.get<uint16_t>(kZeroPage + 0x206), 0x020fu);
  EXPECT_EQ(ram.get<uint16_t>(kZeroPage + 0x1fe), 0xaa55u);
  EXPECT_EQ(ram.get<uint8_t>(kZeroPage + 0x210), 0xffu);  // type_of_loader
  uint8_t loadflags = ram.get<uint8_t>(kZeroPage + 0x211);
  EXPECT_TRUE(loadflags & 0x01) << "LOADED_HIGH kept";
  EXPECT_TRUE(loadflags & 0x80) << "CAN_USE_HEAP set";
  EXPECT_NE(ram.get<uint16_t>(kZeroPage + 0x224), 0u);  // heap_end_ptr
  uint32_t cmd = ram.get<uint32_t>(kZeroPage + 0x228);
  EXPECT_EQ(cmd, 0x20000u);
  EXPECT_EQ(ram.cstring(cmd), "console=ttyS0 root=/dev/vda1");
  // Nothing of the file beyond the header leaks into boot_params.
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x290), 0u);
}

TEST(BzImage, ZeroPageCarriesTheE820Map) {
  TestRam ram(64 * kMiB);
  auto l = load(ram, BzImageSpec{});
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  ASSERT_EQ(ram.get<uint8_t>(kZeroPage + 0x1e8), 4u);
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x2d0), 0u);
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x2d0 + 8), 0x9fc00u);
  EXPECT_EQ(ram.get<uint32_t>(kZeroPage + 0x2d0 + 16), 1u);
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x2d0 + 40), 0x100000u);
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x2d0 + 48), 63 * kMiB);
}

TEST(BzImage, InitrdIsPageAlignedAtTheTopOfRamAboveTheKernel) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  auto l = load(ram, spec, "", 100000);
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  uint32_t addr = ram.get<uint32_t>(kZeroPage + 0x218);
  uint32_t size = ram.get<uint32_t>(kZeroPage + 0x21c);
  EXPECT_EQ(size, 100000u);
  EXPECT_EQ(addr % 4096, 0u);
  EXPECT_LE(addr + size, 64 * kMiB);
  EXPECT_GT(addr + size, 64 * kMiB - 4096) << "as high as possible";
  EXPECT_GE(addr, 0x1000000u + spec.init_size) << "above the kernel's init_size";
  EXPECT_EQ(ram.bytes(addr, size), l.initrd);
}

TEST(BzImage, InitrdStaysBelowInitrdAddrMax) {
  TestRam ram(128 * kMiB);
  BzImageSpec spec;
  spec.initrd_addr_max = 0x2ffffff;  // highest byte: 48 MiB - 1
  auto l = load(ram, spec, "", 5000);
  ASSERT_TRUE(l.entry) << error_of(l.entry);
  uint32_t addr = ram.get<uint32_t>(kZeroPage + 0x218);
  EXPECT_LE(addr + 5000 - 1, 0x2ffffffu);
  EXPECT_EQ(addr % 4096, 0u);
  EXPECT_EQ(ram.bytes(addr, 5000), l.initrd);
}

TEST(BzImage, NoInitrdLeavesRamdiskFieldsZero) {
  TestRam ram(64 * kMiB);
  auto l = load(ram, BzImageSpec{});
  ASSERT_TRUE(l.entry);
  EXPECT_EQ(ram.get<uint32_t>(kZeroPage + 0x218), 0u);
  EXPECT_EQ(ram.get<uint32_t>(kZeroPage + 0x21c), 0u);
}

TEST(BzImage, PassesAcpiRsdpAddressOnProtocol214AndLater) {
  TestRam ram(64 * kMiB);
  auto l = load(ram, BzImageSpec{}, "", 0, 0xe0000);
  ASSERT_TRUE(l.entry);
  EXPECT_EQ(ram.get<uint64_t>(kZeroPage + 0x70), 0xe0000u);

  TestRam old_ram(64 * kMiB);
  BzImageSpec old;
  old.version = 0x020d;
  auto o = load(old_ram, old, "", 0, 0xe0000);
  ASSERT_TRUE(o.entry) << error_of(o.entry);
  EXPECT_EQ(old_ram.get<uint64_t>(kZeroPage + 0x70), 0u);
}

TEST(BzImage, RejectsProtocolOlderThan206) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.version = 0x0205;
  auto l = load(ram, spec);
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("2.05 is too old"), std::string::npos) << error_of(l.entry);
  EXPECT_NE(error_of(l.entry).find("'bz'"), std::string::npos);
}

TEST(BzImage, RejectsKernelWithoutXlfKernel64) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.xloadflags = 0x02;
  auto l = load(ram, spec);
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("XLF_KERNEL_64"), std::string::npos) << error_of(l.entry);
}

TEST(BzImage, RejectsZImage) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.loadflags = 0;
  auto l = load(ram, spec);
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("zImage"), std::string::npos) << error_of(l.entry);
}

TEST(BzImage, RejectsTruncatedSetupHeader) {
  TestRam ram(64 * kMiB);
  auto file = make_bzimage(BzImageSpec{});
  file.resize(0x230);  // cuts the header in the middle of cmdline_size
  auto r = load_bzimage(ram.mem(), BootImage{"bz", as_span(file), "", {}, "", 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(BzImage, RejectsFileEndingInsideTheSetupSectors) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.setup_sects = 60;  // claims 30 KiB of setup code
  auto file = make_bzimage(spec);
  file.resize(8 * 512);
  auto r = load_bzimage(ram.mem(), BootImage{"bz", as_span(file), "", {}, "", 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(BzImage, RejectsCommandLineLongerThanCmdlineSize) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.cmdline_size = 10;
  EXPECT_TRUE(load(ram, spec, std::string(10, 'x')).entry);
  auto l = load(ram, spec, std::string(11, 'x'));
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("command line"), std::string::npos) << error_of(l.entry);
}

TEST(BzImage, RejectsHugeCommandLineEvenIfTheKernelAllowsIt) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.cmdline_size = 0xffffffff;
  auto l = load(ram, spec, std::string(1 << 20, 'x'));
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("command line"), std::string::npos) << error_of(l.entry);
}

TEST(BzImage, RejectsInitrdTooBigForGuestRam) {
  TestRam ram(32 * kMiB);
  auto l = load(ram, BzImageSpec{}, "", 20 * kMiB);  // kernel footprint ends at 20 MiB
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("initramfs 'initrd.img'"), std::string::npos)
      << error_of(l.entry);
  EXPECT_NE(error_of(l.entry).find("does not fit"), std::string::npos);
}

TEST(BzImage, RejectsGuestRamTooSmallForTheKernel) {
  TestRam ram(2 * kMiB);
  auto l = load(ram, BzImageSpec{});
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("more memory"), std::string::npos) << error_of(l.entry);
}

TEST(BzImage, ZeroInitrdAddrMaxGivesAnErrorNotAWrap) {
  TestRam ram(64 * kMiB);
  BzImageSpec spec;
  spec.initrd_addr_max = 0;
  auto l = load(ram, spec, "", 4096);
  ASSERT_FALSE(l.entry);
  EXPECT_NE(error_of(l.entry).find("does not fit"), std::string::npos) << error_of(l.entry);
}

}  // namespace
}  // namespace skiff::x86
