// Hostile images: hand-corrupted headers and tables must give a clear error
// naming the field (no crash, no read outside the file). Run under
// -DSKIFF_SANITIZE=ON to catch out-of-bounds accesses.
#include <fcntl.h>
#include <unistd.h>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/format.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::ScratchDir;

class Qcow2Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("img.qcow2");
    qcow2::CreateOptions co;
    co.size = 4 << 20;
    ASSERT_TRUE(qcow2::create(path_, co));
    auto img = Qcow2Image::open(path_, {});
    ASSERT_TRUE(img);
    std::vector<uint8_t> d(65536, 0x77);
    ASSERT_TRUE((*img)->write(0, d));
  }
  void poke(uint64_t off, std::span<const uint8_t> bytes) {
    int fd = ::open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off)),
              static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  void poke32(uint64_t off, uint32_t v) {
    uint8_t b[4];
    qcow2::store_be32(b, v);
    poke(off, b);
  }
  void poke64(uint64_t off, uint64_t v) {
    uint8_t b[8];
    qcow2::store_be64(b, v);
    poke(off, b);
  }
  uint64_t l1_entry0() {
    auto img = Qcow2Image::open(path_, {.read_only = true});
    EXPECT_TRUE(img);
    return (*img)->header().l1_table_offset;
  }
  // Opening fails with a message containing `needle`.
  void expect_open_error(const std::string& needle, bool read_only = true) {
    auto img = Qcow2Image::open(path_, {.read_only = read_only});
    ASSERT_FALSE(img) << "opened a corrupt image";
    EXPECT_NE(img.error().message.find(needle), std::string::npos) << img.error().message;
  }
  // Opening works but reading the first cluster fails naming `needle`.
  void expect_read_error(const std::string& needle) {
    auto img = Qcow2Image::open(path_, {.read_only = true});
    ASSERT_TRUE(img) << img.error().what();
    std::vector<uint8_t> buf(4096);
    auto r = (*img)->read(0, buf);
    ASSERT_FALSE(r) << "read from a corrupt table succeeded";
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  }
  ScratchDir dir_;
  std::string path_;
};

TEST_F(Qcow2Hostile, RejectsClusterBits30) {
  poke32(20, 30);
  expect_open_error("cluster_bits");
}

TEST_F(Qcow2Hostile, RejectsL1TablePastEndOfFile) {
  poke64(40, 1ull << 40);
  expect_open_error("l1_table_offset");
}

TEST_F(Qcow2Hostile, RejectsHugeL1Size) {
  poke32(36, 0x7fffffff);
  expect_open_error("l1_size");
}

TEST_F(Qcow2Hostile, RejectsRefcountTableOverlappingHeader) {
  poke64(48, 0);
  expect_open_error("refcount_table_offset");
}

TEST_F(Qcow2Hostile, RejectsUnknownIncompatibleBitNamingIt) {
  poke64(72, 1ull << 9);
  expect_open_error("bit 9");
}

TEST_F(Qcow2Hostile, CorruptBitRefusesWritableOpenButAllowsReadOnly) {
  poke64(72, qcow2::kIncompatCorrupt);
  expect_open_error("corrupt", /*read_only=*/false);
  auto ro = Qcow2Image::open(path_, {.read_only = true});
  EXPECT_TRUE(ro);
}

TEST_F(Qcow2Hostile, RejectsMisalignedL2Offset) {
  const uint64_t l1 = l1_entry0();
  auto img = Qcow2Image::open(path_, {.read_only = true});
  auto entries = (*img)->l1_table();
  img->reset();
  poke64(l1, ((*entries)[0] & qcow2::kL1OffsetMask) + 512);
  expect_read_error("misaligned");
}

TEST_F(Qcow2Hostile, RejectsL2EntryPastEndOfFile) {
  auto img = Qcow2Image::open(path_, {.read_only = true});
  const uint64_t l2 = (*(*img)->l1_table())[0] & qcow2::kL1OffsetMask;
  img->reset();
  poke64(l2, qcow2::kOflagCopied | (1ull << 40));
  expect_read_error("past the end");
}

TEST_F(Qcow2Hostile, RejectsCompressedDescriptorOutsideFile) {
  auto img = Qcow2Image::open(path_, {.read_only = true});
  const uint64_t l2 = (*(*img)->l1_table())[0] & qcow2::kL1OffsetMask;
  img->reset();
  poke64(l2, qcow2::encode_compressed(1ull << 38, 1000, 16));
  expect_read_error("compressed");
}

TEST_F(Qcow2Hostile, RejectsRefcountBlockPastEndOfFileOnWrite) {
  auto img = Qcow2Image::open(path_, {.read_only = true});
  const uint64_t rt = (*img)->header().refcount_table_offset;
  img->reset();
  poke64(rt, 1ull << 40);
  auto w = Qcow2Image::open(path_, {});
  ASSERT_TRUE(w);
  std::vector<uint8_t> d(512, 1);
  auto r = (*w)->write(2 << 20, d);  // needs an allocation
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("refcount table entry 0"), std::string::npos)
      << r.error().message;
}

TEST_F(Qcow2Hostile, RejectsBackingFileLoop) {
  // a -> b -> a
  qcow2::CreateOptions co;
  co.size = 1 << 20;
  co.backing_file = "b.qcow2";
  ASSERT_TRUE(qcow2::create(dir_.file("a.qcow2"), co));
  co.backing_file = "a.qcow2";
  ASSERT_TRUE(qcow2::create(dir_.file("b.qcow2"), co));
  auto img = open_image(dir_.file("a.qcow2"), {.read_only = true});
  ASSERT_FALSE(img);
  EXPECT_NE(img.error().message.find("loop"), std::string::npos) << img.error().message;
  // Self-reference too.
  co.backing_file = "self.qcow2";
  ASSERT_TRUE(qcow2::create(dir_.file("self.qcow2"), co));
  EXPECT_FALSE(open_image(dir_.file("self.qcow2"), {.read_only = true}));
}

TEST_F(Qcow2Hostile, TruncatedFileIsRejected) {
  ASSERT_EQ(::truncate(path_.c_str(), 50), 0);
  expect_open_error("too small");
}

TEST_F(Qcow2Hostile, DirtyBitRebuildsRefcountsOnWritableOpen) {
  // Zero the whole refcount block and set the dirty bit: a writable open must
  // rebuild refcounts from the tables, leaving a clean image with its data.
  auto img = Qcow2Image::open(path_, {.read_only = true});
  const uint64_t rt = (*img)->header().refcount_table_offset;
  const uint64_t rb = (*(*img)->refcount_table())[0];
  img->reset();
  std::vector<uint8_t> zero(65536, 0);
  poke(rb, zero);
  poke64(72, qcow2::kIncompatDirty);
  (void)rt;
  {
    auto w = Qcow2Image::open(path_, {});
    ASSERT_TRUE(w) << w.error().what();
    EXPECT_EQ((*w)->header().incompatible_features & qcow2::kIncompatDirty, 0u);
    std::vector<uint8_t> d(4096, 0x31);
    ASSERT_TRUE((*w)->write(1 << 20, d));
    std::vector<uint8_t> got(65536);
    ASSERT_TRUE((*w)->read(0, got));
    EXPECT_EQ(got[100], 0x77);
  }
  if (testing::have_tool("qemu-img")) {
    auto chk = testing::run("qemu-img check " + path_);
    EXPECT_EQ(chk.status, 0) << chk.output;
  }
}

}  // namespace
}  // namespace skiff
