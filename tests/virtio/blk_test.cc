#include "virtio/devices/blk.h"

#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "block/raw_image.h"
#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::Buf;
using testing::FakeDriver;
using testing::FakeGuest;

// An in-memory disk that records what the device asked of it.
class FakeDisk final : public DiskImage {
 public:
  FakeDisk(uint64_t size, bool ro) : bytes(size, 0), ro_(ro) {}
  uint64_t size() const override { return bytes.size(); }
  bool read_only() const override { return ro_; }
  std::string format() const override { return "fake"; }
  Result<> read(uint64_t off, std::span<uint8_t> out) override {
    if (off > bytes.size() || out.size() > bytes.size() - off)
      return skiff::fail("read out of range");
    std::memcpy(out.data(), bytes.data() + off, out.size());
    return {};
  }
  Result<> write(uint64_t off, std::span<const uint8_t> in) override {
    if (ro_) return skiff::fail("read-only");
    if (fail_writes) return skiff::fail("injected write failure");
    if (off > bytes.size() || in.size() > bytes.size() - off)
      return skiff::fail("write out of range");
    std::memcpy(bytes.data() + off, in.data(), in.size());
    ++writes;
    return {};
  }
  Result<> flush() override {
    ++flushes;
    return {};
  }
  Result<> discard(uint64_t off, uint64_t len) override {
    discards.push_back({off, len});
    return {};
  }
  Result<> write_zeroes(uint64_t off, uint64_t len, bool may_unmap) override {
    zeroes.push_back({off, len});
    last_unmap = may_unmap;
    std::memset(bytes.data() + off, 0, len);
    return {};
  }
  Result<ExtentStatus> block_status(uint64_t, uint64_t len) override {
    return ExtentStatus{.length = len, .allocated = true, .data = true};
  }

  std::vector<uint8_t> bytes;
  int flushes = 0;
  int writes = 0;
  bool fail_writes = false;
  bool last_unmap = false;
  std::vector<std::pair<uint64_t, uint64_t>> discards, zeroes;

 private:
  bool ro_;
};

constexpr uint64_t kDiskSize = 64 * 512;

struct BlkFixture : ::testing::Test {
  void start(bool read_only = false, std::string serial = "skiff-disk-0",
             std::unique_ptr<DiskImage> image = nullptr) {
    if (!image) {
      auto d = std::make_unique<FakeDisk>(kDiskSize, read_only);
      disk = d.get();
      image = std::move(d);
    }
    BlkOptions opts;
    opts.serial = std::move(serial);
    opts.queue_size = 16;
    opts.max_discard_sectors = 32;
    opts.max_write_zeroes_sectors = 32;
    auto b = VirtioBlock::create(std::move(image), opts);
    ASSERT_TRUE(b) << b.error().message;
    blk = std::move(*b);
    blk->set_memory(&guest.mem);
    blk->set_interrupt([this](InterruptKind k, uint16_t) {
      if (k == InterruptKind::kConfigChange) ++config_irqs;
    });
    blk->set_status(kStatusAcknowledge | kStatusDriver);
    blk->set_driver_features(blk->device_features());
    blk->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    driver.configure(*blk->queue(0));
    blk->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(blk->activated());
  }

