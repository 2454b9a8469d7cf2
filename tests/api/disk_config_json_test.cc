// The VmConfig JSON "disks" array (Cloud Hypervisor's DiskConfig) to
// DiskConfig, including vhost_user/vhost_socket (an external back end).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"

namespace skiff::api {
namespace {

Result<VmConfig> with_disks(const std::string& disks) {
  return parse_vm_config_text(R"({"payload":{"kernel":"/k"},"disks":)" + disks + "}");
}

std::string disk_error(const std::string& disks) {
  auto r = with_disks(disks);
  return r ? std::string("(parsed)") : r.error().what();
}

TEST(DiskConfigJson, ParsesImageAndVhostUserDisks) {
  auto c = with_disks(R"([{"path":"/a.img","readonly":true,"num_queues":2,"queue_size":128,
                           "serial":"SN","id":"d0","iommu":false,"sparse":true},
                          {"vhost_user":true,"vhost_socket":"/run/blk.sock","num_queues":4}])");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->disks.size(), 2u);
  const DiskConfig& a = c->disks[0];
  EXPECT_EQ(a.path, "/a.img");
  EXPECT_TRUE(a.read_only);
  EXPECT_FALSE(a.vhost_user);
  EXPECT_EQ(a.num_queues, 2);
  EXPECT_EQ(a.queue_size, 128);
  EXPECT_EQ(a.serial, "SN");
  EXPECT_EQ(a.id, "d0");
  const DiskConfig& v = c->disks[1];
  EXPECT_TRUE(v.vhost_user);
  EXPECT_EQ(v.vhost_socket, "/run/blk.sock");
  EXPECT_EQ(v.path, "");
  EXPECT_EQ(v.num_queues, 4);
  EXPECT_EQ(v.queue_size, 256);
}

TEST(DiskConfigJson, RoundTripsThroughVmConfigToJson) {
  auto c = with_disks(R"([{"path":"/a.img","serial":"S1"},
                          {"vhost_user":true,"vhost_socket":"/s","num_queues":2}])");
  ASSERT_TRUE(c) << c.error().what();
  auto again = parse_vm_config(vm_config_to_json(*c));
  ASSERT_TRUE(again) << again.error().what();
  ASSERT_EQ(again->disks.size(), 2u);
  EXPECT_EQ(again->disks[0].path, "/a.img");
  EXPECT_EQ(again->disks[0].serial, "S1");
  EXPECT_TRUE(again->disks[1].vhost_user);
  EXPECT_EQ(again->disks[1].vhost_socket, "/s");
  EXPECT_EQ(again->disks[1].num_queues, 2);
}

TEST(DiskConfigJson, ErrorsNameTheField) {
  EXPECT_NE(disk_error(R"([{"vhost_user":true}])").find("disks[0].vhost_socket: required"),
            std::string::npos);
  EXPECT_NE(disk_error(R"([{"vhost_user":true,"vhost_socket":"/s","path":"/a"}])")
                .find("belong to the vhost-user back end"),
            std::string::npos);
  EXPECT_NE(disk_error(R"([{"path":"/a","vhost_socket":"/s"}])").find("needs vhost_user true"),
            std::string::npos);
  EXPECT_NE(disk_error(R"([{}])").find("disks[0].path: required"), std::string::npos);
  EXPECT_NE(disk_error(R"([{"path":"/a","queue_size":100}])").find("not a power of 2"),
            std::string::npos);
  EXPECT_NE(disk_error(R"([{"path":"/a","num_queues":0}])").find("disks[0].num_queues"),
            std::string::npos);
  EXPECT_NE(disk_error(R"([{"path":"/a","vhost_user":"yes"}])").find("expected a boolean"),
            std::string::npos);
  EXPECT_NE(disk_error(R"({"path":"/a"})").find("disks: expected an array"), std::string::npos);
}

}  // namespace
}  // namespace skiff::api
