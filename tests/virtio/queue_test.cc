#include "virtio/queue.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::Buf;
using testing::FakeDriver;
using testing::FakeGuest;

struct QueueFixture : ::testing::Test {
  void start(uint16_t size = 8, bool event_idx = false, bool indirect = true) {
    driver = std::make_unique<FakeDriver>(guest, size);
    queue = std::make_unique<Queue>(size);
    driver->configure(*queue);
    ASSERT_TRUE(queue->activate(guest.mem, event_idx, indirect));
  }
  // Pops and expects an error whose message contains `what`.
  void expect_pop_error(const std::string& what) {
    auto r = queue->pop();
    ASSERT_FALSE(r) << "chain was accepted";
    EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
  }
  FakeGuest guest;
  std::unique_ptr<FakeDriver> driver;
  std::unique_ptr<Queue> queue;
};

TEST_F(QueueFixture, ReturnsNothingWhenRingIsEmpty) {
  start();
  auto r = queue->pop();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_value());
}

TEST_F(QueueFixture, PopsSimpleChainWithSpansIntoGuestMemory) {
  start();
  uint64_t a = driver->alloc(16), b = driver->alloc(512), c = driver->alloc(1);
  guest.host(a, 16)[0] = 0xab;
  uint16_t head = driver->add_chain({{a, 16, false}, {b, 512, true}, {c, 1, true}});
  auto r = queue->pop();
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  const DescriptorChain& ch = **r;
  EXPECT_EQ(ch.head(), head);
  ASSERT_EQ(ch.readable().size(), 1u);
  ASSERT_EQ(ch.writable().size(), 2u);
  EXPECT_EQ(ch.readable()[0].data(), guest.host(a, 16).data());
  EXPECT_EQ(ch.readable()[0][0], 0xab);
  EXPECT_EQ(ch.writable()[0].data(), guest.host(b, 512).data());
  EXPECT_EQ(ch.writable()[1].size(), 1u);
  EXPECT_EQ(ch.readable_bytes(), 16u);
  EXPECT_EQ(ch.writable_bytes(), 513u);
  // Consumed: the next pop finds nothing.
  auto again = queue->pop();
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->has_value());
}

TEST_F(QueueFixture, PopsIndirectChain) {
  start();
  uint64_t a = driver->alloc(16), b = driver->alloc(4096);
  driver->add_indirect({{a, 16, false}, {b, 4096, true}});
  auto r = queue->pop();
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->readable().size(), 1u);
  ASSERT_EQ((*r)->writable().size(), 1u);
  EXPECT_EQ((*r)->writable()[0].data(), guest.host(b, 4096).data());
}

TEST_F(QueueFixture, AcceptsDirectDescriptorsFollowedByIndirectTable) {
  // §2.7.5.3.2: the device MUST handle normal descriptors followed by one
  // indirect descriptor.
  start();
  uint64_t hdr = driver->alloc(16), data = driver->alloc(512), table = driver->alloc(16);
  guest.put(table, VirtqDesc{data, 512, kDescFlagWrite, 0});
  driver->set_desc(0, {hdr, 16, kDescFlagNext, 1});
  driver->set_desc(1, {table, 16, kDescFlagIndirect, 0});
  driver->publish(0);
  auto r = queue->pop();
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->readable_bytes(), 16u);
  EXPECT_EQ((*r)->writable_bytes(), 512u);
}

TEST_F(QueueFixture, RejectsIndirectDescriptorWithoutTheFeature) {
  start(8, false, /*indirect=*/false);
  uint64_t a = driver->alloc(16);
  driver->add_indirect({{a, 16, false}});
  expect_pop_error("INDIRECT_DESC");
}

TEST_F(QueueFixture, RejectsNestedIndirectTable) {
  start();
  uint64_t inner = driver->alloc(16), outer = driver->alloc(16), a = driver->alloc(16);
  guest.put(inner, VirtqDesc{a, 16, 0, 0});
  guest.put(outer, VirtqDesc{inner, 16, kDescFlagIndirect, 0});
  driver->set_desc(0, {outer, 16, kDescFlagIndirect, 0});
  driver->publish(0);
  expect_pop_error("nested indirect");
}

TEST_F(QueueFixture, RejectsIndirectTableLengthNotMultipleOf16) {
  start();
  uint64_t t = driver->alloc(32);
  driver->set_desc(0, {t, 24, kDescFlagIndirect, 0});
  driver->publish(0);
  expect_pop_error("multiple of 16");
}