  uint64_t header(uint32_t type, uint64_t sector) {
    uint64_t h = driver.alloc(16);
    guest.put(h, virtio_blk_outhdr{type, 0, sector});
    return h;
  }
  uint64_t status_byte() {
    uint64_t s = driver.alloc(1);
    guest.host(s, 1)[0] = 0xff;
    return s;
  }
  // Submits a chain and runs the device until nothing is in flight (raw
  // images go through io_uring: completions arrive on the backend eventfd);
  // returns the status byte.
  uint8_t submit(const std::vector<Buf>& bufs, uint64_t status_gpa) {
    driver.add_chain(bufs);
    blk->process_queue(0);
    for (int i = 0; i < 500 && blk->in_flight(0) > 0; ++i) {
      for (const BackendEvent& e : blk->backend_events()) {
        pollfd p{e.fd, POLLIN, 0};
        (void)::poll(&p, 1, 10);
      }
      blk->process_queue(0);
    }
    return guest.host(status_gpa, 1)[0];
  }
  uint8_t write_sectors(uint64_t sector, std::span<const uint8_t> data) {
    uint64_t d = driver.alloc(static_cast<uint32_t>(data.size()));
    std::memcpy(guest.host(d, data.size()).data(), data.data(), data.size());
    uint64_t s = status_byte();
    return submit({{header(VIRTIO_BLK_T_OUT, sector), 16, false},
                   {d, static_cast<uint32_t>(data.size()), false},
                   {s, 1, true}},
                  s);
  }
  uint8_t read_sectors(uint64_t sector, std::span<uint8_t> out) {
    uint64_t d = driver.alloc(static_cast<uint32_t>(out.size()));
    uint64_t s = status_byte();
    uint8_t st = submit({{header(VIRTIO_BLK_T_IN, sector), 16, false},
                         {d, static_cast<uint32_t>(out.size()), true},
                         {s, 1, true}},
                        s);
    std::memcpy(out.data(), guest.host(d, out.size()).data(), out.size());
    return st;
  }
  uint8_t segments_request(uint32_t type,
                           const std::vector<virtio_blk_discard_write_zeroes>& segs) {
    uint32_t len = static_cast<uint32_t>(16 * segs.size());
    uint64_t d = driver.alloc(len);
    for (size_t i = 0; i < segs.size(); ++i) guest.put(d + 16 * i, segs[i]);
    uint64_t s = status_byte();
    return submit({{header(type, 0), 16, false}, {d, len, false}, {s, 1, true}}, s);
  }
  uint32_t last_used_len() {
    return driver.used_elem(static_cast<uint16_t>(driver.used_idx() - 1)).len;
  }

  FakeGuest guest;
  FakeDriver driver{guest, 16};
  FakeDisk* disk = nullptr;
  std::unique_ptr<VirtioBlock> blk;
  int config_irqs = 0;
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST_F(BlkFixture, ConfigSpaceReportsCapacityAndLimits) {
  start();
  virtio_blk_config c{};
  ASSERT_TRUE(blk->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c)));
  EXPECT_EQ(c.capacity, kDiskSize / 512);
  EXPECT_EQ(c.blk_size, 512u);
  EXPECT_EQ(c.seg_max, 14u);
  EXPECT_EQ(c.num_queues, 1);
  EXPECT_EQ(c.max_discard_sectors, 32u);
  EXPECT_EQ(c.max_discard_seg, kBlkMaxSegments);
  EXPECT_EQ(c.max_write_zeroes_sectors, 32u);
  EXPECT_EQ(c.write_zeroes_may_unmap, 1);
  EXPECT_TRUE(blk->device_features() & feature_bit(VIRTIO_BLK_F_FLUSH));
  EXPECT_TRUE(blk->device_features() & feature_bit(VIRTIO_BLK_F_DISCARD));
  EXPECT_FALSE(blk->device_features() & feature_bit(VIRTIO_BLK_F_RO));
  EXPECT_FALSE(blk->device_features() & feature_bit(VIRTIO_BLK_F_MQ));
}

TEST_F(BlkFixture, WriteThenReadRoundTrips) {
  start();
  auto data = pattern(1024, 3);
  EXPECT_EQ(write_sectors(5, data), VIRTIO_BLK_S_OK);
  EXPECT_EQ(last_used_len(), 1u);  // only the status was written
  EXPECT_TRUE(std::equal(data.begin(), data.end(), disk->bytes.begin() + 5 * 512));
  std::vector<uint8_t> back(1024);
  EXPECT_EQ(read_sectors(5, back), VIRTIO_BLK_S_OK);
  EXPECT_EQ(back, data);
  EXPECT_EQ(last_used_len(), 1025u);
  EXPECT_EQ(blk->stats(0).read_ops.load(), 1u);
  EXPECT_EQ(blk->stats(0).read_bytes.load(), 1024u);
  EXPECT_EQ(blk->stats(0).write_ops.load(), 1u);
  EXPECT_EQ(blk->stats(0).write_bytes.load(), 1024u);
}

