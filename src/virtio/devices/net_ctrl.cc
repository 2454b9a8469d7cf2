#include "virtio/devices/net_ctrl.h"

#include <cstring>

#include "virtio/device.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

namespace {

// A stream view of the command's data (after the 2-byte class/command).
struct CtrlData {
  BufferList bufs;
  uint64_t size;

  template <typename T>
  [[nodiscard]] bool read(uint64_t offset, T& out) const {
    if (offset > size || sizeof(T) > size - offset) return false;
    return copy_from_buffers(bufs, 2 + offset,
                             std::span(reinterpret_cast<uint8_t*>(&out), sizeof(T))) == sizeof(T);
  }
};

bool has(uint64_t features, unsigned bit) {
  return (features & feature_bit(bit)) != 0;
}

// netwire::kCtrlMacTableSet (§5.1.6.5.2): two tables, unicast then
// multicast, each `le32 entries` followed by `entries` 6-byte addresses,
// and nothing after them.
uint8_t mac_table_set(const CtrlData& d, RxFilter& filter) {
  RxFilter next = filter;
  uint64_t off = 0;
  for (int table = 0; table < 2; ++table) {
    uint32_t entries;
    if (!d.read(off, entries)) return kNetCtrlErr;
    off += 4;
    if (uint64_t{entries} * 6 > d.size - off) return kNetCtrlErr;
    bool overflow = entries > RxFilter::kMacTableEntries;
    auto& macs = table == 0 ? next.uni : next.multi;
    if (!overflow) {
      for (uint32_t i = 0; i < entries; ++i)
        if (!d.read(off + 6ull * i, macs[i].bytes)) return kNetCtrlErr;
    }
    (table == 0 ? next.uni_overflow : next.multi_overflow) = overflow;
    (table == 0 ? next.uni_count : next.multi_count) = overflow ? 0 : static_cast<uint8_t>(entries);
    off += 6ull * entries;
  }
  if (off != d.size) return kNetCtrlErr;
  filter = next;
  return kNetCtrlOk;
}

}  // namespace

bool RxFilter::accepts(std::span<const uint8_t> frame) const {
  if (frame.size() < 16) return true;
  if (vlan_filter && frame[12] == 0x81 && frame[13] == 0x00) {
    unsigned vid = ((frame[14] & 0x0fu) << 8) | frame[15];
    if (!vlans.test(vid)) return false;
  }
  if (!rx_mode || promisc) return true;
  net::MacAddress dst;
  std::memcpy(dst.bytes.data(), frame.data(), 6);
  if (dst.is_broadcast()) return !nobcast;
  if (dst.is_multicast()) {
    if (nomulti) return false;
    if (allmulti || multi_overflow) return true;
    for (uint8_t i = 0; i < multi_count; ++i)
      if (multi[i] == dst) return true;
    return false;
  }
  if (nouni) return false;
  if (alluni || uni_overflow || dst == mac) return true;
  for (uint8_t i = 0; i < uni_count; ++i)
    if (uni[i] == dst) return true;
  return false;
}

uint8_t execute_ctrl_command(BufferList request, uint64_t features, uint16_t max_pairs,
                             RxFilter& filter, CtrlEffects& effects) {
  uint8_t hdr[2];
  if (copy_from_buffers(request, 0, hdr) != 2) return kNetCtrlErr;
  const uint8_t cls = hdr[0];
  const uint8_t cmd = hdr[1];
  CtrlData d{request, total_bytes(request) - 2};

  switch (cls) {
    case netwire::kCtrlRx: {
      // §5.1.6.5.1: PROMISC and ALLMULTI need CTRL_RX, the rest CTRL_RX_EXTRA.
      bool ok = cmd <= netwire::kCtrlRxAllmulti
                    ? has(features, netwire::kFCtrlRx)
                    : cmd <= netwire::kCtrlRxNobcast && has(features, netwire::kFCtrlRxExtra);
      uint8_t on;
      if (!ok || d.size != 1 || !d.read(0, on)) return kNetCtrlErr;
      bool* flag[] = {&filter.promisc, &filter.allmulti, &filter.alluni,
                      &filter.nomulti, &filter.nouni,    &filter.nobcast};
      *flag[cmd] = on != 0;
      return kNetCtrlOk;
    }
    case netwire::kCtrlMac:
      if (cmd == netwire::kCtrlMacTableSet && has(features, netwire::kFCtrlRx))
        return mac_table_set(d, filter);
      if (cmd == netwire::kCtrlMacAddrSet && has(features, netwire::kFCtrlMacAddr)) {
        net::MacAddress mac;
        if (d.size != 6 || !d.read(0, mac.bytes)) return kNetCtrlErr;
        filter.mac = mac;
        effects.mac = mac;
        return kNetCtrlOk;
      }
      return kNetCtrlErr;
    case netwire::kCtrlVlan: {
      uint16_t vid;
      if (!has(features, netwire::kFCtrlVlan) || cmd > netwire::kCtrlVlanDel || d.size != 2 ||
          !d.read(0, vid) || vid >= 4096)
        return kNetCtrlErr;
      filter.vlans.set(vid, cmd == netwire::kCtrlVlanAdd);
      return kNetCtrlOk;
    }
    case netwire::kCtrlMq: {
      // §5.1.6.5.5: only VQ_PAIRS_SET (RSS and hash reporting are not offered).
      uint16_t pairs;
      if (!has(features, netwire::kFMq) || cmd != netwire::kCtrlMqVqPairsSet || d.size != 2 ||
          !d.read(0, pairs) || pairs < 1 || pairs > max_pairs)
        return kNetCtrlErr;
      effects.queue_pairs = pairs;
      return kNetCtrlOk;
    }
    case netwire::kCtrlGuestOffloads: {
      // §5.1.6.5.6.1: only offloads whose features were negotiated.
      constexpr uint64_t kGuestOffloads =
          feature_bit(netwire::kFGuestCsum) | feature_bit(netwire::kFGuestTso4) |
          feature_bit(netwire::kFGuestTso6) | feature_bit(netwire::kFGuestEcn) |
          feature_bit(netwire::kFGuestUfo);
      uint64_t offloads;
      if (!has(features, netwire::kFCtrlGuestOffloads) || cmd != netwire::kCtrlGuestOffloadsSet ||
          d.size != 8 || !d.read(0, offloads) || (offloads & ~(features & kGuestOffloads)) != 0)
        return kNetCtrlErr;
      effects.guest_offloads = offloads;
      return kNetCtrlOk;
    }
    default:
      // ANNOUNCE (GUEST_ANNOUNCE), NOTF_COAL and unknown classes: not offered.
      return kNetCtrlErr;
  }
}

}  // namespace skiff::virtio
