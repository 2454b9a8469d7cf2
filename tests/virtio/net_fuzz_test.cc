// Mutation fuzzing of virtio-net under GCC (and under ASan+UBSan in the
// sanitizer build): scripted hostile-driver sessions (tests/fuzz/
// net_device_fuzz_body.h) built as valid seeds, then mutated (bit flips,
// boundary values, truncation, extension, splices of steps from other
// seeds) and replayed against the device for a bounded time. clang 14 cannot
// build our C++23 code for libFuzzer on Debian 12 (tests/fuzz/
// CMakeLists.txt), so this is the net fuzzing CI runs. A failing property
// prints its reason and the input in hex, to be turned into a unit test.
// SKIFF_FUZZ_SECONDS (default 4) bounds the run, SKIFF_FUZZ_ITERATIONS
// (default 200000) the number of inputs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include "base/log.h"
#include "fuzz/net_device_fuzz_body.h"
#include "virtio/devices/net_wire.h"

namespace skiff::fuzz {
namespace {

using namespace virtio::netwire;

// Builds inputs in the body's format.
struct Script {
  explicit Script(uint32_t features, uint8_t setup) {
    u32(features);
    b.push_back(setup);
  }
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v));
    u8(static_cast<uint8_t>(v >> 8));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v));
    u16(static_cast<uint16_t>(v >> 16));
  }
  void header(uint8_t flags, uint8_t gso, uint16_t csum_start = 0, uint16_t csum_offset = 0) {
    u8(flags);
    u8(gso);
    u16(0);
    u16(gso ? 1448 : 0);
    u16(csum_start);
    u16(csum_offset);
    u16(0);
  }
  // `pieces` (1-4) readable descriptors; flags bit 5 (1100 pieces) needs
  // INDIRECT_DESC and at least 1112 bytes.
  void tx(uint8_t flags, uint8_t pair, uint16_t len, uint8_t pieces, uint8_t hflags, uint8_t gso,
          uint16_t csum_start = 0, uint16_t csum_offset = 0) {
    u8(0);
    u8(flags);
    u8(pair);
    u16(len);
    u8(static_cast<uint8_t>(pieces - 1));
    header(hflags, gso, csum_start, csum_offset);
    if (!(flags & 0x20))
      for (int i = 0; i + 1 < pieces; ++i) u16(static_cast<uint16_t>(7 + 300 * i));  // splits
    if (flags & 4) u8(1);  // where the writable piece goes
  }
  void ctrl(uint8_t framing, uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data) {
    u8(2);
    u8(framing);
    u8(cls);
    u8(cmd);
    u16(static_cast<uint16_t>(data.size()));
    b.insert(b.end(), data.begin(), data.end());
  }
  void rx_post(uint8_t pair, const std::vector<std::pair<uint8_t, uint16_t>>& chains) {
    u8(3);
    u8(pair);
    u8(static_cast<uint8_t>(chains.size() - 1));
    for (auto [flags, len] : chains) {
      u8(flags);
      u16(len);
    }
  }
  void rx_frame(uint8_t pair, uint16_t len, uint8_t flags, uint8_t dst0 = 0x52) {
    u8(4);
    u8(pair);
    u16(len);
    u8(flags);
    for (int i = 0; i < 12; ++i) u8(0);  // header: no offloads
    const uint8_t eth[16] = {dst0, 0x54, 0, 0x12, 0x34, 0x56, 2, 0, 0, 0, 0, 1, 0x08, 0, 0x45, 0};
    for (uint8_t x : eth) u8(x);
  }
  void kick(uint8_t queue) {
    u8(7);
    u8(queue);
  }
  std::vector<uint8_t> b;
};

constexpr uint32_t bit(unsigned n) {
  return 1u << n;
}

