// VhostNetDevice against the real kernel: /dev/vhost-net serving the rings
// of a fake driver (tests/virtio/fake_driver.h) over a tap, inside a network
// namespace this test process makes (unshare(CLONE_NEWNET), as tap_test.cc).
// The tap has an address, so the kernel's own ARP answers the frames the
// fake driver transmits: tx and rx both cross vhost-net.
//
// Needs root, /dev/net/tun and /dev/vhost-net; skipped with the reason
// otherwise. Hosts without vhost-net run it inside the TCG guest
// (tests/net/run_vhost_net_in_guest.py loads the guest kernel's vhost_net).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/tap.h"
#include "net/vhost_net.h"
#include "virtio/devices/net_wire.h"
#include "virtio/devices/vhost_net_device.h"
#include "virtio/fake_driver.h"
#include "vmm/net_devices.h"

namespace skiff::virtio {
namespace {

using namespace netwire;
using testing::Buf;
using testing::FakeDriver;
using testing::FakeGuest;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr uint8_t kHostIp[4] = {10, 77, 0, 1};
constexpr uint8_t kGuestIp[4] = {10, 77, 0, 2};

constexpr uint64_t bit(unsigned b) {
  return feature_bit(b);
}

// An ARP request "who has kHostIp? tell kGuestIp" from kGuestMac, padded to
// the 60-byte Ethernet minimum.
std::vector<uint8_t> arp_request() {
  std::vector<uint8_t> f(60, 0);
  std::memset(f.data(), 0xff, 6);
  std::memcpy(f.data() + 6, kGuestMac, 6);
  f[12] = 0x08, f[13] = 0x06;                       // ETH_P_ARP
  const uint8_t arp[8] = {0, 1, 8, 0, 6, 4, 0, 1};  // Ethernet, IPv4, request
  std::memcpy(f.data() + 14, arp, sizeof arp);
  std::memcpy(f.data() + 22, kGuestMac, 6);  // sender MAC
  std::memcpy(f.data() + 28, kGuestIp, 4);   // sender IP
  std::memcpy(f.data() + 38, kHostIp, 4);    // target IP
  return f;
}

// Whether `frame` is the kernel's ARP reply to arp_request().
bool is_arp_reply(std::span<const uint8_t> frame) {
  if (frame.size() < 42) return false;
  return std::memcmp(frame.data(), kGuestMac, 6) == 0 && frame[12] == 0x08 && frame[13] == 0x06 &&
         frame[20] == 0 && frame[21] == 2 && std::memcmp(frame.data() + 28, kHostIp, 4) == 0 &&
         std::memcmp(frame.data() + 38, kGuestIp, 4) == 0;
}

uint16_t ip_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// An ICMP echo request kGuestIp -> kHostIp to `dst_mac` with `payload_len`
// pattern bytes.
std::vector<uint8_t> icmp_echo(const uint8_t* dst_mac, size_t payload_len) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload_len, 0);
  std::memcpy(f.data(), dst_mac, 6);
  std::memcpy(f.data() + 6, kGuestMac, 6);
  f[12] = 0x08, f[13] = 0x00;
  uint8_t* ip = f.data() + 14;
  size_t ip_len = 20 + 8 + payload_len;
  ip[0] = 0x45, ip[2] = static_cast<uint8_t>(ip_len >> 8), ip[3] = static_cast<uint8_t>(ip_len);
  ip[6] = 0x40, ip[8] = 64, ip[9] = 1;  // DF, TTL, ICMP
  std::memcpy(ip + 12, kGuestIp, 4);
  std::memcpy(ip + 16, kHostIp, 4);
  uint16_t c = ip_checksum(ip, 20);
  ip[10] = static_cast<uint8_t>(c >> 8), ip[11] = static_cast<uint8_t>(c);
  uint8_t* icmp = ip + 20;
  icmp[0] = 8, icmp[4] = 0x12, icmp[5] = 0x34, icmp[7] = 1;  // echo, id, seq
  for (size_t i = 0; i < payload_len; ++i) icmp[8 + i] = static_cast<uint8_t>(i * 7 + 3);
  c = ip_checksum(icmp, 8 + payload_len);
  icmp[2] = static_cast<uint8_t>(c >> 8), icmp[3] = static_cast<uint8_t>(c);
  return f;
}

class VhostNetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0)
      skip_ = "needs root (CAP_NET_ADMIN) for a network namespace and taps";
    else if (::access("/dev/net/tun", R_OK | W_OK) != 0)
      skip_ = "no usable /dev/net/tun (modprobe tun)";
    else if (::access(net::kVhostNetPath, R_OK | W_OK) != 0)
      skip_ = std::string("no usable /dev/vhost-net (modprobe vhost_net): ") + std::strerror(errno);
    else if (::unshare(CLONE_NEWNET) != 0)
      skip_ = std::string("unshare(CLONE_NEWNET) failed: ") + std::strerror(errno);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << "skipped: " << skip_;
  }
  void TearDown() override {
    dev.reset();  // stops the kernel's workers before the guest RAM goes away
  }

  // A tap `name` with `pairs` queues, address kHostIp/24, up.
  void open_tap(const std::string& name, uint16_t pairs) {
    auto t = net::Tap::open(name, pairs, net::TapUse::kVhostNet);
    ASSERT_TRUE(t) << t.error().what();
    tap = std::move(*t);
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, kHostIp, 4);
    ASSERT_EQ(::ioctl(s.get(), SIOCSIFADDR, &ifr), 0) << std::strerror(errno);
    sin->sin_addr.s_addr = htonl(0xffffff00);
    ASSERT_EQ(::ioctl(s.get(), SIOCSIFNETMASK, &ifr), 0) << std::strerror(errno);
    ASSERT_EQ(::ioctl(s.get(), SIOCGIFFLAGS, &ifr), 0) << std::strerror(errno);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ASSERT_EQ(::ioctl(s.get(), SIOCSIFFLAGS, &ifr), 0) << std::strerror(errno);
  }

  void create(const std::string& tap_name, uint16_t pairs = 1) {
    open_tap(tap_name, pairs);
    if (HasFatalFailure()) return;
    VhostNetOptions o;
    std::memcpy(o.mac.bytes.data(), kGuestMac, 6);
    o.queue_size = kQueueSize;
    auto d = VhostNetDevice::create(std::move(tap), o);
    ASSERT_TRUE(d) << d.error().what();
    dev = std::move(*d);
    dev->set_memory(&guest.mem);
    dev->set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer)
        ++irqs[q];
      else
        ++config_irqs;
    });
  }

  // The driver's side of §3.1.1 with the device features in `want`.
  void activate(uint64_t want) {
    dev->set_status(kStatusAcknowledge | kStatusDriver);
    dev->set_driver_features((dev->device_features() & want) | kCommonFeatures);
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(dev->status() & kStatusFeaturesOk);
    if (drivers.empty())
      for (uint16_t q = 0; q < dev->num_queues(); ++q)
        drivers.push_back(
            std::make_unique<FakeDriver>(guest, kQueueSize, FakeGuest::kRamBase + q * kMiB));
    for (uint16_t q = 0; q < dev->num_queues(); ++q) drivers[q]->configure(*dev->queue(q));
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(dev->activated()) << "status " << int(dev->status());
  }

  FakeDriver& rx(uint16_t pair = 0) { return *drivers[2 * pair]; }
  FakeDriver& tx(uint16_t pair = 0) { return *drivers[2 * pair + 1]; }

  // Posts `count` receive buffers; remembers where each head's bytes are.
  void post_rx(size_t count, uint32_t len = 2048) {
    for (size_t i = 0; i < count; ++i) {
      uint64_t g = rx().alloc(len);
      rx_buffers[rx().add_chain({{g, len, true}})] = g;
    }
    dev->process_queue(0);  // the driver's notification
  }
  // A tx chain: the header in its own descriptor (as Linux), then the frame.
  void send(const std::vector<uint8_t>& frame, uint16_t pair = 0) {
    FakeDriver& d = tx(pair);
    Header h{};
    uint64_t hg = d.alloc(sizeof h);
    guest.put(hg, h);
    uint64_t fg = d.alloc(static_cast<uint32_t>(frame.size()));
    std::memcpy(guest.host(fg, frame.size()).data(), frame.data(), frame.size());
    d.add_chain({{hg, sizeof h, false}, {fg, static_cast<uint32_t>(frame.size()), false}});
    dev->process_queue(static_cast<uint16_t>(2 * pair + 1));
  }

  // What the transport's I/O thread does: wait on the device's backend
  // events and process the queue each belongs to, until `done` or 5 s.
  bool pump_until(const std::function<bool()>& done) {
    auto events = dev->backend_events();
    std::vector<pollfd> fds;
    for (const auto& e : events) fds.push_back({e.fd, POLLIN, 0});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (::poll(fds.data(), fds.size(), 50) < 0) return false;
      for (size_t i = 0; i < fds.size(); ++i)
        if (fds[i].revents & POLLIN) dev->process_queue(events[i].queue);
    }
    return true;
  }

  // The used rx entry holding the kernel's ARP reply, or -1.
  int find_arp_reply(uint16_t from_used = 0) {
    for (uint16_t i = from_used; i != rx().used_idx(); ++i) {
      VirtqUsedElem e = rx().used_elem(i);
      auto it = rx_buffers.find(static_cast<uint16_t>(e.id));
      if (it == rx_buffers.end() || e.len < sizeof(Header)) continue;
      auto bytes = guest.host(it->second, e.len);
      if (is_arp_reply(bytes.subspan(sizeof(Header)))) return i;
    }
    return -1;
  }

  // One ARP exchange: the request crosses vhost tx, the reply vhost rx.
  void exchange_arp() {
    uint16_t tx_used = tx().used_idx();
    uint16_t rx_used = rx().used_idx();
    int tx_irqs = irqs[1];
    int rx_irqs = irqs[0];
    // Linux's virtqueue_enable_cb with EVENT_IDX: interrupt me for the next
    // used entry (without it the kernel rightly stays quiet).
    tx().set_used_event(tx_used);
    rx().set_used_event(rx_used);
    send(arp_request());
    ASSERT_TRUE(pump_until([&] {
      return tx().used_idx() != tx_used && find_arp_reply(rx_used) >= 0 && irqs[1] > tx_irqs &&
             irqs[0] > rx_irqs;
    })) << "tx used "
        << tx().used_idx() << " (was " << tx_used << "), rx used " << rx().used_idx() << " (was "
        << rx_used << "), interrupts tx " << irqs[1] << " rx " << irqs[0] << ", status "
        << int(dev->status());
    EXPECT_EQ(tx().used_idx(), static_cast<uint16_t>(tx_used + 1));
    EXPECT_GT(irqs[1], tx_irqs) << "the kernel's call became a tx interrupt";
    EXPECT_GT(irqs[0], rx_irqs) << "the kernel's call became an rx interrupt";
    VirtqUsedElem e = rx().used_elem(static_cast<uint16_t>(find_arp_reply(rx_used)));
    Header h = guest.get<Header>(rx_buffers[static_cast<uint16_t>(e.id)]);
    if (dev->negotiated(kFMrgRxbuf)) {
      EXPECT_EQ(h.num_buffers, 1);
    }
    EXPECT_EQ(h.gso_type, kGsoNone);
  }

  // Sends a control command; returns the ack byte (0xee if none was written).
  uint8_t command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data) {
    FakeDriver& d = *drivers[static_cast<size_t>(dev->ctrl_queue_index())];
    uint64_t h = d.alloc(2 + static_cast<uint32_t>(data.size()));
    guest.put<uint8_t>(h, cls);
    guest.put<uint8_t>(h + 1, cmd);
    if (!data.empty()) std::memcpy(guest.host(h + 2, data.size()).data(), data.data(), data.size());
    uint64_t ack = d.alloc(1);
    guest.put<uint8_t>(ack, 0xee);
    d.add_chain({{h, 2 + static_cast<uint32_t>(data.size()), false}, {ack, 1, true}});
    dev->process_queue(static_cast<uint16_t>(dev->ctrl_queue_index()));
    return guest.get<uint8_t>(ack);
  }

  static short tap_flags(int fd) {
    ifreq ifr{};
    return ::ioctl(fd, TUNGETIFF, &ifr) == 0 ? ifr.ifr_flags : short{-1};
  }

  static inline std::string skip_;
  FakeGuest guest{8 * kMiB};
  std::unique_ptr<net::Tap> tap;
  std::unique_ptr<VhostNetDevice> dev;
  std::vector<std::unique_ptr<FakeDriver>> drivers;
  std::map<uint16_t, uint64_t> rx_buffers;  // head -> buffer gpa
  std::map<uint16_t, int> irqs;
  int config_irqs = 0;
};