TEST_F(BlkFixture, HeaderSplitAcrossDescriptorsAndStatusSharingDataBufferWork) {
  // §2.7.4: the device must not assume a descriptor layout.
  start();
  disk->bytes[512] = 0x5a;
  uint64_t h = header(VIRTIO_BLK_T_IN, 1);
  uint64_t d = driver.alloc(513);  // 512 data bytes + status in one buffer
  driver.add_chain({{h, 5, false}, {h + 5, 11, false}, {d, 300, true}, {d + 300, 213, true}});
  blk->process_queue(0);
  EXPECT_FALSE(blk->needs_reset());
  EXPECT_EQ(guest.host(d, 1)[0], 0x5a);
  EXPECT_EQ(guest.host(d + 512, 1)[0], VIRTIO_BLK_S_OK);
}

TEST_F(BlkFixture, ReadsAndWritesThroughIndirectTable) {
  start();
  auto data = pattern(512, 9);
  uint64_t d = driver.alloc(512);
  std::memcpy(guest.host(d, 512).data(), data.data(), 512);
  uint64_t s = status_byte();
  driver.add_indirect({{header(VIRTIO_BLK_T_OUT, 2), 16, false}, {d, 512, false}, {s, 1, true}});
  blk->process_queue(0);
  EXPECT_EQ(guest.host(s, 1)[0], VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), disk->bytes.begin() + 1024));
}

TEST_F(BlkFixture, RoundTripsAgainstRawImageFile) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("skiff-virtio-blk-" + std::to_string(::getpid()) + ".raw"))
                         .string();
  ASSERT_TRUE(RawImage::create(path, kDiskSize));
  auto raw = RawImage::open(path, false);
  ASSERT_TRUE(raw) << raw.error().message;
  start(false, "raw", std::move(*raw));
  auto data = pattern(2048, 77);
  EXPECT_EQ(write_sectors(60, data), VIRTIO_BLK_S_OK);
  uint64_t s = status_byte();
  EXPECT_EQ(submit({{header(VIRTIO_BLK_T_FLUSH, 0), 16, false}, {s, 1, true}}, s), VIRTIO_BLK_S_OK);
  std::vector<uint8_t> back(2048);
  EXPECT_EQ(read_sectors(60, back), VIRTIO_BLK_S_OK);
  EXPECT_EQ(back, data);
  // And the bytes are in the file itself.
  auto again = RawImage::open(path, true);
  ASSERT_TRUE(again);
  std::vector<uint8_t> file(2048);
  ASSERT_TRUE((*again)->read(60 * 512, file));
  EXPECT_EQ(file, data);
  std::filesystem::remove(path);
}

TEST_F(BlkFixture, GetIdReturnsSerialPaddedWithNul) {
  start(false, "abc");
  uint64_t d = driver.alloc(20);
  std::memset(guest.host(d, 20).data(), 0xee, 20);
  uint64_t s = status_byte();
  EXPECT_EQ(submit({{header(VIRTIO_BLK_T_GET_ID, 0), 16, false}, {d, 20, true}, {s, 1, true}}, s),
            VIRTIO_BLK_S_OK);
  auto id = guest.host(d, 20);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(id.data()), 3), "abc");
  for (size_t i = 3; i < 20; ++i) EXPECT_EQ(id[i], 0) << i;
  EXPECT_EQ(last_used_len(), 21u);
}

TEST_F(BlkFixture, GetIdWithTwentyCharacterSerialHasNoTerminator) {
  start(false, "0123456789abcdefghijKLMN");  // truncated to 20
  uint64_t d = driver.alloc(21);
  std::memset(guest.host(d, 21).data(), 0xee, 21);
  uint64_t s = status_byte();
  EXPECT_EQ(submit({{header(VIRTIO_BLK_T_GET_ID, 0), 16, false}, {d, 21, true}, {s, 1, true}}, s),
            VIRTIO_BLK_S_OK);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(guest.host(d, 20).data()), 20),
            "0123456789abcdefghij");
  EXPECT_EQ(guest.host(d + 20, 1)[0], 0xee);  // nothing past 20 bytes
}

