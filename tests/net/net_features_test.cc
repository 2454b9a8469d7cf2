// The virtio-net feature and config helpers both net devices use
// (virtio/devices/net_features.h). No kernel needed.
#include "virtio/devices/net_features.h"

#include <gtest/gtest.h>

#include <cstring>

#include "net/net_backend.h"
#include "virtio/device.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {
namespace {

using namespace netwire;

constexpr uint64_t bit(unsigned b) {
  return feature_bit(b);
}

TEST(NetFeatures, OffloadsBecomeFeaturePairsAndBack) {
  EXPECT_EQ(net_offload_features(0), 0u);
  EXPECT_EQ(net_offload_features(net::kOffloadCsum | net::kOffloadTso4),
            bit(kFCsum) | bit(kFGuestCsum) | bit(kFHostTso4) | bit(kFGuestTso4));
  const unsigned all = net::kOffloadCsum | net::kOffloadTso4 | net::kOffloadTso6 |
                       net::kOffloadTsoEcn | net::kOffloadUfo;
  EXPECT_EQ(net_guest_offloads(net_offload_features(all)), all);
  // HOST_* bits are what the device accepts, not what the tap delivers.
  EXPECT_EQ(net_guest_offloads(bit(kFCsum) | bit(kFHostTso4)), 0u);
  EXPECT_EQ(net_guest_offloads(bit(kFGuestCsum) | bit(kFGuestUfo)),
            net::kOffloadCsum | net::kOffloadUfo);
}

TEST(NetFeatures, DependenciesOfSection5131AreChecked) {
  EXPECT_TRUE(check_net_feature_dependencies(bit(kFGuestCsum) | bit(kFGuestTso4), true));
  auto r = check_net_feature_dependencies(bit(kFGuestTso4), true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("§5.1.3.1"), std::string::npos) << r.error().what();
  EXPECT_FALSE(check_net_feature_dependencies(bit(kFHostEcn) | bit(kFCsum), true));
  EXPECT_FALSE(check_net_feature_dependencies(bit(kFCtrlMacAddr), true));
  EXPECT_FALSE(check_net_feature_dependencies(bit(kFCtrlRxExtra) | bit(kFCtrlVq), true));
  // MQ needs the control queue only where the device has one.
  EXPECT_FALSE(check_net_feature_dependencies(bit(kFMq), true));
  EXPECT_TRUE(check_net_feature_dependencies(bit(kFMq), false));
  EXPECT_TRUE(check_net_feature_dependencies(bit(kFMq) | bit(kFCtrlVq), true));
}

TEST(NetFeatures, ConfigSpaceHasMacLinkUpAndPairs) {
  net::MacAddress mac;
  const uint8_t want[6] = {0x52, 0x54, 0x00, 1, 2, 3};
  std::memcpy(mac.bytes.data(), want, 6);
  auto c = net_config_bytes(mac, 4);
  ASSERT_EQ(c.size(), kNetConfigBytes);
  EXPECT_EQ(std::memcmp(c.data() + kNetConfigMac, want, 6), 0);
  EXPECT_EQ(c[kNetConfigStatus], kStatusLinkUp);
  EXPECT_EQ(c[kNetConfigMaxPairs], 4);
  EXPECT_EQ(c[kNetConfigMaxPairs + 1], 0);
}

}  // namespace
}  // namespace skiff::virtio
