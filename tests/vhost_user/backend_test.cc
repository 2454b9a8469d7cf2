// VhostUserBackend against a fake front end on a socketpair: the test plays
// QEMU's part (specs/vhost-user.rst), sharing "guest RAM" through a memfd and
// driving a split ring in it by hand. Hostile cases check that bad input
// closes the connection (the back end's serve() returns an error and the
// test sees EOF) while the test process, which hosts the back end, lives on.
#include "vhost_user/backend.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "vhost_user/server.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/net.h"
#include "virtio/devices/rng.h"
#include "virtio/net_fake_backend.h"

namespace skiff::vhost_user {
namespace {

constexpr uint64_t kRamBytes = 1 << 20;
constexpr uint64_t kGpa = 0x100000;            // guest-physical base of the region
constexpr uint64_t kUser = 0x7f1234500000ull;  // the front end's address of the same bytes
constexpr uint32_t kRingSize = 8;
constexpr uint64_t kDescOff = 0x0, kAvailOff = 0x1000, kUsedOff = 0x2000, kDataOff = 0x10000;
constexpr uint64_t kVersion1 = 1ull << 32;
constexpr uint64_t kProtoBit = 1ull << kFeatureProtocolFeatures;

// A DiskImage in memory, for blk sessions.
class RamDisk final : public DiskImage {
 public:
  explicit RamDisk(size_t size) : bytes_(size) {}
  uint64_t size() const override { return bytes_.size(); }
  bool read_only() const override { return false; }
  std::string format() const override { return "raw"; }
  Result<> read(uint64_t off, std::span<uint8_t> out) override {
    std::memcpy(out.data(), bytes_.data() + off, out.size());
    return {};
  }
  Result<> write(uint64_t off, std::span<const uint8_t> in) override {
    std::memcpy(bytes_.data() + off, in.data(), in.size());
    return {};
  }
  Result<> flush() override { return {}; }
  Result<> discard(uint64_t, uint64_t) override { return {}; }
  Result<> write_zeroes(uint64_t, uint64_t, bool) override { return {}; }
  Result<ExtentStatus> block_status(uint64_t, uint64_t len) override {
    return ExtentStatus{.length = len, .allocated = true, .data = true};
  }