TEST_F(QueueFixture, RejectsIndirectTogetherWithNext) {
  start();
  uint64_t t = driver->alloc(16), a = driver->alloc(16);
  guest.put(t, VirtqDesc{a, 16, 0, 0});
  driver->set_desc(0, {t, 16, kDescFlagIndirect | kDescFlagNext, 1});
  driver->set_desc(1, {a, 16, 0, 0});
  driver->publish(0);
  expect_pop_error("INDIRECT and NEXT");
}

TEST_F(QueueFixture, RejectsReadableBufferAfterWritableOne) {
  start();
  uint64_t a = driver->alloc(16), b = driver->alloc(16);
  driver->add_chain({{a, 16, true}, {b, 16, false}});
  expect_pop_error("follows a writable");
}

TEST_F(QueueFixture, AcceptsChainAsLongAsTheQueue) {
  start(4);
  std::vector<Buf> bufs;
  for (int i = 0; i < 4; ++i) bufs.push_back({driver->alloc(8), 8, false});
  driver->add_chain(bufs);
  auto r = queue->pop();
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->readable().size(), 4u);
}

TEST_F(QueueFixture, RejectsDescriptorChainLongerThanQueue) {
  // A queue of 4 cannot hold a chain of 5: the fifth link goes back to 0.
  start(4);
  uint64_t a = driver->alloc(8);
  for (uint16_t i = 0; i < 4; ++i)
    driver->set_desc(i, {a, 8, kDescFlagNext, static_cast<uint16_t>((i + 1) % 4)});
  driver->publish(0);
  expect_pop_error("longer than the queue size");
}

TEST_F(QueueFixture, DetectsLoopInChain) {
  start(256);
  uint64_t a = driver->alloc(8);
  driver->set_desc(5, {a, 8, kDescFlagNext, 6});
  driver->set_desc(6, {a, 8, kDescFlagNext, 5});
  driver->publish(5);
  expect_pop_error("loop");
}

TEST_F(QueueFixture, DetectsLoopInIndirectTable) {
  start();
  uint64_t t = driver->alloc(48), a = driver->alloc(8);
  guest.put(t, VirtqDesc{a, 8, kDescFlagNext, 1});
  guest.put(t + 16, VirtqDesc{a, 8, kDescFlagNext, 2});
  guest.put(t + 32, VirtqDesc{a, 8, kDescFlagNext, 0});
  driver->set_desc(0, {t, 48, kDescFlagIndirect, 0});
  driver->publish(0);
  expect_pop_error("loop");
}

TEST_F(QueueFixture, RejectsNextIndexBeyondQueueSize) {
  start(8);
  uint64_t a = driver->alloc(8);
  driver->set_desc(0, {a, 8, kDescFlagNext, 8});
  driver->publish(0);
  expect_pop_error("beyond the queue size");
}

TEST_F(QueueFixture, RejectsHeadIndexBeyondQueueSize) {
  start(8);
  driver->publish(200);
  expect_pop_error("out of range");
}

TEST_F(QueueFixture, RejectsBufferOutsideGuestMemory) {
  start();
  driver->add_chain({{FakeGuest::kRamBase + guest.ram.size() - 8, 16, false}});
  expect_pop_error("not RAM");
}

TEST_F(QueueFixture, RejectsBufferBelowGuestMemory) {
  start();
  driver->add_chain({{0x1000, 16, false}});
  expect_pop_error("not RAM");
}

TEST_F(QueueFixture, RejectsZeroLengthBuffer) {
  start();
  uint64_t a = driver->alloc(16);
  driver->add_chain({{a, 16, false}, {a, 0, true}});
  expect_pop_error("zero length");
}

TEST_F(QueueFixture, RejectsHugeLength) {
  start();
  uint64_t a = driver->alloc(16);
  driver->add_chain({{a, 0xffffffffu, true}});
  expect_pop_error("not RAM");
}

TEST_F(QueueFixture, RejectsAddressPlusLengthWrappingAround) {
  start();
  driver->add_chain({{0xfffffffffffff000ull, 0x2000, false}});
  expect_pop_error("not RAM");
}