std::vector<std::vector<uint8_t>> seeds() {
  std::vector<std::vector<uint8_t>> out;
  // Everything offered, 2 pairs, control queue, EVENT_IDX, indirect.
  {
    Script s(~0u, 1 | 8 | 16);
    s.ctrl(0, kCtrlMq, kCtrlMqVqPairsSet, {2, 0});
    s.ctrl(0, kCtrlRx, kCtrlRxPromisc, {0});
    s.ctrl(2, kCtrlMac, kCtrlMacTableSet, {1, 0, 0, 0, 0x52, 0x54, 0, 1, 2, 3, 0, 0, 0, 0});
    s.ctrl(0, kCtrlVlan, kCtrlVlanAdd, {5, 0});
    s.ctrl(8, kCtrlGuestOffloads, kCtrlGuestOffloadsSet, {2, 0, 0, 0, 0, 0, 0, 0});
    s.ctrl(0, 9, 9, {});
    s.rx_post(0, {{0, 1600}, {1, 3000}, {8 | 2, 4000}, {0, 1600}});
    s.rx_frame(0, 1512, 0);
    s.rx_frame(0, 60, 4);
    s.tx(0, 0, 1500, 2, 0, kGsoNone);
    s.tx(0, 1, 9000, 4, kHdrNeedsCsum, kGsoTcpV4, 34, 16);
    s.tx(0, 0, 4000, 4, kHdrNeedsCsum, kGsoTcpV6 | kGsoEcn, 54, 16);
    s.tx(1, 0, 800, 3, 0, kGsoNone);  // backend full once
    s.tx(0, 0, 800, 1, 0, 0x55);      // unknown gso: dropped
    s.tx(2, 0, 800, 1, 0, kGsoNone);  // backend failing
    s.rx_post(1, {{0, 4000}, {0, 4000}});
    s.rx_frame(1, 6000, 0);  // merged over two chains
    s.kick(4);
    out.push_back(s.b);
  }
  // No control queue, one pair, no mergeable buffers, no indirect.
  {
    Script s(bit(kFMac) | bit(kFCsum) | bit(kFHostTso4), 4);
    s.rx_post(0, {{0, 1600}, {0, 100}, {0, 1600}});
    s.rx_frame(0, 1400, 0);
    s.rx_frame(0, 1400, 0);  // too big for the 100-byte chain: dropped
    s.rx_frame(0, 1400, 0);
    s.tx(0, 0, 14 + 12, 1, 0, kGsoNone);
    s.tx(0, 0, 100, 2, kHdrNeedsCsum, kGsoNone, 90, 20);  // csum past the frame
    s.tx(0x40, 0, 5, 1, 0, kGsoNone);                     // header cut short
    out.push_back(s.b);
  }
  // Rate limited: bursts over the buckets in both directions, time passing.
  {
    Script s(~0u, 64 | 16);
    s.rx_post(0, std::vector<std::pair<uint8_t, uint16_t>>(8, {0, 2000}));
    for (int i = 0; i < 6; ++i) s.rx_frame(0, 1500, 2);
    s.kick(0);
    for (int i = 0; i < 6; ++i) s.tx(0, 0, 1500, 2, 0, kGsoNone);
    s.u8(7 | 0x40);  // 20 ms pass, then a kick of receiveq 0
    s.u8(20);
    s.u8(0);
    out.push_back(s.b);
  }
  // Mergeable buffers and a 64 KiB frame; many tiny tx pieces.
  {
    Script s(~0u, 16);
    s.tx(0x20 | 0x10, 0, 2000, 1, 0, kGsoNone);                    // 67536 bytes: too long, dropped
    s.tx(0x20, 0, 3000, 1, 0, kGsoNone);                           // 1100 pieces: linearised
    std::vector<std::pair<uint8_t, uint16_t>> many(8, {1, 6000});  // 2 descriptors each
    for (int i = 0; i < 3; ++i) s.rx_post(0, many);
    s.rx_frame(0, 0xfff0, 0 | 2);
    s.rx_frame(0, 200, 0);
    s.rx_post(0, many);
    s.kick(0);
    s.tx(4, 0, 100, 2, 0, kGsoNone);  // a writable piece: NEEDS_RESET
    s.tx(0, 0, 100, 2, 0, kGsoNone);
    out.push_back(s.b);
  }
  return out;
}

std::string hex(const std::vector<uint8_t>& v) {
  std::string s;
  for (uint8_t b : v) s += fmt::format("{:02x}", b);
  return s;
}

std::vector<uint8_t> mutate(std::vector<uint8_t> v, const std::vector<std::vector<uint8_t>>& pool,
                            std::mt19937_64& rng) {
  static constexpr uint32_t kBoundary[] = {0,      1,      11,     12,      13,        14,   26,
                                           63,     64,     255,    256,     1514,      4095, 4096,
                                           0x7fff, 0x8000, 0xffff, 0x10000, 0xffffffff};
  int ops = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < ops; ++i) {
    if (v.size() < 6) v.resize(6, 0);
    // Leave the setup bytes alone half the time: most bugs hide in steps.
    size_t lo = rng() % 2 ? 5 : 0;
    size_t at = lo + rng() % (v.size() - lo);
    switch (rng() % 8) {
      case 0:
        v[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        v[at] = static_cast<uint8_t>(rng());
        break;
      case 2: {
        uint32_t x = kBoundary[rng() % std::size(kBoundary)];
        for (size_t k = 0; k < 2 && at + k < v.size(); ++k)
          v[at + k] = static_cast<uint8_t>(x >> (8 * k));
        break;
      }
      case 3: {
        uint32_t x = kBoundary[rng() % std::size(kBoundary)];
        for (size_t k = 0; k < 4 && at + k < v.size(); ++k)
          v[at + k] = static_cast<uint8_t>(x >> (8 * k));
        break;
      }
      case 4:
        v.resize(5 + rng() % (v.size() - 4));
        break;
      case 5:
        v.resize(v.size() + rng() % 64, static_cast<uint8_t>(rng()));
        break;
      case 6: {  // splice a piece of another seed's steps in
        const auto& o = pool[rng() % pool.size()];
        size_t from = 5 + rng() % (o.size() - 5);
        size_t n = std::min<size_t>(o.size() - from, 1 + rng() % 48);
        v.insert(v.begin() + static_cast<long>(at), o.begin() + static_cast<long>(from),
                 o.begin() + static_cast<long>(from + n));
        break;
      }
      default:  // drop a run of bytes
        v.erase(v.begin() + static_cast<long>(at),
                v.begin() + static_cast<long>(std::min(v.size(), at + 1 + rng() % 16)));
        break;
    }
  }
  return v;
}