 private:
  std::vector<uint8_t> bytes_;
};

struct Reply {
  MessageHeader header{};
  std::vector<uint8_t> payload;
  template <typename T>
  T as() const {
    T v{};
    std::memcpy(&v, payload.data(), std::min(sizeof v, payload.size()));
    return v;
  }
};

template <typename T>
std::span<const uint8_t> bytes(const T& v) {
  return std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v);
}

// A closed connection reads as EOF, or as ECONNRESET when the back end
// closed it with bytes still unread (a refused payload is never read).
bool peer_closed(int fd) {
  char c;
  ssize_t n = ::recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

struct BackendTest : ::testing::Test {
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    front.reset(sv[0]);
    back.reset(sv[1]);
    memfd.reset(::memfd_create("guest-ram", MFD_CLOEXEC));
    ASSERT_TRUE(memfd);
    ASSERT_EQ(::ftruncate(memfd.get(), kRamBytes), 0);
    void* p = ::mmap(nullptr, kRamBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    ram = static_cast<uint8_t*>(p);
    kick.reset(::eventfd(0, EFD_CLOEXEC));
    call.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }
  void TearDown() override {
    front.reset();
    if (server.joinable()) server.join();
    backend.reset();
    ::munmap(ram, kRamBytes);
  }

  void start_rng() {
    auto r = virtio::VirtioRng::create(std::nullopt);
    ASSERT_TRUE(r);
    device = std::move(*r);
    run();
  }
  void start_blk(uint16_t queues = 1, std::string serial = "") {
    virtio::BlkOptions o;
    o.num_queues = queues;
    o.serial = std::move(serial);
    auto r = virtio::VirtioBlock::create(std::make_unique<RamDisk>(1 << 20), o);
    ASSERT_TRUE(r);
    device = std::move(*r);
    run();
  }
  // virtio-net as skiff-vhost serves it (no control queue) over an
  // in-memory backend with `pairs` queue pairs.
  void start_net(uint16_t pairs) {
    auto b = std::make_unique<virtio::testing::FakeNetBackend>(pairs);
    net_backend = b.get();
    virtio::NetOptions o;
    o.mac = net::MacAddress::random_local();
    o.control_queue = false;
    auto r = virtio::VirtioNet::create(std::move(b), o);
    ASSERT_TRUE(r) << r.error().what();
    device = std::move(*r);
    run();
  }
  void run() {
    backend = std::make_unique<VhostUserBackend>(*device);
    server = std::thread([this] {
      served = backend->serve(back.get(), -1);
      back.reset();  // the front end sees EOF: connection closed
    });
  }

  void send(Request req, std::span<const uint8_t> payload, std::vector<int> fds = {},
            uint32_t flags = kVersion) {
    ASSERT_TRUE(send_message(front.get(), static_cast<uint32_t>(req), flags, payload, fds));
  }
  // Sends with need_reply and waits for the REPLY_ACK (REPLY_ACK must be
  // negotiated), so the request has been handled when this returns.
  uint64_t send_acked(Request req, std::span<const uint8_t> payload, std::vector<int> fds = {}) {
    send(req, payload, std::move(fds), kVersion | kFlagNeedReply);
    Reply r = reply();
    EXPECT_EQ(r.header.request, static_cast<uint32_t>(req));
    return r.as<uint64_t>();
  }
  Reply reply() {
    Reply r;
    EXPECT_TRUE(readable_within(front.get(), 5000)) << "no reply";
    EXPECT_EQ(::recv(front.get(), &r.header, sizeof r.header, MSG_WAITALL),
              ssize_t{sizeof r.header});
    EXPECT_EQ(r.header.flags, kVersion | kFlagReply);
    r.payload.resize(r.header.size);
    if (r.header.size) {
      EXPECT_EQ(::recv(front.get(), r.payload.data(), r.payload.size(), MSG_WAITALL),
                ssize_t(r.header.size));
    }
    return r;
  }
  // The back end closed the connection (EOF) and said why.
  void expect_closed(std::string_view why) {
    ASSERT_TRUE(readable_within(front.get(), 5000)) << "connection still open";
    EXPECT_TRUE(peer_closed(front.get())) << "expected EOF";
    server.join();
    ASSERT_FALSE(served) << "serve() did not report an error";
    EXPECT_NE(served.error().what().find(why), std::string::npos) << served.error().what();
  }

  void negotiate(uint64_t features) {
    send(Request::kGetFeatures, {});
    uint64_t offered = reply().as<uint64_t>();
    ASSERT_EQ(features & ~offered, 0u);
    send(Request::kSetProtocolFeatures, bytes(kOfferedProtocolFeatures));
    EXPECT_EQ(send_acked(Request::kSetFeatures, bytes(features)), 0u);
  }
  void mem_table(uint64_t size = kRamBytes, uint64_t user = kUser) {
    struct {
      uint32_t n = 1, pad = 0;
      MemoryRegionDesc r;
    } t;
    t.r = {kGpa, size, user, 0};
    EXPECT_EQ(send_acked(Request::kSetMemTable, bytes(t), {memfd.get()}), 0u);
  }
  void ring_setup(uint32_t index = 0, uint64_t desc_user = kUser + kDescOff) {
    EXPECT_EQ(send_acked(Request::kSetVringNum, bytes(VringState{index, kRingSize})), 0u);
    EXPECT_EQ(send_acked(Request::kSetVringBase, bytes(VringState{index, 0})), 0u);
    VringAddr a{index, 0, desc_user, kUser + kUsedOff, kUser + kAvailOff, 0};
    EXPECT_EQ(send_acked(Request::kSetVringAddr, bytes(a)), 0u);
    EXPECT_EQ(send_acked(Request::kSetVringCall, bytes(uint64_t{index}), {call.get()}), 0u);
  }
  void start_ring(uint32_t index = 0) {
    EXPECT_EQ(send_acked(Request::kSetVringKick, bytes(uint64_t{index}), {kick.get()}), 0u);
  }
  void full_session() {
    negotiate(kVersion1 | kProtoBit);
    mem_table();
    ring_setup();
    start_ring();
    EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{0, 1})), 0u);
  }

  // --- a split ring in the memfd, laid out as the fake front end's driver would
  void put_desc(uint16_t i, uint64_t off, uint32_t len, uint16_t flags, uint16_t next = 0) {
    virtio::VirtqDesc d{kGpa + off, len, flags, next};
    std::memcpy(ram + kDescOff + 16 * i, &d, sizeof d);
  }
  void make_available(uint16_t head) {
    uint16_t idx;
    std::memcpy(&idx, ram + kAvailOff + 2, 2);
    std::memcpy(ram + kAvailOff + 4 + 2 * (idx % kRingSize), &head, 2);
    __atomic_store_n(reinterpret_cast<uint16_t*>(ram + kAvailOff + 2), uint16_t(idx + 1),
                     __ATOMIC_RELEASE);
  }
  void do_kick() {
    uint64_t one = 1;
    ASSERT_EQ(::write(kick.get(), &one, 8), 8);
  }
  uint16_t used_idx() {
    return __atomic_load_n(reinterpret_cast<uint16_t*>(ram + kUsedOff + 2), __ATOMIC_ACQUIRE);
  }
  virtio::VirtqUsedElem used_elem(uint16_t i) {
    virtio::VirtqUsedElem e;
    std::memcpy(&e, ram + kUsedOff + 4 + 8 * i, sizeof e);
    return e;
  }
  bool wait_used(uint16_t want, int ms = 5000) {
    for (int t = 0; t < ms; t += 5) {
      if (used_idx() == want) return true;
      ::usleep(5000);
    }
    return false;
  }

  Fd front, back, memfd, kick, call;
  uint8_t* ram = nullptr;
  std::unique_ptr<virtio::VirtioDevice> device;
  virtio::testing::FakeNetBackend* net_backend = nullptr;
  std::unique_ptr<VhostUserBackend> backend;
  std::thread server;
  Result<> served;
};

