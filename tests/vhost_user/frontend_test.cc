// skiff's vhost-user front end (vhost_user/frontend*.h) against real,
// independent back ends: Debian's qemu-storage-daemon (QEMU's
// vhost-user-blk export, libvhost-user) and skiff's own skiff-vhost blk.
//
// The test plays both the guest driver (BasicFakeDriver over memfd-backed
// guest RAM, so the back end can map it) and the transport (one thread
// that turns "driver notified queue q" eventfds and the device's backend
// events into process_queue calls, as skiff's virtio-pci worker does).
// Requests go through the back end into a real image file, which the test
// reads and writes with pread/pwrite.
#include "vhost_user/frontend_blk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "virtio/fake_driver.h"

namespace skiff::vhost_user {
namespace {

using virtio::testing::BasicFakeDriver;
using virtio::testing::Buf;
using namespace std::chrono_literals;

constexpr uint64_t kImageBytes = 4 << 20;
constexpr uint16_t kQueueSize = 64;

// Guest RAM in a memfd (MAP_SHARED), described to GuestMemory with its fd
// the way `--memory shared=on` does, so SET_MEM_TABLE can pass it on.
struct SharedGuest {
  static constexpr uint64_t kRamBase = 0x100000;
  explicit SharedGuest(size_t bytes = 2 << 20) : size(bytes) {
    fd = ::memfd_create("frontend-test-ram", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) std::abort();
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) std::abort();
    base = static_cast<uint8_t*>(p);
    MemoryRegion r{kRamBase, size, base};
    r.fd = fd;
    r.fd_offset = 0;
    mem = *GuestMemory::create({r});
  }
  ~SharedGuest() {
    ::munmap(base, size);
    ::close(fd);
  }
  std::span<uint8_t> host(uint64_t gpa, size_t len) { return {base + (gpa - kRamBase), len}; }
  template <typename T>
  T get(uint64_t gpa) {
    T v;
    std::memcpy(&v, base + (gpa - kRamBase), sizeof v);
    return v;
  }
  template <typename T>
  void put(uint64_t gpa, const T& v) {
    std::memcpy(base + (gpa - kRamBase), &v, sizeof v);
  }
  size_t size;
  int fd = -1;
  uint8_t* base = nullptr;
  GuestMemory mem;
};
using Driver = BasicFakeDriver<SharedGuest>;

// skiff's virtio-pci worker in miniature: one thread, epoll over the
// driver's notify eventfds and the device's backend events (edge
// triggered), process_queue on each. Interrupts are counted.
class TestTransport {
 public:
  explicit TestTransport(virtio::VirtioDevice& dev) : dev_(dev) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    stop_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    add(stop_, kStop, EPOLLIN);
    for (uint16_t q = 0; q < dev.num_queues(); ++q) {
      notify_.push_back(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      add(notify_.back(), q, EPOLLIN);
    }
    events_ = dev.backend_events();
    for (size_t i = 0; i < events_.size(); ++i)
      add(events_[i].fd, kBackend + static_cast<uint32_t>(i), EPOLLIN | EPOLLET);
    dev.set_interrupt([this](virtio::InterruptKind kind, uint16_t q) {
      (void)q;
      if (kind == virtio::InterruptKind::kUsedBuffer)
        ++used_irqs_;
      else
        ++config_irqs_;
      std::lock_guard l(mu_);
      cv_.notify_all();
    });
    thread_ = std::thread([this] { run(); });
  }
  ~TestTransport() {
    uint64_t one = 1;
    (void)!::write(stop_, &one, sizeof one);
    thread_.join();
    dev_.set_interrupt(nullptr);
    for (int fd : notify_) ::close(fd);
    ::close(stop_);
    ::close(ep_);
  }
  // The guest wrote the queue's notify register.
  void notify(uint16_t q) {
    uint64_t one = 1;
    (void)!::write(notify_[q], &one, sizeof one);
  }
  // Waits until `pred()` holds (checked on every interrupt and every 10 ms;
  // `pred` runs without the lock).
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::unique_lock l(mu_);
      cv_.wait_for(l, 10ms);
    }
    return true;
  }
  int used_irqs() const { return used_irqs_; }
  std::mutex device_mu;  // the transport's lock: held around process_queue and status writes
  int config_irqs() const { return config_irqs_; }

 private:
  static constexpr uint32_t kStop = 0xffffffff;
  static constexpr uint32_t kBackend = 0x10000;
  void add(int fd, uint32_t token, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = token;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) std::abort();
  }
  void run() {
    for (;;) {
      epoll_event evs[16];
      int n = ::epoll_wait(ep_, evs, 16, -1);
      for (int i = 0; i < n; ++i) {
        uint32_t t = evs[i].data.u32;
        if (t == kStop) return;
        // As VirtioPciDevice: queue processing and register writes (status:
        // activate/reset) never run at the same time.
        std::lock_guard l(device_mu);
        if (t >= kBackend) {
          dev_.process_queue(events_[t - kBackend].queue);
          continue;
        }
        uint64_t v;
        if (::read(notify_[t], &v, sizeof v) == sizeof v)
          dev_.process_queue(static_cast<uint16_t>(t));
      }
    }
  }
  virtio::VirtioDevice& dev_;
  int ep_ = -1, stop_ = -1;
  std::vector<int> notify_;
  std::vector<virtio::BackendEvent> events_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> used_irqs_{0}, config_irqs_{0};
};

