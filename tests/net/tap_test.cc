// Tap against the kernel's tun driver, inside a private network namespace
// that this test process creates (unshare(CLONE_NEWNET): CTest runs every
// test as its own process, so each gets a fresh namespace that disappears
// with it; nothing touches the host's interfaces). Needs root and
// /dev/net/tun, skipped with the reason otherwise.
#include "net/tap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace skiff::net {
namespace {

constexpr uint16_t kTestEthertype = 0x88b5;  // IEEE 802 local experimental

// Brings interface `name` up.
bool set_up(const std::string& name) {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  return ::ioctl(s.get(), SIOCSIFFLAGS, &ifr) == 0;
}

class TapTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root (CAP_NET_ADMIN) for a network namespace and taps";
    } else if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
      skip_ = "no usable /dev/net/tun (modprobe tun)";
    } else if (::unshare(CLONE_NEWNET) != 0) {
      skip_ = std::string("unshare(CLONE_NEWNET) failed: ") + std::strerror(errno);
    }
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << "skipped: " << skip_;
  }

  // Opens one queue of `name` by hand, as a management stack would.
  static Fd raw_queue(const std::string& name, short flags) {
    Fd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = flags;
    if (!fd || ::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return Fd();
    return fd;
  }
  static short iff_flags(int fd) {
    ifreq ifr{};
    if (::ioctl(fd, TUNGETIFF, &ifr) != 0) return -1;
    return ifr.ifr_flags;
  }
  // SIOCETHTOOL on the interface: tx checksumming / TSO as the tap's
  // TUNSETOFFLOAD left them (tun maps TUN_F_CSUM / TUN_F_TSO4 to them).
  static int ethtool_get(const std::string& name, uint32_t cmd) {
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ethtool_value ev{};
    ev.cmd = cmd;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    ifr.ifr_data = reinterpret_cast<char*>(&ev);
    if (::ioctl(s.get(), SIOCETHTOOL, &ifr) != 0) return -1;
    return static_cast<int>(ev.data);
  }
  static std::vector<uint8_t> test_frame(size_t len, uint8_t seed) {
    std::vector<uint8_t> f(len);
    const uint8_t head[14] = {0xff,
                              0xff,
                              0xff,
                              0xff,
                              0xff,
                              0xff,
                              0x02,
                              0,
                              0,
                              0,
                              0,
                              1,
                              kTestEthertype >> 8,
                              kTestEthertype & 0xff};
    std::memcpy(f.data(), head, sizeof head);
    for (size_t i = sizeof head; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i);
    return f;
  }

  static inline std::string skip_;
};

TEST_F(TapTest, OpensMultiQueueTapWithVnetHeader) {
  auto tap = Tap::open("sk0", 3);
  ASSERT_TRUE(tap) << tap.error().what();
  EXPECT_EQ((*tap)->name(), "sk0");
  ASSERT_EQ((*tap)->num_queue_pairs(), 3);
  for (uint16_t i = 0; i < 3; ++i) {
    int fd = (*tap)->fd(i);
    EXPECT_EQ((*tap)->rx_event_fd(i), fd);
    short f = iff_flags(fd);
    EXPECT_EQ(f & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE),
              IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE)
        << "queue " << i;
    int hdr = 0;
    ASSERT_EQ(::ioctl(fd, TUNGETVNETHDRSZ, &hdr), 0);
    EXPECT_EQ(hdr, static_cast<int>(kVnetHeaderBytes));
    EXPECT_TRUE(::fcntl(fd, F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  }
  // Nothing to read: receive says 0 instead of blocking.
  uint8_t buf[2048];
  iovec iov{buf, sizeof buf};
  auto got = (*tap)->receive(0, std::span(&iov, 1));
  ASSERT_TRUE(got) << got.error().what();
  EXPECT_EQ(*got, 0u);
}

TEST_F(TapTest, ForVhostNetItHoldsOneFdPerQueueAndNoRings) {
  // The kernel moves the frames: the io_uring rings and the tx_event_fd
  // dups a userspace tap keeps per queue would be dead weight.
  auto open_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), {});
  };
  auto before = open_fds();
  auto user = Tap::open("sk16", 2);
  ASSERT_TRUE(user) << user.error().what();
  auto user_fds = open_fds() - before;
  auto kernel = Tap::open("sk17", 2, TapUse::kVhostNet);
  ASSERT_TRUE(kernel) << kernel.error().what();
  EXPECT_EQ(open_fds() - before - user_fds, 2) << "one fd per queue";
  EXPECT_GE(user_fds, 4) << "a userspace tap has a second fd per queue";
  for (uint16_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*kernel)->tx_event_fd(i), -1);
    EXPECT_NE((*user)->tx_event_fd(i), -1);
    int hdr = 0;
    ASSERT_EQ(::ioctl((*kernel)->fd(i), TUNGETVNETHDRSZ, &hdr), 0);
    EXPECT_EQ(hdr, static_cast<int>(kVnetHeaderBytes));
  }
  EXPECT_FALSE((*kernel)->sends_in_batches());
  EXPECT_FALSE((*kernel)->receives_in_batches());
  EXPECT_NE((*kernel)->supported_offloads() & kOffloadCsum, 0u) << "offloads are still probed";
}

