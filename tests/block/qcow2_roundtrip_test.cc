// Create / write / reopen / read round trips over the cluster sizes and
// refcount widths qcow2 allows, each image checked by qemu-img when present.
#include <random>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::ScratchDir;

struct RoundTripParam {
  uint64_t cluster_size;
  uint32_t refcount_bits;
  uint32_t version;
};

class Qcow2RoundTrip : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(Qcow2RoundTrip, WrittenDataReadsBackAfterReopenAndPassesQemuCheck) {
  const RoundTripParam p = GetParam();
  ScratchDir dir;
  const std::string path = dir.file("img.qcow2");
  const uint64_t size = 64ull << 20;
  qcow2::CreateOptions co;
  co.size = size;
  co.cluster_size = p.cluster_size;
  co.refcount_bits = p.refcount_bits;
  co.version = p.version;
  ASSERT_TRUE(qcow2::create(path, co)) << "create";

  std::mt19937_64 rng(p.cluster_size * 131 + p.refcount_bits);
  std::vector<uint8_t> model(size, 0);
  {
    OpenImageOptions o;
    auto img = Qcow2Image::open(path, o);
    ASSERT_TRUE(img) << img.error().what();
    // Spread writes over the disk: unaligned, cluster-crossing, some large.
    for (int i = 0; i < 60; ++i) {
      uint64_t len = 1 + rng() % (i % 7 == 0 ? 3 * p.cluster_size + 777 : 9000);
      uint64_t off = rng() % (size - len);
      auto data = testing::random_bytes(rng, len);
      auto r = (*img)->write(off, data);
      ASSERT_TRUE(r) << r.error().what();
      std::copy(data.begin(), data.end(), model.begin() + off);
    }
    ASSERT_TRUE((*img)->flush());
  }
  OpenImageOptions ro;
  ro.read_only = true;
  auto img = open_image(path, ro);
  ASSERT_TRUE(img) << img.error().what();
  EXPECT_EQ((*img)->format(), "qcow2");
  EXPECT_EQ((*img)->size(), size);
  std::vector<uint8_t> got(size);
  ASSERT_TRUE((*img)->read(0, got));
  EXPECT_TRUE(got == model) << "contents differ after reopen";

  if (testing::have_tool("qemu-img")) {
    auto chk = testing::run("qemu-img check " + path);
    EXPECT_EQ(chk.status, 0) << chk.output;
    // Cross-check content through QEMU's reader too.
    const std::string raw = dir.file("expected.raw");
    FILE* f = fopen(raw.c_str(), "wb");
    ASSERT_TRUE(f);
    fwrite(model.data(), 1, model.size(), f);
    fclose(f);
    auto cmp = testing::run("qemu-img compare -f qcow2 -F raw " + path + " " + raw);
    EXPECT_EQ(cmp.status, 0) << cmp.output;
  }
}

INSTANTIATE_TEST_SUITE_P(
    ClusterSizesAndRefcountWidths, Qcow2RoundTrip,
    ::testing::Values(RoundTripParam{512, 16, 3}, RoundTripParam{512, 1, 3},
                      RoundTripParam{512, 64, 3}, RoundTripParam{4096, 16, 3},
                      RoundTripParam{4096, 1, 3}, RoundTripParam{4096, 64, 3},
                      RoundTripParam{65536, 16, 3}, RoundTripParam{65536, 1, 3},
                      RoundTripParam{65536, 64, 3}, RoundTripParam{65536, 16, 2},
                      RoundTripParam{2u << 20, 16, 3}, RoundTripParam{2u << 20, 1, 3},
                      RoundTripParam{2u << 20, 64, 3}),
    [](const auto& pinfo) {
      return "cluster" + std::to_string(pinfo.param.cluster_size) + "_refbits" +
             std::to_string(pinfo.param.refcount_bits) + "_v" + std::to_string(pinfo.param.version);
    });

TEST(Qcow2Create, FreshImagePassesQemuCheckAndReadsZero) {
  if (!testing::have_tool("qemu-img")) GTEST_SKIP() << "skipped: qemu-img not installed";
  ScratchDir dir;
  for (auto prealloc :
       {qcow2::Preallocation::kOff, qcow2::Preallocation::kMetadata, qcow2::Preallocation::kFull}) {
    const std::string path = dir.file("fresh.qcow2");
    qcow2::CreateOptions co;
    co.size = 10ull << 20;
    co.preallocation = prealloc;
    co.lazy_refcounts = true;
    ASSERT_TRUE(qcow2::create(path, co));
    auto chk = testing::run("qemu-img check " + path);
    EXPECT_EQ(chk.status, 0) << chk.output;
    auto info = testing::run("qemu-img info " + path);
    EXPECT_NE(info.output.find("virtual size: 10 MiB"), std::string::npos) << info.output;
    auto img = Qcow2Image::open(path, {});
    ASSERT_TRUE(img) << img.error().what();
    std::vector<uint8_t> buf(co.size, 0xee);
    ASSERT_TRUE((*img)->read(0, buf));
    EXPECT_EQ(std::count(buf.begin(), buf.end(), 0), static_cast<long>(buf.size()));
    auto st = (*img)->block_status(0, co.size);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->allocated, prealloc != qcow2::Preallocation::kOff);
  }
}

TEST(Qcow2Create, RejectsInvalidOptionsNamingThem) {
  ScratchDir dir;
  qcow2::CreateOptions co;
  co.size = 1 << 20;
  co.cluster_size = 3000;
  auto r = qcow2::create(dir.file("x"), co);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cluster_size"), std::string::npos);
  co.cluster_size = 65536;
  co.version = 2;
  co.refcount_bits = 64;
  r = qcow2::create(dir.file("x"), co);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("refcount_bits"), std::string::npos);
}

}  // namespace
}  // namespace skiff
