// virtio-blk virtqueue reset (VIRTIO_F_RING_RESET, virtio 1.2 §2.6.1) and
// the qcow2 extent pins its io_uring requests hold (blk.h "Execution"): a
// reset queue drops what it had in flight without touching the driver's old
// buffers or rings, starts again on new rings while the other queues keep
// running, and no completed or cancelled request keeps a qcow2 cluster from
// being freed.
#include <chrono>
#include <thread>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "devices/pci/pci_device.h"
#include "virtio/blk_async_fixture.h"
#include "virtio/transport/pci/virtio_pci.h"

namespace skiff::virtio {
namespace {

using namespace testing;  // NOLINT(google-build-using-namespace): the fixture's names

TEST(BlkRingReset, OfferedOnlyWhenTheTransportHasAQueueReset) {
  ScratchDir s;
  ASSERT_TRUE(RawImage::create(s.file("x.raw"), kDiskBytes));
  auto b = VirtioBlock::create(*RawImage::open(s.file("x.raw"), false), BlkOptions{});
  ASSERT_TRUE(b);
  VirtioBlock& blk = **b;
  // What skiff-vhost advertises over vhost-user (it never offers it).
  EXPECT_FALSE(blk.device_features() & feature_bit(kFeatureRingReset));
  // A driver cannot take it unoffered.
  blk.set_status(kStatusAcknowledge | kStatusDriver);
  blk.set_driver_features(blk.device_features() | feature_bit(kFeatureRingReset));
  blk.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(blk.status() & kStatusFeaturesOk);
  blk.set_status(0);
  // virtio-pci calls offer_ring_reset() when it wraps the device.
  blk.offer_ring_reset();
  EXPECT_TRUE(blk.device_features() & feature_bit(kFeatureRingReset));
}

TEST_F(AsyncBlk, QueueResetIsRefusedUnlessNegotiated) {
  start(pipe_disk());
  Req r = read_req(0, 0, 512);
  blk->process_queue(0);
  ASSERT_EQ(blk->in_flight(0), 1u);
  EXPECT_FALSE(blk->reset_queue(0));
  EXPECT_EQ(blk->in_flight(0), 1u) << "an unnegotiated reset touched the queue";
  EXPECT_TRUE(blk->queue(0)->active());
  auto data = pattern(512, 7);
  ASSERT_EQ(::write(a.wr.get(), data.data(), 512), 512);
  pump();
  EXPECT_EQ(status(r), VIRTIO_BLK_S_OK);
}

TEST_F(AsyncBlk, QueueResetCancelsItsRequestsAndTheQueueRestartsOnNewRingsWhileOthersRun) {
  ring_reset = true;
  start(pipe_disk(), 2);
  ASSERT_TRUE(blk->negotiated(kFeatureRingReset));
  // Both queues have a read the backend does not answer yet.
  Req stuck = read_req(0, 0, 512);  // pipe a
  std::memset(guest.host(stuck.data, 512).data(), 0xee, 512);
  Req other = read_req(1, 16, 512);  // pipe b
  blk->process_queue(0);
  blk->process_queue(1);
  ASSERT_EQ(blk->in_flight(0), 1u);
  ASSERT_EQ(blk->in_flight(1), 1u);

  // A reset that waits for the stuck read instead of cancelling it would
  // hang: after 3 s the watchdog answers it (and the checks below fail).
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 300 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!done) (void)!::write(a.wr.get(), pattern(512, 30).data(), 512);
  });
  auto t0 = std::chrono::steady_clock::now();
  bool reset = blk->reset_queue(0);
  done = true;
  watchdog.join();
  ASSERT_TRUE(reset);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2))
      << "queue reset waited for a backend that never answers";
  EXPECT_EQ(blk->in_flight(0), 0u);
  Queue& q0 = *blk->queue(0);
  EXPECT_FALSE(q0.ready());
  EXPECT_FALSE(q0.active());
  EXPECT_EQ(q0.size(), kQueueSize);
  EXPECT_EQ(blk->status() & kStatusDriverOk, kStatusDriverOk)
      << "a queue reset is not a device reset";
  EXPECT_FALSE(blk->needs_reset());

  // Data the backend produces now must not reach the old buffers or ring.
  auto late = pattern(512, 31);
  ASSERT_EQ(::write(a.wr.get(), late.data(), 512), 512);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  blk->process_queue(0);
  EXPECT_EQ(guest.host(stuck.data, 1)[0], 0xee);
  EXPECT_EQ(status(stuck), 0xff);
  EXPECT_EQ(drv(0).used_idx(), 0);

  // Queue 1 never stopped.
  EXPECT_EQ(blk->in_flight(1), 1u);
  auto data_b = pattern(512, 32);
  ASSERT_EQ(::write(b.wr.get(), data_b.data(), 512), 512);
  pump(1);
  EXPECT_EQ(status(other), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(data_b.begin(), data_b.end(), guest.host(other.data, 512).begin()));

  // §2.6.1.2: the driver sets queue 0 up again on new rings, smaller.
  auto old_driver = std::move(drivers[0]);
  drivers[0] =
      std::make_unique<FakeDriver>(guest, kQueueSize / 2, FakeGuest::kRamBase + 2 * kDriverSpan);
  drv(0).configure(q0);
  ASSERT_TRUE(blk->enable_queue(0));
  ASSERT_TRUE(q0.active());
  // The bytes the cancelled read left in the pipe go to the new request;
  // indices start at 0 on the new ring, head 0 is free again.
  Req again = read_req(0, 0, 512);
  EXPECT_EQ(again.head, 0);
  blk->process_queue(0);
  pump(0);
  EXPECT_EQ(status(again), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(late.begin(), late.end(), guest.host(again.data, 512).begin()));
  EXPECT_EQ(drv(0).used_idx(), 1);
  EXPECT_EQ(old_driver->used_idx(), 0) << "something landed in the old used ring";
  EXPECT_EQ(guest.host(stuck.data, 1)[0], 0xee);
  // Queue 1 goes on as before.
  Req more = read_req(1, 20, 512);
  auto data_b2 = pattern(512, 33);
  ASSERT_EQ(::write(b.wr.get(), data_b2.data(), 512), 512);
  blk->process_queue(1);
  pump(1);
  EXPECT_EQ(status(more), VIRTIO_BLK_S_OK);
  EXPECT_EQ(drv(1).used_idx(), 2);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(AsyncBlk, QueueResetOfARawDiskQueueThenIoOnAllQueuesIsCorrect) {
  auto img = raw_image();
  ASSERT_TRUE(img) << skip_reason;
  ring_reset = true;
  start(std::move(img), 2);
  // Writes on both queues, queue 0 reset right after its kick (whatever
  // the kernel had not finished is cancelled; the rest is simply done).
  for (uint32_t i = 0; i < 8; ++i) {
    (void)write_req(0, i * 8ull, pattern(4096, 100 + i));
    (void)write_req(1, 64 + i * 8ull, pattern(4096, 200 + i));
  }
  blk->process_queue(0);
  blk->process_queue(1);
  ASSERT_TRUE(blk->reset_queue(0));
  EXPECT_EQ(blk->in_flight(0), 0u);
  pump(1);
  EXPECT_EQ(drv(1).used_idx(), 8);
  drivers[0] =
      std::make_unique<FakeDriver>(guest, kQueueSize, FakeGuest::kRamBase + 2 * kDriverSpan);
  drv(0).configure(*blk->queue(0));
  ASSERT_TRUE(blk->enable_queue(0));
  // Rewrite queue 0's range on the new ring, then read everything back
  // through both queues.
  std::vector<Req> reads;
  for (uint32_t i = 0; i < 8; ++i) (void)write_req(0, i * 8ull, pattern(4096, 300 + i));
  blk->process_queue(0);
  pump(0);
  ASSERT_EQ(drv(0).used_idx(), 8);
  for (uint32_t i = 0; i < 8; ++i) reads.push_back(read_req(1, i * 8ull, 4096));
  for (uint32_t i = 0; i < 8; ++i) reads.push_back(read_req(0, 64 + i * 8ull, 4096));
  blk->process_queue(0);
  blk->process_queue(1);
  pump(0);
  pump(1);
  for (uint32_t i = 0; i < 16; ++i) {
    auto want = pattern(4096, (i < 8 ? 300 : 200 - 8) + i);
    EXPECT_EQ(status(reads[i]), VIRTIO_BLK_S_OK) << i;
    EXPECT_TRUE(std::equal(want.begin(), want.end(), guest.host(reads[i].data, 4096).begin()))
        << "read " << i;
  }
  EXPECT_FALSE(blk->needs_reset());
}