TEST_F(BlkFixture, GetIdWithShortBufferIsIoErr) {
  start();
  uint64_t d = driver.alloc(8);
  uint64_t s = status_byte();
  EXPECT_EQ(submit({{header(VIRTIO_BLK_T_GET_ID, 0), 16, false}, {d, 8, true}, {s, 1, true}}, s),
            VIRTIO_BLK_S_IOERR);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, FlushCallsBackendFlush) {
  start();
  uint64_t s = status_byte();
  EXPECT_EQ(submit({{header(VIRTIO_BLK_T_FLUSH, 0), 16, false}, {s, 1, true}}, s), VIRTIO_BLK_S_OK);
  EXPECT_EQ(disk->flushes, 1);
  EXPECT_EQ(blk->stats(0).flush_ops.load(), 1u);
}

TEST_F(BlkFixture, DiscardAndWriteZeroesReachBackendWithByteRanges) {
  start();
  std::fill(disk->bytes.begin(), disk->bytes.end(), 0x11);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{2, 3, 0}, {10, 1, 0}}), VIRTIO_BLK_S_OK);
  ASSERT_EQ(disk->discards.size(), 2u);
  EXPECT_EQ(disk->discards[0], (std::pair<uint64_t, uint64_t>{1024, 1536}));
  EXPECT_EQ(disk->discards[1], (std::pair<uint64_t, uint64_t>{5120, 512}));
  EXPECT_EQ(
      segments_request(VIRTIO_BLK_T_WRITE_ZEROES, {{20, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}}),
      VIRTIO_BLK_S_OK);
  ASSERT_EQ(disk->zeroes.size(), 1u);
  EXPECT_EQ(disk->zeroes[0], (std::pair<uint64_t, uint64_t>{20 * 512, 1024}));
  EXPECT_TRUE(disk->last_unmap);
  std::vector<uint8_t> back(1024, 0xff);
  EXPECT_EQ(read_sectors(20, back), VIRTIO_BLK_S_OK);
  EXPECT_EQ(back, std::vector<uint8_t>(1024, 0));
  EXPECT_EQ(blk->stats(0).discard_ops.load(), 1u);
  EXPECT_EQ(blk->stats(0).write_zeroes_ops.load(), 1u);
}