// Hostile inputs make the device log one line each; keep the output readable.
struct QuietLog {
  QuietLog() { set_log_level(LogLevel::kOff); }
  ~QuietLog() { set_log_level(LogLevel::kInfo); }
};

// SKIFF_NET_FUZZ_REPLAY=<hex input> (with SKIFF_NET_FUZZ_TRACE=1): replays
// one input printed by a failing run, device log on.
TEST(NetFuzz, ReplayFromEnvironment) {
  const char* h = std::getenv("SKIFF_NET_FUZZ_REPLAY");
  if (!h) GTEST_SKIP() << "set SKIFF_NET_FUZZ_REPLAY=<hex> to replay an input";
  std::vector<uint8_t> in;
  for (size_t i = 0; h[i] && h[i + 1]; i += 2)
    in.push_back(static_cast<uint8_t>(std::stoul(std::string(h + i, 2), nullptr, 16)));
  std::string why;
  EXPECT_GE(exercise_net_device(in.data(), in.size(), &why), 0) << why;
}

TEST(NetFuzz, SeedsReachTheOutcomesTheyAreBuiltFor) {
  auto s = seeds();
  std::string why;
  int r0 = exercise_net_device(s[0].data(), s[0].size(), &why);
  ASSERT_GE(r0, 0) << why;
  for (int want : {kNetTxSent, kNetTxDropped, kNetTxBackendFull, kNetCtrlAckOk, kNetCtrlAckErr,
                   kNetRxDelivered, kNetRxMerged})
    EXPECT_TRUE(r0 & want) << "seed 0 misses outcome " << want << " (got " << r0 << ")";
  int r1 = exercise_net_device(s[1].data(), s[1].size(), &why);
  ASSERT_GE(r1, 0) << why;
  for (int want : {kNetTxSent, kNetTxDropped, kNetNeedsReset, kNetRxDelivered})
    EXPECT_TRUE(r1 & want) << "seed 1 misses outcome " << want << " (got " << r1 << ")";
  int r2 = exercise_net_device(s[2].data(), s[2].size(), &why);
  ASSERT_GE(r2, 0) << why;
  for (int want : {kNetThrottled, kNetTxSent, kNetRxDelivered})
    EXPECT_TRUE(r2 & want) << "seed 2 misses outcome " << want << " (got " << r2 << ")";
  int r3 = exercise_net_device(s[3].data(), s[3].size(), &why);
  ASSERT_GE(r3, 0) << why;
  for (int want : {kNetTxLinearised, kNetTxSent, kNetTxDropped, kNetRxMerged, kNetNeedsReset})
    EXPECT_TRUE(r3 & want) << "seed 3 misses outcome " << want << " (got " << r3 << ")";
}

TEST(NetFuzz, MutatedSessionsKeepEveryPropertyWithinTimeBudget) {
  QuietLog quiet;
  auto pool = seeds();
  const char* secs = std::getenv("SKIFF_FUZZ_SECONDS");
  const double budget = secs ? std::atof(secs) : 4.0;
  const char* iters = std::getenv("SKIFF_FUZZ_ITERATIONS");
  const size_t max_inputs = iters ? std::strtoull(iters, nullptr, 10) : 200000;
  std::mt19937_64 rng(std::random_device{}());
  const auto start = std::chrono::steady_clock::now();
  size_t inputs = 0;
  int seen = 0;
  std::vector<size_t> counts(16, 0);
  while (inputs < max_inputs &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
    std::vector<uint8_t> in;
    if (inputs % 32 == 31) {
      in.resize(rng() % 600);
      for (auto& b : in) b = static_cast<uint8_t>(rng());
    } else {
      in = mutate(pool[rng() % pool.size()], pool, rng);
    }
    std::string why;
    int r = exercise_net_device(in.data(), in.size(), &why);
    ASSERT_GE(r, 0) << why << "\ninput: " << hex(in);
    seen |= r;
    for (int b = 0; b < 16; ++b)
      if (r & (1 << b)) ++counts[static_cast<size_t>(b)];
    // Mutants that still run far are worth mutating further.
    if (r != 0 && pool.size() < 64 && rng() % 64 == 0) pool.push_back(in);
    ++inputs;
  }
  std::string summary;
  for (int b = 0; b < 10; ++b) summary += fmt::format(" {}:{}", b, counts[static_cast<size_t>(b)]);
  std::printf("%zu inputs in %.1f s; outcome counts%s\n", inputs,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              summary.c_str());
  RecordProperty("inputs", static_cast<int>(inputs));
  EXPECT_GT(inputs, 100u);
  // The mutants explored the device, not just its input checks.
  for (int want :
       {kNetTxSent, kNetTxDropped, kNetNeedsReset, kNetCtrlAckOk, kNetCtrlAckErr, kNetRxDelivered})
    EXPECT_TRUE(seen & want) << "no mutant reached outcome " << want;
}

}  // namespace
}  // namespace skiff::fuzz
