// The virtio-net control queue's commands (virtio 1.2 §5.1.6.5) and the
// receive filter they program, kept apart from the device so both can be
// tested and fuzzed on their own.
//
// A control request is a driver-readable `u8 class, u8 command, data...`
// followed by a driver-writable `u8 ack` (§5.1.6.5). execute_ctrl_command()
// parses class, command and data and answers VIRTIO_NET_OK or
// VIRTIO_NET_ERR: ERR for a class or command whose feature was not
// negotiated, an unknown class or command, data of the wrong size, or a
// value out of range (VLAN id >= 4096, queue pairs outside [1, max],
// offloads that were not negotiated). Framing errors (no room for the ack,
// fewer than two header bytes) are the device's business (NEEDS_RESET).
//
// Receive filtering follows §5.1.6.5.1-§5.1.6.5.3 with QEMU's defaults:
// the device starts promiscuous (drivers turn that off as they program the
// filter), a MAC table longer than kMacTableEntries sets an "overflow" flag
// that accepts every address of that kind, and with CTRL_VLAN negotiated a
// tagged frame passes only if its VLAN id was added.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>

#include "net/mac_address.h"
#include "virtio/buffers.h"

namespace skiff::virtio {

struct RxFilter {
  static constexpr size_t kMacTableEntries = 64;

  // Which parts apply (the negotiated features, set at activation).
  bool rx_mode = false;      // VIRTIO_NET_F_CTRL_RX
  bool vlan_filter = false;  // VIRTIO_NET_F_CTRL_VLAN

  bool promisc = true;
  bool allmulti = false;
  bool alluni = false;
  bool nomulti = false;
  bool nouni = false;
  bool nobcast = false;
  net::MacAddress mac;  // the device's own address (ADDR_SET)
  bool uni_overflow = false;
  bool multi_overflow = false;
  uint8_t uni_count = 0;
  uint8_t multi_count = 0;
  std::array<net::MacAddress, kMacTableEntries> uni{};
  std::array<net::MacAddress, kMacTableEntries> multi{};
  std::bitset<4096> vlans;

  // Whether a frame starting with these bytes (destination MAC, source MAC,
  // ethertype / 802.1Q tag: at least 16 bytes, fewer means a runt that is
  // passed on for the driver to judge) is delivered.
  [[nodiscard]] bool accepts(std::span<const uint8_t> frame_start) const;
};

// What a command asks of the device beyond the filter.
struct CtrlEffects {
  std::optional<uint16_t> queue_pairs;     // MQ VQ_PAIRS_SET
  std::optional<uint64_t> guest_offloads;  // GUEST_OFFLOADS_SET (feature bits)
  std::optional<net::MacAddress> mac;      // MAC ADDR_SET
};

// VIRTIO_NET_OK / VIRTIO_NET_ERR.
inline constexpr uint8_t kNetCtrlOk = 0;
inline constexpr uint8_t kNetCtrlErr = 1;

// Executes the command in `request` (the chain's readable bytes, header
// included, at least 2) against `filter`, given the negotiated `features`
// and the device's `max_pairs`. Returns the ack; on ERR nothing changed.
[[nodiscard]] uint8_t execute_ctrl_command(BufferList request, uint64_t features,
                                           uint16_t max_pairs, RxFilter& filter,
                                           CtrlEffects& effects);

}  // namespace skiff::virtio
