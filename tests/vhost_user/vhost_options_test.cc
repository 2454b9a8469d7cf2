// skiff-vhost --disk parsing: every accepted key, and errors that name the
// bad value.
#include "cli/skiff_vhost/vhost_options.h"

#include <gtest/gtest.h>

namespace skiff::cli {
namespace {

TEST(VhostDiskOptions, ParsesEveryKey) {
  auto o = parse_vhost_disk(
      "path=/a.img,readonly=on,num_queues=4,queue_size=128,direct=off,"
      "serial=abc,format=qcow2");
  ASSERT_TRUE(o) << o.error().what();
  EXPECT_EQ(o->path, "/a.img");
  EXPECT_EQ(o->format, "qcow2");
  EXPECT_TRUE(o->blk.read_only);
  EXPECT_EQ(o->blk.num_queues, 4);
  EXPECT_EQ(o->blk.queue_size, 128);
  EXPECT_EQ(o->blk.serial, "abc");
}

TEST(VhostDiskOptions, DefaultsMatchBlkDefaults) {
  auto o = parse_vhost_disk("path=/a.img");
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->blk.read_only);
  EXPECT_EQ(o->blk.num_queues, virtio::BlkOptions{}.num_queues);
  EXPECT_EQ(o->blk.queue_size, virtio::BlkOptions{}.queue_size);
}

void expect_error(std::string_view value, std::string_view names) {
  auto o = parse_vhost_disk(value);
  ASSERT_FALSE(o) << value;
  EXPECT_NE(o.error().what().find(names), std::string::npos) << o.error().what();
}

TEST(VhostDiskOptions, ErrorsNameTheBadValue) {
  expect_error("readonly=on", "path");
  expect_error("path=/a,num_queues=0", "0");
  expect_error("path=/a,num_queues=65", "65");
  expect_error("path=/a,queue_size=100", "100");
  expect_error("path=/a,queue_size=65536", "65536");
  expect_error("path=/a,readonly=maybe", "maybe");
  expect_error("path=/a,serial=123456789012345678901", "123456789012345678901");
  expect_error("path=/a,format=vmdk", "vmdk");
  expect_error("path=/a,direct=on", "direct=on");
  expect_error("path=/a,bogus=1", "bogus");
}

}  // namespace
}  // namespace skiff::cli
