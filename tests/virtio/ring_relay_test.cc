// RingRelay (virtio/ring_relay.h) with a fake driver and the eventfds the
// server side (vhost-net, a vhost-user back end) would hold.
#include "virtio/ring_relay.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::FakeDriver;
using testing::FakeGuest;

uint64_t read_counter(int fd) {
  uint64_t v = 0;
  return ::read(fd, &v, sizeof v) == sizeof v ? v : 0;
}
void write_counter(int fd) {
  uint64_t one = 1;
  ASSERT_EQ(::write(fd, &one, sizeof one), static_cast<ssize_t>(sizeof one));
}

struct RingRelayTest : ::testing::Test {
  void SetUp() override {
    driver.configure(q);
    ASSERT_TRUE(q.activate(guest.mem, /*event_idx=*/true, /*indirect=*/false));
    auto r = RingRelay::create();
    ASSERT_TRUE(r) << r.error().what();
    relay = std::make_unique<RingRelay>(std::move(*r));
  }
  void add_buffer() {
    uint64_t g = driver.alloc(64);
    driver.add_chain({{g, 64, true}});
  }
  FakeGuest guest;
  FakeDriver driver{guest, 16};
  Queue q{16};
  std::unique_ptr<RingRelay> relay;
};

TEST_F(RingRelayTest, AddressesAreTheRingsInThisProcess) {
  auto a = RingRelay::addresses(guest.mem, q);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_EQ(a->desc, reinterpret_cast<uint64_t>(guest.host(driver.desc_gpa(), 1).data()));
  EXPECT_EQ(a->avail, reinterpret_cast<uint64_t>(guest.host(driver.avail_gpa(), 1).data()));
  EXPECT_EQ(a->used, reinterpret_cast<uint64_t>(guest.host(driver.used_gpa(), 1).data()));
}

TEST_F(RingRelayTest, KicksOnceForBuffersMadeAvailableBeforeStart) {
  add_buffer();
  add_buffer();
  relay->start(*RingRelay::addresses(guest.mem, q), q);
  EXPECT_EQ(read_counter(relay->kick_fd()), 1u);
  // The guest's notification for the same buffers: no second kick.
  auto r = relay->relay(q);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(read_counter(relay->kick_fd()), 0u);
  add_buffer();
  ASSERT_TRUE(relay->relay(q));
  EXPECT_EQ(read_counter(relay->kick_fd()), 1u);
}

TEST_F(RingRelayTest, ACallAsksForTheInterruptWithTheServersUsedIndex) {
  relay->start(*RingRelay::addresses(guest.mem, q), q);
  auto r = relay->relay(q);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r) << "no call, no interrupt";
  // The server used 3 entries and called.
  guest.put<uint16_t>(driver.used_gpa() + 2, 3);
  write_counter(relay->call_fd());
  r = relay->relay(q);
  ASSERT_TRUE(r);
  EXPECT_TRUE(*r);
  EXPECT_EQ(q.next_used(), 3);
  EXPECT_TRUE(q.needs_notification()) << "the server already applied suppression";
  EXPECT_EQ(read_counter(relay->call_fd()), 0u) << "drained";
}

TEST_F(RingRelayTest, TheServersErrorIsAnErrorAndStopEndsRelaying) {
  relay->start(*RingRelay::addresses(guest.mem, q), q);
  write_counter(relay->err_fd());
  EXPECT_FALSE(relay->relay(q));
  relay->stop();
  EXPECT_FALSE(relay->started());
  add_buffer();
  write_counter(relay->call_fd());
  auto r = relay->relay(q);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(read_counter(relay->kick_fd()), 0u) << "a stopped ring is not kicked";
  relay->drain();
  EXPECT_EQ(read_counter(relay->call_fd()), 0u);
}

}  // namespace
}  // namespace skiff::virtio
