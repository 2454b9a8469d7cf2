// Randomised model test: random writes, discards and write_zeroes against a
// qcow2 image and a flat in-memory model, compared on every touched range
// after each step and entirely after close + reopen (and by qemu-img check).
#include <random>

#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block/raw_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::ScratchDir;

struct ModelParam {
  uint32_t version;
  bool backing;
  uint64_t cluster_size;
  size_t l2_cache_bytes;
};

class Qcow2Model : public ::testing::TestWithParam<ModelParam> {};

TEST_P(Qcow2Model, RandomOperationsMatchFlatModelAndSurviveReopen) {
  const ModelParam p = GetParam();
  ScratchDir dir;
  const uint64_t size = 8ull << 20;
  std::mt19937_64 rng(p.version * 7 + p.backing * 3 + p.cluster_size);
  std::vector<uint8_t> model(size, 0);
  qcow2::CreateOptions co;
  co.size = size;
  co.cluster_size = p.cluster_size;
  co.version = p.version;
  if (p.backing) {
    // A raw backing file with random content, a bit shorter than the image so
    // reads past its end must return zeroes.
    const std::string base = dir.file("base.raw");
    ASSERT_TRUE(RawImage::create(base, size - 3 * p.cluster_size - 512));
    auto b = RawImage::open(base, false);
    ASSERT_TRUE(b);
    auto data = testing::random_bytes(rng, (*b)->size());
    ASSERT_TRUE((*b)->write(0, data));
    std::copy(data.begin(), data.end(), model.begin());
    co.backing_file = "base.raw";  // relative: resolved against the image's directory
    co.backing_format = "raw";
  }
  const std::string path = dir.file("top.qcow2");
  ASSERT_TRUE(qcow2::create(path, co));
  OpenImageOptions o;
  o.l2_cache_bytes = p.l2_cache_bytes;
  o.refcount_cache_bytes = 4 * p.cluster_size;  // forces evictions
  auto img = Qcow2Image::open(path, o);
  ASSERT_TRUE(img) << img.error().what();
  Qcow2Image& q = **img;
  const bool discard_keeps = p.version == 2 && p.backing;  // see zero_cluster()
  const uint64_t cs = p.cluster_size;

  for (int step = 0; step < 2500; ++step) {
    const int op = static_cast<int>(rng() % 10);
    uint64_t len = 1 + rng() % (rng() % 8 == 0 ? 4 * cs : 3000);
    uint64_t off = rng() % (size - len + 1);
    if (rng() % 4 == 0) off &= ~uint64_t{511};
    SCOPED_TRACE("step " + std::to_string(step) + " op " + std::to_string(op) + " off " +
                 std::to_string(off) + " len " + std::to_string(len));
    if (op < 6) {
      auto data = testing::random_bytes(rng, len);
      auto r = q.write(off, data);
      ASSERT_TRUE(r) << r.error().what();
      std::copy(data.begin(), data.end(), model.begin() + off);
    } else if (op < 8) {
      const bool unmap = rng() % 2;
      auto r = q.write_zeroes(off, len, unmap);
      ASSERT_TRUE(r) << r.error().what();
      std::fill_n(model.begin() + off, len, 0);
    } else if (op == 8) {
      auto r = q.discard(off, len);
      ASSERT_TRUE(r) << r.error().what();
      // Whole clusters inside the range read as zeroes; partial ones keep data.
      uint64_t a = (off + cs - 1) & ~(cs - 1);
      uint64_t e = (off + len) & ~(cs - 1);
      if (off + len == size) e = size;
      if (!discard_keeps && a < e) std::fill(model.begin() + a, model.begin() + e, 0);
    } else {
      ASSERT_TRUE(q.flush());
    }
    std::vector<uint8_t> got(len);
    auto r = q.read(off, got);
    ASSERT_TRUE(r) << r.error().what();
    ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + off)) << "mismatch";
  }
  img->reset();
  auto again = Qcow2Image::open(path, o);
  ASSERT_TRUE(again) << again.error().what();
  std::vector<uint8_t> all(size);
  ASSERT_TRUE((*again)->read(0, all));
  EXPECT_TRUE(all == model) << "contents differ after reopen";
  again->reset();
  if (testing::have_tool("qemu-img")) {
    auto chk = testing::run("qemu-img check " + path);
    EXPECT_EQ(chk.status, 0) << chk.output;
  }
}

INSTANTIATE_TEST_SUITE_P(
    VersionsAndBacking, Qcow2Model,
    ::testing::Values(ModelParam{3, false, 65536, 1 << 20}, ModelParam{3, true, 65536, 1 << 20},
                      ModelParam{2, false, 65536, 1 << 20}, ModelParam{2, true, 65536, 1 << 20},
                      ModelParam{3, true, 4096, 16384}, ModelParam{3, false, 512, 2048}),
    [](const auto& pinfo) {
      return "v" + std::to_string(pinfo.param.version) +
             (pinfo.param.backing ? "_backing" : "_plain") + "_cluster" +
             std::to_string(pinfo.param.cluster_size);
    });

}  // namespace
}  // namespace skiff
