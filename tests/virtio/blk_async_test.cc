// virtio-blk over io_uring (blk.h "Execution"): the device against the fake
// guest memory and driver (blk_async_fixture.h), with real files, and with
// pipes standing in for the image where a test must decide when a transfer
// finishes (completion order, flush ordering, reset and ring stop with
// requests in flight).
#include <chrono>
#include <thread>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "virtio/blk_async_fixture.h"

namespace skiff::virtio {
namespace {

using namespace testing;  // NOLINT(google-build-using-namespace): the fixture's names

TEST_F(AsyncBlk, ManyRequestsInFlightOnSeveralQueuesEachOnItsOwnThread) {
  constexpr uint16_t kQueues = 4;
  constexpr uint32_t kDepth = kQueueSize;  // a full queue in flight
  auto img = raw_image();
  ASSERT_TRUE(img) << skip_reason;
  indirect = true;
  start(std::move(img), kQueues);
  // Each queue owns a quarter of the disk: kDepth writes of 4 KiB, then
  // kDepth reads of them, each queue driven from its own thread as the
  // transports do.
  std::vector<std::thread> threads;
  std::array<uint32_t, kQueues> peak{};
  std::array<bool, kQueues> ok{};
  for (uint16_t q = 0; q < kQueues; ++q) {
    threads.emplace_back([&, q] {
      std::vector<std::vector<uint8_t>> data;
      std::vector<Req> writes, reads;
      for (uint32_t i = 0; i < kDepth; ++i) {
        data.push_back(pattern(4096, q * 100 + i));
        writes.push_back(write_req(q, (q * kDepth + i) * 8ull, data.back()));
      }
      blk->process_queue(q);
      // One kick took every request: answered already (completed inside
      // the submission) or still the kernel's.
      peak[q] = drv(q).used_idx() + blk->in_flight(q);
      pump(q);
      for (uint32_t i = 0; i < kDepth; ++i)
        reads.push_back(read_req(q, (q * kDepth + i) * 8ull, 4096));
      blk->process_queue(q);
      pump(q);
      bool good = true;
      for (uint32_t i = 0; i < kDepth; ++i) {
        good &= status(writes[i]) == VIRTIO_BLK_S_OK && status(reads[i]) == VIRTIO_BLK_S_OK;
        good &= std::equal(data[i].begin(), data[i].end(), guest.host(reads[i].data, 4096).begin());
      }
      good &= drv(q).used_idx() == 2 * kDepth;
      ok[q] = good;
    });
  }
  for (auto& t : threads) t.join();
  for (uint16_t q = 0; q < kQueues; ++q) {
    EXPECT_TRUE(ok[q]) << "queue " << q;
    EXPECT_EQ(peak[q], kDepth) << "queue " << q;
    EXPECT_EQ(blk->stats(q).async_ops.load(), 2u * kDepth);
    EXPECT_EQ(blk->stats(q).read_bytes.load(), kDepth * 4096u);
    EXPECT_GE(irqs[q].load(), 1);
  }
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(AsyncBlk, CompletionsAreAnsweredInTheOrderTheyFinish) {
  start(pipe_disk());
  Req first = read_req(0, 0, 512);    // from pipe a
  Req second = read_req(0, 16, 512);  // from pipe b
  blk->process_queue(0);
  EXPECT_EQ(blk->in_flight(0), 2u);
  auto data_b = pattern(512, 2);
  ASSERT_EQ(::write(b.wr.get(), data_b.data(), 512), 512);
  for (int i = 0; i < 100 && drv().used_idx() < 1; ++i) pump(0, 1);
  ASSERT_EQ(drv().used_idx(), 1);
  EXPECT_EQ(drv().used_elem(0).id, second.head);
  EXPECT_EQ(drv().used_elem(0).len, 513u);
  EXPECT_EQ(status(second), VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(first), 0xff);  // still in flight
  auto data_a = pattern(512, 1);
  ASSERT_EQ(::write(a.wr.get(), data_a.data(), 512), 512);
  pump();
  ASSERT_EQ(drv().used_idx(), 2);
  EXPECT_EQ(drv().used_elem(1).id, first.head);
  EXPECT_EQ(status(first), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(data_a.begin(), data_a.end(), guest.host(first.data, 512).begin()));
  EXPECT_TRUE(std::equal(data_b.begin(), data_b.end(), guest.host(second.data, 512).begin()));
}

TEST_F(AsyncBlk, ShortPipeReadsAreContinuedUntilTheRequestIsComplete) {
  start(pipe_disk());
  Req r = read_req(0, 0, 4096);
  blk->process_queue(0);
  auto data = pattern(4096, 5);
  ASSERT_EQ(::write(a.wr.get(), data.data(), 1000), 1000);
  pump(0, 10);
  EXPECT_EQ(status(r), 0xff);
  EXPECT_EQ(blk->in_flight(0), 1u);
  ASSERT_EQ(::write(a.wr.get(), data.data() + 1000, 3096), 3096);
  pump();
  EXPECT_EQ(status(r), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), guest.host(r.data, 4096).begin()));
}

TEST_F(AsyncBlk, FlushIsAnsweredOnlyAfterTheWriteBeforeItCompleted) {
  // A full pipe: the device's write stalls until the test drains it.
  ASSERT_EQ(::fcntl(w.wr.get(), F_SETFL, O_NONBLOCK), 0);
  std::vector<uint8_t> junk(1 << 16);
  while (::write(w.wr.get(), junk.data(), junk.size()) > 0) {
  }
  ASSERT_EQ(::fcntl(w.wr.get(), F_SETFL, 0), 0);
  start(pipe_disk());
  Req wr = write_req(0, 0, pattern(4096, 9));
  Req fl = flush_req(0);
  blk->process_queue(0);
  pump(0, 10);
  EXPECT_EQ(status(wr), 0xff);
  EXPECT_EQ(status(fl), 0xff) << "flush acknowledged before the write it follows";
  std::thread drain([&] {
    while (::read(w.rd.get(), junk.data(), junk.size()) > 0) {
    }
  });
  pump();
  w.wr.reset();
  drain.join();
  EXPECT_EQ(status(wr), VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(fl), VIRTIO_BLK_S_OK);
  ASSERT_EQ(drv().used_idx(), 2);
  EXPECT_EQ(drv().used_elem(0).id, wr.head);
  EXPECT_EQ(drv().used_elem(1).id, fl.head);
  EXPECT_EQ(blk->stats(0).flush_ops.load(), 1u);
}

TEST_F(AsyncBlk, ResetWithRequestsInFlightLeavesGuestMemoryAlone) {
  start(pipe_disk());
  Req r = read_req(0, 0, 512);
  std::memset(guest.host(r.data, 512).data(), 0xee, 512);
  blk->process_queue(0);
  ASSERT_EQ(blk->in_flight(0), 1u);
  auto t0 = std::chrono::steady_clock::now();
  blk->set_status(0);  // driver reset
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(blk->in_flight(0), 0u);
  // Data arriving now must not reach the old buffers; no status, no used entry.
  ASSERT_EQ(::write(a.wr.get(), pattern(512, 3).data(), 512), 512);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  blk->process_queue(0);
  EXPECT_EQ(guest.host(r.data, 1)[0], 0xee);
  EXPECT_EQ(status(r), 0xff);
  EXPECT_EQ(drv().used_idx(), 0);
}

TEST_F(AsyncBlk, StoppingAQueueCompletesWhatIsInFlight) {
  // vhost-user GET_VRING_BASE: the ring position returned must cover every
  // request taken from it.
  start(pipe_disk());
  Req r = read_req(0, 0, 512);
  blk->process_queue(0);
  auto data = pattern(512, 4);
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    (void)!::write(a.wr.get(), data.data(), 512);
  });
  blk->stop_queue(0);
  late.join();
  EXPECT_EQ(blk->in_flight(0), 0u);
  EXPECT_EQ(status(r), VIRTIO_BLK_S_OK);
  EXPECT_EQ(drv().used_idx(), 1);
  EXPECT_EQ(blk->queue(0)->next_avail(), 1);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), guest.host(r.data, 512).begin()));
}

