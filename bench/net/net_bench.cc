// net_bench: frames/s and Gbit/s through skiff's virtio-net device path vs
// the same tap driven directly by a host thread, in one run (bench/net/run.sh,
// bench/README.md "virtio-net").
//
// Device path: VirtioNet over a net::Tap, driven by a fake in-process guest
// driver (tests/virtio/fake_driver.h: split rings in a RAM buffer, the way
// Linux lays them out) that keeps the queues full and calls process_queue()
// itself, so what is measured is the device (ring walk, header checks,
// readv/writev and io_uring batches to/from guest memory) plus the tap, not
// KVM exits.
//   tx: chains of [12-byte header][frame] -> the tap, 64 frames per batch.
//   rx: a generator thread sends frames into the tap interface through an
//       AF_PACKET socket; the device reads them into posted buffers.
// Direct path, same tap fd, same frames:
//   tx: write(header + frame) in a loop, and (a second reference) the same
//       frames 64 at a time through a TapRing;
//   rx: read() in a loop while the same generator runs.
// rx is measured a second time without the generator competing for the
// CPU: the tap's queue is filled with 20000 frames first, then only the
// reader's draining of it is timed (the direct reader: read() in a loop,
// and a second reference reading 32 frames at a time through a TapRing).
// Everything happens in a private network namespace (unshare(CLONE_NEWNET));
// frames go nowhere (the kernel drops them after the tap).
//
// Each figure is S seconds per path, in 6 alternating slices (device,
// direct, device, ...) so that load from elsewhere hits both alike.
//
//   net_bench [--seconds S]     (needs root; exit 77 "skipped: ..." if not)
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "net/tap.h"
#include "net/tap_ring.h"
#include "virtio/devices/net.h"
#include "virtio/devices/net_wire.h"
#include "virtio/fake_driver.h"

using namespace skiff;
using namespace skiff::virtio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kTap = "sknb0";
constexpr uint16_t kQueueSize = 256;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kMaxFrame = 65014;  // the TSO frame below
constexpr int kRounds = 6;             // device and direct alternate in this many slices
const uint8_t kMac[6] = {0x52, 0x54, 0x00, 0xbe, 0x4c, 0x01};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// An Ethernet frame of `len` bytes. TSO frames are IPv4/TCP with a header
// asking the host to segment (gso_size 1448) and checksum; others are raw
// frames of a local experimental ethertype.
struct Frame {
  netwire::Header hdr{};
  std::vector<uint8_t> bytes;
};

Frame make_frame(size_t len, bool tso) {
  Frame f;
  f.bytes.assign(len, 0x5a);
  std::memcpy(f.bytes.data(), kMac, 6);
  const uint8_t src[6] = {0x02, 0xfe, 0xed, 0, 0, 1};
  std::memcpy(f.bytes.data() + 6, src, 6);
  if (!tso) {
    f.bytes[12] = 0x88;
    f.bytes[13] = 0xb5;
    return f;
  }
  f.bytes[12] = 0x08;
  f.bytes[13] = 0x00;
  uint8_t* ip = f.bytes.data() + 14;
  uint16_t total = htons(static_cast<uint16_t>(len - 14));
  ip[0] = 0x45;
  std::memcpy(ip + 2, &total, 2);
  ip[8] = 64;
  ip[9] = 6;  // TCP
  const uint8_t saddr[4] = {10, 0, 0, 1}, daddr[4] = {10, 0, 0, 2};
  std::memcpy(ip + 12, saddr, 4);
  std::memcpy(ip + 16, daddr, 4);
  uint8_t* tcp = ip + 20;
  tcp[12] = 5 << 4;  // data offset
  tcp[13] = 0x18;    // PSH ACK
  f.hdr.flags = netwire::kHdrNeedsCsum;
  f.hdr.gso_type = netwire::kGsoTcpV4;
  f.hdr.hdr_len = 54;
  f.hdr.gso_size = 1448;
  f.hdr.csum_start = 34;
  f.hdr.csum_offset = 16;
  return f;
}

struct Result2 {
  double frames_per_s = 0;
  double gbit_per_s = 0;
};

Result2 rate(uint64_t frames, size_t len, double secs) {
  auto f = static_cast<double>(frames);
  return {f / secs, f * static_cast<double>(len) * 8.0 / secs / 1e9};
}