TEST(VhostNetOpen, MissingDeviceIsANamedErrorThatSaysWhatToLoad) {
  auto v = net::VhostNet::open("/nonexistent/vhost-net");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().what().find("/nonexistent/vhost-net"), std::string::npos) << v.error().what();
  EXPECT_NE(v.error().what().find("modprobe vhost_net"), std::string::npos) << v.error().what();
  auto d = net::VhostNet::open("/dev/null");
  ASSERT_FALSE(d) << "/dev/null is no vhost device";
  EXPECT_NE(d.error().what().find("VHOST_SET_OWNER"), std::string::npos) << d.error().what();
}

TEST_F(VhostNetTest, OffersWhatTheKernelAndTheTapSupport) {
  create("vhn0");
  ASSERT_TRUE(dev);
  uint64_t k = dev->vhost_features();
  EXPECT_TRUE(k & bit(kFeatureVersion1));
  EXPECT_TRUE(k & bit(kFeatureEventIdx));
  uint64_t offered = dev->device_features();
  EXPECT_EQ((offered & bit(kFMrgRxbuf)) != 0, (k & bit(kFMrgRxbuf)) != 0);
  for (unsigned b : {kFMac, kFStatus, kFCtrlVq, kFCtrlMacAddr, kFCtrlGuestOffloads})
    EXPECT_TRUE(offered & bit(b)) << "feature " << b;
  // The kernel path cannot filter, so the filter features are not offered;
  // one pair: no MQ.
  for (unsigned b : {kFCtrlRx, kFCtrlVlan, kFCtrlRxExtra, kFMq})
    EXPECT_FALSE(offered & bit(b)) << "feature " << b;
  unsigned offloads = dev->tap().supported_offloads();
  EXPECT_EQ((offered & bit(kFCsum)) != 0, (offloads & net::kOffloadCsum) != 0);
  EXPECT_EQ((offered & bit(kFGuestTso4)) != 0, (offloads & net::kOffloadTso4) != 0);
  EXPECT_EQ(dev->num_queues(), 3);
}

