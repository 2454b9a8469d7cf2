// UringQueue against real files and pipes: pipes let a test decide when a
// transfer makes progress (short reads, stalled writes, cancellation), so
// resubmission, flush ordering and reset are tested against the kernel, not
// a model of it.
#include "block/uring_queue.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "block/block_test_util.h"
#include "block/host_file.h"

namespace skiff {
namespace {

using testing::Pipe;
using testing::ScratchDir;
using Completion = UringQueue::Completion;

std::unique_ptr<UringQueue> make_ring(uint32_t slots) {
  auto r = UringQueue::create(slots, "test");
  EXPECT_TRUE(r) << r.error().what();
  return r ? std::move(*r) : nullptr;
}

// Reaps until `want` completions arrived (or `timeout` passed).
std::vector<Completion> collect(UringQueue& q, size_t want,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  std::vector<Completion> all, buf(q.slots());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (all.size() < want && std::chrono::steady_clock::now() < deadline) {
    pollfd p{q.event_fd(), POLLIN, 0};
    (void)::poll(&p, 1, 100);
    size_t n = q.reap(buf);
    all.insert(all.end(), buf.begin(), buf.begin() + static_cast<long>(n));
    EXPECT_TRUE(q.submit());
  }
  return all;
}

int open_scratch(const std::string& path, size_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  return fd;
}

TEST(UringQueue, ManyWritesAndScatteredReadsInFlightRoundTrip) {
  ScratchDir dir;
  Fd fd(open_scratch(dir.file("disk.raw"), 1 << 20));
  auto q = make_ring(64);
  ASSERT_TRUE(q);
  std::mt19937_64 rng(7);
  std::vector<std::vector<uint8_t>> data(64);
  for (uint32_t i = 0; i < 64; ++i) {
    data[i] = testing::random_bytes(rng, 4096);
    iovec v{data[i].data(), data[i].size()};
    ASSERT_TRUE(q->start_rw(i, true, {fd.get(), uint64_t{i} * 8192}, std::span(&v, 1), {}));
  }
  EXPECT_EQ(q->in_flight(), 64u);
  ASSERT_TRUE(q->submit());
  auto done = collect(*q, 64);
  ASSERT_EQ(done.size(), 64u);
  for (auto c : done) EXPECT_EQ(c.result, 0) << c.slot;
  // Read each block back into three pieces of unequal size.
  std::vector<std::vector<uint8_t>> back(64, std::vector<uint8_t>(4096));
  std::vector<std::array<iovec, 3>> iovs(64);
  for (uint32_t i = 0; i < 64; ++i) {
    uint8_t* b = back[i].data();
    iovs[i] = {iovec{b, 512}, iovec{b + 512, 1536}, iovec{b + 2048, 2048}};
    ASSERT_TRUE(q->start_rw(i, false, {fd.get(), uint64_t{i} * 8192}, iovs[i], {}));
  }
  ASSERT_TRUE(q->submit());
  done = collect(*q, 64);
  ASSERT_EQ(done.size(), 64u);
  for (auto c : done) EXPECT_EQ(c.result, 0);
  for (uint32_t i = 0; i < 64; ++i) EXPECT_EQ(back[i], data[i]) << i;
  EXPECT_EQ(q->in_flight(), 0u);
}

TEST(UringQueue, ShortReadIsContinuedWhereItStopped) {
  Pipe p;
  auto q = make_ring(4);
  ASSERT_TRUE(q);
  std::vector<uint8_t> out(8192, 0);
  iovec v[2] = {{out.data(), 1000}, {out.data() + 1000, 7192}};
  // Pipes ignore the offset; io_uring reads what is there, possibly short.
  ASSERT_TRUE(q->start_rw(0, false, {p.rd.get(), 0}, v, {}));
  ASSERT_TRUE(q->submit());
  std::vector<uint8_t> src(8192);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13);
  ASSERT_EQ(::write(p.wr.get(), src.data(), 3000), 3000);
  EXPECT_TRUE(collect(*q, 1, std::chrono::milliseconds(100)).empty())
      << "completed after a short read";
  EXPECT_EQ(q->in_flight(), 1u);
  ASSERT_EQ(::write(p.wr.get(), src.data() + 3000, 5192), 5192);
  auto done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 0);
  EXPECT_EQ(out, src);
}