// The device with its fake guest driver, features as Linux negotiates them
// (MRG_RXBUF, checksums, TSO4 where the tap has it).
struct DevicePath {
  testing::FakeGuest guest{64 * kMiB};
  std::unique_ptr<VirtioNet> net;
  std::vector<std::unique_ptr<testing::FakeDriver>> drivers;
  std::vector<uint64_t> tx_hdrs, tx_frames;  // transmit buffers (largest frame)
  std::vector<uint64_t> rx_bufs;             // posted receive buffers
  size_t rx_next = 0;                        // the next one to give back
  std::vector<testing::Buf> rx_chain{{0, sizeof(netwire::Header) + 1514, true}};

  bool start(std::unique_ptr<net::Tap> tap) {
    NetOptions o;
    std::memcpy(o.mac.bytes.data(), kMac, 6);
    o.queue_size = kQueueSize;
    auto r = VirtioNet::create(std::move(tap), o);
    if (!r) {
      std::fprintf(stderr, "net_bench: %s\n", r.error().what().c_str());
      return false;
    }
    net = std::move(*r);
    net->set_memory(&guest.mem);
    net->set_interrupt([](InterruptKind, uint16_t) {});
    net->set_status(kStatusAcknowledge | kStatusDriver);
    uint64_t want = feature_bit(netwire::kFMac) | feature_bit(netwire::kFMrgRxbuf) |
                    feature_bit(netwire::kFCsum) | feature_bit(netwire::kFGuestCsum) |
                    feature_bit(netwire::kFHostTso4) | feature_bit(netwire::kFGuestTso4);
    net->set_driver_features((net->device_features() & want) | kCommonFeatures);
    net->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (uint16_t q = 0; q < net->num_queues(); ++q) {
      drivers.push_back(std::make_unique<testing::FakeDriver>(
          guest, kQueueSize, testing::FakeGuest::kRamBase + q * 16 * kMiB));
      drivers.back()->configure(*net->queue(q));
    }
    net->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    return net->activated();
  }
  bool has_tso() const { return net->negotiated(netwire::kFHostTso4); }
  // Posts the receive buffers the device used between used-ring indices
  // `from` and `to` again, as a driver would (one chain description reused:
  // no allocation per buffer).
  void repost_rx(uint16_t from, uint16_t to) {
    testing::FakeDriver& rx = *drivers[0];
    for (uint16_t i = from; i != to; ++i) {
      rx_chain[0].gpa = rx_bufs[rx_next];
      rx.add_chain(rx_chain);
      rx_next = (rx_next + 1) % rx_bufs.size();
    }
  }
};

// --- tx

uint64_t device_tx(DevicePath& d, const Frame& f, double secs) {
  testing::FakeDriver& tx = *d.drivers[1];
  // Chains of two descriptors (header, frame) as Linux sends them; half
  // the ring's descriptors per round. Buffers are allocated once.
  constexpr uint16_t kBatch = kQueueSize / 2;
  // Buffers for the largest frame, allocated once, refilled per call.
  if (d.tx_hdrs.empty()) {
    for (uint16_t i = 0; i < kBatch; ++i) {
      d.tx_hdrs.push_back(tx.alloc(sizeof f.hdr));
      d.tx_frames.push_back(tx.alloc(kMaxFrame));
    }
  }
  const std::vector<uint64_t>& hdrs = d.tx_hdrs;
  const std::vector<uint64_t>& frames = d.tx_frames;
  for (uint16_t i = 0; i < kBatch; ++i) {
    std::memcpy(d.guest.host(hdrs[i], sizeof f.hdr).data(), &f.hdr, sizeof f.hdr);
    std::memcpy(d.guest.host(frames[i], f.bytes.size()).data(), f.bytes.data(), f.bytes.size());
  }
  uint64_t before = d.net->stats(0).tx_packets.load();
  uint16_t used = tx.used_idx();
  // One chain description reused for every frame: the fake driver's own
  // cost (a heap allocation per chain would be) is not the device's.
  std::vector<testing::Buf> chain{{0, sizeof f.hdr, false},
                                  {0, static_cast<uint32_t>(f.bytes.size()), false}};
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    for (uint16_t i = 0; i < kBatch; ++i) {
      chain[0].gpa = hdrs[i];
      chain[1].gpa = frames[i];
      tx.add_chain(chain);
    }
    // The tap never refuses with its default unlimited sndbuf; loop anyway.
    while (static_cast<uint16_t>(tx.used_idx() - used) != kBatch) {
      d.net->process_queue(1);
      if (d.net->needs_reset()) {
        std::fprintf(stderr, "net_bench: the device needs a reset (tx)\n");
        return 0;
      }
    }
    used = tx.used_idx();
  }
  return d.net->stats(0).tx_packets.load() - before;
}