TEST(QueueBigMemory, RejectsChainWhoseLengthsSumPast4GiB) {
  // Three 1.5 GiB buffers inside a 6 GiB guest: each one is RAM, the sum is
  // not a valid chain (§2.7.5). The mapping is lazily backed; nothing is
  // touched but the rings.
  constexpr uint64_t kSize = 6ull << 30;
  void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "cannot reserve 6 GiB of address space";
  auto* host = static_cast<uint8_t*>(p);
  auto mem = *GuestMemory::create({{0, kSize, host}});
  constexpr uint32_t kLen = 3u << 29;  // 1.5 GiB
  Queue q(8);
  q.set_size(8);
  q.set_desc_table(0);
  q.set_avail_ring(0x1000);
  q.set_used_ring(0x2000);
  ASSERT_TRUE(q.activate(mem, false, false));
  auto put_desc = [&](uint16_t i, VirtqDesc d) { std::memcpy(host + 16 * i, &d, sizeof d); };
  put_desc(0, {0x10000, kLen, kDescFlagNext, 1});
  put_desc(1, {0x10000 + kLen, kLen, kDescFlagNext, 2});
  put_desc(2, {0x10000 + 2ull * kLen, kLen, 0, 0});
  uint16_t head = 0, idx = 1;
  std::memcpy(host + 0x1004, &head, 2);
  std::memcpy(host + 0x1002, &idx, 2);
  auto r = q.pop();
  EXPECT_FALSE(r);
  if (!r) {
    EXPECT_NE(r.error().message.find("2^32"), std::string::npos) << r.error().message;
  }
  // Two of them (3 GiB) are a valid chain.
  put_desc(1, {0x10000 + kLen, kLen, 0, 0});
  q.reset();
  q.set_desc_table(0);
  q.set_avail_ring(0x1000);
  q.set_used_ring(0x2000);
  ASSERT_TRUE(q.activate(mem, false, false));
  auto ok = q.pop();
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_TRUE(ok->has_value());
  EXPECT_EQ((*ok)->readable_bytes(), 2ull * kLen);
  ::munmap(p, kSize);
}

TEST_F(QueueFixture, HandlesAvailIndexWrapAroundAt65535) {
  start(8);
  driver->start_indices_at(65534);
  queue->set_ring_positions(65534, 65534);
  std::vector<uint16_t> heads;
  for (int i = 0; i < 4; ++i) heads.push_back(driver->add_chain({{driver->alloc(8), 8, true}}));
  EXPECT_EQ(driver->avail_idx(), 2);  // wrapped
  for (int i = 0; i < 4; ++i) {
    auto r = queue->pop();
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(r->has_value()) << "chain " << i;
    EXPECT_EQ((*r)->head(), heads[i]);
    ASSERT_TRUE(queue->add_used((*r)->head(), 8));
  }
  auto empty = queue->pop();
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_value());
  EXPECT_EQ(driver->used_idx(), 2);
  EXPECT_EQ(driver->used_elem(65535).id, heads[1]);
  EXPECT_EQ(driver->used_elem(0).id, heads[2]);
}

TEST_F(QueueFixture, RejectsAvailIndexJumpingMoreThanQueueSize) {
  start(8);
  driver->set_avail_idx(9);
  expect_pop_error("ahead");
}

TEST_F(QueueFixture, AcceptsAvailIndexExactlyQueueSizeAhead) {
  start(8);
  for (int i = 0; i < 8; ++i) driver->add_chain({{driver->alloc(8), 8, true}});
  for (int i = 0; i < 8; ++i) {
    auto r = queue->pop();
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(r->has_value());
  }
}

TEST_F(QueueFixture, AddUsedWritesElementThenIndex) {
  start();
  uint16_t head = driver->add_chain({{driver->alloc(64), 64, true}});
  auto r = queue->pop();
  ASSERT_TRUE(r && r->has_value());
  ASSERT_TRUE(queue->add_used(head, 33));
  EXPECT_EQ(driver->used_idx(), 1);
  EXPECT_EQ(driver->used_elem(0).id, head);
  EXPECT_EQ(driver->used_elem(0).len, 33u);
  EXPECT_FALSE(queue->add_used(8, 0));  // head beyond the queue
}

