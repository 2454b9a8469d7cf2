// block/tools against QEMU as the reference: images written by qemu-img are
// checked and snapshotted by skiff, and qemu-img checks and reads the result.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "block/tools/check.h"
#include "block/tools/qcow2_metadata.h"
#include "block/tools/snapshot.h"
#include "skiff_img/tool_runner.h"

namespace skiff::qcow2tools {
namespace {

using skiff::testing::make_scratch_dir;
using skiff::testing::qemu_content;
using skiff::testing::read_bytes;
using skiff::testing::run;

class Qcow2ToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!skiff::testing::have_qemu_img()) GTEST_SKIP() << "qemu-img not installed";
    dir_ = make_scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    img_ = dir_ + "/disk.qcow2";
    raw_ = dir_ + "/content.raw";
  }
  void qemu_io(const std::string& cmd) {
    auto r = run("qemu-io -f qcow2 -c '" + cmd + "' '" + img_ + "'");
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  int qemu_check() { return run("qemu-img check '" + img_ + "'").exit_code; }
  // Rewrites the refcount of host cluster `c` with a raw 16-bit store.
  void poke_refcount(uint64_t c, uint16_t v) {
    auto m = Qcow2Metadata::open(img_, true);
    ASSERT_TRUE(m) << m.error().what();
    ASSERT_TRUE(m->set_refcount(c, v));
    ASSERT_TRUE(m->flush());
  }

  std::string dir_, img_, raw_;
};

TEST_F(Qcow2ToolsTest, CleanQemuImageChecksClean) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 4M").exit_code, 0);
  qemu_io("write -P 0x11 0 200k");
  qemu_io("write -c -P 0x22 1M 64k");  // compressed cluster
  auto r = check_qcow2(img_, RepairMode::kNone);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->corruptions, 0u);
  EXPECT_EQ(r->leaks, 0u);
  EXPECT_EQ(r->compressed_clusters, 1u);
  EXPECT_EQ(r->allocated_clusters, 5u);  // 200k = 4 clusters + the compressed one
}

TEST_F(Qcow2ToolsTest, HandMadeLeakIsFoundAndRepairedLikeQemu) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 4M").exit_code, 0);
  qemu_io("write -P 0x33 0 128k");
  // A cluster past the used area gets a refcount nobody references.
  ASSERT_EQ(run("truncate -s +64k '" + img_ + "'").exit_code, 0);
  uint64_t leaked = read_bytes(img_).size() / 65536 - 1;
  poke_refcount(leaked, 1);
  EXPECT_EQ(qemu_check(), 3);
  auto r = check_qcow2(img_, RepairMode::kNone);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->leaks, 1u);
  EXPECT_EQ(r->corruptions, 0u);
  auto fixed = check_qcow2(img_, RepairMode::kLeaks);
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->leaks_fixed, 1u);
  EXPECT_EQ(fixed->leaks, 0u);
  EXPECT_EQ(qemu_check(), 0);
}

TEST_F(Qcow2ToolsTest, TooLowRefcountIsCorruptionAndRebuildRepairsIt) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 4M").exit_code, 0);
  qemu_io("write -P 0x44 0 256k");
  auto before = qemu_content(img_, raw_);
  auto m = Qcow2Metadata::open(img_, false);
  ASSERT_TRUE(m);
  auto l1 = m->read_l1();
  ASSERT_TRUE(l1);
  auto l2 = m->read_table((*l1)[0] & qcow2::kL1OffsetMask, m->l2_entries(), "L2");
  ASSERT_TRUE(l2);
  uint64_t data_cluster = ((*l2)[1] & qcow2::kL2OffsetMask) / 65536;
  poke_refcount(data_cluster, 0);
  EXPECT_EQ(qemu_check(), 2);
  auto r = check_qcow2(img_, RepairMode::kNone);
  ASSERT_TRUE(r);
  EXPECT_GE(r->corruptions, 1u);
  auto fixed = check_qcow2(img_, RepairMode::kAll);
  ASSERT_TRUE(fixed) << fixed.error().what();
  EXPECT_TRUE(fixed->rebuilt_refcounts);
  EXPECT_EQ(fixed->corruptions, 0u);
  EXPECT_EQ(fixed->leaks, 0u);
  EXPECT_EQ(qemu_check(), 0) << run("qemu-img check '" + img_ + "'").out;
  EXPECT_EQ(qemu_content(img_, raw_), before);
}

