// Test fixture for virtio-blk over io_uring (blk.h "Execution"): the device
// against the fake guest memory and driver, with real files, and with pipes
// standing in for the image where a test must decide when a transfer
// finishes. Shared by blk_async_test.cc and blk_queue_reset_test.cc.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/fd.h"
#include "block/block_test_util.h"
#include "block/raw_image.h"
#include "virtio/devices/blk.h"
#include "virtio/fake_driver.h"

namespace skiff::virtio::testing {

constexpr uint16_t kQueueSize = 32;
constexpr uint64_t kDiskBytes = 1 << 20;
constexpr uint64_t kDriverSpan = 2 << 20;  // guest RAM per queue's driver

// A scratch directory on a disk file system (O_DIRECT tests need one) and
// pipes: the block tests' helpers.
using ::skiff::testing::Pipe;
using ::skiff::testing::ScratchDir;

// An image whose bytes come from pipes: reads of the first 4 KiB from pipe
// `a`, the rest from pipe `b`; writes go into pipe `w`; flush/discard use a
// scratch file. The synchronous calls are never expected.
class PipeDisk final : public DiskImage {
 public:
  PipeDisk(int a, int b, int w, int file) : a_(a), b_(b), w_(w), file_(file) {}
  uint64_t size() const override { return 64 * 512; }
  bool read_only() const override { return false; }
  std::string format() const override { return "pipe"; }
  Result<> read(uint64_t, std::span<uint8_t>) override { return skiff::fail("sync read"); }
  Result<> write(uint64_t, std::span<const uint8_t>) override { return skiff::fail("sync write"); }
  Result<> flush() override { return skiff::fail("sync flush"); }
  Result<> discard(uint64_t, uint64_t) override { return skiff::fail("sync discard"); }
  Result<> write_zeroes(uint64_t, uint64_t, bool) override { return skiff::fail("sync zeroes"); }
  Result<ExtentStatus> block_status(uint64_t, uint64_t len) override {
    return ExtentStatus{.length = len, .allocated = true, .data = true};
  }
  bool maps_extents() const override { return true; }
  std::optional<HostExtent> map_extent(uint64_t offset, uint64_t, bool write) override {
    if (write) return HostExtent{w_, 0};
    return HostExtent{offset < 4096 ? a_ : b_, 0};
  }
  int linear_fd() const override { return file_; }

 private:
  int a_, b_, w_, file_;
};

struct AsyncBlk : ::testing::Test {
  void start(std::unique_ptr<DiskImage> image, uint16_t queues = 1) {
    BlkOptions opts;
    opts.queue_size = kQueueSize;
    opts.num_queues = queues;
    auto made = VirtioBlock::create(std::move(image), opts);
    ASSERT_TRUE(made) << made.error().message;
    blk = std::move(*made);
    ASSERT_EQ(blk->backend_events().size(), queues) << "no io_uring on this host?";
    blk->set_memory(&guest.mem);
    blk->set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer) ++irqs[q];
    });
    if (ring_reset) blk->offer_ring_reset();  // what virtio-pci does
    blk->set_status(kStatusAcknowledge | kStatusDriver);
    blk->set_driver_features(blk->device_features());
    blk->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (uint16_t q = 0; q < queues; ++q) {
      drivers.push_back(
          std::make_unique<FakeDriver>(guest, kQueueSize, FakeGuest::kRamBase + q * kDriverSpan));
      drivers[q]->configure(*blk->queue(q));
    }
    blk->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(blk->activated());
  }
  std::unique_ptr<RawImage> raw_image(bool direct = false) {
    std::string path = scratch.file("disk.raw");
    EXPECT_TRUE(RawImage::create(path, kDiskBytes));
    auto r = RawImage::open(path, false, direct);
    if (!r) {
      skip_reason = r.error().what();
      return nullptr;
    }
    return std::move(*r);
  }

  // A PipeDisk over the fixture's pipes a, b and w (writes to `write_fd`,
  // default w's write end) and a scratch file.
  std::unique_ptr<PipeDisk> pipe_disk(int write_fd = -1) {
    if (!pipe_file.valid())
      pipe_file.reset(::open(scratch.file("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    return std::make_unique<PipeDisk>(a.rd.get(), b.rd.get(), write_fd >= 0 ? write_fd : w.wr.get(),
                                      pipe_file.get());
  }

  FakeDriver& drv(uint16_t q = 0) { return *drivers[q]; }
  uint64_t header(uint16_t q, uint32_t type, uint64_t sector) {
    uint64_t h = drv(q).alloc(16);
    guest.put(h, virtio_blk_outhdr{type, 0, sector});
    return h;
  }
  uint64_t status_byte(uint16_t q) {
    uint64_t s = drv(q).alloc(1);
    guest.host(s, 1)[0] = 0xff;
    return s;
  }
  struct Req {
    uint64_t data, status;
    uint16_t head;
  };
  Req read_req(uint16_t q, uint64_t sector, uint32_t len) {
    uint64_t d = drv(q).alloc(len);
    uint64_t s = status_byte(q);
    std::vector<Buf> bufs{
        {header(q, VIRTIO_BLK_T_IN, sector), 16, false}, {d, len, true}, {s, 1, true}};
    uint16_t head = indirect ? drv(q).add_indirect(bufs) : drv(q).add_chain(bufs);
    return {d, s, head};
  }
  Req write_req(uint16_t q, uint64_t sector, std::span<const uint8_t> data, uint64_t d = 0) {
    auto len = static_cast<uint32_t>(data.size());
    if (d == 0) d = drv(q).alloc(len);
    std::memcpy(guest.host(d, len).data(), data.data(), len);
    uint64_t s = status_byte(q);
    std::vector<Buf> bufs{
        {header(q, VIRTIO_BLK_T_OUT, sector), 16, false}, {d, len, false}, {s, 1, true}};
    uint16_t head = indirect ? drv(q).add_indirect(bufs) : drv(q).add_chain(bufs);
    return {d, s, head};
  }
  Req flush_req(uint16_t q) {
    uint64_t s = status_byte(q);
    uint16_t head = drv(q).add_chain({{header(q, VIRTIO_BLK_T_FLUSH, 0), 16, false}, {s, 1, true}});
    return {0, s, head};
  }
  uint8_t status(const Req& r) { return guest.host(r.status, 1)[0]; }
  // What the transport does: wait on the queue's completion eventfd, then
  // process the queue; until nothing is in flight (or `limit` rounds).
  void pump(uint16_t q = 0, int limit = 500) {
    int fd = blk->backend_events()[q].fd;
    for (int i = 0; i < limit && blk->in_flight(q) > 0; ++i) {
      pollfd p{fd, POLLIN, 0};
      (void)::poll(&p, 1, 10);
      blk->process_queue(q);
    }
  }

  ScratchDir scratch;
  Pipe a, b, w;  // pipe_disk(): reads below / from 4 KiB, writes
  Fd pipe_file;
  FakeGuest guest{8 << 20};
  std::vector<std::unique_ptr<FakeDriver>> drivers;
  std::unique_ptr<VirtioBlock> blk;
  std::array<std::atomic<int>, 8> irqs{};
  std::string skip_reason;
  // One descriptor per request, so a full queue of requests fits the table.
  bool indirect = false;
  // Offer (and so negotiate) VIRTIO_F_RING_RESET, as behind virtio-pci.
  bool ring_reset = false;
};

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

}  // namespace skiff::virtio::testing