bool have(const char* program) {
  return ::access(program, X_OK) == 0;
}

enum class Backend { kQemuStorageDaemon, kSkiffVhost };

std::string backend_name(Backend b) {
  return b == Backend::kQemuStorageDaemon ? "qemu_storage_daemon" : "skiff_vhost";
}

// A back-end process serving IMG on SOCK (two queues), killed at the end.
class BackendProcess {
 public:
  BackendProcess(Backend kind, const std::string& image, const std::string& sock) {
    std::vector<std::string> args;
    if (kind == Backend::kQemuStorageDaemon) {
      args = {"/usr/bin/qemu-storage-daemon", "--blockdev",
              "driver=file,filename=" + image + ",node-name=d", "--export",
              "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=" + sock +
                  ",writable=on,num-queues=2"};
    } else {
      args = {SKIFF_VHOST_BIN, "blk",
              "--socket",      sock,
              "--disk",        "path=" + image + ",num_queues=2,serial=frontend-test"};
    }
    std::filesystem::remove(sock);  // a killed back end leaves its socket file behind
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Ready when a connection is accepted (the file exists between bind and
    // listen already). Both back ends serve the next front end after this
    // probe hangs up.
    for (int i = 0; i < 500 && !accepts(sock); ++i) std::this_thread::sleep_for(10ms);
  }
  ~BackendProcess() { kill(SIGTERM); }
  static bool accepts(const std::string& sock) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

class FrontendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kQemuStorageDaemon && !have("/usr/bin/qemu-storage-daemon"))
      GTEST_SKIP() << "skipped: /usr/bin/qemu-storage-daemon missing (apt package "
                      "qemu-system-common, pulled in by qemu-system-x86 in scripts/setup)";
    // sun_path is 107 bytes: a short directory under /tmp.
    char tmpl[] = "/tmp/skfe.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    image_ = dir_ + "/disk.img";
    sock_ = dir_ + "/blk.sock";
    int fd = ::open(image_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> data(kImageBytes);
    for (size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<uint8_t>((i * 7 + i / 512) & 0xff);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    ::close(fd);
    host_data_ = std::move(data);
    backend_ = std::make_unique<BackendProcess>(GetParam(), image_, sock_);
    ASSERT_TRUE(std::filesystem::exists(sock_)) << backend_name(GetParam()) << " did not start";
  }
  void TearDown() override {
    transport_.reset();
    dev_.reset();
    backend_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // A driver's status write, under the transport's lock.
  void status(uint8_t value) {
    std::lock_guard l(transport_->device_mu);
    dev_->set_status(value);
  }

  // Connects, negotiates every offered feature and starts both queues.
  void start_device(uint16_t num_queues = 2) {
    VhostUserBlkOptions o;
    o.socket = sock_;
    o.num_queues = num_queues;
    o.queue_size = kQueueSize;
    o.timeout = 2s;
    auto dev = VhostUserBlock::create(o);
    ASSERT_TRUE(dev) << dev.error().what();
    dev_ = std::move(*dev);
    dev_->set_memory(&guest_.mem);
    transport_ = std::make_unique<TestTransport>(*dev_);
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver);
    dev_->set_driver_features(dev_->device_features());
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
    ASSERT_TRUE(dev_->status() & virtio::kStatusFeaturesOk);
    for (uint16_t q = 0; q < dev_->num_queues(); ++q) {
      drivers_.push_back(
          std::make_unique<Driver>(guest_, kQueueSize, SharedGuest::kRamBase + q * 0x80000ull));
      drivers_.back()->configure(*dev_->queue(q));
    }
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk |
           virtio::kStatusDriverOk);
    ASSERT_TRUE(dev_->activated());
    ASSERT_FALSE(dev_->needs_reset());
  }

