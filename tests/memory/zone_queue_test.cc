// End to end: a virtio descriptor whose buffer crosses the boundary between
// two --memory-zone zones (private, then memfd) is one span to the device,
// as Linux may place one there. The split ring comes from the fake driver
// (tests/virtio/fake_driver.h) over real GuestRam.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "memory/guest_ram.h"
#include "virtio/fake_driver.h"
#include "virtio/guest_memory_access.h"
#include "virtio/queue.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Zone a (private) at [1 MiB, 3 MiB), zone b (memfd) at b_gpa: by default
// right after a, or elsewhere (as across the PCI hole).
struct ZoneGuest : virtio::testing::GuestMemoryAccess<ZoneGuest> {
  static constexpr uint64_t kRamBase = kMiB;
  static constexpr uint64_t kBoundary = 3 * kMiB;
  explicit ZoneGuest(uint64_t b_gpa = kBoundary) {
    RamOptions memfd;
    memfd.shared = true;
    std::vector<RamZone> zones{{"a", {{kRamBase, 2 * kMiB}}, {}},
                               {"b", {{b_gpa, 2 * kMiB}}, memfd}};
    auto r = GuestRam::create(zones);
    EXPECT_TRUE(r) << r.error().what();
    if (r) ram = std::move(*r);
  }
  const GuestMemory& guest_memory() const { return ram.memory(); }
  GuestRam ram;
};

TEST(ZoneQueue, DescriptorsAcrossTheZoneBoundaryAreOneSpanEach) {
  ZoneGuest g;
  virtio::testing::BasicFakeDriver<ZoneGuest> driver(g, 8);
  virtio::Queue queue(8);
  driver.configure(queue);
  ASSERT_TRUE(queue.activate(g.ram.memory(), false, true));

  // A request header straddling the boundary, and a writable buffer that
  // does too (further up, in the same place relative to the boundary).
  uint64_t out = ZoneGuest::kBoundary - 100;
  for (uint32_t i = 0; i < 200; ++i) g.put<uint8_t>(out + i, static_cast<uint8_t>(i));
  uint16_t head = driver.add_chain({{out, 200, false}, {out, 200, true}});
  auto popped = queue.pop();
  ASSERT_TRUE(popped) << popped.error().message;
  ASSERT_TRUE(popped->has_value());
  const virtio::DescriptorChain& chain = **popped;
  EXPECT_EQ(chain.head(), head);
  ASSERT_EQ(chain.readable().size(), 1u);
  ASSERT_EQ(chain.readable()[0].size(), 200u);
  for (uint32_t i = 0; i < 200; ++i) ASSERT_EQ(chain.readable()[0][i], i) << "byte " << i;

  // The device's write lands half in zone a, half in zone b's memfd.
  ASSERT_EQ(chain.writable().size(), 1u);
  std::memset(chain.writable()[0].data(), 0xee, 200);
  ASSERT_TRUE(queue.add_used(head, 200));
  EXPECT_EQ(driver.used_idx(), 1);
  const MemoryRegion& b = g.ram.memory().regions()[1];
  std::vector<uint8_t> file(100);
  ASSERT_EQ(pread(b.fd, file.data(), file.size(), 0), 100);
  EXPECT_EQ(file, std::vector<uint8_t>(100, 0xee));
  EXPECT_EQ(*g.ram.memory().read_obj<uint8_t>(out), 0xee);  // zone a's side
}

TEST(ZoneQueue, DescriptorAcrossThePciHoleIsStillRefused) {
  // Zone b at 4 GiB: not guest-contiguous with zone a, so nothing crosses.
  ZoneGuest g(4ull << 30);
  virtio::testing::BasicFakeDriver<ZoneGuest> driver(g, 8);
  virtio::Queue queue(8);
  driver.configure(queue);
  ASSERT_TRUE(queue.activate(g.ram.memory(), false, true));
  driver.add_chain({{3 * kMiB - 100, 200, false}});
  auto popped = queue.pop();
  ASSERT_FALSE(popped) << "a buffer running off the end of RAM was accepted";
  EXPECT_NE(popped.error().message.find("not RAM"), std::string::npos) << popped.error().message;
}

}  // namespace
}  // namespace skiff
