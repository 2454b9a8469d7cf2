// MemoryTable (skiff-vhost's view of a front end's RAM): regions adjacent in
// guest-physical space are one host span, so a buffer across the boundary
// (two --memory-zone zones, two QEMU memory backends) is accepted and its
// bytes land in both regions' files; regions that are not adjacent still
// refuse a crossing range.
#include "vhost_user/memory_table.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "virtio/fake_driver.h"
#include "virtio/guest_memory_access.h"
#include "virtio/queue.h"

namespace skiff::vhost_user {
namespace {

constexpr uint64_t kMiB = 1 << 20;

Fd memfd(uint64_t size) {
  Fd fd(::memfd_create("memory-table-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

std::vector<uint8_t> file_bytes(int fd, uint64_t offset, size_t len) {
  std::vector<uint8_t> out(len);
  EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
  return out;
}

// Two memfd regions as a front end sends them: region 0 at [1 MiB, 3 MiB)
// (fd offset 1 MiB, as a RAM block mapped from its start), region 1 at
// b_gpa, 2 MiB from fd offset `b_offset`. The user addresses are far apart,
// as in a front end that mapped each backend on its own.
struct TwoRegions : virtio::testing::GuestMemoryAccess<TwoRegions> {
  static constexpr uint64_t kRamBase = kMiB;
  static constexpr uint64_t kBoundary = 3 * kMiB;
  explicit TwoRegions(uint64_t b_gpa = kBoundary, uint64_t b_offset = 0) {
    fds.push_back(memfd(3 * kMiB));
    fds.push_back(memfd(b_offset + 2 * kMiB));
    // In guest order: mapped one by one, the kernel would place the second
    // mapping below the first (top-down), so they could only be adjacent
    // in host space the way the table arranges it.
    descs = {{kRamBase, 2 * kMiB, 0x7e0000000000, kMiB},
             {b_gpa, 2 * kMiB, 0x7f0000000000, b_offset}};
    auto t = MemoryTable::map(descs, fds);
    EXPECT_TRUE(t) << t.error().what();
    if (t) table = std::move(*t);
  }
  // FakeDriver's guest interface (GuestMemoryAccess).
  const GuestMemory& guest_memory() const { return table.memory(); }
  int fd_a() const { return fds[0].get(); }
  int fd_b() const { return fds[1].get(); }

  std::vector<MemoryRegionDesc> descs;
  std::vector<Fd> fds;
  MemoryTable table;
};

TEST(MemoryTable, RangeAcrossGuestAdjacentRegionsReachesBothFiles) {
  TwoRegions t;
  ASSERT_FALSE(t.table.empty());
  std::vector<uint8_t> in(256);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i + 1);
  uint64_t gpa = TwoRegions::kBoundary - 128;
  ASSERT_TRUE(t.table.memory().write(gpa, in));
  // The first half is the end of region 0 (fd offset 1 MiB + 2 MiB - 128),
  // the second the start of region 1's file.
  EXPECT_EQ(file_bytes(t.fd_a(), 3 * kMiB - 128, 128),
            std::vector<uint8_t>(in.begin(), in.begin() + 128));
  EXPECT_EQ(file_bytes(t.fd_b(), 0, 128), std::vector<uint8_t>(in.begin() + 128, in.end()));
  // And back: bytes written to the files are read as one range.
  std::vector<uint8_t> pattern(256, 0x5a);
  ASSERT_EQ(::pwrite(t.fd_a(), pattern.data(), 128, 3 * kMiB - 128), 128);
  ASSERT_EQ(::pwrite(t.fd_b(), pattern.data(), 128, 0), 128);
  std::vector<uint8_t> out(256);
  ASSERT_TRUE(t.table.memory().read(gpa, out));
  EXPECT_EQ(out, pattern);
  // The whole of both regions is one range; one byte more is not.
  EXPECT_TRUE(t.table.memory().contains(TwoRegions::kRamBase, 4 * kMiB));
  EXPECT_FALSE(t.table.memory().contains(TwoRegions::kRamBase, 4 * kMiB + 1));
  EXPECT_FALSE(t.table.memory().contains(TwoRegions::kRamBase - 1, 2));
  // Ring addresses still translate through each region's own user address.
  EXPECT_EQ(*t.table.user_to_guest(0x7f0000000000 + 16), TwoRegions::kBoundary + 16);
  EXPECT_EQ(*t.table.user_to_guest(0x7e0000000000 + 16), TwoRegions::kRamBase + 16);
}

TEST(MemoryTable, VirtqueueBufferAcrossAdjacentRegionsIsOneSpan) {
  TwoRegions t;
  virtio::testing::BasicFakeDriver<TwoRegions> driver(t, 8);
  virtio::Queue queue(8);
  driver.configure(queue);
  ASSERT_TRUE(queue.activate(t.table.memory(), false, true));
  uint64_t buf = TwoRegions::kBoundary - 100;
  uint16_t head = driver.add_chain({{buf, 200, true}});
  auto popped = queue.pop();
  ASSERT_TRUE(popped) << popped.error().message;
  ASSERT_TRUE(popped->has_value());
  const virtio::DescriptorChain& chain = **popped;
  ASSERT_EQ(chain.writable().size(), 1u);
  ASSERT_EQ(chain.writable()[0].size(), 200u);
  std::memset(chain.writable()[0].data(), 0xee, 200);
  ASSERT_TRUE(queue.add_used(head, 200));
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(file_bytes(t.fd_a(), 3 * kMiB - 100, 100), std::vector<uint8_t>(100, 0xee));
  EXPECT_EQ(file_bytes(t.fd_b(), 0, 100), std::vector<uint8_t>(100, 0xee));
}

TEST(MemoryTable, RangeAcrossAGuestGapIsRefused) {
  // Region 1 one page above the end of region 0: nothing may cross.
  TwoRegions t(TwoRegions::kBoundary + 4096);
  ASSERT_FALSE(t.table.empty());
  EXPECT_TRUE(t.table.memory().contains(TwoRegions::kBoundary - 128, 128));
  EXPECT_FALSE(t.table.memory().contains(TwoRegions::kBoundary - 128, 129));
  std::vector<uint8_t> buf(256);
  auto r = t.table.memory().read(TwoRegions::kBoundary - 128, buf);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not RAM"), std::string::npos) << r.error().message;

  virtio::testing::BasicFakeDriver<TwoRegions> driver(t, 8);
  virtio::Queue queue(8);
  driver.configure(queue);
  ASSERT_TRUE(queue.activate(t.table.memory(), false, true));
  driver.add_chain({{TwoRegions::kBoundary - 100, 200, true}});
  auto popped = queue.pop();
  EXPECT_FALSE(popped) << "a buffer running off the end of a region was accepted";
}

TEST(MemoryTable, RegionWithUnalignedFileOffsetIsMappedOnItsOwn) {
  // Region 1's bytes start 512 bytes into its file: it cannot be placed
  // page-exactly after region 0, so it gets its own mapping; each region
  // still works, a range across them is refused.
  TwoRegions t(TwoRegions::kBoundary, 512);
  ASSERT_FALSE(t.table.empty());
  ASSERT_TRUE(t.table.memory().write_obj<uint32_t>(TwoRegions::kBoundary, 0x11223344));
  EXPECT_EQ(file_bytes(t.fd_b(), 512, 4), (std::vector<uint8_t>{0x44, 0x33, 0x22, 0x11}));
  EXPECT_FALSE(t.table.memory().contains(TwoRegions::kBoundary - 4, 8));
}

TEST(MemoryTable, OverlappingRegionsAreStillRefused) {
  std::vector<Fd> fds;
  fds.push_back(memfd(2 * kMiB));
  fds.push_back(memfd(2 * kMiB));
  std::vector<MemoryRegionDesc> descs{{0, 2 * kMiB, 0x10000000, 0},
                                      {kMiB, 2 * kMiB, 0x20000000, 0}};
  auto t = MemoryTable::map(descs, fds);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("overlap in guest-physical space"), std::string::npos)
      << t.error().message;
}

TEST(MemoryTable, RegionPastTheEndOfItsFileIsRefused) {
  std::vector<Fd> fds;
  fds.push_back(memfd(kMiB));
  std::vector<MemoryRegionDesc> descs{{0, 2 * kMiB, 0x10000000, 0}};
  auto t = MemoryTable::map(descs, fds);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("which has 0x100000"), std::string::npos) << t.error().message;
}

}  // namespace
}  // namespace skiff::vhost_user