  // What a driver does after a reset (virtio 1.2 §3.1.1): features again,
  // the first `queues` rings restarted on fresh memory, DRIVER_OK.
  void reinitialise(uint16_t queues) {
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver);
    dev_->set_driver_features(dev_->device_features());
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
    for (uint16_t q = 0; q < queues; ++q) {
      drivers_[q]->restart();
      drivers_[q]->configure(*dev_->queue(q));
    }
    status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk |
           virtio::kStatusDriverOk);
  }

  // Reads sector `sector` on `queue` and compares it with the image.
  void expect_sector(uint16_t queue, uint64_t sector) {
    Done d = request(queue, VIRTIO_BLK_T_IN, sector, {}, 512);
    ASSERT_EQ(d.status, VIRTIO_BLK_S_OK);
    auto got = guest_.host(d.data_gpa, 512);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), host_data_.begin() + sector * 512));
  }

  struct Done {
    uint8_t status;
    uint64_t data_gpa;
  };
  // One request (header, data, status) on queue q; waits for it to be used.
  Done request(uint16_t q, uint32_t type, uint64_t sector, std::span<const uint8_t> out,
               uint32_t in_len) {
    Driver& d = *drivers_[q];
    virtio_blk_outhdr hdr{type, 0, sector};
    uint64_t hdr_gpa = d.alloc(sizeof hdr);
    guest_.put(hdr_gpa, hdr);
    std::vector<Buf> bufs{{hdr_gpa, sizeof hdr, false}};
    uint64_t data_gpa = 0;
    if (!out.empty()) {
      data_gpa = d.alloc(static_cast<uint32_t>(out.size()));
      std::memcpy(guest_.host(data_gpa, out.size()).data(), out.data(), out.size());
      bufs.push_back({data_gpa, static_cast<uint32_t>(out.size()), false});
    }
    if (in_len != 0) {
      data_gpa = d.alloc(in_len);
      bufs.push_back({data_gpa, in_len, true});
    }
    uint64_t status_gpa = d.alloc(1);
    guest_.put<uint8_t>(status_gpa, 0xff);
    bufs.push_back({status_gpa, 1, true});
    uint16_t before = d.used_idx();
    int irqs = transport_->used_irqs();
    d.add_chain(bufs);
    transport_->notify(q);
    bool used = transport_->wait_for(
        [&] { return d.used_idx() != before && transport_->used_irqs() > irqs; });
    EXPECT_TRUE(used) << "request type " << type << " on queue " << q
                      << " was not completed with an interrupt";
    return {guest_.get<uint8_t>(status_gpa), data_gpa};
  }

  std::vector<uint8_t> file_bytes(uint64_t off, size_t len) {
    std::vector<uint8_t> out(len);
    int fd = ::open(image_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    ::close(fd);
    return out;
  }

  std::string dir_, image_, sock_;
  std::vector<uint8_t> host_data_;
  std::unique_ptr<BackendProcess> backend_;
  SharedGuest guest_;
  std::vector<std::unique_ptr<Driver>> drivers_;
  std::unique_ptr<VhostUserBlock> dev_;
  std::unique_ptr<TestTransport> transport_;
};