// The pins of mapped qcow2 extents (Qcow2Image::map_extent) go when the
// request completes or is cancelled: a discard afterwards frees the cluster.
TEST_F(AsyncBlk, Qcow2ClustersReadThroughTheRingAreFreedByALaterDiscard) {
  std::string path = scratch.file("disk.qcow2");
  ASSERT_TRUE(qcow2::create(path, qcow2::CreateOptions{.size = kDiskBytes}));
  auto img = open_image(path, OpenImageOptions{});
  ASSERT_TRUE(img) << img.error().what();
  ring_reset = true;
  start(std::move(*img), 2);
  auto& q2 = dynamic_cast<Qcow2Image&>(blk->disk());
  constexpr uint64_t kCluster = 65536;
  std::vector<uint8_t> cluster(kCluster, 0x77);
  ASSERT_TRUE(q2.write(0, cluster));
  ASSERT_TRUE(q2.write(kCluster, cluster));
  uint64_t c0 = q2.block_status(0, kCluster)->host_offset;
  uint64_t c1 = q2.block_status(kCluster, kCluster)->host_offset;
  // Queue 0 reads cluster 0 to completion; queue 1 reads cluster 1 and is
  // reset (and cancelled, or done) before its completion is reaped.
  Req r0 = read_req(0, 0, 4096);
  Req r1 = read_req(1, kCluster / 512, 4096);
  blk->process_queue(0);
  blk->process_queue(1);
  pump(0);
  ASSERT_EQ(status(r0), VIRTIO_BLK_S_OK);
  ASSERT_TRUE(blk->reset_queue(1));
  (void)r1;
  EXPECT_EQ(blk->stats(0).async_ops.load(), 1u);
  EXPECT_EQ(blk->stats(1).async_ops.load(), 1u);
  ASSERT_TRUE(q2.discard(0, 2 * kCluster));
  EXPECT_EQ(*q2.refcount(c0), 0u) << "a completed request still pins its cluster";
  EXPECT_EQ(*q2.refcount(c1), 0u) << "a reset queue's request still pins its cluster";
  // And a device reset drops the pins of whatever was in flight.
  ASSERT_TRUE(q2.write(0, cluster));
  uint64_t c2 = q2.block_status(0, kCluster)->host_offset;
  (void)read_req(0, 0, 4096);
  blk->process_queue(0);
  blk->set_status(0);
  ASSERT_TRUE(q2.discard(0, kCluster));
  EXPECT_EQ(*q2.refcount(c2), 0u) << "a device reset left a cluster pinned";
}