TEST_F(TapTest, ProbesOffloadsAndSetsThemOnTheInterface) {
  auto tap = Tap::open("sk1", 1);
  ASSERT_TRUE(tap) << tap.error().what();
  unsigned have = (*tap)->supported_offloads();
  // Every kernel skiff supports takes checksum and TCP segmentation offload.
  EXPECT_EQ(have & (kOffloadCsum | kOffloadTso4 | kOffloadTso6 | kOffloadTsoEcn),
            kOffloadCsum | kOffloadTso4 | kOffloadTso6 | kOffloadTsoEcn);
  // open() leaves them all off until the driver negotiates them.
  EXPECT_EQ(ethtool_get("sk1", ETHTOOL_GTXCSUM), 0);
  EXPECT_EQ(ethtool_get("sk1", ETHTOOL_GTSO), 0);
  ASSERT_TRUE((*tap)->set_offloads(kOffloadCsum | kOffloadTso4));
  EXPECT_EQ(ethtool_get("sk1", ETHTOOL_GTXCSUM), 1);
  EXPECT_EQ(ethtool_get("sk1", ETHTOOL_GTSO), 1);
  ASSERT_TRUE((*tap)->set_offloads(0));
  EXPECT_EQ(ethtool_get("sk1", ETHTOOL_GTXCSUM), 0);
  auto bad = (*tap)->set_offloads(0x80);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what().find("not supported"), std::string::npos) << bad.error().what();
}

TEST_F(TapTest, DetachesAndReattachesAQueue) {
  auto tap = Tap::open("sk2", 2);
  ASSERT_TRUE(tap) << tap.error().what();
  int q1 = (*tap)->fd(1);
  // TUNGETIFF reports IFF_DETACH_QUEUE for a detached queue.
  auto detached = [](int fd) {
    short f = iff_flags(fd);
    return f >= 0 && (f & IFF_DETACH_QUEUE) != 0;
  };
  ASSERT_GE(iff_flags(q1), 0);
  EXPECT_FALSE(detached(q1));
  ASSERT_TRUE((*tap)->set_queue_pair_enabled(1, false));
  EXPECT_TRUE(detached(q1));
  EXPECT_FALSE(detached((*tap)->fd(0)));
  ASSERT_TRUE((*tap)->set_queue_pair_enabled(1, false)) << "detaching twice is not an error";
  ASSERT_TRUE((*tap)->set_queue_pair_enabled(1, true));
  EXPECT_FALSE(detached(q1));
  ASSERT_TRUE((*tap)->set_queue_pair_enabled(1, true)) << "attaching twice is not an error";
  EXPECT_FALSE((*tap)->set_queue_pair_enabled(2, true));
}

TEST_F(TapTest, RefusesMoreQueuesThanASingleQueueTapHas) {
  {
    Fd fd = raw_queue("sk3", IFF_TAP | IFF_NO_PI);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ioctl(fd.get(), TUNSETPERSIST, 1), 0);
  }
  auto one = Tap::open("sk3", 1);
  ASSERT_TRUE(one) << one.error().what();
  EXPECT_TRUE((*one)->set_queue_pair_enabled(0, false)) << "one queue: always attached";
  one->reset();
  auto two = Tap::open("sk3", 2);
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().what().find("multi_queue"), std::string::npos) << two.error().what();
  auto bad = Tap::open("a-name-longer-than-15", 1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what().find("a-name-longer-than-15"), std::string::npos);
}

