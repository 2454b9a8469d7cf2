// MacAddress: a 48-bit Ethernet address, parsed from and printed as
// "52:54:00:12:34:56" (the form QEMU, Cloud Hypervisor and ip(8) use).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace skiff::net {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  // Six colon-separated two-digit hex octets. Errors quote the text.
  [[nodiscard]] static Result<MacAddress> parse(std::string_view text);
  // A random locally administered unicast address (02:xx:xx:xx:xx:xx with
  // the U/L bit set and the group bit clear, IEEE 802 §8.2), for devices
  // given no address.
  [[nodiscard]] static MacAddress random_local();

  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] bool is_multicast() const { return (bytes[0] & 1) != 0; }
  [[nodiscard]] bool is_broadcast() const {
    return bytes == std::array<uint8_t, 6>{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  }
  bool operator==(const MacAddress&) const = default;
};

}  // namespace skiff::net
