#include "devices/post_code.h"

#include <gtest/gtest.h>

namespace skiff {
namespace {

TEST(PostCode, RecordsMarkersInOrderWithNondecreasingTimes) {
  PostCode dev;
  for (uint8_t v : {0x41, 0x42, 0x10}) dev.write(0, std::span<const uint8_t>(&v, 1));
  auto m = dev.markers();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].value, 0x41);
  EXPECT_EQ(m[1].value, 0x42);
  EXPECT_EQ(m[2].value, 0x10);
  EXPECT_LE(m[0].since_start, m[1].since_start);
  EXPECT_LE(m[1].since_start, m[2].since_start);
}

TEST(PostCode, KeepsABoundedNumberOfMarkersButCountsAll) {
  PostCode dev;
  constexpr uint64_t kWrites = PostCode::kMaxMarkers * 3;
  for (uint64_t i = 0; i < kWrites; ++i) {
    uint8_t v = static_cast<uint8_t>(i);
    dev.write(0, std::span<const uint8_t>(&v, 1));
  }
  EXPECT_EQ(dev.markers().size(), PostCode::kMaxMarkers);
  EXPECT_EQ(dev.total_writes(), kWrites);
}

TEST(PostCode, WideWriteRecordsTheLowByte) {
  PostCode dev;
  uint8_t v[4] = {0x34, 0x12, 0, 0};
  dev.write(0, v);
  ASSERT_EQ(dev.markers().size(), 1u);
  EXPECT_EQ(dev.markers()[0].value, 0x34);
}

TEST(PostCode, ReadsAllOnes) {
  PostCode dev;
  uint8_t v = 0;
  dev.read(0, std::span(&v, 1));
  EXPECT_EQ(v, 0xff);
  EXPECT_TRUE(dev.markers().empty());
}

}  // namespace
}  // namespace skiff