// --- negotiation -------------------------------------------------------------

TEST_F(BackendTest, OffersProtocolFeaturesBitAndDeviceFeatures) {
  start_rng();
  send(Request::kGetFeatures, {});
  auto r = reply();
  ASSERT_EQ(r.header.request, uint32_t(Request::kGetFeatures));
  uint64_t f = r.as<uint64_t>();
  EXPECT_TRUE(f & kProtoBit);
  EXPECT_TRUE(f & kVersion1);
  EXPECT_EQ(f & ~kProtoBit, device->device_features());
  send(Request::kGetProtocolFeatures, {});
  EXPECT_EQ(reply().as<uint64_t>(), kOfferedProtocolFeatures);
}

TEST_F(BackendTest, ReportsQueueCountAndBlkConfigSpace) {
  start_blk(3);
  send(Request::kGetQueueNum, {});
  EXPECT_EQ(reply().as<uint64_t>(), 3u);
  ConfigHeader h{0, 8, 0};
  std::vector<uint8_t> p(sizeof h + 8);
  std::memcpy(p.data(), &h, sizeof h);
  send(Request::kGetConfig, p);
  auto r = reply();
  ASSERT_EQ(r.payload.size(), sizeof h + 8);
  uint64_t capacity;
  std::memcpy(&capacity, r.payload.data() + sizeof h, 8);
  EXPECT_EQ(capacity, (1u << 20) / 512);
}

