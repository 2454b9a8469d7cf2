#include "virtio/devices/net_features.h"

#include <cstring>

#include "net/net_backend.h"
#include "virtio/device.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

namespace {

constexpr uint64_t f(unsigned bit) {
  return feature_bit(bit);
}

}  // namespace

std::vector<uint8_t> net_config_bytes(const net::MacAddress& mac, uint16_t max_pairs) {
  std::vector<uint8_t> c(kNetConfigBytes, 0);
  std::memcpy(c.data() + kNetConfigMac, mac.bytes.data(), 6);
  uint16_t status = netwire::kStatusLinkUp;
  uint16_t mtu = 1500;
  std::memcpy(c.data() + kNetConfigStatus, &status, 2);
  std::memcpy(c.data() + kNetConfigMaxPairs, &max_pairs, 2);
  std::memcpy(c.data() + kNetConfigMtu, &mtu, 2);
  return c;
}

uint64_t net_offload_features(unsigned offloads) {
  uint64_t x = 0;
  if (offloads & net::kOffloadCsum) x |= f(netwire::kFCsum) | f(netwire::kFGuestCsum);
  if (offloads & net::kOffloadTso4) x |= f(netwire::kFHostTso4) | f(netwire::kFGuestTso4);
  if (offloads & net::kOffloadTso6) x |= f(netwire::kFHostTso6) | f(netwire::kFGuestTso6);
  if (offloads & net::kOffloadTsoEcn) x |= f(netwire::kFHostEcn) | f(netwire::kFGuestEcn);
  if (offloads & net::kOffloadUfo) x |= f(netwire::kFHostUfo) | f(netwire::kFGuestUfo);
  return x;
}

unsigned net_guest_offloads(uint64_t features) {
  unsigned o = 0;
  if (features & f(netwire::kFGuestCsum)) o |= net::kOffloadCsum;
  if (features & f(netwire::kFGuestTso4)) o |= net::kOffloadTso4;
  if (features & f(netwire::kFGuestTso6)) o |= net::kOffloadTso6;
  if (features & f(netwire::kFGuestEcn)) o |= net::kOffloadTsoEcn;
  if (features & f(netwire::kFGuestUfo)) o |= net::kOffloadUfo;
  return o;
}

Result<> check_net_feature_dependencies(uint64_t x, bool mq_needs_ctrl_vq) {
  struct Dep {
    unsigned feature;
    uint64_t needs_any;
  };
  const Dep deps[] = {
      {netwire::kFGuestTso4, f(netwire::kFGuestCsum)},
      {netwire::kFGuestTso6, f(netwire::kFGuestCsum)},
      {netwire::kFGuestUfo, f(netwire::kFGuestCsum)},
      {netwire::kFGuestEcn, f(netwire::kFGuestTso4) | f(netwire::kFGuestTso6)},
      {netwire::kFHostTso4, f(netwire::kFCsum)},
      {netwire::kFHostTso6, f(netwire::kFCsum)},
      {netwire::kFHostUfo, f(netwire::kFCsum)},
      {netwire::kFHostEcn, f(netwire::kFHostTso4) | f(netwire::kFHostTso6)},
      {netwire::kFCtrlRx, f(netwire::kFCtrlVq)},
      {netwire::kFCtrlVlan, f(netwire::kFCtrlVq)},
      {netwire::kFCtrlMacAddr, f(netwire::kFCtrlVq)},
      {netwire::kFCtrlGuestOffloads, f(netwire::kFCtrlVq)},
      {netwire::kFCtrlRxExtra, f(netwire::kFCtrlRx)},
      {netwire::kFMq, mq_needs_ctrl_vq ? f(netwire::kFCtrlVq) : ~0ull},
  };
  for (const Dep& d : deps)
    if ((x & f(d.feature)) && (x & d.needs_any) == 0)
      return fail("feature {} without the feature(s) {:#x} it depends on (virtio 1.2 §5.1.3.1)",
                  d.feature, d.needs_any);
  return {};
}

}  // namespace skiff::virtio