TEST_F(TapTest, AdoptsOpenTapFdsAndRefusesOthers) {
  const short mq = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
  std::vector<Fd> fds;
  fds.push_back(raw_queue("sk4", mq));
  fds.push_back(raw_queue("sk4", mq));
  ASSERT_TRUE(fds[0] && fds[1]);
  int raw0 = fds[0].get();
  auto tap = Tap::adopt(std::move(fds));
  ASSERT_TRUE(tap) << tap.error().what();
  EXPECT_EQ((*tap)->name(), "sk4");
  EXPECT_EQ((*tap)->num_queue_pairs(), 2);
  EXPECT_EQ((*tap)->fd(0), raw0);
  int hdr = 0;
  ASSERT_EQ(::ioctl(raw0, TUNGETVNETHDRSZ, &hdr), 0);
  EXPECT_EQ(hdr, static_cast<int>(kVnetHeaderBytes));
  EXPECT_TRUE(::fcntl(raw0, F_GETFL) & O_NONBLOCK);

  auto refused = [](std::vector<Fd> v) {
    auto r = Tap::adopt(std::move(v));
    return r ? std::string("accepted") : r.error().what();
  };
  std::vector<Fd> not_tap;
  not_tap.emplace_back(::open("/dev/null", O_RDWR | O_CLOEXEC));
  EXPECT_NE(refused(std::move(not_tap)).find("is not an attached tap"), std::string::npos);
  std::vector<Fd> tun;
  tun.push_back(raw_queue("sk5", IFF_TUN | IFF_NO_PI | IFF_VNET_HDR));
  EXPECT_NE(refused(std::move(tun)).find("tun (layer 3)"), std::string::npos);
  std::vector<Fd> no_hdr;
  no_hdr.push_back(raw_queue("sk6", IFF_TAP | IFF_NO_PI));
  EXPECT_NE(refused(std::move(no_hdr)).find("IFF_VNET_HDR"), std::string::npos);
  std::vector<Fd> mixed;
  mixed.push_back(raw_queue("sk7", mq));
  mixed.push_back(raw_queue("sk8", mq));
  EXPECT_NE(refused(std::move(mixed)).find("different interfaces"), std::string::npos);
  std::vector<Fd> none;
  EXPECT_NE(refused(std::move(none)).find("no tap fds"), std::string::npos);
}

TEST_F(TapTest, FramesCrossBetweenTheTapAndThePacketSocket) {
  auto tap = Tap::open("sk9", 1);
  ASSERT_TRUE(tap) << tap.error().what();
  ASSERT_TRUE(set_up("sk9"));
  Fd ps(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEthertype)));
  ASSERT_TRUE(ps) << std::strerror(errno);
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(kTestEthertype);
  addr.sll_ifindex = static_cast<int>(::if_nametoindex("sk9"));
  ASSERT_GT(addr.sll_ifindex, 0);
  ASSERT_EQ(::bind(ps.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  // Guest -> host: the tap takes header + frame; the host sees the frame.
  auto out = test_frame(1000, 3);
  uint8_t hdr[kVnetHeaderBytes] = {};
  iovec tx[2] = {{hdr, sizeof hdr}, {out.data(), out.size()}};
  auto sent = (*tap)->send(0, tx);
  ASSERT_TRUE(sent) << sent.error().what();
  EXPECT_TRUE(*sent);
  pollfd p{ps.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1) << "the frame never reached the host side";
  std::vector<uint8_t> got(2048);
  ssize_t n = ::recv(ps.get(), got.data(), got.size(), 0);
  ASSERT_EQ(n, static_cast<ssize_t>(out.size()));
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(got, out);

  // Host -> guest: the tap delivers header (no offloads asked: zero) + frame.
  auto in = test_frame(600, 9);
  ASSERT_EQ(
      ::sendto(ps.get(), in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
      static_cast<ssize_t>(in.size()));
  // The kernel may also send its own frames (IPv6 router solicitations):
  // read until ours arrives.
  pollfd t{(*tap)->fd(0), POLLIN, 0};
  bool found = false;
  for (int tries = 0; tries < 20 && !found; ++tries) {
    if (::poll(&t, 1, 2000) != 1) break;
    std::vector<uint8_t> buf(kVnetHeaderBytes + 2048);
    iovec rx{buf.data(), buf.size()};
    auto r = (*tap)->receive(0, std::span(&rx, 1));
    ASSERT_TRUE(r) << r.error().what();
    if (*r < kVnetHeaderBytes + 14 || buf[kVnetHeaderBytes + 12] != (kTestEthertype >> 8) ||
        buf[kVnetHeaderBytes + 13] != (kTestEthertype & 0xff))
      continue;
    found = true;
    ASSERT_EQ(*r, kVnetHeaderBytes + in.size());
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + kVnetHeaderBytes),
              std::vector<uint8_t>(kVnetHeaderBytes, 0));
    EXPECT_EQ(std::vector<uint8_t>(buf.begin() + kVnetHeaderBytes, buf.begin() + *r), in);
  }
  EXPECT_TRUE(found) << "the frame never came out of the tap";
}

