#include "arch/x86/boot_loader.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "arch/x86/bzimage.h"
#include "arch/x86/test_images.h"

// Generated where the test guests are built (full tree only).
#if __has_include("guests_dir.h")
#include "guests_dir.h"
#endif

namespace skiff::x86 {
namespace {

using testing::as_span;
using testing::BzImageSpec;
using testing::make_bzimage;
using testing::make_elf;
using testing::multiboot_header;
using testing::pvh_spec;
using testing::TestRam;

constexpr uint64_t kMiB = 1 << 20;

std::vector<uint8_t> multiboot_elf32() {
  testing::ElfSpec s;
  s.is64 = false;
  s.machine = 3;
  s.entry = 0x100000;
  auto text = multiboot_header(0x3);
  text.resize(256, 0x90);
  s.segments.push_back({0x100000, text, 0});
  return make_elf(s).bytes;
}

Result<KernelFormat> detect(const std::vector<uint8_t>& f) {
  return detect_kernel_format("k", as_span(f));
}

TEST(BootLoader, DetectsEachFormat) {
  EXPECT_EQ(detect(make_bzimage(BzImageSpec{})), KernelFormat::kBzImage);
  EXPECT_EQ(detect(make_elf(pvh_spec()).bytes), KernelFormat::kPvhElf);
  EXPECT_EQ(detect(multiboot_elf32()), KernelFormat::kMultiboot);
}

TEST(BootLoader, PrefersMultibootOverPvhInTheSameElfLikeQemu) {
  auto spec = pvh_spec();
  auto h = multiboot_header(0x3);
  spec.segments[0].data.insert(spec.segments[0].data.begin(), h.begin(), h.end());
  EXPECT_EQ(detect(make_elf(spec).bytes), KernelFormat::kMultiboot);
}

TEST(BootLoader, PvhElfWithABrokenMultibootHeaderStillBootsAsPvh) {
  auto spec = pvh_spec();
  auto h = multiboot_header(0x3, {}, /*good_checksum=*/false);
  spec.segments[0].data.insert(spec.segments[0].data.begin(), h.begin(), h.end());
  EXPECT_EQ(detect(make_elf(spec).bytes), KernelFormat::kPvhElf);
}

TEST(BootLoader, BadMultibootChecksumIsReportedWhenNothingElseMatches) {
  auto f = multiboot_header(0x3, {}, /*good_checksum=*/false);
  f.resize(512);
  auto r = detect(f);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("checksum"), std::string::npos) << r.error().message;
}

TEST(BootLoader, UnrecognisedFileNamesItselfAndSaysWhatIsMissing) {
  std::vector<uint8_t> junk(20000, 0x41);
  auto r = detect_kernel_format("/tmp/notakernel", as_span(junk));
  ASSERT_FALSE(r);
  const auto& m = r.error().message;
  EXPECT_NE(m.find("'/tmp/notakernel'"), std::string::npos) << m;
  EXPECT_NE(m.find("not a bzImage, PVH ELF or Multiboot kernel"), std::string::npos) << m;
  EXPECT_NE(m.find("no 'HdrS' magic"), std::string::npos) << m;
  EXPECT_NE(m.find("first 8 KiB"), std::string::npos) << m;
}

TEST(BootLoader, EmptyAndTinyFilesAreRejectedCleanly) {
  EXPECT_FALSE(detect({}));
  EXPECT_FALSE(detect({0x7f, 'E', 'L', 'F'}));  // magic only: malformed ELF
  EXPECT_FALSE(detect(std::vector<uint8_t>(0x205, 0)));
}

TEST(BootLoader, LoadKernelImageReportsTheDetectedFormat) {
  TestRam ram(64 * kMiB);
  auto file = make_elf(pvh_spec());
  KernelFormat f = KernelFormat::kBzImage;
  auto r = load_kernel_image(ram.mem(), BootImage{"k", as_span(file.bytes), "", {}, "", 0}, &f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f, KernelFormat::kPvhElf);
  EXPECT_EQ(r->mode, EntryMode::kProtected32);
}

class BootLoaderFiles : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path = ::testing::TempDir() + "skiff_loader_" + name;
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    paths_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const auto& p : paths_) std::remove(p.c_str());
  }
  std::vector<std::string> paths_;
};