TEST_P(FrontendTest, ConfigIsTheBackEndsDiskWithTwoQueues) {
  start_device();
  virtio_blk_config c{};
  ASSERT_TRUE(
      dev_->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), kVhostBlkConfigBytes)));
  EXPECT_EQ(c.capacity, kImageBytes / 512);
  EXPECT_EQ(c.num_queues, 2);
  EXPECT_EQ(dev_->num_queues(), 2);
  EXPECT_EQ(dev_->device_id(), 2u);  // VIRTIO_ID_BLOCK
  EXPECT_TRUE(dev_->negotiated(VIRTIO_BLK_F_MQ));
  EXPECT_TRUE(dev_->negotiated(VIRTIO_BLK_F_FLUSH));
  EXPECT_TRUE(dev_->negotiated(virtio::kFeatureVersion1));
  EXPECT_FALSE(dev_->device_features() & virtio::feature_bit(VIRTIO_BLK_F_CONFIG_WCE));
}

TEST_P(FrontendTest, ReadsSectorsTheHostWroteOnBothQueues) {
  start_device();
  for (uint16_t q = 0; q < 2; ++q) {
    uint64_t sector = 8 + q * 100;
    Done d = request(q, VIRTIO_BLK_T_IN, sector, {}, 4096);
    ASSERT_EQ(d.status, VIRTIO_BLK_S_OK) << "queue " << q;
    auto got = guest_.host(d.data_gpa, 4096);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), host_data_.begin() + sector * 512))
        << "queue " << q;
  }
}

TEST_P(FrontendTest, WritesAndFlushReachTheImageFile) {
  start_device();
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ 0x5a);
  EXPECT_EQ(request(1, VIRTIO_BLK_T_OUT, 77, data, 0).status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(request(0, VIRTIO_BLK_T_FLUSH, 0, {}, 0).status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(file_bytes(77 * 512, data.size()), data);
  // And the neighbours are untouched.
  EXPECT_EQ(file_bytes(76 * 512, 512),
            std::vector<uint8_t>(host_data_.begin() + 76 * 512, host_data_.begin() + 77 * 512));
}

TEST_P(FrontendTest, GetIdAnswersTheBackEndsSerial) {
  start_device();
  Done d = request(0, VIRTIO_BLK_T_GET_ID, 0, {}, VIRTIO_BLK_ID_BYTES);
  ASSERT_EQ(d.status, VIRTIO_BLK_S_OK);
  std::string id(reinterpret_cast<const char*>(guest_.host(d.data_gpa, VIRTIO_BLK_ID_BYTES).data()),
                 VIRTIO_BLK_ID_BYTES);
  id = id.c_str();
  if (GetParam() == Backend::kSkiffVhost)
    EXPECT_EQ(id, "frontend-test");
  else
    EXPECT_FALSE(id.empty());  // QEMU's export has a fixed serial ("vhost_user_blk" in 7.2)
  std::printf("GET_ID from %s: '%s'\n", backend_name(GetParam()).c_str(), id.c_str());
}

TEST_P(FrontendTest, ResetStopsTheRingsAndTheDeviceRestarts) {
  start_device();
  ASSERT_EQ(request(0, VIRTIO_BLK_T_IN, 0, {}, 512).status, VIRTIO_BLK_S_OK);
  status(0);  // GET_VRING_BASE on every started ring
  EXPECT_FALSE(dev_->activated());
  EXPECT_EQ(dev_->status(), 0);
  // A driver starting over: new rings, same connection.
  reinitialise(2);
  ASSERT_TRUE(dev_->activated());
  expect_sector(1, 3);
}

TEST_P(FrontendTest, BackEndKilledMidRunMarksNeedsResetAndSkiffCarriesOn) {
  start_device();
  ASSERT_EQ(request(0, VIRTIO_BLK_T_IN, 0, {}, 512).status, VIRTIO_BLK_S_OK);
  // A request in flight (or just completed) when the back end dies.
  Driver& d = *drivers_[1];
  uint64_t hdr = d.alloc(16), buf = d.alloc(65536), st = d.alloc(1);
  guest_.put(hdr, virtio_blk_outhdr{VIRTIO_BLK_T_IN, 0, 0});
  d.add_chain({{hdr, 16, false}, {buf, 65536, true}, {st, 1, true}});
  transport_->notify(1);
  int config_irqs = transport_->config_irqs();
  backend_->kill(SIGKILL);
  EXPECT_TRUE(transport_->wait_for([&] { return dev_->needs_reset(); }, 3s))
      << "the device did not notice the back end's death";
  EXPECT_TRUE(transport_->wait_for([&] { return transport_->config_irqs() > config_irqs; }, 1s))
      << "no config-change interrupt for DEVICE_NEEDS_RESET";
  // The driver resets; the dead back end makes re-activation fail cleanly.
  status(0);
  reinitialise(1);
  EXPECT_FALSE(dev_->activated());
  EXPECT_TRUE(dev_->needs_reset());
}

TEST_P(FrontendTest, RestartedBackEndIsReconnectedAtTheDriversReset) {
  start_device();
  ASSERT_EQ(request(0, VIRTIO_BLK_T_IN, 0, {}, 512).status, VIRTIO_BLK_S_OK);
  backend_->kill(SIGKILL);
  ASSERT_TRUE(transport_->wait_for([&] { return dev_->needs_reset(); }, 3s));
  backend_ = std::make_unique<BackendProcess>(GetParam(), image_, sock_);
  // The driver's recovery: reset, then the whole initialisation again.
  status(0);
  reinitialise(2);
  ASSERT_TRUE(dev_->activated());
  ASSERT_FALSE(dev_->needs_reset());
  expect_sector(1, 5);
}

TEST_P(FrontendTest, PrivateGuestMemoryIsRefusedAtActivation) {
  VhostUserBlkOptions o;
  o.socket = sock_;
  o.num_queues = 1;
  o.queue_size = kQueueSize;
  auto dev = VhostUserBlock::create(o);
  ASSERT_TRUE(dev) << dev.error().what();
  virtio::testing::FakeGuest priv;  // std::vector RAM: no fd to pass on
  (*dev)->set_memory(&priv.mem);
  (*dev)->set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver);
  (*dev)->set_driver_features((*dev)->device_features());
  (*dev)->set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver |
                     virtio::kStatusFeaturesOk);
  virtio::testing::FakeDriver d(priv, kQueueSize);
  d.configure(*(*dev)->queue(0));
  (*dev)->set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver |
                     virtio::kStatusFeaturesOk | virtio::kStatusDriverOk);
  EXPECT_FALSE((*dev)->activated());
  EXPECT_TRUE((*dev)->needs_reset());
}