// A packet socket on `name` that sees the test's ethertype.
class PacketSocket {
 public:
  explicit PacketSocket(const char* name)
      : fd_(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEthertype))) {
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(kTestEthertype);
    addr.sll_ifindex = static_cast<int>(::if_nametoindex(name));
    ok_ = fd_ && addr.sll_ifindex > 0 &&
          ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  bool ok() const { return ok_; }
  // Sends a frame into the interface (the tap's reader gets it).
  bool send(const std::vector<uint8_t>& frame) {
    return ::send(fd_.get(), frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size());
  }
  // The next frame, or nothing after 2 s.
  std::vector<uint8_t> next() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return {};
    std::vector<uint8_t> got(2048);
    ssize_t n = ::recv(fd_.get(), got.data(), got.size(), 0);
    got.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return got;
  }

 private:
  Fd fd_;
  bool ok_ = false;
};

// A one-queue tap, up, with a packet socket on it: where the frame tests
// start. open() asserts: call it in ASSERT_NO_FATAL_FAILURE.
struct UpTap {
  void open(const char* name) {
    auto t = Tap::open(name, 1);
    ASSERT_TRUE(t) << t.error().what();
    tap = std::move(*t);
    ASSERT_TRUE(set_up(name));
    ps.emplace(name);
    ASSERT_TRUE(ps->ok()) << std::strerror(errno);
  }
  std::optional<std::unique_ptr<Tap>> tap;
  std::optional<PacketSocket> ps;
};

// Frames for send_batch(): each a header (12 bytes the test owns) and a
// frame, kept alive with the iovecs over them.
class FrameBatch {
 public:
  void add(const uint8_t* hdr, std::vector<uint8_t> frame) {
    frames_.push_back(std::move(frame));
    iov_.push_back({iovec{const_cast<uint8_t*>(hdr), kVnetHeaderBytes},
                    iovec{frames_.back().data(), frames_.back().size()}});
  }
  const std::vector<uint8_t>& frame(size_t i) const { return frames_[i]; }
  // Sends them all on queue 0; refused gets one entry per frame.
  Result<size_t> send(Tap& tap) {
    std::vector<std::span<const iovec>> spans(iov_.begin(), iov_.end());
    refused.assign(frames_.size(), -1);
    return tap.send_batch(0, spans, refused);
  }
  std::vector<int> refused;

 private:
  std::deque<std::vector<uint8_t>> frames_;  // stable addresses
  std::vector<std::array<iovec, 2>> iov_;
};

TEST_F(TapTest, SendBatchDeliversEveryFrameInOrder) {
  UpTap up;
  ASSERT_NO_FATAL_FAILURE(up.open("sk10"));
  auto& tap = up.tap;
  auto& ps = *up.ps;
  EXPECT_TRUE((*tap)->sends_in_batches()) << "no io_uring: frames go out one write at a time";

  constexpr size_t kFrames = kMaxSendBatch;
  uint8_t hdr[kVnetHeaderBytes] = {};
  FrameBatch batch;
  for (size_t i = 0; i < kFrames; ++i) batch.add(hdr, test_frame(100 + i, static_cast<uint8_t>(i)));
  auto taken = batch.send(**tap);
  ASSERT_TRUE(taken) << taken.error().what();
  EXPECT_EQ(*taken, kFrames);
  EXPECT_EQ(batch.refused, std::vector<int>(kFrames, 0));
  for (size_t i = 0; i < kFrames; ++i) EXPECT_EQ(ps.next(), batch.frame(i)) << "frame " << i;
}

