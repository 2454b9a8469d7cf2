// Test fixture for VirtioNet (net_test.cc, net_rate_limit_test.cc): the
// device over FakeNetBackend, driven by one FakeDriver per queue in a fake
// guest RAM, with helpers to send frames, post receive buffers and issue
// control commands.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "virtio/devices/net.h"
#include "virtio/devices/net_wire.h"
#include "virtio/fake_driver.h"
#include "virtio/net_fake_backend.h"

namespace skiff::virtio::nettest {

using namespace netwire;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeNetBackend;

constexpr uint64_t kMiB = 1 << 20;

inline std::vector<uint8_t> frame_bytes(size_t len, uint8_t seed) {
  std::vector<uint8_t> f(len);
  for (size_t i = 0; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i * 7);
  return f;
}

// A received frame as the backend hands it over: header then frame.
inline std::vector<uint8_t> with_header(const std::vector<uint8_t>& frame, Header h = {}) {
  std::vector<uint8_t> out(sizeof h + frame.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!frame.empty()) std::memcpy(out.data() + sizeof h, frame.data(), frame.size());
  return out;
}

struct NetFixture : ::testing::Test {
  // `want`: the device-specific features the driver accepts (masked by what
  // is offered).
  void start(uint16_t pairs, uint64_t want, bool control_queue = true) {
    auto b = std::make_unique<FakeNetBackend>(pairs);
    backend = b.get();
    NetOptions o;
    o.mac = *net::MacAddress::parse("52:54:00:12:34:56");
    o.queue_size = 64;
    o.control_queue = control_queue;
    o.rate_limiter = rate_limiter;
    o.clock = clock;
    auto r = VirtioNet::create(std::move(b), o);
    ASSERT_TRUE(r) << r.error().message;
    net = std::move(*r);
    net->set_memory(&guest.mem);
    net->set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer) ++irqs[q];
    });
    negotiate(want);
  }
  // The driver resets the device (status 0) and sets it up again on fresh
  // rings.
  void reset_and_restart(uint64_t want) {
    net->set_status(0);
    drivers.clear();
    for (uint16_t q = 0; q < net->num_queues(); ++q) {
      auto area = guest.host(FakeGuest::kRamBase + q * kMiB, kMiB);
      std::fill(area.begin(), area.end(), uint8_t{0});
    }
    negotiate(want);
  }
  // Feature negotiation, rings, DRIVER_OK (virtio 1.2 §3.1.1).
  void negotiate(uint64_t want) {
    net->set_status(kStatusAcknowledge | kStatusDriver);
    net->set_driver_features((net->device_features() & want) | kCommonFeatures);
    net->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(net->status() & kStatusFeaturesOk);
    for (uint16_t q = 0; q < net->num_queues(); ++q) {
      drivers.push_back(std::make_unique<FakeDriver>(guest, 64, FakeGuest::kRamBase + q * kMiB));
      drivers.back()->configure(*net->queue(q));
    }
    net->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(net->activated());
  }
  FakeDriver& rx(uint16_t pair = 0) { return *drivers[2 * pair]; }
  FakeDriver& tx(uint16_t pair = 0) { return *drivers[2 * pair + 1]; }
  FakeDriver& ctrl() { return *drivers[static_cast<size_t>(net->ctrl_queue_index())]; }

  // A tx chain: header (its own descriptor, as Linux does) + frame split in two.
  void send(const std::vector<uint8_t>& frame, Header h = {}, uint16_t pair = 0) {
    FakeDriver& d = tx(pair);
    uint64_t hg = d.alloc(sizeof h);
    std::memcpy(guest.host(hg, sizeof h).data(), &h, sizeof h);
    size_t half = frame.size() / 2;
    std::vector<testing::Buf> bufs{{hg, sizeof h, false}};
    if (half > 0) {
      uint64_t a = d.alloc(static_cast<uint32_t>(half));
      std::memcpy(guest.host(a, half).data(), frame.data(), half);
      bufs.push_back({a, static_cast<uint32_t>(half), false});
    }
    if (frame.size() > half) {
      uint64_t b = d.alloc(static_cast<uint32_t>(frame.size() - half));
      std::memcpy(guest.host(b, frame.size() - half).data(), frame.data() + half,
                  frame.size() - half);
      bufs.push_back({b, static_cast<uint32_t>(frame.size() - half), false});
    }
    d.add_chain(bufs);
  }
  // Posts `count` receive chains of `len` bytes; returns their addresses.
  std::vector<uint64_t> post_rx(size_t count, uint32_t len, uint16_t pair = 0) {
    std::vector<uint64_t> out;
    for (size_t i = 0; i < count; ++i) {
      uint64_t g = rx(pair).alloc(len);
      rx(pair).add_chain({{g, len, true}});
      out.push_back(g);
    }
    return out;
  }
  Header header_at(uint64_t gpa) { return guest.get<Header>(gpa); }
  // Sends a control command; returns the ack byte (0xee if none was written).
  uint8_t command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data) {
    FakeDriver& d = ctrl();
    uint64_t h = d.alloc(2);
    guest.put<uint8_t>(h, cls);
    guest.put<uint8_t>(h + 1, cmd);
    std::vector<testing::Buf> bufs{{h, 2, false}};
    if (!data.empty()) {
      uint64_t g = d.alloc(static_cast<uint32_t>(data.size()));
      std::memcpy(guest.host(g, data.size()).data(), data.data(), data.size());
      bufs.push_back({g, static_cast<uint32_t>(data.size()), false});
    }
    uint64_t ack = d.alloc(1);
    guest.put<uint8_t>(ack, 0xee);
    bufs.push_back({ack, 1, true});
    d.add_chain(bufs);
    net->process_queue(static_cast<uint16_t>(net->ctrl_queue_index()));
    return guest.get<uint8_t>(ack);
  }

  // Set before start().
  net::RateLimiterConfig rate_limiter;
  net::MonotonicClock clock = net::steady_now;

  FakeGuest guest{16 * kMiB};
  std::vector<std::unique_ptr<FakeDriver>> drivers;
  FakeNetBackend* backend = nullptr;
  std::unique_ptr<VirtioNet> net;
  std::map<uint16_t, int> irqs;
};

constexpr uint64_t kAll = ~0ull;
constexpr uint64_t bit(unsigned b) {
  return feature_bit(b);
}

}  // namespace skiff::virtio::nettest