TEST_F(Qcow2ToolsTest, SnapshotsCreatedBySkiffAreListedAndAppliedByQemu) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 2M").exit_code, 0);
  qemu_io("write -P 0x55 0 192k");
  auto v1 = qemu_content(img_, raw_);
  ASSERT_TRUE(create_snapshot(img_, "first"));
  qemu_io("write -P 0x66 64k 64k");
  qemu_io("write -P 0x77 1M 4k");
  auto v2 = qemu_content(img_, raw_);
  EXPECT_EQ(qemu_check(), 0) << run("qemu-img check '" + img_ + "'").out;
  auto list = run("qemu-img snapshot -l '" + img_ + "'");
  EXPECT_NE(list.out.find("first"), std::string::npos) << list.out;
  ASSERT_EQ(run("qemu-img snapshot -a first '" + img_ + "'").exit_code, 0);
  EXPECT_EQ(qemu_content(img_, raw_), v1);
  EXPECT_NE(v1, v2);
}

TEST_F(Qcow2ToolsTest, QemuSnapshotsAreAppliedAndDeletedBySkiff) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 2M").exit_code, 0);
  qemu_io("write -P 0x12 0 128k");
  auto v1 = qemu_content(img_, raw_);
  ASSERT_EQ(run("qemu-img snapshot -c base '" + img_ + "'").exit_code, 0);
  qemu_io("write -P 0x34 0 64k");
  auto snaps = list_snapshots(img_);
  ASSERT_TRUE(snaps);
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].name, "base");
  EXPECT_EQ((*snaps)[0].id, "1");
  ASSERT_TRUE(apply_snapshot(img_, "base"));
  EXPECT_EQ(qemu_content(img_, raw_), v1);
  EXPECT_EQ(qemu_check(), 0) << run("qemu-img check '" + img_ + "'").out;
  ASSERT_TRUE(delete_snapshot(img_, "1"));
  EXPECT_EQ(run("qemu-img check '" + img_ + "'").exit_code, 0);
  EXPECT_EQ(run("qemu-img snapshot -l '" + img_ + "'").out.find("base"), std::string::npos);
  EXPECT_EQ(qemu_content(img_, raw_), v1);
  EXPECT_FALSE(apply_snapshot(img_, "base"));
}