TEST_F(TapTest, SendBatchRefusesABadHeaderAndSendsTheFramesAfterIt) {
  UpTap up;
  ASSERT_NO_FATAL_FAILURE(up.open("sk11"));
  auto& tap = up.tap;
  auto& ps = *up.ps;

  uint8_t good[kVnetHeaderBytes] = {};
  uint8_t bad[kVnetHeaderBytes] = {};
  bad[1] = 0x55;  // gso_type: no such type, the tap refuses the frame
  FrameBatch batch;
  batch.add(good, test_frame(100, 1));
  batch.add(bad, test_frame(200, 2));
  batch.add(good, test_frame(300, 3));
  auto taken = batch.send(**tap);
  ASSERT_TRUE(taken) << taken.error().what();
  EXPECT_EQ(*taken, 3u);
  EXPECT_EQ(batch.refused, (std::vector<int>{0, EINVAL, 0}));
  EXPECT_EQ(ps.next(), batch.frame(0));
  EXPECT_EQ(ps.next(), batch.frame(2));
}

TEST_F(TapTest, SendBatchOnADownInterfaceRefusesEveryFrameAndTakesThemAll) {
  // A tap whose interface is down refuses each write with EIO: every frame
  // is refused in turn, each refusal cancelling the linked writes after it,
  // which are submitted again.
  auto tap = Tap::open("sk12", 1);
  ASSERT_TRUE(tap) << tap.error().what();
  uint8_t hdr[kVnetHeaderBytes] = {};
  FrameBatch batch;
  for (uint8_t i = 1; i <= 3; ++i) batch.add(hdr, test_frame(100u * i, i));
  auto taken = batch.send(**tap);
  ASSERT_TRUE(taken) << taken.error().what();
  EXPECT_EQ(*taken, 3u);
  EXPECT_EQ(batch.refused, (std::vector<int>{EIO, EIO, EIO}));
  EXPECT_TRUE((*tap)->sends_in_batches()) << "a refused frame must not break the ring";
}

TEST_F(TapTest, ReceiveBatchReadsQueuedFramesInOrderAndNeverWaits) {
  UpTap up;
  ASSERT_NO_FATAL_FAILURE(up.open("sk13"));
  auto& tap = up.tap;
  auto& ps = *up.ps;
  EXPECT_TRUE((*tap)->receives_in_batches()) << "no io_uring: frames are read one at a time";

  std::vector<std::vector<uint8_t>> bufs(kMaxRecvBatch,
                                         std::vector<uint8_t>(kVnetHeaderBytes + kMaxFrameBytes));
  std::vector<std::span<uint8_t>> slots(bufs.begin(), bufs.end());
  std::vector<int> sizes(kMaxRecvBatch, -1);
  // Reads whatever the tap holds, keeping the test's frames (the kernel
  // sends its own too); false if a batch failed.
  std::vector<std::vector<uint8_t>> got;
  auto read_all = [&] {
    for (int batch = 0; batch < 20; ++batch) {
      auto tried = (*tap)->receive_batch(0, slots, sizes);
      if (!tried || *tried == 0) return false;
      for (size_t i = 0; i < *tried; ++i) {
        if (sizes[i] < 0) return false;
        const auto n = static_cast<size_t>(sizes[i]);
        if (n < kVnetHeaderBytes + 14 || bufs[i][kVnetHeaderBytes + 12] != (kTestEthertype >> 8) ||
            bufs[i][kVnetHeaderBytes + 13] != (kTestEthertype & 0xff))
          continue;
        got.emplace_back(bufs[i].begin() + kVnetHeaderBytes, bufs[i].begin() + n);
      }
      if (sizes[*tried - 1] == 0) return true;  // the tap was empty
    }
    return false;
  };

  // An empty tap: every slot comes back at once with nothing (a read that
  // waited for a frame would hang here).
  ASSERT_TRUE(read_all());
  got.clear();

  constexpr size_t kFrames = kMaxRecvBatch + kMaxRecvBatch / 2;
  std::vector<std::vector<uint8_t>> sent;
  for (size_t i = 0; i < kFrames; ++i) {
    sent.push_back(test_frame(60 + 10 * i, static_cast<uint8_t>(i)));
    ASSERT_TRUE(ps.send(sent.back())) << std::strerror(errno);
  }
  ASSERT_TRUE(read_all());
  EXPECT_EQ(got, sent);
  EXPECT_TRUE((*tap)->receives_in_batches());
}