TEST_F(VhostNetTest, TransmitsAFrameAndReceivesTheKernelsReply) {
  create("vhn1");
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFStatus) | bit(kFMrgRxbuf) | bit(kFCtrlVq));
  post_rx(16);
  exchange_arp();
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(config_irqs, 0);
}

TEST_F(VhostNetTest, WorksWithoutMergeableBuffers) {
  create("vhn2");
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFCtrlVq));
  ASSERT_FALSE(dev->negotiated(kFMrgRxbuf));
  post_rx(16);
  exchange_arp();
}

TEST_F(VhostNetTest, ResetStopsRingsWhereTheyAreAndTheDeviceStartsAgain) {
  create("vhn3");
  ASSERT_TRUE(dev);
  const uint64_t want = bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq);
  activate(want);
  post_rx(16);
  exchange_arp();
  exchange_arp();
  uint16_t rx_used = rx().used_idx();
  dev->set_status(0);
  EXPECT_FALSE(dev->activated());
  // GET_VRING_BASE: the kernel consumed exactly what it used (one chain
  // per frame with these buffer sizes).
  ASSERT_TRUE(dev->stopped_ring_base(1));
  EXPECT_EQ(*dev->stopped_ring_base(1), 2);
  ASSERT_TRUE(dev->stopped_ring_base(0));
  EXPECT_EQ(*dev->stopped_ring_base(0), rx_used);
  // A driver starting over: zeroed rings, indices from 0.
  for (auto& d : drivers) d->restart();
  rx_buffers.clear();
  activate(want);
  post_rx(16);
  exchange_arp();
  EXPECT_FALSE(dev->needs_reset());
}

