#include "arch/x86/pvh.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86/test_images.h"

namespace skiff::x86 {
namespace {

using testing::as_span;
using testing::ElfImage;
using testing::make_elf;
using testing::put;
using testing::pvh_spec;
using testing::TestRam;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kStartInfo = 0x6000;

Result<EntryState> load(const TestRam& ram, const std::vector<uint8_t>& file,
                        const std::vector<uint8_t>& initrd = {}, std::string_view cmdline = "",
                        uint64_t rsdp = 0) {
  return load_pvh(
      ram.mem(), BootImage{"vmlinux", as_span(file), "initrd.img", as_span(initrd), cmdline, rsdp});
}

std::string error_of(const Result<EntryState>& r) {
  return r ? "" : r.error().message;
}

TEST(Pvh, FindsEntryPointInXenNoteNotInElfHeader) {
  auto img = make_elf(pvh_spec(0x100040));
  auto e = find_pvh_entry("vmlinux", ImageBytes(as_span(img.bytes)));
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->has_value());
  EXPECT_EQ(**e, 0x100040u);
}

TEST(Pvh, ElfWithoutXenNoteHasNoPvhEntry) {
  auto spec = pvh_spec();
  spec.notes.erase(spec.notes.begin());  // keep only the GNU note
  auto img = make_elf(spec);
  auto e = find_pvh_entry("vmlinux", ImageBytes(as_span(img.bytes)));
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->has_value());
}

TEST(Pvh, LoadsSegmentsAtPaddrAndZeroesBss) {
  TestRam ram(64 * kMiB);
  // Dirty the bss range first so zero-filling is observable.
  std::vector<uint8_t> junk(0x3000, 0xee);
  ASSERT_TRUE(ram.mem().write(0x200000, junk));
  auto spec = pvh_spec();
  auto img = make_elf(spec);
  auto r = load(ram, img.bytes);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(ram.bytes(0x100000, spec.segments[0].data.size()), spec.segments[0].data);
  EXPECT_EQ(ram.bytes(0x200000, 0x800), spec.segments[1].data);
  EXPECT_EQ(ram.bytes(0x200800, 0x2800), std::vector<uint8_t>(0x2800, 0));
}

TEST(Pvh, EntersIn32BitModeWithEbxPointingAtStartInfo) {
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(pvh_spec(0x100010)).bytes);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(r->mode, EntryMode::kProtected32);
  EXPECT_EQ(r->rip, 0x100010u);
  EXPECT_EQ(r->rbx, kStartInfo);
}

TEST(Pvh, StartInfoHasMagicVersionCmdlineRsdpAndMemmap) {
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(pvh_spec()).bytes, {}, "console=hvc0", 0xe0000);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(ram.get<uint32_t>(kStartInfo + 0), 0x336ec578u);
  EXPECT_EQ(ram.get<uint32_t>(kStartInfo + 4), 1u);   // version
  EXPECT_EQ(ram.get<uint32_t>(kStartInfo + 8), 0u);   // flags
  EXPECT_EQ(ram.get<uint32_t>(kStartInfo + 12), 0u);  // no modules
  EXPECT_EQ(ram.get<uint64_t>(kStartInfo + 16), 0u);
  uint64_t cmdline = ram.get<uint64_t>(kStartInfo + 24);
  EXPECT_EQ(ram.cstring(cmdline), "console=hvc0");
  EXPECT_EQ(ram.get<uint64_t>(kStartInfo + 32), 0xe0000u);
  uint64_t memmap = ram.get<uint64_t>(kStartInfo + 40);
  uint32_t n = ram.get<uint32_t>(kStartInfo + 48);
  ASSERT_EQ(n, 4u);
  // hvm_memmap_table_entry: addr, size, type, reserved (24 bytes).
  EXPECT_EQ(ram.get<uint64_t>(memmap + 0), 0u);
  EXPECT_EQ(ram.get<uint64_t>(memmap + 8), 0x9fc00u);
  EXPECT_EQ(ram.get<uint32_t>(memmap + 16), 1u);
  EXPECT_EQ(ram.get<uint64_t>(memmap + 48), 0x100000u);
  EXPECT_EQ(ram.get<uint64_t>(memmap + 56), 63 * kMiB);
  EXPECT_EQ(ram.get<uint64_t>(memmap + 72), 0xe0000000u);
  EXPECT_EQ(ram.get<uint32_t>(memmap + 72 + 16), 2u);
}