TEST_F(TapTest, FrameCutShortFillsItsBuffer) {
  // NetBackend's contract, which the device relies on to drop such frames:
  // a frame longer than its buffer comes back at least as long as the
  // buffer, from receive() and receive_batch() alike.
  UpTap up;
  ASSERT_NO_FATAL_FAILURE(up.open("sk14"));
  auto& tap = up.tap;
  auto& ps = *up.ps;
  constexpr size_t kShort = kVnetHeaderBytes + 50;
  // The test's frame's length as `read` saw it, skipping the kernel's own
  // frames; 0 if the tap ran empty first.
  auto length_of_ours = [&](auto read) -> size_t {
    for (int tries = 0; tries < 64; ++tries) {
      std::array<uint8_t, kShort> buf{};
      const int n = read(std::span<uint8_t>(buf));
      if (n <= 0) return 0;
      if (buf[kVnetHeaderBytes + 12] == (kTestEthertype >> 8) &&
          buf[kVnetHeaderBytes + 13] == (kTestEthertype & 0xff))
        return static_cast<size_t>(n);
    }
    return 0;
  };
  ASSERT_TRUE(ps.send(test_frame(1000, 1))) << std::strerror(errno);
  EXPECT_GE(length_of_ours([&](std::span<uint8_t> buf) {
              const iovec one{buf.data(), buf.size()};
              auto got = (*tap)->receive(0, std::span(&one, 1));
              return got ? static_cast<int>(*got) : -1;
            }),
            kShort);
  ASSERT_TRUE(ps.send(test_frame(1200, 2))) << std::strerror(errno);
  EXPECT_GE(length_of_ours([&](std::span<uint8_t> buf) {
              const std::span<uint8_t> slots[1] = {buf};
              int size = -1;
              auto tried = (*tap)->receive_batch(0, slots, std::span(&size, 1));
              return tried && *tried == 1 ? size : -1;
            }),
            kShort);
}

TEST_F(TapTest, TxEventFdIsASecondFdOfTheQueueThatOneEpollWatchesForWriting) {
  auto tap = Tap::open("sk15", 2);
  ASSERT_TRUE(tap) << tap.error().what();
  ASSERT_TRUE(set_up("sk15"));  // a tap that is down is not writable
  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  ASSERT_TRUE(ep);
  for (uint16_t pair = 0; pair < 2; ++pair) {
    const int rx = (*tap)->rx_event_fd(pair);
    const int tx = (*tap)->tx_event_fd(pair);
    ASSERT_GE(tx, 0);
    EXPECT_NE(tx, rx);
    // The same queue: the same open file.
    struct stat a {
    }, b{};
    ASSERT_EQ(::fstat(rx, &a), 0);
    ASSERT_EQ(::fstat(tx, &b), 0);
    EXPECT_EQ(a.st_rdev, b.st_rdev);
    EXPECT_EQ(::fcntl(tx, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    // Both in one epoll, as a transport watches a device's BackendEvents.
    epoll_event in{EPOLLIN | EPOLLET, {.u32 = 2u * pair}};
    epoll_event out{EPOLLOUT | EPOLLET, {.u32 = 2u * pair + 1}};
    ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, rx, &in), 0) << std::strerror(errno);
    ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, tx, &out), 0) << std::strerror(errno);
  }
  // A tap with room reports EPOLLOUT once, on each tx fd.
  // (The rx fds may report the kernel's own frames, e.g. IPv6 router
  // solicitations, at any time.)
  auto writable = [&] {
    epoll_event got[8];
    const int n = ::epoll_wait(ep.get(), got, 8, 0);
    std::vector<uint32_t> out;
    for (int i = 0; i < n; ++i)
      if (got[i].events & EPOLLOUT) out.push_back(got[i].data.u32);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(writable(), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(writable(), std::vector<uint32_t>{}) << "edge-triggered: reported once";
}

// A tap that fills: tap `name` with a 64 KiB sndbuf, bridged to a veth
// whose slow tbf qdisc holds the frames, still charged to the tap's sndbuf.
// Writes then fail with EAGAIN until tbf lets some go; tx_event_fd must say
// when (the device's tx queue waits for it).
struct FillableTap {
  // Empty on success, else why this host cannot make one.
  std::string make(const std::string& name, std::vector<uint8_t> test_frame) {
    auto t = Tap::open(name, 1);
    if (!t) return t.error().what();
    tap = std::move(*t);
    int sndbuf = 64 * 1024;
    if (::ioctl(tap->fd(0), TUNSETSNDBUF, &sndbuf) != 0)
      return std::string("TUNSETSNDBUF: ") + std::strerror(errno);
    const std::string br = name + "br", v0 = name + "v0", v1 = name + "v1";
    for (const std::string& cmd :
         {"ip link add " + br + " type bridge", "ip link add " + v0 + " type veth peer name " + v1,
          "ip link set " + name + " master " + br, "ip link set " + v0 + " master " + br,
          "tc qdisc add dev " + v0 + " root tbf rate 8mbit burst 1600 limit 1000000",
          "bridge fdb add 02:00:00:00:00:99 dev " + v0 + " master static",
          "ip link set " + v1 + " up", "ip link set " + v0 + " up", "ip link set " + br + " up",
          "ip link set " + name + " up"}) {
      if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0)
        return "needs a bridge, veth and tbf (iproute2, kernel modules): `" + cmd + "` failed";
    }
    ep = Fd(::epoll_create1(EPOLL_CLOEXEC));
    epoll_event out{EPOLLOUT | EPOLLET, {.u32 = 1}};
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, tap->tx_event_fd(0), &out) != 0)
      return std::string("epoll_ctl: ") + std::strerror(errno);
    (void)signalled(0);  // the first edge: room
    // Unicast to the address behind the veth: one copy of each frame,
    // which the qdisc keeps (a flood goes out as clones, not charged to
    // the tap).
    frame = std::move(test_frame);
    const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x99};
    std::memcpy(frame.data(), dst, sizeof dst);
    return {};
  }
  // Whether tx_event_fd reported EPOLLOUT within `ms`.
  bool signalled(int ms) {
    epoll_event got{};
    return ::epoll_wait(ep.get(), &got, 1, ms) == 1 && (got.events & EPOLLOUT);
  }
  std::unique_ptr<Tap> tap;
  Fd ep;
  std::vector<uint8_t> frame;
  uint8_t hdr[kVnetHeaderBytes] = {};
};

