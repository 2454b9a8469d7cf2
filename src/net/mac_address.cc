#include "net/mac_address.h"

#include <sys/random.h>

#include <fmt/format.h>

namespace skiff::net {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<MacAddress> MacAddress::parse(std::string_view text) {
  MacAddress m;
  // "xx:xx:xx:xx:xx:xx" is exactly 17 characters.
  if (text.size() != 17)
    return fail("MAC address '{}' is not six hex octets separated by ':' (e.g. 52:54:00:12:34:56)",
                text);
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex_digit(text[3 * i]);
    int lo = hex_digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
      return fail(
          "MAC address '{}' is not six hex octets separated by ':' (e.g. 52:54:00:12:34:56)", text);
    m.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return m;
}

MacAddress MacAddress::random_local() {
  MacAddress m;
  if (::getrandom(m.bytes.data(), m.bytes.size(), 0) != static_cast<ssize_t>(m.bytes.size()))
    m.bytes = {0, 0x16, 0x3e, 0x5a, 0x11, 0xff};  // getrandom cannot fail for 6 bytes; be safe
  m.bytes[0] = static_cast<uint8_t>((m.bytes[0] & 0xfe) | 0x02);
  return m;
}

std::string MacAddress::to_string() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2],
                     bytes[3], bytes[4], bytes[5]);
}

}  // namespace skiff::net