TEST_F(BackendTest, ConfigReadPastTheEndAnswersEmptyPayload) {
  start_blk();
  ConfigHeader h{200, 56, 0};  // the blk config space is 72 bytes
  std::vector<uint8_t> p(sizeof h + 56);
  std::memcpy(p.data(), &h, sizeof h);
  send(Request::kGetConfig, p);
  EXPECT_EQ(reply().payload.size(), 0u);
}

TEST_F(BackendTest, RefusedConfigWriteIsNackedAndConnectionStays) {
  start_blk();
  negotiate(kVersion1 | kProtoBit);
  ConfigHeader h{0, 8, 0};
  std::vector<uint8_t> p(sizeof h + 8, 0xff);
  std::memcpy(p.data(), &h, sizeof h);
  EXPECT_NE(send_acked(Request::kSetConfig, p), 0u);
  send(Request::kGetQueueNum, {});
  EXPECT_EQ(reply().as<uint64_t>(), 1u);
}

// --- rings ------------------------------------------------------------------

TEST_F(BackendTest, ServesRngRequestThroughMemfdRingAndSignalsCallFd) {
  start_rng();
  full_session();
  put_desc(0, kDataOff, 64, virtio::kDescFlagWrite);
  make_available(0);
  do_kick();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(used_elem(0).id, 0u);
  EXPECT_EQ(used_elem(0).len, 64u);
  EXPECT_TRUE(std::any_of(ram + kDataOff, ram + kDataOff + 64, [](uint8_t b) { return b != 0; }));
  EXPECT_TRUE(readable_within(call.get(), 5000)) << "no interrupt through the call fd";
  // GET_VRING_BASE stops the ring and reports the next avail index.
  send(Request::kGetVringBase, bytes(VringState{0, 0}));
  auto r = reply().as<VringState>();
  EXPECT_EQ(r.index, 0u);
  EXPECT_EQ(r.num, 1u);
  EXPECT_FALSE(backend->ring_started(0));
}

TEST_F(BackendTest, TranslatesFrontEndAddressesForBlkGetId) {
  start_blk(1, "vhost-serial-7");
  full_session();
  struct {
    uint32_t type, reserved;
    uint64_t sector;
  } hdr{8 /* VIRTIO_BLK_T_GET_ID */, 0, 0};
  std::memcpy(ram + kDataOff, &hdr, sizeof hdr);
  std::memset(ram + kDataOff + 0x100, 0xaa, 21);
  put_desc(0, kDataOff, 16, virtio::kDescFlagNext, 1);
  put_desc(1, kDataOff + 0x100, 20, virtio::kDescFlagWrite | virtio::kDescFlagNext, 2);
  put_desc(2, kDataOff + 0x200, 1, virtio::kDescFlagWrite);
  ram[kDataOff + 0x200] = 0xff;
  make_available(0);
  do_kick();
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(ram + kDataOff + 0x100)), "vhost-serial-7");
  EXPECT_EQ(ram[kDataOff + 0x200], 0);  // VIRTIO_BLK_S_OK
  EXPECT_EQ(used_elem(0).len, 21u);
}

TEST_F(BackendTest, DisabledRingIsNotProcessedUntilEnabled) {
  start_rng();
  negotiate(kVersion1 | kProtoBit);
  mem_table();
  ring_setup();
  start_ring();
  put_desc(0, kDataOff, 32, virtio::kDescFlagWrite);
  make_available(0);
  do_kick();
  EXPECT_FALSE(wait_used(1, 200)) << "a disabled ring was processed";
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{0, 1})), 0u);
  EXPECT_TRUE(wait_used(1));
}

TEST_F(BackendTest, NetPairFollowsItsReceiveRingEnable) {
  start_net(2);
  negotiate(kVersion1 | kProtoBit);
  mem_table();
  for (uint32_t ring : {0u, 1u, 2u, 3u}) {
    ring_setup(ring);
    start_ring(ring);
  }
  // With protocol features rings start disabled: no tap queue is attached,
  // so the kernel steers nothing to them.
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{false, false}));
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{0, 1})), 0u);
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{1, 1})), 0u);
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{true, false}));
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{2, 1})), 0u);
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{true, true}));
  // The front end stops pair 1 (QEMU on the guest's VQ_PAIRS_SET 1):
  // detached; enabled again: attached.
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{2, 0})), 0u);
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{3, 0})), 0u);
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{true, false}));
  EXPECT_EQ(send_acked(Request::kSetVringEnable, bytes(VringState{2, 1})), 0u);
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{true, true}));
}