// Random writes and snapshot create/apply/delete against an in-memory model
// of the disk and of every snapshot; small clusters and 1-bit refcounts make
// refcount blocks and table growth happen.
void random_model(const std::string& img, const std::string& raw, const std::string& create_opts,
                  uint64_t size, unsigned seed) {
  ASSERT_EQ(
      run("qemu-img create -f qcow2 -o " + create_opts + " '" + img + "' " + std::to_string(size))
          .exit_code,
      0);
  std::mt19937 rng(seed);
  std::vector<uint8_t> disk(size, 0);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> snaps;
  int next = 0;
  for (int step = 0; step < 60; ++step) {
    int op = static_cast<int>(rng() % 10);
    std::string what;
    if (op < 5) {
      uint64_t off = rng() % (size / 512) * 512;
      uint64_t len = std::min<uint64_t>((rng() % 64 + 1) * 512, size - off);
      int pat = static_cast<int>(rng() % 255 + 1);
      what = fmt::format("write {} {} {}", pat, off, len);
      auto r = run(fmt::format("qemu-io -f qcow2 -c 'write -P {} {} {}' '{}'", pat, off, len, img));
      ASSERT_EQ(r.exit_code, 0) << r.out;
      std::memset(disk.data() + off, pat, len);
    } else if (op < 7 || snaps.empty()) {
      std::string name = "s" + std::to_string(next++);
      what = "create " + name;
      auto r = create_snapshot(img, name);
      ASSERT_TRUE(r) << what << ": " << r.error().what();
      snaps.emplace_back(name, disk);
    } else if (op < 9) {
      auto& s = snaps[rng() % snaps.size()];
      what = "apply " + s.first;
      auto r = apply_snapshot(img, s.first);
      ASSERT_TRUE(r) << what << ": " << r.error().what();
      disk = s.second;
    } else {
      size_t i = rng() % snaps.size();
      what = "delete " + snaps[i].first;
      auto r = delete_snapshot(img, snaps[i].first);
      ASSERT_TRUE(r) << what << ": " << r.error().what();
      snaps.erase(snaps.begin() + static_cast<long>(i));
    }
    ASSERT_EQ(qemu_content(img, raw), disk) << "step " << step << ": " << what;
    auto c = check_qcow2(img, RepairMode::kNone);
    ASSERT_TRUE(c) << c.error().what();
    ASSERT_EQ(c->corruptions + c->leaks, 0u) << "step " << step << ": " << what << "\n"
                                             << (c->messages.empty() ? "" : c->messages[0]);
  }
  auto q = run("qemu-img check '" + img + "'");
  EXPECT_EQ(q.exit_code, 0) << q.out;
  // Every remaining snapshot still holds what it held when taken.
  for (auto& [name, content] : snaps) {
    ASSERT_TRUE(apply_snapshot(img, name));
    EXPECT_EQ(qemu_content(img, raw), content) << name;
  }
  EXPECT_EQ(run("qemu-img check '" + img + "'").exit_code, 0);
}

TEST_F(Qcow2ToolsTest, RandomSnapshotModelDefaultClusters) {
  random_model(img_, raw_, "cluster_size=65536", 4 << 20, 1);
}

TEST_F(Qcow2ToolsTest, RandomSnapshotModelSmallClustersNarrowRefcounts) {
  random_model(img_, raw_, "cluster_size=512,refcount_bits=8", 512 << 10, 2);
}

TEST_F(Qcow2ToolsTest, SnapshotRefusedWhenRefcountsWouldOverflow) {
  ASSERT_EQ(run("qemu-img create -f qcow2 -o refcount_bits=1 '" + img_ + "' 1M").exit_code, 0);
  qemu_io("write -P 0x01 0 64k");
  auto r = create_snapshot(img_, "too-many");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("overflow"), std::string::npos) << r.error().message;
  // Refused before anything was linked: at most leaks, data intact.
  EXPECT_NE(qemu_check(), 2);
  EXPECT_EQ(run("qemu-img snapshot -l '" + img_ + "'").out.find("too-many"), std::string::npos);
}

TEST_F(Qcow2ToolsTest, HostileHeadersGiveErrorsNamingTheField) {
  ASSERT_EQ(run("qemu-img create -f qcow2 '" + img_ + "' 1M").exit_code, 0);
  auto patch = [&](uint64_t off, std::vector<uint8_t> bytes) {
    FILE* f = fopen(img_.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    fseek(f, static_cast<long>(off), SEEK_SET);
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
  };
  patch(20, {0, 0, 0, 40});  // cluster_bits = 40
  auto r = Qcow2Metadata::open(img_, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cluster_bits"), std::string::npos);
  patch(20, {0, 0, 0, 16});
  patch(40, {0, 0, 0, 0, 0x7f, 0, 0, 0});  // l1_table_offset far past EOF
  // As qemu-img: an L1 table outside the file makes the image uncheckable.
  auto c = check_qcow2(img_, RepairMode::kNone);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("l1_table_offset"), std::string::npos) << c.error().message;
  patch(40, {0, 0, 0, 0, 0, 3, 0, 0});
  patch(60, {0, 0, 0, 9, 0, 0, 0, 0, 0, 0x10, 0, 0});  // 9 snapshots at an offset past EOF
  auto s = list_snapshots(img_);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("snapshot"), std::string::npos);
  EXPECT_FALSE(create_snapshot(img_, "x"));
}

}  // namespace
}  // namespace skiff::qcow2tools
