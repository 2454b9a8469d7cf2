// The VmConfig JSON "net" array (Cloud Hypervisor's NetConfig) to NetConfig.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"

namespace skiff::api {
namespace {

Result<VmConfig> with_net(const std::string& net) {
  return parse_vm_config_text(R"({"payload":{"kernel":"/k"},"net":)" + net + "}");
}

std::string net_error(const std::string& net) {
  auto r = with_net(net);
  return r ? std::string("(parsed)") : r.error().what();
}

TEST(NetConfigJson, ParsesTheFieldsSkiffHas) {
  auto c = with_net(R"([{"tap":"tap0"},
      {"tap":"tap1","mac":"52:54:00:12:34:56","num_queues":4,"queue_size":512,"id":"up",
       "iommu":false,"vhost_user":false,"offload_tso":true,"pci_segment":0,
       "rate_limiter_config":{"bandwidth":{"size":1000000,"refill_time":100},
                              "ops":{"size":100,"one_time_burst":50,"refill_time":10}}}])");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->nets.size(), 2u);
  EXPECT_EQ(c->nets[0].tap, "tap0");
  EXPECT_EQ(c->nets[0].num_queues, 0);  // a pair per vCPU
  EXPECT_EQ(c->nets[0].queue_size, 256);
  const NetConfig& n = c->nets[1];
  EXPECT_EQ(n.tap, "tap1");
  EXPECT_EQ(n.mac, "52:54:00:12:34:56");
  EXPECT_EQ(n.num_queues, 4);
  EXPECT_EQ(n.queue_size, 512);
  EXPECT_EQ(n.id, "up");
  EXPECT_EQ(n.rate_limiter.bandwidth, (net::TokenBucketConfig{1000000, 0, 100}));
  EXPECT_EQ(n.rate_limiter.ops, (net::TokenBucketConfig{100, 50, 10}));
}

TEST(NetConfigJson, BadValuesNameTheField) {
  EXPECT_NE(net_error(R"({"tap":"t"})").find("net: expected an array"), std::string::npos);
  EXPECT_NE(net_error(R"([{}])").find("net[0].tap: required"), std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t"},{"tap":"a/b"}])").find("net[1].tap: 'a/b' is not a valid"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","mac":"xx"}])").find("net[0].mac: MAC address 'xx'"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","mac":"01:00:5e:00:00:01"}])").find("not a unicast"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","num_queues":3}])").find("net[0].num_queues: 3 is odd"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","num_queues":256}])").find("256 is out of range"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","queue_size":100}])").find("100 is not a power of 2"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","rate_limiter_config":{"ops":{"size":1}}}])")
                .find("net[0].rate_limiter_config.ops: size and refill_time"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","rate_limiter_config":{"bandwidth":{"size":-1,
      "refill_time":1}}}])")
                .find("bandwidth.size: -1 is out of range"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","bogus":1}])").find("net[0]: unknown field 'bogus'"),
            std::string::npos);
}

TEST(NetConfigJson, FeaturesSkiffLacksAreRefusedNotIgnored) {
  EXPECT_NE(net_error(R"([{"tap":"t","vhost_user":true}])")
                .find("net[0].vhost_user: vhost-user net front ends is not supported yet"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","ip":"192.168.249.1"}])").find("net[0].ip"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","offload_tso":false}])").find("turning TSO off"),
            std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","mtu":9000}])").find("setting the MTU"), std::string::npos);
}

TEST(NetConfigJson, VhostAsksForTheKernelDataPathAndRoundTrips) {
  auto c = with_net(R"([{"tap":"t","vhost":true},{"tap":"u","vhost":false}])");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_TRUE(c->nets[0].vhost);
  EXPECT_FALSE(c->nets[1].vhost);
  auto back = parse_vm_config(vm_config_to_json(*c));
  ASSERT_TRUE(back) << back.error().what();
  EXPECT_TRUE(back->nets[0].vhost);
  EXPECT_FALSE(back->nets[1].vhost);
  EXPECT_NE(net_error(R"([{"tap":"t","vhost":1}])").find("net[0].vhost"), std::string::npos);
  EXPECT_NE(net_error(R"([{"tap":"t","vhost":true,
      "rate_limiter_config":{"ops":{"size":100,"refill_time":10}}}])")
                .find("net[0]: vhost and rate_limiter_config do not go together"),
            std::string::npos);
}

TEST(NetConfigJson, RoundTripsThroughTheInfoRepresentation) {
  VmConfig c;
  c.kernel = "/k";
  NetConfig n;
  n.tap = "tap7";
  n.mac = "02:00:00:00:00:07";
  n.num_queues = 6;
  n.queue_size = 1024;
  n.id = "net-a";
  n.rate_limiter.bandwidth = {4096, 1024, 20};
  c.nets.push_back(n);
  NetConfig inherited;  // fd=[..]: not representable, left out
  inherited.fds = {3};
  c.nets.push_back(inherited);
  auto back = parse_vm_config(vm_config_to_json(c));
  ASSERT_TRUE(back) << back.error().what();
  ASSERT_EQ(back->nets.size(), 1u);
  const NetConfig& b = back->nets[0];
  EXPECT_EQ(b.tap, n.tap);
  EXPECT_EQ(b.mac, n.mac);
  EXPECT_EQ(b.num_queues, n.num_queues);
  EXPECT_EQ(b.queue_size, n.queue_size);
  EXPECT_EQ(b.id, n.id);
  EXPECT_EQ(b.rate_limiter, n.rate_limiter);
}

}  // namespace
}  // namespace skiff::api