TEST_F(AsyncBlk, HeadMadeAvailableAgainWhileInFlightNeedsReset) {
  start(pipe_disk());
  Req r = read_req(0, 0, 512);
  blk->process_queue(0);
  drv().publish(r.head);  // the same chain again, still the kernel's
  blk->process_queue(0);
  EXPECT_TRUE(blk->needs_reset());
  blk->set_status(0);  // and the reset still returns (cancels the read)
  EXPECT_EQ(blk->in_flight(0), 0u);
}

TEST_F(AsyncBlk, ReadPastTheEndOfAShrunkFileIsIoErr) {
  auto img = raw_image();
  ASSERT_TRUE(img) << skip_reason;
  start(std::move(img));
  // Someone truncates the image behind the device's back.
  ASSERT_EQ(::truncate(scratch.file("disk.raw").c_str(), kDiskBytes / 2), 0);
  Req straddle = read_req(0, kDiskBytes / 512 / 2 - 4, 4096);  // half in, half out
  Req beyond = read_req(0, kDiskBytes / 512 - 8, 4096);
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(straddle), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(status(beyond), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(blk->stats(0).errors.load(), 2u);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(AsyncBlk, KernelErrorFromTheBackendIsIoErr) {
  // Writes go to the read end of a pipe: the kernel answers EBADF.
  start(pipe_disk(w.rd.get()));
  Req r = write_req(0, 0, pattern(512, 1));
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(r), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(drv().used_elem(0).len, 1u);
  EXPECT_EQ(blk->stats(0).errors.load(), 1u);
  EXPECT_FALSE(blk->needs_reset());
}

TEST_F(AsyncBlk, DiscardWriteZeroesAndFlushGoThroughTheRingOnRawImages) {
  auto img = raw_image();
  ASSERT_TRUE(img) << skip_reason;
  start(std::move(img));
  Req w1 = write_req(0, 0, std::vector<uint8_t>(8192, 0x5a));
  blk->process_queue(0);
  pump();
  ASSERT_EQ(status(w1), VIRTIO_BLK_S_OK);
  uint64_t segs = drv().alloc(16);
  guest.put(segs, virtio_blk_discard_write_zeroes{2, 4, 0});
  uint64_t st = status_byte(0);
  drv().add_chain(
      {{header(0, VIRTIO_BLK_T_WRITE_ZEROES, 0), 16, false}, {segs, 16, false}, {st, 1, true}});
  Req fl = flush_req(0);
  blk->process_queue(0);
  pump();
  EXPECT_EQ(guest.host(st, 1)[0], VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(fl), VIRTIO_BLK_S_OK);
  EXPECT_EQ(blk->stats(0).async_ops.load(), 3u);
  Req r = read_req(0, 0, 8192);
  blk->process_queue(0);
  pump();
  auto back = guest.host(r.data, 8192);
  for (size_t i = 0; i < 8192; ++i) {
    bool zero = i >= 1024 && i < 3072;
    ASSERT_EQ(back[i], zero ? 0 : 0x5a) << i;
  }
}

TEST_F(AsyncBlk, DirectOnAlignedBuffersGoStraightUnalignedOnesBounce) {
  auto img = raw_image(/*direct=*/true);
  if (!img) GTEST_SKIP() << "skipped: no O_DIRECT on " << scratch.path() << ": " << skip_reason;
  uint32_t block = img->io_alignment().offset;
  // A buffer 8 bytes off a page needs the bounce only if the device's DMA
  // alignment (statx stx_dio_mem_align) is coarser than that.
  uint64_t expect_bounced = img->io_alignment().memory > 8 ? 1 : 0;
  start(std::move(img));
  // Guest buffers: one on a 4 KiB host boundary, one 8 bytes off it.
  auto host_aligned_gpa = [&](uint32_t len) {
    uint64_t gpa = drv().alloc(len + 8192);
    uint64_t host = reinterpret_cast<uint64_t>(guest.host(gpa, 1).data());
    return gpa + ((4096 - host % 4096) % 4096);
  };
  uint32_t len = 2 * block;
  auto data1 = pattern(len, 11), data2 = pattern(len, 12);
  uint64_t aligned = host_aligned_gpa(len);
  uint64_t unaligned = host_aligned_gpa(len) + 8;
  Req w1 = write_req(0, 0, data1, aligned);
  Req w2 = write_req(0, len / 512, data2, unaligned);
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(w1), VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(w2), VIRTIO_BLK_S_OK);
  EXPECT_EQ(blk->stats(0).bounced.load(), expect_bounced);  // never the aligned one
  EXPECT_EQ(blk->stats(0).async_ops.load(), 2u);
  // The bytes are in the file (read through the page cache).
  std::vector<uint8_t> file(2 * len);
  Fd fd(::open(scratch.file("disk.raw").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::pread(fd.get(), file.data(), file.size(), 0), static_cast<ssize_t>(file.size()));
  EXPECT_TRUE(std::equal(data1.begin(), data1.end(), file.begin()));
  EXPECT_TRUE(std::equal(data2.begin(), data2.end(), file.begin() + len));
  // Read both back into unaligned buffers.
  Req r = read_req(0, 0, 2 * len);  // alloc is 16-byte aligned: bounced
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(r), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(file.begin(), file.end(), guest.host(r.data, 2 * len).begin()));
  virtio_blk_config c{};
  ASSERT_TRUE(blk->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c)));
  EXPECT_EQ(c.blk_size, block);
}