TEST(QueueActivation, RejectsBadSizesAndPlacements) {
  FakeGuest guest;
  FakeDriver driver(guest, 8);
  auto try_activate = [&](auto tweak) {
    Queue q(16);
    driver.configure(q);
    tweak(q);
    return q.activate(guest.mem, false, false).has_value();
  };
  EXPECT_TRUE(try_activate([](Queue&) {}));
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_size(0); }));
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_size(12); }));  // not a power of 2
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_size(32); }));  // above max
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_desc_table(q.desc_table() + 8); }));
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_avail_ring(q.avail_ring() + 1); }));
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_used_ring(q.used_ring() + 2); }));
  EXPECT_FALSE(try_activate([&](Queue& q) {
    q.set_used_ring(FakeGuest::kRamBase + guest.ram.size() - 64);  // ring runs off RAM
  }));
  EXPECT_FALSE(try_activate([](Queue& q) { q.set_desc_table(0); }));
}

TEST_F(QueueFixture, NoInterruptFlagSuppressesNotificationWithoutEventIdx) {
  start(8, /*event_idx=*/false);
  uint16_t h = driver->add_chain({{driver->alloc(8), 8, true}});
  ASSERT_TRUE(queue->pop());
  ASSERT_TRUE(queue->add_used(h, 0));
  driver->set_avail_flags(kAvailFlagNoInterrupt);
  EXPECT_FALSE(queue->needs_notification());
  h = driver->add_chain({{driver->alloc(8), 8, true}});
  ASSERT_TRUE(queue->pop());
  ASSERT_TRUE(queue->add_used(h, 0));
  driver->set_avail_flags(0);
  EXPECT_TRUE(queue->needs_notification());
  EXPECT_FALSE(queue->needs_notification());  // nothing new since
}

TEST_F(QueueFixture, EventIdxInterruptsOnlyWhenUsedEventIsPassed) {
  start(16, /*event_idx=*/true);
  // The driver wants to hear when used entry 3 (the 4th) is written.
  driver->set_used_event(3);
  auto complete_one = [&] {
    uint16_t h = driver->add_chain({{driver->alloc(8), 8, true}});
    auto r = queue->pop();
    ASSERT_TRUE(r && r->has_value());
    ASSERT_TRUE(queue->add_used(h, 8));
  };
  complete_one();  // used idx 1: first decision always notifies (no history)
  EXPECT_TRUE(queue->needs_notification());
  complete_one();  // 2
  EXPECT_FALSE(queue->needs_notification());
  complete_one();  // 3
  EXPECT_FALSE(queue->needs_notification());
  complete_one();  // 4: entry 3 written -> passes used_event
  EXPECT_TRUE(queue->needs_notification());
  complete_one();  // 5: used_event still 3, already signalled
  EXPECT_FALSE(queue->needs_notification());
  // Batch: used_event inside a batch of several entries also notifies.
  driver->set_used_event(6);
  complete_one();
  complete_one();
  complete_one();  // used idx 5 -> 8 covers entry 6
  EXPECT_TRUE(queue->needs_notification());
}

TEST_F(QueueFixture, EventIdxAvailEventTellsDriverWhenToKick) {
  start(16, /*event_idx=*/true);
  // Device idle and drained: it has asked to be kicked for entry 0.
  auto r = queue->pop();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(driver->avail_event(), 0);
  driver->add_chain({{driver->alloc(8), 8, true}});
  EXPECT_TRUE(driver->kick_needed_event_idx());
  // Device has not run yet: more buffers need no further kick.
  driver->add_chain({{driver->alloc(8), 8, true}});
  EXPECT_FALSE(driver->kick_needed_event_idx());
  // The device drains the queue and re-arms avail_event at 2.
  for (int i = 0; i < 2; ++i) {
    auto c = queue->pop();
    ASSERT_TRUE(c && c->has_value());
  }
  auto none = queue->pop();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(driver->avail_event(), 2);
  driver->add_chain({{driver->alloc(8), 8, true}});
  EXPECT_TRUE(driver->kick_needed_event_idx());
}

TEST_F(QueueFixture, ResetForgetsRingState) {
  start();
  driver->add_chain({{driver->alloc(8), 8, true}});
  ASSERT_TRUE(queue->pop());
  queue->reset();
  EXPECT_FALSE(queue->active());
  EXPECT_FALSE(queue->ready());
  EXPECT_EQ(queue->next_avail(), 0);
  EXPECT_FALSE(queue->pop());  // not active
}

}  // namespace
}  // namespace skiff::virtio