// Through skiff's own transport (what `skiff --disk` does; the KVM-only
// virtio_pci.ring_reset.skiff test drives the same from a guest): the common
// config's queue_reset on a VirtioPciDevice around virtio-blk.
struct NoMsi : pci::MsiSender {
  void send_msi(uint64_t, uint32_t) override {}
};
struct NoIoEvents : pci::IoEventRegistrar {
  Result<> bind_ioevent(uint64_t, uint32_t, int) override { return {}; }
  void unbind_ioevent(uint64_t, uint32_t, int) override {}
};

TEST_F(AsyncBlk, QueueResetThroughVirtioPciCommonConfig) {
  BlkOptions opts;
  opts.queue_size = kQueueSize;
  opts.num_queues = 2;
  auto made = VirtioBlock::create(pipe_disk(), opts);
  ASSERT_TRUE(made);
  NoMsi msi;
  NoIoEvents events;
  auto d = VirtioPciDevice::create(std::move(*made), guest.mem, msi, events, nullptr, 0);
  ASSERT_TRUE(d) << d.error().what();
  VirtioPciDevice& pci = **d;
  auto rd = [&](uint64_t off, size_t n) {
    uint64_t v = 0;
    pci.bar_read(0, off, std::span(reinterpret_cast<uint8_t*>(&v), n));
    return v;
  };
  auto wr = [&](uint64_t off, uint64_t v, size_t n) {
    pci.bar_write(0, off, std::span(reinterpret_cast<const uint8_t*>(&v), n));
  };
  wr(kCfgDeviceFeatureSelect, 1, 4);
  ASSERT_TRUE(rd(kCfgDeviceFeature, 4) & (1u << (kFeatureRingReset - 32)))
      << "virtio-blk behind virtio-pci does not offer VIRTIO_F_RING_RESET";
  wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver, 1);
  wr(kCfgDriverFeatureSelect, 1, 4);
  wr(kCfgDriverFeature, (1u << (kFeatureVersion1 - 32)) | (1u << (kFeatureRingReset - 32)), 4);
  wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk, 1);
  ASSERT_TRUE(rd(kCfgDeviceStatus, 1) & kStatusFeaturesOk);
  auto setup = [&](uint16_t q, FakeDriver& drv) {
    wr(kCfgQueueSelect, q, 2);
    wr(kCfgQueueSize, drv.size(), 2);
    wr(kCfgQueueDesc, drv.desc_gpa(), 8);
    wr(kCfgQueueDriver, drv.avail_gpa(), 8);
    wr(kCfgQueueDevice, drv.used_gpa(), 8);
    wr(kCfgQueueEnable, 1, 2);
  };
  for (uint16_t q = 0; q < 2; ++q) {
    drivers.push_back(
        std::make_unique<FakeDriver>(guest, kQueueSize, FakeGuest::kRamBase + q * kDriverSpan));
    setup(q, drv(q));
  }
  constexpr uint8_t kRunning =
      kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;
  wr(kCfgDeviceStatus, kRunning, 1);
  ASSERT_EQ(rd(kCfgDeviceStatus, 1), kRunning);
  auto& dev = static_cast<VirtioBlock&>(pci.device());
  auto process = [&](uint16_t q) {
    for (int i = 0; i < 100 && (i == 0 || dev.in_flight(q) > 0); ++i) {
      pci.process_queue(q);
      if (dev.in_flight(q) > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };

  Req stuck = read_req(0, 0, 512);  // pipe a: never answered before the reset
  Req other = read_req(1, 16, 512);
  pci.process_queue(0);
  pci.process_queue(1);
  ASSERT_EQ(dev.in_flight(0), 1u);
  wr(kCfgQueueSelect, 0, 2);
  wr(kCfgQueueReset, 1, 2);
  EXPECT_EQ(rd(kCfgQueueReset, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), 0u);
  EXPECT_EQ(dev.in_flight(0), 0u);
  EXPECT_EQ(rd(kCfgDeviceStatus, 1), kRunning);
  auto late = pattern(512, 41);
  ASSERT_EQ(::write(a.wr.get(), late.data(), 512), 512);
  auto data_b = pattern(512, 42);
  ASSERT_EQ(::write(b.wr.get(), data_b.data(), 512), 512);
  process(1);
  EXPECT_EQ(status(other), VIRTIO_BLK_S_OK);
  pci.process_queue(0);  // a stale notification: the reset queue is idle
  EXPECT_EQ(status(stuck), 0xff);
  EXPECT_EQ(drv(0).used_idx(), 0);

  auto old_driver = std::move(drivers[0]);
  drivers[0] =
      std::make_unique<FakeDriver>(guest, kQueueSize / 4, FakeGuest::kRamBase + 2 * kDriverSpan);
  setup(0, drv(0));
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 1u);
  Req again = read_req(0, 0, 512);
  process(0);
  EXPECT_EQ(status(again), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(late.begin(), late.end(), guest.host(again.data, 512).begin()));
  EXPECT_EQ(drv(0).used_idx(), 1);
  EXPECT_EQ(old_driver->used_idx(), 0);
  EXPECT_EQ(rd(kCfgDeviceStatus, 1), kRunning);
}

}  // namespace
}  // namespace skiff::virtio