TEST_F(BootLoaderFiles, LoadsBzImageAndInitramfsFromFiles) {
  TestRam ram(64 * kMiB);
  std::vector<uint8_t> initrd(5000, 0x33);
  BootImageConfig cfg{write("bz", make_bzimage(BzImageSpec{})), write("initrd", initrd), "ro"};
  KernelFormat f{};
  auto r = load_kernel(ram.mem(), cfg, 0xe0000, &f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f, KernelFormat::kBzImage);
  uint32_t addr = ram.get<uint32_t>(0x7000 + 0x218);
  EXPECT_EQ(ram.bytes(addr, initrd.size()), initrd);
  EXPECT_EQ(ram.cstring(0x20000), "ro");
}

// read_boot_files is what skiff runs before /dev/kvm: it needs no guest
// memory, identifies the kernel, and refuses a file that is not one.
TEST_F(BootLoaderFiles, ReadsAndIdentifiesTheFilesWithoutGuestMemory) {
  BootImageConfig cfg{write("bz4", make_bzimage(BzImageSpec{})), write("initrd4", {1, 2, 3}), ""};
  auto files = read_boot_files(cfg, 64 * kMiB);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(files->format, KernelFormat::kBzImage);
  EXPECT_EQ(files->initramfs, std::string("\x01\x02\x03"));
  // Loading them later gives what load_kernel gives.
  TestRam ram(64 * kMiB);
  ASSERT_TRUE(load_boot_files(ram.mem(), *files, 0));
  EXPECT_EQ(ram.bytes(ram.get<uint32_t>(0x7000 + 0x218), 3), (std::vector<uint8_t>{1, 2, 3}));

  std::string junk = write("junk", std::vector<uint8_t>(4096, 'x'));
  auto bad = read_boot_files({junk, "", ""}, 64 * kMiB);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find(junk + "': not a bzImage, PVH ELF or Multiboot kernel"),
            std::string::npos)
      << bad.error().message;
  auto empty = read_boot_files({cfg.kernel_path, write("empty", {}), ""}, 64 * kMiB);
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("is empty"), std::string::npos) << empty.error().message;
}

TEST_F(BootLoaderFiles, MissingKernelFileErrorNamesThePath) {
  TestRam ram(64 * kMiB);
  BootImageConfig cfg{"/nonexistent/vmlinuz", "", ""};
  auto r = load_kernel(ram.mem(), cfg, 0, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("/nonexistent/vmlinuz"), std::string::npos);
}

TEST_F(BootLoaderFiles, MissingInitramfsErrorNamesThePath) {
  TestRam ram(64 * kMiB);
  BootImageConfig cfg{write("bz2", make_bzimage(BzImageSpec{})), "/nonexistent/initrd", ""};
  auto r = load_kernel(ram.mem(), cfg, 0, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("/nonexistent/initrd"), std::string::npos);
}