TEST_F(BackendTest, NetPairsStartAttachedWithoutProtocolFeatures) {
  start_net(2);
  negotiate(kVersion1);
  mem_table();
  for (uint32_t ring : {0u, 1u, 2u, 3u}) {
    ring_setup(ring);
    start_ring(ring);
  }
  EXPECT_EQ(net_backend->enabled, (std::vector<bool>{true, true}));
}

TEST_F(BackendTest, NoInterruptWhenDriverSuppressesIt) {
  start_rng();
  full_session();
  uint16_t no_interrupt = virtio::kAvailFlagNoInterrupt;
  std::memcpy(ram + kAvailOff, &no_interrupt, 2);
  put_desc(0, kDataOff, 16, virtio::kDescFlagWrite);
  make_available(0);
  do_kick();
  ASSERT_TRUE(wait_used(1));
  EXPECT_FALSE(readable_within(call.get(), 100));
}

TEST_F(BackendTest, RingContinuesFromBaseAfterRestart) {
  start_rng();
  full_session();
  put_desc(0, kDataOff, 16, virtio::kDescFlagWrite);
  make_available(0);
  do_kick();
  ASSERT_TRUE(wait_used(1));
  send(Request::kGetVringBase, bytes(VringState{0, 0}));
  EXPECT_EQ(reply().as<VringState>().num, 1u);
  // Restart as QEMU does after a stop: base from GET_VRING_BASE, new kick.
  EXPECT_EQ(send_acked(Request::kSetVringBase, bytes(VringState{0, 1})), 0u);
  start_ring();
  make_available(0);
  do_kick();
  EXPECT_TRUE(wait_used(2));
}

TEST_F(BackendTest, RunningRingMovesToNewMemTable) {
  start_rng();
  full_session();
  put_desc(0, kDataOff, 16, virtio::kDescFlagWrite);
  make_available(0);
  do_kick();
  ASSERT_TRUE(wait_used(1));
  // QEMU resends the table when guest RAM changes (hotplug); the ring keeps
  // running on the new mapping and keeps its position.
  mem_table();
  EXPECT_TRUE(backend->ring_started(0));
  make_available(0);
  do_kick();
  EXPECT_TRUE(wait_used(2));
}

