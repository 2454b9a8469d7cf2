#include "virtio/devices/blk_request.h"

#include <gtest/gtest.h>
#include <linux/virtio_blk.h>

#include <cstring>
#include <vector>

namespace skiff::virtio {
namespace {

// Builds buffer lists over owned byte vectors.
struct Request {
  std::vector<std::vector<uint8_t>> read_bytes, write_bytes;
  std::vector<std::span<uint8_t>> readable, writable;

  Request& header(uint32_t type, uint64_t sector, size_t split = 16) {
    virtio_blk_outhdr h{type, 0, sector};
    std::vector<uint8_t> b(16);
    std::memcpy(b.data(), &h, 16);
    read_bytes.emplace_back(b.begin(), b.begin() + static_cast<long>(split));
    if (split < 16) read_bytes.emplace_back(b.begin() + static_cast<long>(split), b.end());
    return *this;
  }
  Request& readable_data(size_t n) {
    read_bytes.emplace_back(n, 0);
    return *this;
  }
  Request& writable_data(size_t n) {
    write_bytes.emplace_back(n, 0);
    return *this;
  }
  Result<BlkRequest> parse(const BlkLimits& limits) {
    readable.clear();
    writable.clear();
    for (auto& b : read_bytes) readable.emplace_back(b);
    for (auto& b : write_bytes) writable.emplace_back(b);
    return parse_blk_request(readable, writable, limits);
  }
};

BlkLimits limits() {
  BlkLimits l;
  l.capacity_sectors = 100;
  l.max_discard_sectors = 10;
  l.max_write_zeroes_sectors = 10;
  return l;
}

TEST(BlkRequest, ParsesReadWithHeaderSplitAcrossBuffers) {
  Request r;
  r.header(VIRTIO_BLK_T_IN, 7, 3).writable_data(1024).writable_data(1);
  auto req = r.parse(limits());
  ASSERT_TRUE(req) << req.error().message;
  EXPECT_EQ(req->type, VIRTIO_BLK_T_IN);
  EXPECT_EQ(req->sector, 7u);
  EXPECT_EQ(req->data_len, 1024u);
  EXPECT_FALSE(req->early_status);
  EXPECT_EQ(req->status, r.write_bytes[1].data());
}

TEST(BlkRequest, StatusIsTheLastWritableByteEvenInsideData) {
  Request r;
  r.header(VIRTIO_BLK_T_IN, 0).writable_data(513);
  auto req = r.parse(limits());
  ASSERT_TRUE(req);
  EXPECT_EQ(req->data_len, 512u);
  EXPECT_EQ(req->status, r.write_bytes[0].data() + 512);
}

TEST(BlkRequest, ReadEndingExactlyAtCapacityIsFineOnePastIsIoErr) {
  Request ok;
  ok.header(VIRTIO_BLK_T_IN, 98).writable_data(1024 + 1);
  EXPECT_FALSE(ok.parse(limits())->early_status);
  Request past;
  past.header(VIRTIO_BLK_T_IN, 99).writable_data(1024 + 1);
  EXPECT_EQ(past.parse(limits())->early_status, VIRTIO_BLK_S_IOERR);
  Request wrap;
  wrap.header(VIRTIO_BLK_T_OUT, UINT64_MAX - 1).readable_data(1024).writable_data(1);
  EXPECT_EQ(wrap.parse(limits())->early_status, VIRTIO_BLK_S_IOERR);
}

TEST(BlkRequest, DataOnTheWrongSideIsADriverError) {
  Request in_with_readable;
  in_with_readable.header(VIRTIO_BLK_T_IN, 0).readable_data(512).writable_data(1);
  EXPECT_FALSE(in_with_readable.parse(limits()));
  Request flush_with_writable;
  flush_with_writable.header(VIRTIO_BLK_T_FLUSH, 0).writable_data(8);
  EXPECT_FALSE(flush_with_writable.parse(limits()));
  Request get_id_with_readable;
  get_id_with_readable.header(VIRTIO_BLK_T_GET_ID, 0).readable_data(20).writable_data(21);
  EXPECT_FALSE(get_id_with_readable.parse(limits()));
}

TEST(BlkRequest, SegmentDataNotMultipleOf16IsADriverError) {
  Request r;
  r.header(VIRTIO_BLK_T_DISCARD, 0).readable_data(24).writable_data(1);
  EXPECT_FALSE(r.parse(limits()));
}

TEST(BlkRequest, DiscardWithoutSegmentsIsIoErr) {
  Request r;
  r.header(VIRTIO_BLK_T_DISCARD, 0).writable_data(1);
  auto req = r.parse(limits());
  ASSERT_TRUE(req);
  EXPECT_EQ(req->early_status, VIRTIO_BLK_S_IOERR);
}

TEST(BlkRequest, ReadOnlyOutcomeWinsButFramingIsStillChecked) {
  BlkLimits ro = limits();
  ro.read_only = true;
  Request w;
  w.header(VIRTIO_BLK_T_OUT, 0).readable_data(512).writable_data(1);
  EXPECT_EQ(w.parse(ro)->early_status, VIRTIO_BLK_S_IOERR);
  Request bad;
  bad.header(VIRTIO_BLK_T_OUT, 0).readable_data(100).writable_data(1);
  EXPECT_FALSE(bad.parse(ro));
  Request read;
  read.header(VIRTIO_BLK_T_IN, 0).writable_data(513);
  EXPECT_FALSE(read.parse(ro)->early_status);
}

TEST(BlkRequest, UnknownTypeIsUnsuppWhateverItCarries) {
  Request r;
  r.header(0x1234, 99999).readable_data(3).writable_data(7);
  auto req = r.parse(limits());
  ASSERT_TRUE(req);
  EXPECT_EQ(req->early_status, VIRTIO_BLK_S_UNSUPP);
  EXPECT_EQ(req->status, r.write_bytes[0].data() + 6);
}

TEST(BlkRequest, SegmentsAreCopiedWithUnmapFlag) {
  Request r;
  r.header(VIRTIO_BLK_T_WRITE_ZEROES, 0);
  virtio_blk_discard_write_zeroes segs[2] = {{5, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP},
                                             {90, 10, 0}};
  r.read_bytes.emplace_back(reinterpret_cast<uint8_t*>(segs),
                            reinterpret_cast<uint8_t*>(segs) + 32);
  r.writable_data(1);
  auto req = r.parse(limits());
  ASSERT_TRUE(req);
  EXPECT_FALSE(req->early_status);
  ASSERT_EQ(req->num_segments, 2u);
  EXPECT_EQ(req->segments[0].sector, 5u);
  EXPECT_EQ(req->segments[0].num_sectors, 2u);
  EXPECT_TRUE(req->segments[0].unmap);
  EXPECT_EQ(req->segments[1].sector, 90u);
  EXPECT_FALSE(req->segments[1].unmap);
}

}  // namespace
}  // namespace skiff::virtio