TEST_F(TapTest, FullQueueSignalsTxEventFdWhenItHasRoomAgain) {
  FillableTap f;
  if (std::string why = f.make("sk16", test_frame(1000, 7)); !why.empty())
    GTEST_SKIP() << "skipped: " << why;
  size_t sent = 0;
  bool full = false;
  for (int round = 0; round < 100 && !full; ++round) {
    FrameBatch batch;
    for (int i = 0; i < 16; ++i) batch.add(f.hdr, f.frame);
    auto taken = batch.send(*f.tap);
    ASSERT_TRUE(taken) << taken.error().what();
    sent += *taken;
    full = *taken < 16;
  }
  ASSERT_TRUE(full) << "the tap took " << sent << " frames without filling";
  EXPECT_FALSE(f.signalled(0)) << "EPOLLOUT while the tap is full";
  EXPECT_TRUE(f.signalled(5000)) << "no EPOLLOUT once tbf made room";
  FrameBatch more;
  more.add(f.hdr, f.frame);
  auto taken = more.send(*f.tap);
  ASSERT_TRUE(taken) << taken.error().what();
  EXPECT_EQ(*taken, 1u);
}

TEST_F(TapTest, FullQueueSignalsTxEventFdForFrameByFrameSendsToo) {
  // send(): the path where io_uring is unavailable.
  FillableTap f;
  if (std::string why = f.make("sk17", test_frame(1000, 7)); !why.empty())
    GTEST_SKIP() << "skipped: " << why;
  const iovec iov[2] = {{f.hdr, sizeof f.hdr}, {f.frame.data(), f.frame.size()}};
  size_t sent = 0;
  bool full = false;
  while (!full && sent < 2000) {
    auto ok = f.tap->send(0, iov);
    ASSERT_TRUE(ok) << ok.error().what();
    if (*ok) ++sent;
    full = !*ok;
  }
  ASSERT_TRUE(full) << "the tap took " << sent << " frames without filling";
  EXPECT_FALSE(f.signalled(0)) << "EPOLLOUT while the tap is full";
  EXPECT_TRUE(f.signalled(5000)) << "no EPOLLOUT once tbf made room";
  auto ok = f.tap->send(0, iov);
  ASSERT_TRUE(ok) << ok.error().what();
  EXPECT_TRUE(*ok);
}

}  // namespace
}  // namespace skiff::net