TEST_F(BootLoaderFiles, RefusesDevicesAndFilesLargerThanGuestRam) {
  TestRam ram(2 * kMiB);
  auto r = load_kernel(ram.mem(), BootImageConfig{"/dev/zero", "", ""}, 0, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a regular file"), std::string::npos) << r.error().message;

  BootImageConfig big{write("bz3", make_bzimage(BzImageSpec{})),
                      write("big_initrd", std::vector<uint8_t>(3 * kMiB)), ""};
  r = load_kernel(ram.mem(), big, 0, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("larger than guest RAM"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("big_initrd"), std::string::npos);
}

// Every prefix of every synthetic image, and single-byte corruptions of the
// headers, must load or fail with an error: never crash or touch memory
// outside the buffers (run under ASan/UBSan with -DSKIFF_SANITIZE=ON).
TEST(BootLoader, TruncatedAndCorruptedImagesNeverCrash) {
  TestRam ram(40 * kMiB);
  std::vector<std::vector<uint8_t>> images{make_bzimage(BzImageSpec{}), make_elf(pvh_spec()).bytes,
                                           multiboot_elf32()};
  std::vector<uint8_t> initrd(4096, 1);
  size_t loaded = 0, failed = 0;
  auto attempt = [&](const std::vector<uint8_t>& f) {
    auto r = load_kernel_image(ram.mem(), BootImage{"k", as_span(f), "i", as_span(initrd), "x", 0},
                               nullptr);
    if (r) {
      ++loaded;
    } else {
      ++failed;
      EXPECT_FALSE(r.error().message.empty());
    }
  };
  for (const auto& img : images) {
    for (size_t len = 0; len < img.size(); len += (len < 0x300 ? 1 : 61)) {
      attempt(std::vector<uint8_t>(img.begin(), img.begin() + static_cast<ptrdiff_t>(len)));
    }
    for (size_t pos = 0; pos < std::min<size_t>(img.size(), 0x300); ++pos) {
      for (uint8_t v : {uint8_t{0}, uint8_t{0xff}, uint8_t{0x80}}) {
        auto copy = img;
        copy[pos] = v;
        attempt(copy);
      }
    }
  }
  EXPECT_GT(loaded, 0u);
  EXPECT_GT(failed, 0u);
}

// The real Debian cloud kernel (and initramfs, when present), fetched by
// scripts/build-guest.
TEST(BootLoader, LoadsDebianCloudKernel) {
  const std::string dir = "/work/main/.cache/guest/";
  const std::string kernel = dir + "vmlinuz";
  if (!std::filesystem::exists(kernel))
    GTEST_SKIP() << "skipped: " << kernel << " is absent (scripts/build-guest fetches it)";
  std::string initramfs = dir + "initramfs.cpio.gz";
  if (!std::filesystem::exists(initramfs)) initramfs.clear();
  TestRam ram(512 * kMiB);
  KernelFormat f{};
  BootImageConfig cfg{kernel, initramfs, "console=ttyS0"};
  auto r = load_kernel(ram.mem(), cfg, 0xe0000, &f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f, KernelFormat::kBzImage);
  EXPECT_GE(ram.get<uint16_t>(0x7000 + 0x206), 0x020cu);
  EXPECT_EQ(r->mode, EntryMode::kLong64);
  uint32_t load_addr = ram.get<uint32_t>(0x7000 + 0x214);
  EXPECT_EQ(r->rip, load_addr + 0x200u);
  EXPECT_EQ(ram.get<uint64_t>(0x7000 + 0x70), 0xe0000u);
  if (!initramfs.empty()) {
    uint32_t addr = ram.get<uint32_t>(0x7000 + 0x218);
    uint32_t size = ram.get<uint32_t>(0x7000 + 0x21c);
    EXPECT_EQ(size, std::filesystem::file_size(initramfs));
    EXPECT_EQ(addr % 4096, 0u);
    EXPECT_GE(addr, load_addr + ram.get<uint32_t>(0x7000 + 0x260)) << "above init_size";
    EXPECT_LE(uint64_t{addr} + size, 512 * kMiB);
  }
}

// skiff's own test guests (tests/guests), real compiler/linker output:
// <name>.pvh.elf is ELF64 + PVH note, <name>.mb.elf the same code as ELF32
// with a Multiboot header (and the note, which objcopy keeps).
TEST(BootLoader, LoadsTheBuiltTestGuests) {
#ifndef SKIFF_GUESTS_DIR
  GTEST_SKIP() << "skipped: guests_dir.h not generated in this build tree";
#else
  const std::string dir = SKIFF_GUESTS_DIR;
  const std::string pvh = dir + "/bootinfo.pvh.elf", mb = dir + "/bootinfo.mb.elf";
  if (!std::filesystem::exists(pvh) || !std::filesystem::exists(mb))
    GTEST_SKIP() << "skipped: build the skiff_guests target first (" << pvh << " absent)";
  TestRam ram(64 * kMiB);
  KernelFormat f{};
  auto r = load_kernel(ram.mem(), BootImageConfig{pvh, "", "x"}, 0xe0000, &f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f, KernelFormat::kPvhElf);
  EXPECT_EQ(r->rbx, 0x6000u);
  TestRam ram2(64 * kMiB);
  r = load_kernel(ram2.mem(), BootImageConfig{mb, "", "x"}, 0xe0000, &f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f, KernelFormat::kMultiboot);
  EXPECT_EQ(r->rax, 0x2BADB002u);
#endif
}

}  // namespace
}  // namespace skiff::x86