TEST_F(BlkFixture, DiscardSegmentsAreValidated) {
  start();
  // Past capacity, ending exactly at capacity (fine), overflowing sector.
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{63, 2, 0}}), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{62, 2, 0}}), VIRTIO_BLK_S_OK);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{UINT64_MAX, 2, 0}}), VIRTIO_BLK_S_IOERR);
  // More sectors than max_discard_sectors.
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{0, 33, 0}}), VIRTIO_BLK_S_IOERR);
  // unmap on a discard and reserved flag bits are UNSUPP (§5.2.6.2).
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}}),
            VIRTIO_BLK_S_UNSUPP);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_WRITE_ZEROES, {{0, 1, 2}}), VIRTIO_BLK_S_UNSUPP);
  // More segments than max_discard_seg.
  std::vector<virtio_blk_discard_write_zeroes> many(kBlkMaxSegments + 1, {0, 1, 0});
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, many), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(disk->discards.size(), 1u);  // only the valid request reached the disk
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, OutOfRangeSectorIsIoErr) {
  start();
  std::vector<uint8_t> buf(1024);
  EXPECT_EQ(read_sectors(63, buf), VIRTIO_BLK_S_IOERR);  // second sector past the end
  EXPECT_EQ(read_sectors(64, std::span(buf).first(512)), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(write_sectors(UINT64_MAX, std::span(buf).first(512)), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(read_sectors(63, std::span(buf).first(512)), VIRTIO_BLK_S_OK);
  EXPECT_EQ(disk->writes, 0);
  EXPECT_EQ(blk->stats(0).errors.load(), 3u);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, ReadOnlyDiskRejectsWritesDiscardAndWriteZeroesWithIoErr) {
  start(/*read_only=*/true);
  EXPECT_TRUE(blk->device_features() & feature_bit(VIRTIO_BLK_F_RO));
  auto data = pattern(512, 1);
  EXPECT_EQ(write_sectors(0, data), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_DISCARD, {{0, 1, 0}}), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(segments_request(VIRTIO_BLK_T_WRITE_ZEROES, {{0, 1, 0}}), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(disk->writes, 0);
  EXPECT_TRUE(disk->discards.empty());
  EXPECT_TRUE(disk->zeroes.empty());
  std::vector<uint8_t> back(512);
  EXPECT_EQ(read_sectors(0, back), VIRTIO_BLK_S_OK);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, BackendFailureIsIoErr) {
  start();
  disk->fail_writes = true;
  auto data = pattern(512, 1);
  EXPECT_EQ(write_sectors(0, data), VIRTIO_BLK_S_IOERR);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, UnknownTypeIsUnsupp) {
  start();
  for (uint32_t type : {2u, 10u, 14u, 16u, 0x80000001u}) {
    uint64_t s = status_byte();
    EXPECT_EQ(submit({{header(type, 0), 16, false}, {s, 1, true}}, s), VIRTIO_BLK_S_UNSUPP) << type;
  }
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(BlkFixture, MissingStatusBufferNeedsReset) {
  start();
  driver.add_chain({{header(VIRTIO_BLK_T_FLUSH, 0), 16, false}});
  blk->process_queue(0);
  EXPECT_TRUE(blk->needs_reset());
  EXPECT_EQ(config_irqs, 1);
  EXPECT_EQ(disk->flushes, 0);
}

TEST_F(BlkFixture, ShortHeaderNeedsReset) {
  start();
  uint64_t s = status_byte();
  driver.add_chain({{header(VIRTIO_BLK_T_FLUSH, 0), 12, false}, {s, 1, true}});
  blk->process_queue(0);
  EXPECT_TRUE(blk->needs_reset());
}

TEST_F(BlkFixture, DataNotMultipleOf512NeedsReset) {
  start();
  uint64_t d = driver.alloc(100);
  uint64_t s = status_byte();
  driver.add_chain({{header(VIRTIO_BLK_T_IN, 0), 16, false}, {d, 100, true}, {s, 1, true}});
  blk->process_queue(0);
  EXPECT_TRUE(blk->needs_reset());
}

TEST_F(BlkFixture, WriteWithWritableDataNeedsReset) {
  start();
  uint64_t d = driver.alloc(512);
  uint64_t s = status_byte();
  driver.add_chain({{header(VIRTIO_BLK_T_OUT, 0), 16, false}, {d, 512, true}, {s, 1, true}});
  blk->process_queue(0);
  EXPECT_TRUE(blk->needs_reset());
  EXPECT_EQ(disk->writes, 0);
}

TEST_F(BlkFixture, MultiQueueDeviceOffersMqAndKeepsStatsPerQueue) {
  auto d = std::make_unique<FakeDisk>(kDiskSize, false);
  BlkOptions opts;
  opts.num_queues = 4;
  auto b = VirtioBlock::create(std::move(d), opts);
  ASSERT_TRUE(b);
  EXPECT_TRUE((*b)->device_features() & feature_bit(VIRTIO_BLK_F_MQ));
  EXPECT_EQ((*b)->num_queues(), 4);
  virtio_blk_config c{};
  ASSERT_TRUE((*b)->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c)));
  EXPECT_EQ(c.num_queues, 4);
}

TEST(BlkCreate, RejectsBadOptions) {
  BlkOptions opts;
  opts.queue_size = 100;
  EXPECT_FALSE(VirtioBlock::create(std::make_unique<FakeDisk>(kDiskSize, false), opts));
  opts.queue_size = 16;
  opts.num_queues = 0;
  EXPECT_FALSE(VirtioBlock::create(std::make_unique<FakeDisk>(kDiskSize, false), opts));
  EXPECT_FALSE(VirtioBlock::create(nullptr, BlkOptions{}));
  EXPECT_FALSE(VirtioBlock::create(std::make_unique<FakeDisk>(100, false), BlkOptions{}));
}

}  // namespace
}  // namespace skiff::virtio
