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
  EXPECT_FALSE(o->direct);
  auto d = parse_vhost_disk("path=/a.img,direct=on");
  ASSERT_TRUE(d) << d.error().what();
  EXPECT_TRUE(d->direct);
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
  expect_error("path=/a,direct=maybe", "maybe");
  expect_error("path=/a,bogus=1", "bogus");
}

TEST(VhostNetOptions, ParsesQueuesMacAndSize) {
  auto o = parse_vhost_net("tap0", 8, "52:54:00:ab:cd:ef", 512);
  ASSERT_TRUE(o) << o.error().what();
  EXPECT_EQ(o->tap, "tap0");
  EXPECT_EQ(o->queue_pairs, 4);
  EXPECT_EQ(o->net.mac.to_string(), "52:54:00:ab:cd:ef");
  EXPECT_EQ(o->net.queue_size, 512);
  EXPECT_FALSE(o->net.control_queue);  // the vhost-user front end keeps it
}

TEST(VhostNetOptions, DefaultMacIsLocalUnicast) {
  auto o = parse_vhost_net("tap0", 2, "", 256);
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->net.mac.is_multicast());
  EXPECT_EQ(o->net.mac.bytes[0] & 2, 2);
}

TEST(VhostNetOptions, ErrorsNameTheBadValue) {
  auto err = [](auto r) { return r ? std::string() : r.error().what(); };
  EXPECT_NE(err(parse_vhost_net("tap0", 3, "", 256)).find("3"), std::string::npos);
  EXPECT_NE(err(parse_vhost_net("tap0", 0, "", 256)).find("0"), std::string::npos);
  EXPECT_NE(err(parse_vhost_net("tap0", 2, "52:54:00:zz:00:01", 256)).find("52:54:00:zz:00:01"),
            std::string::npos);
  EXPECT_NE(err(parse_vhost_net("tap0", 2, "01:00:5e:00:00:01", 256)).find("multicast"),
            std::string::npos);
  EXPECT_NE(err(parse_vhost_net("tap0", 2, "", 100)).find("100"), std::string::npos);
  EXPECT_NE(err(parse_vhost_net("a-very-long-tap-name", 2, "", 256)).find("a-very-long-tap-name"),
            std::string::npos);
}

}  // namespace
}  // namespace skiff::cli