TEST_F(AsyncBlk, Qcow2AllocatedClustersGoThroughTheRingTheRestSynchronously) {
  std::string path = scratch.file("disk.qcow2");
  ASSERT_TRUE(qcow2::create(path, qcow2::CreateOptions{.size = kDiskBytes}));
  auto img = open_image(path, OpenImageOptions{});
  ASSERT_TRUE(img) << img.error().what();
  start(std::move(*img));
  auto first = pattern(4096, 21), second = pattern(4096, 22);
  // Cluster 0 is unallocated: the write allocates it (synchronously).
  Req w1 = write_req(0, 0, first);
  blk->process_queue(0);
  pump();
  ASSERT_EQ(status(w1), VIRTIO_BLK_S_OK);
  EXPECT_EQ(blk->stats(0).async_ops.load(), 0u);
  // Now it is ours alone: overwritten in place and read back through the ring.
  Req w2 = write_req(0, 8, second);
  Req r = read_req(0, 0, 8192);
  Req hole = read_req(0, 1024, 4096);  // cluster 8: unallocated, synchronous
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(w2), VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(r), VIRTIO_BLK_S_OK);
  EXPECT_EQ(status(hole), VIRTIO_BLK_S_OK);
  EXPECT_EQ(blk->stats(0).async_ops.load(), 2u);
  // The read may have run before or after the in-place write (no ordering
  // between in-flight requests): check the write through a fresh read.
  Req r2 = read_req(0, 8, 4096);
  Req fl = flush_req(0);  // synchronous for qcow2: waits for the ring first
  blk->process_queue(0);
  pump();
  EXPECT_EQ(status(fl), VIRTIO_BLK_S_OK);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), guest.host(r.data, 4096).begin()));
  EXPECT_TRUE(std::equal(second.begin(), second.end(), guest.host(r2.data, 4096).begin()));
  EXPECT_EQ(guest.host(hole.data, 4096)[0], 0);
  EXPECT_EQ(blk->stats(0).async_ops.load(), 3u);
  EXPECT_FALSE(blk->needs_reset());
}

TEST(AsyncBlkCreate, ImagesWithoutAMappingAndUseIoUringOffHaveNoRing) {
  ScratchDir s;
  ASSERT_TRUE(RawImage::create(s.file("x.raw"), kDiskBytes));
  BlkOptions opts;
  opts.use_io_uring = false;
  auto b = VirtioBlock::create(*RawImage::open(s.file("x.raw"), false), opts);
  ASSERT_TRUE(b);
  EXPECT_TRUE((*b)->backend_events().empty());
}

}  // namespace
}  // namespace skiff::virtio
