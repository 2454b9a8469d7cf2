#include "virtio/devices/rng.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::FakeDriver;
using testing::FakeGuest;

struct RngFixture : ::testing::Test {
  void start(const std::optional<std::string>& source = std::nullopt) {
    auto r = VirtioRng::create(source);
    ASSERT_TRUE(r) << r.error().message;
    rng = std::move(*r);
    rng->set_memory(&guest.mem);
    rng->set_interrupt([this](InterruptKind k, uint16_t) {
      if (k == InterruptKind::kUsedBuffer) ++used_irqs;
    });
    rng->set_status(kStatusAcknowledge | kStatusDriver);
    rng->set_driver_features(kCommonFeatures);
    rng->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    driver.configure(*rng->queue(0));
    rng->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(rng->activated());
  }
  FakeGuest guest;
  FakeDriver driver{guest, 16};
  std::unique_ptr<VirtioRng> rng;
  int used_irqs = 0;
};

TEST_F(RngFixture, FillsWritableBuffersWithRandomBytes) {
  start();
  uint64_t a = driver.alloc(4096), b = driver.alloc(4096);
  driver.add_chain({{a, 4096, true}, {b, 4096, true}});
  rng->process_queue(0);
  ASSERT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used_elem(0).len, 8192u);
  EXPECT_EQ(used_irqs, 1);
  // 4 KiB of getrandom output is all zero with probability 2^-32768, and
  // the two buffers are equal with the same odds.
  auto pa = guest.host(a, 4096), pb = guest.host(b, 4096);
  EXPECT_NE(std::count(pa.begin(), pa.end(), 0), 4096);
  EXPECT_FALSE(std::equal(pa.begin(), pa.end(), pb.begin()));
}

TEST_F(RngFixture, ReadsFromConfiguredSource) {
  std::string path =
      (std::filesystem::temp_directory_path() / ("skiff-virtio-rng-" + std::to_string(::getpid())))
          .string();
  {
    std::ofstream f(path, std::ios::binary);
    f << "0123456789";
  }
  start(path);
  uint64_t a = driver.alloc(4), b = driver.alloc(16);
  driver.add_chain({{a, 4, true}});
  driver.add_chain({{b, 16, true}});
  rng->process_queue(0);
  ASSERT_EQ(driver.used_idx(), 2);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(guest.host(a, 4).data()), 4), "0123");
  // The source runs dry: the driver is told it got only 6 bytes.
  EXPECT_EQ(driver.used_elem(1).len, 6u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(guest.host(b, 6).data()), 6), "456789");
  std::filesystem::remove(path);
}

TEST_F(RngFixture, MissingSourceFileFailsCreation) {
  EXPECT_FALSE(VirtioRng::create("/nonexistent/skiff-rng-source"));
}

TEST_F(RngFixture, ReadableBufferNeedsReset) {
  start();
  uint64_t a = driver.alloc(16);
  driver.add_chain({{a, 16, false}});
  rng->process_queue(0);
  EXPECT_TRUE(rng->needs_reset());
  EXPECT_EQ(driver.used_idx(), 0);
}

}  // namespace
}  // namespace skiff::virtio