TEST_F(VhostNetTest, ControlQueueSetsQueuePairsOffloadsAndMac) {
  create("vhn4", 2);
  ASSERT_TRUE(dev);
  int q1 = dev->tap().fd(1);
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq) | bit(kFMq) | bit(kFCtrlMacAddr) |
           bit(kFCtrlGuestOffloads) | bit(kFGuestCsum) | bit(kFCsum));
  EXPECT_EQ(dev->ctrl_queue_index(), 4);
  // §5.1.6.5.5: one pair until the driver asks: the second tap queue is detached.
  EXPECT_TRUE(tap_flags(q1) & IFF_DETACH_QUEUE);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {2, 0}), 0);
  EXPECT_EQ(dev->active_queue_pairs(), 2);
  EXPECT_FALSE(tap_flags(q1) & IFF_DETACH_QUEUE);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {3, 0}), 1) << "more pairs than the device has";
  // Receive-mode commands need CTRL_RX, which this device does not offer.
  EXPECT_EQ(command(kCtrlRx, kCtrlRxPromisc, {1}), 1);
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, std::vector<uint8_t>(mac, mac + 6)), 0);
  uint8_t cfg[6];
  ASSERT_TRUE(dev->read_config(0, cfg));
  EXPECT_EQ(std::memcmp(cfg, mac, 6), 0);
  uint64_t csum_only = bit(kFGuestCsum);
  std::vector<uint8_t> le(8);
  std::memcpy(le.data(), &csum_only, 8);
  EXPECT_EQ(command(kCtrlGuestOffloads, kCtrlGuestOffloadsSet, le), 0);
  EXPECT_EQ(command(kCtrlGuestOffloads, kCtrlGuestOffloadsSet, {0, 0, 0, 0, 0, 0, 0, 0x80}), 1)
      << "an offload that was not negotiated";
  EXPECT_FALSE(dev->needs_reset());
  // Both pairs carry frames now: pair 1's ring works too.
  for (int i = 0; i < 8; ++i) {
    uint64_t g = rx(1).alloc(2048);
    rx(1).add_chain({{g, 2048, true}});
  }
  dev->process_queue(2);
  uint16_t before = tx(1).used_idx();
  send(arp_request(), 1);
  EXPECT_TRUE(pump_until([&] { return tx(1).used_idx() != before; }))
      << "pair 1's transmit ring did not move";
}

TEST_F(VhostNetTest, WithoutMqQueueTwoIsTheControlQueueNotASecondPair) {
  create("vhn8", 2);
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq) | bit(kFCtrlMacAddr));
  ASSERT_FALSE(dev->negotiated(kFMq));
  EXPECT_EQ(dev->ctrl_queue_index(), 2);
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x01, 0x02, 0x03};
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, std::vector<uint8_t>(mac, mac + 6)), 0)
      << "queue 2 must be served by skiff, not handed to vhost-net";
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, std::vector<uint8_t>(mac, mac + 6)), 0);
  post_rx(16);
  exchange_arp();
  dev->set_status(0);
  EXPECT_FALSE(dev->stopped_ring_base(2)) << "queue 2 never went to the kernel";
  EXPECT_TRUE(dev->stopped_ring_base(0));
}

TEST_F(VhostNetTest, AControlRequestWithoutRoomForTheAckNeedsReset) {
  create("vhn10");
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq) | bit(kFCtrlMacAddr));
  FakeDriver& c = *drivers[static_cast<size_t>(dev->ctrl_queue_index())];
  uint64_t h = c.alloc(8);
  guest.put<uint8_t>(h, kCtrlMac);
  guest.put<uint8_t>(h + 1, kCtrlMacAddrSet);
  c.add_chain({{h, 8, false}});  // §5.1.6.5: no writable ack byte
  dev->process_queue(static_cast<uint16_t>(dev->ctrl_queue_index()));
  EXPECT_TRUE(dev->needs_reset());
  EXPECT_GT(config_irqs, 0);
  // The driver's reset brings the device (and the kernel's rings) back.
  dev->set_status(0);
  for (auto& d : drivers) d->restart();
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq) | bit(kFCtrlMacAddr));
  post_rx(16);
  exchange_arp();
}

TEST_F(VhostNetTest, ADescriptorOutsideGuestRamIsTheKernelsErrorAndNeedsReset) {
  create("vhn5");
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq));
  // Address 0x1000 is below FakeGuest's RAM: vhost cannot translate it.
  tx().add_chain({{0x1000, 64, false}});
  dev->process_queue(1);
  ASSERT_TRUE(pump_until([&] { return dev->needs_reset(); }))
      << "the kernel did not report the bad descriptor";
  EXPECT_GT(config_irqs, 0) << "NEEDS_RESET is announced with a config interrupt";
  // The driver's reset brings it back.
  dev->set_status(0);
  for (auto& d : drivers) d->restart();
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq));
  post_rx(16);
  exchange_arp();
}