TEST(UringQueue, ReadPastEndOfFileFailsWithEio) {
  ScratchDir dir;
  Fd fd(open_scratch(dir.file("short.raw"), 4096));
  auto q = make_ring(2);
  ASSERT_TRUE(q);
  std::vector<uint8_t> out(8192);
  iovec v{out.data(), out.size()};
  ASSERT_TRUE(q->start_rw(1, false, {fd.get(), 0}, std::span(&v, 1), {}));
  ASSERT_TRUE(q->submit());
  auto done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].slot, 1u);
  EXPECT_EQ(done[0].result, -EIO);
}

TEST(UringQueue, KernelErrorIsReturned) {
  ScratchDir dir;
  std::string path = dir.file("ro.raw");
  Fd created(open_scratch(path, 4096));
  Fd ro(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  auto q = make_ring(2);
  ASSERT_TRUE(q);
  std::vector<uint8_t> in(512, 1);
  iovec v{in.data(), in.size()};
  ASSERT_TRUE(q->start_rw(0, true, {ro.get(), 0}, std::span(&v, 1), {}));
  ASSERT_TRUE(q->submit());
  auto done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, -EBADF);
}

TEST(UringQueue, FlushStartsOnlyAfterEarlierWritesCompleted) {
  ScratchDir dir;
  Fd file(open_scratch(dir.file("f.raw"), 4096));
  Pipe p;
  // Fill the pipe so the next write blocks until the test drains it.
  ASSERT_EQ(::fcntl(p.wr.get(), F_SETFL, O_NONBLOCK), 0);
  std::vector<uint8_t> junk(1 << 16, 0);
  while (::write(p.wr.get(), junk.data(), junk.size()) > 0) {
  }
  ASSERT_EQ(::fcntl(p.wr.get(), F_SETFL, 0), 0);

  auto q = make_ring(4);
  ASSERT_TRUE(q);
  std::vector<uint8_t> in(4096, 7);
  iovec v{in.data(), in.size()};
  ASSERT_TRUE(q->start_rw(0, true, {p.wr.get(), 0}, std::span(&v, 1), {}));
  ASSERT_TRUE(q->start_flush(1, file.get()));
  ASSERT_TRUE(q->submit());
  EXPECT_TRUE(collect(*q, 1, std::chrono::milliseconds(100)).empty())
      << "flush overtook a blocked write";
  EXPECT_EQ(q->in_flight(), 2u);
  // Drain the pipe: the write completes, then the flush.
  std::thread drain([&] {
    std::vector<uint8_t> sink(1 << 16);
    while (::read(p.rd.get(), sink.data(), sink.size()) > 0) {
    }
  });
  auto done = collect(*q, 2);
  p.wr.reset();  // EOF for the drain thread
  drain.join();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].slot, 0u);
  EXPECT_EQ(done[1].slot, 1u);
  EXPECT_EQ(done[0].result, 0);
  EXPECT_EQ(done[1].result, 0);
}