// The reference writes each frame as one buffer, from as many buffers as
// the device path cycles through (half the ring), so both touch the same
// amount of memory per round; one hot buffer would flatter the reference
// with an L1-resident source that no guest's transmit ring gives.
uint64_t direct_tx(int fd, const Frame& f, double secs) {
  constexpr size_t kBuffers = kQueueSize / 2;
  const size_t len = sizeof f.hdr + f.bytes.size();
  std::vector<uint8_t> bufs(kBuffers * len);
  for (size_t i = 0; i < kBuffers; ++i) {
    std::memcpy(&bufs[i * len], &f.hdr, sizeof f.hdr);
    std::memcpy(&bufs[i * len + sizeof f.hdr], f.bytes.data(), f.bytes.size());
  }
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    for (size_t i = 0; i < kBuffers; ++i)
      if (::write(fd, &bufs[i * len], len) == static_cast<ssize_t>(len)) ++n;
  }
  return n;
}

// The same frames from the same buffers, kMaxSendBatch at a time through a
// TapRing: the kernel interface the device's tap backend uses, so the
// ratio against it is the device's own overhead.
uint64_t direct_tx_batched(int fd, const Frame& f, double secs) {
  constexpr size_t kBuffers = kQueueSize / 2;
  const size_t len = sizeof f.hdr + f.bytes.size();
  std::vector<uint8_t> bufs(kBuffers * len);
  std::vector<iovec> iov(kBuffers);
  std::vector<std::span<const iovec>> frames;
  for (size_t i = 0; i < kBuffers; ++i) {
    std::memcpy(&bufs[i * len], &f.hdr, sizeof f.hdr);
    std::memcpy(&bufs[i * len + sizeof f.hdr], f.bytes.data(), f.bytes.size());
    iov[i] = {&bufs[i * len], len};
    frames.emplace_back(&iov[i], 1);
  }
  auto ring = net::TapRing::create();
  if (!ring) return 0;
  std::vector<int> refused(net::kMaxSendBatch);
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    for (size_t i = 0; i < kBuffers; i += net::kMaxSendBatch) {
      size_t taken = (*ring)->send(fd, std::span(frames).subspan(i, net::kMaxSendBatch), refused);
      if ((*ring)->broken()) return n;
      for (size_t j = 0; j < taken; ++j) n += refused[j] == 0;
    }
  }
  return n;
}

// --- rx: a generator thread feeds the tap interface

class Generator {
 public:
  Generator(const Frame& f) : frame_(f.bytes) {}
  bool start() {
    sock_ = ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (sock_ < 0) return false;
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_ifindex = static_cast<int>(if_nametoindex(kTap));
    a.sll_protocol = htons(ETH_P_ALL);
    if (::bind(sock_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return false;
    thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_relaxed))
        if (::send(sock_, frame_.data(), frame_.size(), 0) > 0) ++sent_;
    });
    return true;
  }
  uint64_t stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(sock_);
    return sent_;
  }

 private:
  std::vector<uint8_t> frame_;
  int sock_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sent_{0};
  std::thread thread_;
};

uint64_t device_rx(DevicePath& d, int tap_fd, double secs) {
  testing::FakeDriver& rx = *d.drivers[0];
  constexpr uint32_t kBuf = sizeof(netwire::Header) + 1514;  // Linux's MRG_RXBUF-sized buffers
  // The ring is filled once; later runs find it still full (every used
  // buffer was given back), as a driver keeps it.
  std::vector<uint64_t>& bufs = d.rx_bufs;
  if (bufs.empty()) {
    for (uint16_t i = 0; i < kQueueSize; ++i) {
      bufs.push_back(rx.alloc(kBuf));
      rx.add_chain({{bufs.back(), kBuf, true}});
    }
  }
  uint16_t used = rx.used_idx();
  uint64_t before = d.net->stats(0).rx_packets.load();
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    pollfd p{tap_fd, POLLIN, 0};
    ::poll(&p, 1, 10);
    d.net->process_queue(0);
    uint16_t now = rx.used_idx();
    d.repost_rx(used, now);
    used = now;
  }
  return d.net->stats(0).rx_packets.load() - before;
}

// Reads into as many buffers, of the same size, as the device has posted
// (see direct_tx on why the footprint matches).
uint64_t direct_rx(int fd, double secs) {
  constexpr size_t kBuf = sizeof(netwire::Header) + 1514;
  std::vector<uint8_t> bufs(kQueueSize * kBuf);
  size_t next = 0;
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 10);
    while (::read(fd, &bufs[next * kBuf], kBuf) > 0) {
      ++n;
      next = (next + 1) % kQueueSize;
    }
  }
  return n;
}

