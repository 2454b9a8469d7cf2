#include "cli/net_options.h"

#include <algorithm>
#include <climits>

#include "cli/kv_options.h"
#include "net/mac_address.h"

namespace skiff::cli {

namespace {

// "[3,4]", "[3]" or "3": tap queue fds, one per queue pair.
Result<std::vector<int>> parse_fds(std::string_view text) {
  std::string_view list = text;
  if (list.starts_with('[')) {
    if (!list.ends_with(']')) return fail("--net: fd={} has no closing ']'", text);
    list = list.substr(1, list.size() - 2);
  }
  std::vector<int> fds;
  while (true) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    auto fd = SKIFF_TRY(parse_uint(fmt::format("--net fd={}", text), item, 0, INT_MAX));
    if (std::find(fds.begin(), fds.end(), static_cast<int>(fd)) != fds.end())
      return fail("--net: fd={} lists fd {} twice", text, fd);
    fds.push_back(static_cast<int>(fd));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (fds.size() > kMaxNetQueuePairs)
    return fail("--net: fd={} has {} fds; at most {} queue pairs", text, fds.size(),
                kMaxNetQueuePairs);
  return fds;
}

// prefix "bw" or "ops": <prefix>_size, _one_time_burst, _refill_time.
Result<net::TokenBucketConfig> parse_bucket(const KvMap& kv, std::string_view prefix) {
  auto get = [&](std::string_view suffix) -> const std::string* {
    auto it = kv.find(fmt::format("{}_{}", prefix, suffix));
    return it == kv.end() ? nullptr : &it->second;
  };
  const std::string* size = get("size");
  const std::string* burst = get("one_time_burst");
  const std::string* refill = get("refill_time");
  net::TokenBucketConfig b;
  if (!size && !burst && !refill) return b;
  if (!size || !refill)
    return fail(
        "--net: {0}_size and {0}_refill_time (ms) go together (a token bucket of "
        "{0}_size tokens refilled in {0}_refill_time)",
        prefix);
  // Bytes take K/M/G suffixes like --memory; packets are plain counts.
  auto count = [&](std::string_view key, const std::string& text) -> Result<uint64_t> {
    std::string option = fmt::format("--net {}_{}", prefix, key);
    if (prefix == "bw") return parse_size(option, text);
    return parse_uint(option, text, 0, INT64_MAX);
  };
  b.size = SKIFF_TRY(count("size", *size));
  if (burst) b.one_time_burst = SKIFF_TRY(count("one_time_burst", *burst));
  b.refill_time_ms =
      SKIFF_TRY(parse_uint(fmt::format("--net {}_refill_time", prefix), *refill, 0, INT64_MAX));
  if (b.size == 0 || b.refill_time_ms == 0)
    return fail(
        "--net: {0}_size={1},{0}_refill_time={2}: both must be above 0 (leave them out "
        "for no limit)",
        prefix, *size, *refill);
  return b;
}

}  // namespace

Result<NetConfig> parse_net(std::string_view value) {
  auto kv = SKIFF_TRY(parse_kv("--net", value,
                               {"tap", "fd", "mac", "num_queues", "queue_size", "vhost", "id",
                                "bw_size", "bw_one_time_burst", "bw_refill_time", "ops_size",
                                "ops_one_time_burst", "ops_refill_time"}));
  NetConfig n;
  auto tap = kv.find("tap");
  auto fd = kv.find("fd");
  if ((tap != kv.end()) == (fd != kv.end()))
    return fail("--net: give exactly one of tap=NAME or fd=[N,...] (in '{}')", value);
  if (tap != kv.end()) {
    n.tap = tap->second;
    // IFNAMSIZ is 16 with the NUL; '/' and whitespace would break sysfs paths.
    if (n.tap.empty() || n.tap.size() > 15 || n.tap.find_first_of("/ \t\n:") != std::string::npos ||
        n.tap == "." || n.tap == "..")
      return fail(
          "--net: tap={} is not a valid interface name (1-15 characters, no '/', ':' or "
          "spaces)",
          n.tap);
  } else {
    n.fds = SKIFF_TRY(parse_fds(fd->second));
  }
  if (auto it = kv.find("mac"); it != kv.end()) {
    auto mac = net::MacAddress::parse(it->second);
    if (!mac) return fail("--net mac: {}", mac.error().message);
    // A NIC owns a unicast address; the all-zero one is "no address".
    if (mac->is_multicast())
      return fail("--net mac: {} is a multicast address; a NIC needs a unicast one", it->second);
    if (*mac == net::MacAddress{}) return fail("--net mac: {} is the all-zero address", it->second);
    n.mac = it->second;
  }
  if (auto it = kv.find("num_queues"); it != kv.end()) {
    n.num_queues = static_cast<uint16_t>(
        SKIFF_TRY(parse_uint("--net num_queues", it->second, 2, 2 * kMaxNetQueuePairs)));
    // virtio 1.2 §5.1.2: receiveq1, transmitq1, ... always in pairs.
    if (n.num_queues % 2 != 0)
      return fail("--net: num_queues={} is odd (it counts rx and tx queues: 2 per pair)",
                  n.num_queues);
    if (!n.fds.empty() && n.num_queues != 2 * n.fds.size())
      return fail("--net: num_queues={} does not match fd={} ({} fds: num_queues={})", n.num_queues,
                  fd->second, n.fds.size(), 2 * n.fds.size());
  } else if (!n.fds.empty()) {
    n.num_queues = static_cast<uint16_t>(2 * n.fds.size());
  }
  if (auto it = kv.find("queue_size"); it != kv.end()) {
    n.queue_size =
        static_cast<uint16_t>(SKIFF_TRY(parse_uint("--net queue_size", it->second, 2, 32768)));
    if ((n.queue_size & (n.queue_size - 1)) != 0)
      return fail("--net: queue_size={} is not a power of 2", n.queue_size);
  }
  if (auto it = kv.find("vhost"); it != kv.end())
    n.vhost = SKIFF_TRY(parse_switch("--net vhost", it->second));
  if (auto it = kv.find("id"); it != kv.end()) n.id = it->second;
  n.rate_limiter.bandwidth = SKIFF_TRY(parse_bucket(kv, "bw"));
  n.rate_limiter.ops = SKIFF_TRY(parse_bucket(kv, "ops"));
  // vhost-net moves frames in the kernel, past anything skiff could delay.
  if (n.vhost && n.rate_limiter.limits())
    return fail(
        "--net: vhost=on and bw_*/ops_* rate limits do not go together (the kernel's vhost-net "
        "data path cannot be rate limited); drop one of them");
  return n;
}

}  // namespace skiff::cli