TEST(UringQueue, CancelAndWaitEndsABlockedReadAndFreesTheSlot) {
  Pipe p;
  auto q = make_ring(2);
  ASSERT_TRUE(q);
  std::vector<uint8_t> out(512, 0xee);
  iovec v{out.data(), out.size()};
  ASSERT_TRUE(q->start_rw(0, false, {p.rd.get(), 0}, std::span(&v, 1), {}));
  ASSERT_TRUE(q->submit());
  auto t0 = std::chrono::steady_clock::now();
  q->cancel_and_wait();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(q->in_flight(), 0u);
  // Data written now goes nowhere: the buffer is no longer the kernel's.
  ASSERT_EQ(::write(p.wr.get(), "abcd", 4), 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(out[0], 0xee);
  std::vector<Completion> buf(2);
  EXPECT_EQ(q->reap(buf), 0u);
}

TEST(UringQueue, FallocatePunchesEveryRange) {
  ScratchDir dir;
  Fd fd(open_scratch(dir.file("holes.raw"), 1 << 20));
  std::vector<uint8_t> ones(1 << 20, 1);
  ASSERT_EQ(::pwrite(fd.get(), ones.data(), ones.size(), 0), static_cast<ssize_t>(ones.size()));
  auto q = make_ring(2);
  ASSERT_TRUE(q);
  UringQueue::Range ranges[] = {{0, 4096}, {65536, 8192}};
  ASSERT_TRUE(q->start_fallocate(0, fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, ranges));
  ASSERT_TRUE(q->submit());
  auto done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 0);
  std::vector<uint8_t> back(1 << 20);
  ASSERT_EQ(::pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  for (size_t i = 0; i < back.size(); ++i) {
    bool zero = i < 4096 || (i >= 65536 && i < 65536 + 8192);
    ASSERT_EQ(back[i], zero ? 0 : 1) << i;
  }
}

// direct=on: an O_DIRECT file; skipped where the file system refuses it.
struct DirectFile {
  explicit DirectFile(const std::string& path, size_t size) {
    Fd created(open_scratch(path, size));
    auto f = HostFile::open(path, false, /*direct=*/true);
    if (f)
      file = std::move(*f);
    else
      why = f.error().what();
  }
  std::optional<HostFile> file;
  std::string why;
};

TEST(UringQueueDirect, AlignedBuffersGoStraightUnalignedOnesBounce) {
  ScratchDir dir;
  DirectFile d(dir.file("direct.raw"), 1 << 20);
  if (!d.file) GTEST_SKIP() << "skipped: no O_DIRECT here: " << d.why;
  IoAlignment align = d.file->alignment();
  EXPECT_GE(align.offset, 512u);
  auto q = make_ring(4);
  ASSERT_TRUE(q);
  size_t len = 3 * align.offset;
  void* raw = nullptr;
  ASSERT_EQ(::posix_memalign(&raw, 4096, len + 4096), 0);
  std::unique_ptr<uint8_t, decltype(&std::free)> mem(static_cast<uint8_t*>(raw), &std::free);
  uint8_t* aligned = mem.get();
  uint8_t* unaligned = mem.get() + 8;  // 8-byte aligned: not enough for O_DIRECT
  for (size_t i = 0; i < len; ++i) aligned[i] = static_cast<uint8_t>(i * 3);
  iovec va{aligned, len};
  auto bounced = q->start_rw(0, true, {d.file->fd(), align.offset}, std::span(&va, 1), align);
  ASSERT_TRUE(bounced);
  EXPECT_FALSE(*bounced);
  ASSERT_TRUE(q->submit());
  auto done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 0);

  // Read it back into an unaligned buffer split unevenly: bounced.
  std::vector<uint8_t> expect(aligned, aligned + len);
  std::memset(unaligned, 0, len);
  iovec vu[2] = {{unaligned, 100}, {unaligned + 100, len - 100}};
  EXPECT_TRUE(UringQueue::needs_bounce(vu, align));
  bounced = q->start_rw(1, false, {d.file->fd(), align.offset}, vu, align);
  ASSERT_TRUE(bounced);
  EXPECT_TRUE(*bounced);
  ASSERT_TRUE(q->submit());
  done = collect(*q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 0);
  EXPECT_EQ(std::vector<uint8_t>(unaligned, unaligned + len), expect);

  // (Whether the kernel would have refused the unaligned buffer depends on
  // the device's DMA alignment; statx's stx_dio_mem_align is what we honour.)
}

TEST(UringQueueDirect, SynchronousPathHandlesAnyOffsetAndBuffer) {
  ScratchDir dir;
  DirectFile d(dir.file("direct-sync.raw"), 1 << 16);
  if (!d.file) GTEST_SKIP() << "skipped: no O_DIRECT here: " << d.why;
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i + 1);
  ASSERT_TRUE(d.file->pwrite(777, data));
  std::vector<uint8_t> back(1000);
  ASSERT_TRUE(d.file->pread(777, back));
  EXPECT_EQ(back, data);
  // Bytes around the write were kept (read-modify-write), not zeroed.
  std::vector<uint8_t> around(2);
  ASSERT_TRUE(d.file->pread(776, std::span(around).first(1)));
  EXPECT_EQ(around[0], 0);
  ASSERT_TRUE(d.file->pwrite(0, std::span(data).first(10)));
  ASSERT_TRUE(d.file->pread(777, back));
  EXPECT_EQ(back, data);
}

TEST(HostFileDirect, RefusesFileSystemsWithoutODirectNamingTheFile) {
  // tmpfs gained O_DIRECT in Linux 6.6; where it still refuses, the error
  // must name the file and say what to do.
  std::string path = "/dev/shm/skiff-direct-" + std::to_string(::getpid());
  Fd created(open_scratch(path, 4096));
  auto f = HostFile::open(path, false, true);
  ::unlink(path.c_str());
  if (f) GTEST_SKIP() << "skipped: /dev/shm accepts O_DIRECT on this kernel";
  EXPECT_NE(f.error().what().find(path), std::string::npos) << f.error().what();
  EXPECT_NE(f.error().what().find("direct=on"), std::string::npos) << f.error().what();
}

}  // namespace
}  // namespace skiff
