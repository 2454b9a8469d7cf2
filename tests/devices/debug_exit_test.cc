#include "devices/debug_exit.h"

#include <gtest/gtest.h>

#include "devices/fakes.h"

namespace skiff {
namespace {

using testing::FakeVmEvents;

TEST(DebugExit, ByteWriteOf0x10ExitsWithStatus33) {
  FakeVmEvents events;
  DebugExit dev(events);
  uint8_t v = 0x10;
  dev.write(0, std::span<const uint8_t>(&v, 1));
  ASSERT_EQ(events.exits.size(), 1u);
  EXPECT_EQ(events.exits[0], 33);
}

TEST(DebugExit, WideWriteUsesTheWholeValueLikeQemu) {
  FakeVmEvents events;
  DebugExit dev(events);
  uint8_t v[4] = {0x01, 0x02, 0x00, 0x00};  // 0x0201
  dev.write(0, v);
  ASSERT_EQ(events.exits.size(), 1u);
  EXPECT_EQ(events.exits[0], 0x403);
  EXPECT_EQ(events.exits[0] & 0xff, 0x03);  // what a shell would see
}

TEST(DebugExit, AllOnesDwordDoesNotOverflow) {
  FakeVmEvents events;
  DebugExit dev(events);
  uint8_t v[4] = {0xff, 0xff, 0xff, 0xff};
  dev.write(0, v);
  ASSERT_EQ(events.exits.size(), 1u);
  EXPECT_EQ(events.exits[0] & 0xff, 0xff);
}

TEST(DebugExit, EightByteWriteIsIgnored) {
  FakeVmEvents events;
  DebugExit dev(events);
  uint8_t v[8] = {1};
  dev.write(0, v);
  EXPECT_TRUE(events.exits.empty());
}

TEST(DebugExit, ReadsReturnZero) {
  FakeVmEvents events;
  DebugExit dev(events);
  uint8_t v[2] = {0xaa, 0xbb};
  dev.read(0, v);
  EXPECT_EQ(v[0], 0);
  EXPECT_EQ(v[1], 0);
  EXPECT_TRUE(events.exits.empty());
}

}  // namespace
}  // namespace skiff