TEST_F(VhostNetTest, ALargeReplySpansMergedReceiveBuffers) {
  create("vhn9");
  ASSERT_TRUE(dev);
  activate(bit(kFMac) | bit(kFMrgRxbuf) | bit(kFCtrlVq));
  ASSERT_TRUE(dev->negotiated(kFMrgRxbuf));
  post_rx(48, 512);
  exchange_arp();  // the kernel now knows the guest's MAC, and we the tap's
  int arp = find_arp_reply();
  ASSERT_GE(arp, 0);
  uint8_t tap_mac[6];
  VirtqUsedElem a = rx().used_elem(static_cast<uint16_t>(arp));
  std::memcpy(tap_mac, guest.host(rx_buffers[static_cast<uint16_t>(a.id)], 64).data() + 12 + 6, 6);

  constexpr size_t kPayload = 1400;  // a 1442-byte frame: 3 buffers of 512 with the header
  uint16_t from = rx().used_idx();
  rx().set_used_event(from);
  send(icmp_echo(tap_mac, kPayload));
  std::vector<uint8_t> reply;
  auto reassemble = [&] {
    // Used entries from `from` on: a header with num_buffers starts a frame.
    for (uint16_t i = from; i != rx().used_idx();) {
      VirtqUsedElem e = rx().used_elem(i);
      Header h = guest.get<Header>(rx_buffers[static_cast<uint16_t>(e.id)]);
      uint16_t n = std::max<uint16_t>(h.num_buffers, 1);
      if (static_cast<uint16_t>(rx().used_idx() - i) < n) return false;  // not all used yet
      std::vector<uint8_t> bytes;
      for (uint16_t k = 0; k < n; ++k) {
        VirtqUsedElem p = rx().used_elem(static_cast<uint16_t>(i + k));
        auto b = guest.host(rx_buffers[static_cast<uint16_t>(p.id)], p.len);
        bytes.insert(bytes.end(), b.begin(), b.end());
      }
      i = static_cast<uint16_t>(i + n);
      if (bytes.size() > sizeof(Header) + 34 && bytes[sizeof(Header) + 12] == 0x08 &&
          bytes[sizeof(Header) + 13] == 0x00 && bytes[sizeof(Header) + 34] == 0 /* echo reply */) {
        reply.assign(bytes.begin() + sizeof(Header), bytes.end());
        EXPECT_EQ(n, 3) << "a " << reply.size() << "-byte frame in 512-byte buffers";
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(pump_until(reassemble)) << "no echo reply; rx used " << rx().used_idx();
  ASSERT_EQ(reply.size(), 14 + 20 + 8 + kPayload);
  EXPECT_EQ(std::memcmp(reply.data(), kGuestMac, 6), 0);
  EXPECT_EQ(std::memcmp(reply.data() + 14 + 12, kHostIp, 4), 0);
  for (size_t i = 0; i < kPayload; ++i)
    ASSERT_EQ(reply[14 + 28 + i], static_cast<uint8_t>(i * 7 + 3)) << "payload byte " << i;
  EXPECT_EQ(ip_checksum(reply.data() + 14 + 20, 8 + kPayload), 0) << "ICMP checksum";
}

// skiff's --net tap=...,vhost=on as the vmm layer builds it (net_devices.h):
// where /dev/vhost-net opens, the kernel data path, not the fallback.
TEST_F(VhostNetTest, NetConfigWithVhostOnGetsTheKernelDataPath) {
  NetConfig c;
  c.tap = "vhn6";
  c.vhost = true;
  c.num_queues = 4;
  auto d = make_net_device(c, 1, guest.mem);
  ASSERT_TRUE(d) << d.error().what();
  auto* vhost = dynamic_cast<VhostNetDevice*>(d->get());
  ASSERT_NE(vhost, nullptr) << "fell back to skiff's own data path";
  EXPECT_EQ(vhost->max_queue_pairs(), 2);
  EXPECT_EQ(vhost->num_queues(), 5);
  c.vhost = false;
  c.tap = "vhn7";
  auto plain = make_net_device(c, 1, guest.mem);
  ASSERT_TRUE(plain) << plain.error().what();
  EXPECT_EQ(dynamic_cast<VhostNetDevice*>(plain->get()), nullptr);
}

}  // namespace
}  // namespace skiff::virtio