TEST(Pvh, InitramfsIsModuleZeroAtTheTopOfRam) {
  TestRam ram(64 * kMiB);
  std::vector<uint8_t> initrd(12345);
  for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i ^ 0x5a);
  auto r = load(ram, make_elf(pvh_spec()).bytes, initrd);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(ram.get<uint32_t>(kStartInfo + 12), 1u);
  uint64_t modlist = ram.get<uint64_t>(kStartInfo + 16);
  ASSERT_NE(modlist, 0u);
  uint64_t paddr = ram.get<uint64_t>(modlist);
  EXPECT_EQ(ram.get<uint64_t>(modlist + 8), initrd.size());
  EXPECT_EQ(paddr % 4096, 0u);
  EXPECT_GE(paddr, 0x203000u) << "above the kernel";
  EXPECT_LE(paddr + initrd.size(), 64 * kMiB);
  EXPECT_EQ(ram.bytes(paddr, initrd.size()), initrd);
}

TEST(Pvh, Elf32KernelWithFourByteNoteLoads) {
  auto spec = pvh_spec();
  spec.is64 = false;
  spec.machine = 3;
  spec.entry = 0x100000;
  uint32_t entry = 0x100020;
  spec.notes[0].desc.assign(4, 0);
  std::memcpy(spec.notes[0].desc.data(), &entry, 4);
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(spec).bytes);
  ASSERT_TRUE(r) << error_of(r);
  EXPECT_EQ(r->rip, 0x100020u);
  EXPECT_EQ(ram.bytes(0x100000, spec.segments[0].data.size()), spec.segments[0].data);
}

TEST(Pvh, RejectsSegmentOffsetPastEndOfFile) {
  auto img = make_elf(pvh_spec());
  put<uint64_t>(img.bytes, img.phdr_field(img.first_load_phdr, 8, 4, true), img.bytes.size() - 16);
  TestRam ram(64 * kMiB);
  auto r = load(ram, img.bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("past the end"), std::string::npos) << error_of(r);
  EXPECT_NE(error_of(r).find("'vmlinux'"), std::string::npos);
}

TEST(Pvh, RejectsFileSizeLargerThanMemorySize) {
  auto img = make_elf(pvh_spec());
  put<uint64_t>(img.bytes, img.phdr_field(img.first_load_phdr, 40, 20, true), 0x10);  // p_memsz
  TestRam ram(64 * kMiB);
  auto r = load(ram, img.bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("larger than its memory size"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsSegmentOutsideGuestRam) {
  auto spec = pvh_spec();
  spec.segments[1].paddr = 0x7fff000;  // 128 MiB - 4 KiB, guest has 64 MiB
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(spec).bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("not in guest RAM"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsSegmentWhoseEndWrapsAround) {
  auto img = make_elf(pvh_spec());
  size_t i = img.first_load_phdr + 1;
  put<uint64_t>(img.bytes, img.phdr_field(i, 24, 12, true), 0xfffffffffffff000ull);
  TestRam ram(64 * kMiB);
  auto r = load(ram, img.bytes);
  ASSERT_FALSE(r);
}

TEST(Pvh, RejectsSegmentOverBootDataBelowOneMiB) {
  auto spec = pvh_spec();
  spec.segments[1].paddr = 0x6000;  // would overwrite the start info
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(spec).bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("below 1 MiB"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsTruncatedProgramHeaders) {
  auto img = make_elf(pvh_spec());
  img.bytes.resize(64 + 56 + 20);  // ELF header, one program header and a bit
  TestRam ram(64 * kMiB);
  auto r = load(ram, img.bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("truncated"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsNoteRunningPastItsSegment) {
  auto img = make_elf(pvh_spec());
  // Note 0's descsz (at note offset + 4) made huge.
  size_t note_off = testing::get<uint64_t>(img.bytes, img.phdr_field(0, 8, 4, true));
  put<uint32_t>(img.bytes, note_off + 4, 0x7fffffff);
  TestRam ram(64 * kMiB);
  auto r = load(ram, img.bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("note"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsEntryNoteOfOddSize) {
  auto spec = pvh_spec();
  spec.notes[0].desc.resize(6);
  TestRam ram(64 * kMiB);
  auto r = load(ram, make_elf(spec).bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(error_of(r).find("6-byte"), std::string::npos) << error_of(r);
}

TEST(Pvh, RejectsEntryPointAboveFourGiB) {
  auto r = find_pvh_entry("vmlinux", ImageBytes(as_span(make_elf(pvh_spec(0x100000000ull)).bytes)));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("above 4 GiB"), std::string::npos);
}

}  // namespace
}  // namespace skiff::x86