// --- rx from a full queue: the reader's own speed

// Sends `n` copies of a frame into the tap interface from the calling
// thread; returns how many the kernel took.
uint64_t fill(const Frame& f, uint64_t n) {
  int sock = ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (sock < 0) return 0;
  sockaddr_ll a{};
  a.sll_family = AF_PACKET;
  a.sll_ifindex = static_cast<int>(if_nametoindex(kTap));
  a.sll_protocol = htons(ETH_P_ALL);
  uint64_t sent = 0;
  if (::bind(sock, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
    for (uint64_t i = 0; i < n; ++i)
      if (::send(sock, f.bytes.data(), f.bytes.size(), 0) > 0) ++sent;
  ::close(sock);
  return sent;
}

// Receives what the tap holds through the device; adds the frames and the
// seconds it took.
void device_rx_drain(DevicePath& d, int tap_fd, uint64_t& frames, double& secs) {
  testing::FakeDriver& rx = *d.drivers[0];
  // The buffers device_rx posted, kept full.
  uint16_t used = rx.used_idx();
  uint64_t before = d.net->stats(0).rx_packets.load();
  auto t0 = Clock::now();
  for (;;) {
    d.net->process_queue(0);
    uint16_t now = rx.used_idx();
    if (now == used) {
      pollfd p{tap_fd, POLLIN, 0};
      if (::poll(&p, 1, 0) != 1) break;  // empty
    }
    d.repost_rx(used, now);
    used = now;
  }
  secs += seconds_since(t0);
  frames += d.net->stats(0).rx_packets.load() - before;
}

void direct_rx_drain(int fd, uint64_t& frames, double& secs) {
  constexpr size_t kBuf = sizeof(netwire::Header) + 1514;
  std::vector<uint8_t> bufs(kQueueSize * kBuf);
  size_t next = 0;
  auto t0 = Clock::now();
  while (::read(fd, &bufs[next * kBuf], kBuf) > 0) {
    ++frames;
    next = (next + 1) % kQueueSize;
  }
  secs += seconds_since(t0);
}

// The same, kMaxRecvBatch frames at a time through a TapRing: the kernel
// interface the device's tap backend reads with, so the ratio against it is
// the device's own overhead (its copy into the guest's buffers included).
void direct_rx_drain_batched(int fd, net::TapRing& ring, uint64_t& frames, double& secs) {
  constexpr size_t kBuf = sizeof(netwire::Header) + net::kMaxFrameBytes;
  std::vector<uint8_t> bufs(net::kMaxRecvBatch * kBuf);
  std::array<std::span<uint8_t>, net::kMaxRecvBatch> slots;
  for (size_t i = 0; i < slots.size(); ++i) slots[i] = std::span(&bufs[i * kBuf], kBuf);
  std::array<int, net::kMaxRecvBatch> sizes{};
  auto t0 = Clock::now();
  for (;;) {
    size_t tried = ring.receive(fd, slots, sizes);
    size_t got = 0;
    for (size_t i = 0; i < tried; ++i) got += sizes[i] > 0;
    frames += got;
    if (got == 0) break;
  }
  secs += seconds_since(t0);
}

// The tap keeps up to txqueuelen frames for its reader (tun's ring).
bool set_tx_queue_len(int len) {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) return false;
  ifreq r{};
  std::strncpy(r.ifr_name, kTap, IFNAMSIZ - 1);
  r.ifr_qlen = len;
  bool ok = ::ioctl(s, SIOCSIFTXQLEN, &r) == 0;
  ::close(s);
  return ok;
}

void drain(int fd) {
  std::vector<uint8_t> buf(70000);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
}

void print_row(const char* dir, const char* size, const Result2& dev, const Result2& direct,
               const char* note = "") {
  std::printf(
      "%-3s %-9s device %9.0f frames/s %7.2f Gbit/s | direct %9.0f frames/s %7.2f Gbit/s "
      "| ratio %.2f%s\n",
      dir, size, dev.frames_per_s, dev.gbit_per_s, direct.frames_per_s, direct.gbit_per_s,
      direct.frames_per_s > 0 ? dev.frames_per_s / direct.frames_per_s : 0, note);
  std::fflush(stdout);
}

bool link_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) return false;
  ifreq r{};
  std::strncpy(r.ifr_name, kTap, IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &r) == 0;
  r.ifr_flags = static_cast<short>(r.ifr_flags | IFF_UP);
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &r) == 0;
  ::close(s);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  double secs = 2;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--seconds") secs = std::stod(argv[i + 1]);
  if (::unshare(CLONE_NEWNET) != 0) {
    std::printf("skipped: cannot create a network namespace (needs root): %s\n",
                std::strerror(errno));
    return 77;
  }
  auto tap = net::Tap::open(kTap, 1);
  if (!tap) {
    std::printf("skipped: %s\n", tap.error().what().c_str());
    return 77;
  }
  std::ofstream(std::string("/proc/sys/net/ipv6/conf/") + kTap + "/disable_ipv6") << "1";
  if (!link_up()) {
    std::printf("skipped: cannot bring %s up\n", kTap);
    return 77;
  }
  int fd = (*tap)->fd(0);
  DevicePath dev;
  if (!dev.start(std::move(*tap))) return 1;
  std::printf(
      "net_bench: %.1f s per figure, queue size %u, one queue pair, tap %s in a private "
      "netns; TSO4 %s\n",
      secs, kQueueSize, kTap, dev.has_tso() ? "negotiated" : "not offered by the tap");

  struct Size {
    const char* name;
    size_t len;
    bool tso;
  } sizes[] = {{"64B", 64, false}, {"1514B", 1514, false}, {"64KiB-TSO", kMaxFrame, true}};
  for (const Size& s : sizes) {
    if (s.tso && !dev.has_tso()) continue;
    Frame f = make_frame(s.len, s.tso);
    uint64_t a = 0, b = 0, c = 0;
    for (int r = 0; r < kRounds; ++r) {  // alternating, so load changes hit all alike
      a += device_tx(dev, f, secs / kRounds);
      b += direct_tx(fd, f, secs / kRounds);
      c += direct_tx_batched(fd, f, secs / kRounds);
    }
    print_row("tx", s.name, rate(a, s.len, secs), rate(b, s.len, secs));
    print_row("tx", s.name, rate(a, s.len, secs), rate(c, s.len, secs),
              " (direct: io_uring batches)");
  }
  for (const Size& s : sizes) {
    if (s.tso) {
      std::printf("rx  %-9s not measured: the generator (AF_PACKET) sends no GSO frames\n", s.name);
      continue;
    }
    Frame f = make_frame(s.len, false);
    uint64_t a = 0, b = 0, sent_a = 0, sent_b = 0;
    for (int r = 0; r < kRounds; ++r) {
      drain(fd);
      Generator g1(f);
      if (!g1.start()) {
        std::printf("rx: cannot open the generator socket: %s\n", std::strerror(errno));
        return 1;
      }
      a += device_rx(dev, fd, secs / kRounds);
      sent_a += g1.stop();
      drain(fd);
      Generator g2(f);
      if (!g2.start()) return 1;
      b += direct_rx(fd, secs / kRounds);
      sent_b += g2.stop();
    }
    std::string note =
        " (generator sent " + std::to_string(sent_a) + " / " + std::to_string(sent_b) + ")";
    print_row("rx", s.name, rate(a, s.len, secs), rate(b, s.len, secs), note.c_str());
  }
  // rx again from a queue filled beforehand, the reader alone on the CPU:
  // what each reader can take, where the rows above take what the
  // generator, sharing the two cores, manages to send.
  constexpr int kQueued = 20000;
  if (!set_tx_queue_len(kQueued)) {
    std::printf("rx drain: cannot set the tap's txqueuelen: %s\n", std::strerror(errno));
  } else {
    auto ring = net::TapRing::create();
    for (const Size& s : sizes) {
      if (s.tso) continue;
      Frame f = make_frame(s.len, false);
      uint64_t a = 0, b = 0, c = 0;
      double ta = 0, tb = 0, tc = 0;
      drain(fd);
      while (ta < secs || tb < secs || (ring && tc < secs)) {  // alternating fills and drains
        fill(f, kQueued);
        device_rx_drain(dev, fd, a, ta);
        fill(f, kQueued);
        direct_rx_drain(fd, b, tb);
        if (ring) {
          fill(f, kQueued);
          direct_rx_drain_batched(fd, **ring, c, tc);
        }
      }
      char note[96];
      std::snprintf(note, sizeof note, " (drained %d queued frames at a time)", kQueued);
      print_row("rx", s.name, rate(a, s.len, ta), rate(b, s.len, tb), note);
      if (ring)
        print_row("rx", s.name, rate(a, s.len, ta), rate(c, s.len, tc),
                  " (drained; direct: io_uring batches)");
    }
  }
  if (dev.net->needs_reset()) {
    std::printf("FAIL: the device needs a reset\n");
    return 1;
  }
  return 0;
}