TEST_F(BackendTest, DeviceFailureSignalsErrFdAndStopsProcessing) {
  start_rng();
  Fd err(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  full_session();
  EXPECT_EQ(send_acked(Request::kSetVringErr, bytes(uint64_t{0}), {err.get()}), 0u);
  // virtio 1.2 §5.4.6.1: an rng driver must not post readable buffers.
  put_desc(0, kDataOff, 16, 0);
  make_available(0);
  do_kick();
  EXPECT_TRUE(readable_within(err.get(), 5000)) << "no error notification";
  EXPECT_TRUE(device->needs_reset());
  put_desc(1, kDataOff, 16, virtio::kDescFlagWrite);
  make_available(1);
  do_kick();
  EXPECT_FALSE(wait_used(1, 200)) << "a failed device kept processing";
  // The connection stays up: the front end decides what to do.
  send(Request::kGetQueueNum, {});
  EXPECT_EQ(reply().as<uint64_t>(), 1u);
}

// --- hostile front ends -----------------------------------------------------

TEST_F(BackendTest, OversizePayloadClosesConnection) {
  start_rng();
  MessageHeader h{uint32_t(Request::kSetMemTable), kVersion, 1u << 30};
  ASSERT_EQ(::send(front.get(), &h, sizeof h, 0), ssize_t{sizeof h});
  expect_closed("payload is 1073741824 bytes");
}

TEST_F(BackendTest, PayloadSizeWrongForRequestClosesConnection) {
  start_rng();
  uint32_t four = 4;
  send(Request::kSetFeatures, bytes(four));
  expect_closed("SET_FEATURES payload is 4 bytes, want 8");
}

TEST_F(BackendTest, TooManyRegionsClosesConnection) {
  start_rng();
  std::vector<uint8_t> p(kMaxMemTableBytes, 0);
  uint32_t n = 9;
  std::memcpy(p.data(), &n, 4);
  send(Request::kSetMemTable, p, {memfd.get()});
  expect_closed("9 regions");
}

TEST_F(BackendTest, MemTableWithoutFdClosesConnection) {
  start_rng();
  struct {
    uint32_t n = 1, pad = 0;
    MemoryRegionDesc r{kGpa, kRamBytes, kUser, 0};
  } t;
  send(Request::kSetMemTable, bytes(t));
  expect_closed("1 regions but 0 file descriptors");
}

TEST_F(BackendTest, RegionLargerThanItsFdClosesConnection) {
  start_rng();
  struct {
    uint32_t n = 1, pad = 0;
    MemoryRegionDesc r{kGpa, 2 * kRamBytes, kUser, 0};
  } t;
  send(Request::kSetMemTable, bytes(t), {memfd.get()});
  expect_closed("which has");
}

TEST_F(BackendTest, RegionFdThatIsNotSharedMemoryClosesConnection) {
  start_rng();
  struct {
    uint32_t n = 1, pad = 0;
    MemoryRegionDesc r{kGpa, 4096, kUser, 0};
  } t;
  send(Request::kSetMemTable, bytes(t), {kick.get()});  // an eventfd
  expect_closed("not a shared-memory file");
}

TEST_F(BackendTest, OverlappingRegionsCloseConnection) {
  start_rng();
  struct {
    uint32_t n = 2, pad = 0;
    MemoryRegionDesc r[2];
  } t;
  t.r[0] = {kGpa, kRamBytes / 2, kUser, 0};
  t.r[1] = {kGpa + 4096, kRamBytes / 2, kUser + kRamBytes, kRamBytes / 2};
  send(Request::kSetMemTable, bytes(t), {memfd.get(), memfd.get()});
  expect_closed("overlap in guest-physical space");
}

TEST_F(BackendTest, WrappingRegionClosesConnection) {
  start_rng();
  struct {
    uint32_t n = 1, pad = 0;
    MemoryRegionDesc r{~0ull - 10, kRamBytes, kUser, 0};
  } t;
  send(Request::kSetMemTable, bytes(t), {memfd.get()});
  expect_closed("wraps around");
}

TEST_F(BackendTest, RingOutsideRegionsClosesConnection) {
  start_rng();
  negotiate(kVersion1 | kProtoBit);
  mem_table();
  ring_setup(0, kUser + 4 * kRamBytes);
  send(Request::kSetVringKick, bytes(uint64_t{0}), {kick.get()});
  expect_closed("not in any memory region");
}

TEST_F(BackendTest, RingCrossingRegionEndClosesConnection) {
  start_rng();
  negotiate(kVersion1 | kProtoBit);
  mem_table();
  ring_setup(0, kUser + kRamBytes - 16);  // 8 descriptors need 128 bytes
  send(Request::kSetVringKick, bytes(uint64_t{0}), {kick.get()});
  expect_closed("descriptor table");
}

TEST_F(BackendTest, KickBeforeMemTableClosesConnection) {
  start_rng();
  send(Request::kSetVringKick, bytes(uint64_t{0}), {kick.get()});
  expect_closed("before SET_MEM_TABLE");
}

TEST_F(BackendTest, KickWithoutFdOrNoFdFlagClosesConnection) {
  start_rng();
  send(Request::kSetVringKick, bytes(uint64_t{0}));
  expect_closed("want one file descriptor, got 0");
}

TEST_F(BackendTest, RingIndexBeyondDeviceQueuesClosesConnection) {
  start_rng();
  send(Request::kSetVringNum, bytes(VringState{1, 8}));
  expect_closed("ring 1, the device has 1");
}

TEST_F(BackendTest, RingSizeNotPowerOfTwoClosesConnection) {
  start_rng();
  send(Request::kSetVringNum, bytes(VringState{0, 12}));
  expect_closed("not a power of 2");
}

TEST_F(BackendTest, UnexpectedFdClosesConnection) {
  start_rng();
  send(Request::kGetFeatures, {}, {kick.get()});
  expect_closed("unexpected 1 file descriptor");
}

TEST_F(BackendTest, WrongVersionClosesConnection) {
  start_rng();
  send(Request::kGetFeatures, {}, {}, 0x2);
  expect_closed("protocol version 2");
}

TEST_F(BackendTest, UnknownRequestClosesConnection) {
  start_rng();
  send(static_cast<Request>(77), {});
  expect_closed("request 77 is not supported");
}

TEST_F(BackendTest, UnofferedFeaturesCloseConnection) {
  start_rng();
  send(Request::kSetProtocolFeatures, bytes(uint64_t{1} << 12));
  expect_closed("protocol features 0x1000 were not offered");
}

// --- the server: reconnect after disconnects and errors ----------------------

TEST(VhostUserServerTest, AcceptsNewFrontEndAfterDisconnectProtocolErrorAndStall) {
  auto dev = virtio::VirtioRng::create(std::nullopt);
  ASSERT_TRUE(dev);
  std::string path = ::testing::TempDir() + "/vhost-test-" + std::to_string(::getpid()) + ".sock";
  auto srv = VhostUserServer::listen(path);
  ASSERT_TRUE(srv) << srv.error().what();
  VhostUserBackend backend(**dev);
  Fd stop(::eventfd(0, EFD_CLOEXEC));
  int disconnects = 0;
  Result<> ran;
  std::thread t([&] { ran = srv->run(backend, stop.get(), [&] { ++disconnects; }); });

  auto connect = [&] {
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return s;
  };
  auto features_ok = [&](int s) {
    EXPECT_TRUE(send_message(s, uint32_t(Request::kGetFeatures), kVersion, {}, {}));
    MessageHeader h{};
    EXPECT_TRUE(readable_within(s, 5000));
    EXPECT_EQ(::recv(s, &h, sizeof h, MSG_WAITALL), ssize_t{sizeof h});
    uint64_t f = 0;
    EXPECT_EQ(::recv(s, &f, sizeof f, MSG_WAITALL), ssize_t{sizeof f});
    return (f & kProtoBit) != 0;
  };
  {
    Fd a = connect();
    EXPECT_TRUE(features_ok(a.get()));
  }  // clean disconnect
  {
    Fd b = connect();
    uint32_t bad = 0;
    EXPECT_TRUE(send_message(b.get(), uint32_t(Request::kSetFeatures), kVersion, bytes(bad), {}));
    EXPECT_TRUE(readable_within(b.get(), 5000));
    EXPECT_TRUE(peer_closed(b.get()));  // closed by the back end
  }
  {
    // Half a header, then silence: the back end gives up on the message
    // instead of hanging, and the next front end is served.
    Fd stalled = connect();
    uint32_t half = uint32_t(Request::kGetFeatures);
    EXPECT_EQ(::send(stalled.get(), &half, sizeof half, 0), ssize_t{sizeof half});
    EXPECT_TRUE(readable_within(stalled.get(), 10000));
    EXPECT_TRUE(peer_closed(stalled.get()));
  }
  {
    Fd c = connect();
    EXPECT_TRUE(features_ok(c.get()));
  }
  uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, 8), 8);
  t.join();
  EXPECT_TRUE(ran) << ran.error().what();
  EXPECT_GE(disconnects, 2);
}

}  // namespace
}  // namespace skiff::vhost_user