TEST_P(FrontendTest, MoreQueuesThanTheBackEndServesIsAnError) {
  VhostUserBlkOptions o;
  o.socket = sock_;
  o.num_queues = 3;
  auto dev = VhostUserBlock::create(o);
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().what().find("num_queues=3"), std::string::npos) << dev.error().what();
  // The default (one per vCPU) is capped at what the back end serves.
  o.num_queues = 0;
  o.default_queues = 8;
  auto capped = VhostUserBlock::create(o);
  ASSERT_TRUE(capped) << capped.error().what();
  EXPECT_EQ((*capped)->num_queues(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, FrontendTest,
                         ::testing::Values(Backend::kQemuStorageDaemon, Backend::kSkiffVhost),
                         [](const auto& p) { return backend_name(p.param); });

// --- without a back end process

TEST(FrontendConnect, MissingSocketIsAClearError) {
  VhostUserBlkOptions o;
  o.socket = "/tmp/skiff-no-such-vhost.sock";
  auto dev = VhostUserBlock::create(o);
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().what().find("/tmp/skiff-no-such-vhost.sock does not exist"),
            std::string::npos)
      << dev.error().what();
}

TEST(FrontendConnect, SilentBackEndTimesOutInsteadOfHanging) {
  // Listens (so connect succeeds) but never answers.
  char tmpl[] = "/tmp/skfe.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string path = dir + "/silent.sock";
  int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l, 1), 0);
  VhostUserBlkOptions o;
  o.socket = path;
  o.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto dev = VhostUserBlock::create(o);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().what().find("did not answer GET_FEATURES within 300 ms"), std::string::npos)
      << dev.error().what();
  EXPECT_LT(took, 2s);
  ::close(l);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace skiff::vhost_user
