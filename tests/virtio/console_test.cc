#include "virtio/devices/console.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <string>
#include <thread>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::FakeDriver;
using testing::FakeGuest;

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The console with both port-0 queues brought up as Linux's virtio_console
// does (§3.1.1), each queue in its own area of guest RAM.
struct ConsoleTest : ::testing::Test {
  static constexpr uint64_t kTxBase = FakeGuest::kRamBase + 0x80000;

  void start(std::optional<ConsoleSize> size = std::nullopt,
             uint64_t features = kCommonFeatures | feature_bit(kConsoleFeatureEmergWrite) |
                                 feature_bit(kConsoleFeatureSize)) {
    auto r = VirtioConsole::create(
        [this](std::span<const uint8_t> b) { output.append(b.begin(), b.end()); }, size);
    ASSERT_TRUE(r) << r.error().message;
    con = std::move(*r);
    con->set_memory(&guest.mem);
    con->set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer)
        ++used_irqs[q];
      else
        ++config_irqs;
    });
    con->set_event_callback([this](DeviceEvent e, const std::string&) { events.push_back(e); });
    con->set_status(kStatusAcknowledge | kStatusDriver);
    con->set_driver_features(features & con->device_features());
    con->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(con->status() & kStatusFeaturesOk);
    rx.configure(*con->queue(kConsoleReceiveQueue));
    tx.configure(*con->queue(kConsoleTransmitQueue));
    con->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(con->activated());
  }
  uint64_t put_string(std::string_view s) {
    uint64_t gpa = tx.alloc(static_cast<uint32_t>(s.size()));
    std::copy(s.begin(), s.end(), guest.host(gpa, s.size()).begin());
    return gpa;
  }
  std::string guest_string(uint64_t gpa, size_t len) {
    auto h = guest.host(gpa, len);
    return std::string(h.begin(), h.end());
  }

  FakeGuest guest{1 << 20};
  FakeDriver rx{guest, 16};
  FakeDriver tx{guest, 16, kTxBase};
  std::unique_ptr<VirtioConsole> con;
  std::string output;
  int used_irqs[2] = {0, 0};
  int config_irqs = 0;
  std::vector<DeviceEvent> events;
};

TEST_F(ConsoleTest, IsDeviceThreeWithTwoQueuesAndOnePort) {
  start();
  EXPECT_EQ(con->device_id(), 3u);
  EXPECT_EQ(con->num_queues(), 2);
  std::array<uint8_t, kConsoleCfgSize> cfg{};
  ASSERT_TRUE(con->read_config(0, cfg));
  EXPECT_EQ(cfg[kConsoleCfgMaxNrPorts], 1);
  // No terminal size known: F_SIZE is not offered and cols/rows are 0.
  EXPECT_FALSE(con->device_features() & feature_bit(kConsoleFeatureSize));
  EXPECT_FALSE(con->device_features() & feature_bit(kConsoleFeatureMultiport));
  EXPECT_EQ(cfg[kConsoleCfgCols], 0);
}

TEST_F(ConsoleTest, OffersSizeOnlyWhenItKnowsIt) {
  start(ConsoleSize{132, 43});
  EXPECT_TRUE(con->device_features() & feature_bit(kConsoleFeatureSize));
  std::array<uint8_t, 4> cr{};
  ASSERT_TRUE(con->read_config(kConsoleCfgCols, cr));
  EXPECT_EQ(cr[0] | (cr[1] << 8), 132);
  EXPECT_EQ(cr[2] | (cr[3] << 8), 43);
}

TEST_F(ConsoleTest, TransmitBytesReachTheBackendInOrder) {
  start();
  uint64_t a = put_string("hello "), b = put_string("from "), c = put_string("hvc0\n");
  tx.add_chain({{a, 6, false}, {b, 5, false}});
  tx.add_indirect({{c, 5, false}});
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_EQ(output, "hello from hvc0\n");
  ASSERT_EQ(tx.used_idx(), 2);
  EXPECT_EQ(tx.used_elem(0).len, 0u);  // nothing is written into transmit buffers
  EXPECT_EQ(used_irqs[kConsoleTransmitQueue], 1);
  EXPECT_EQ(con->counters().tx_bytes, 16u);
  EXPECT_FALSE(con->needs_reset());
}

TEST_F(ConsoleTest, InputFillsPostedBuffersAndWaitsForMore) {
  start();
  uint64_t a = rx.alloc(4), b = rx.alloc(64);
  rx.add_chain({{a, 4, true}});
  rx.add_chain({{b, 64, true}});
  // Nothing pending: posted buffers stay in the ring.
  con->process_queue(kConsoleReceiveQueue);
  EXPECT_EQ(rx.used_idx(), 0);

  con->enqueue_input(bytes_of("echo me\n"));
  EXPECT_EQ(con->pending_input(), 8u);
  con->process_queue(kConsoleReceiveQueue);  // what the BackendEvent triggers
  ASSERT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(rx.used_elem(0).len, 4u);
  EXPECT_EQ(guest_string(a, 4), "echo");
  EXPECT_EQ(rx.used_elem(1).len, 4u);
  EXPECT_EQ(guest_string(b, 4), " me\n");
  EXPECT_EQ(con->pending_input(), 0u);
  EXPECT_EQ(used_irqs[kConsoleReceiveQueue], 1);
  EXPECT_EQ(con->counters().rx_bytes, 8u);

  // More input than buffers: the rest waits until the driver posts one.
  con->enqueue_input(bytes_of("later"));
  con->process_queue(kConsoleReceiveQueue);
  EXPECT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(con->pending_input(), 5u);
  uint64_t c = rx.alloc(16);
  rx.add_chain({{c, 16, true}});
  con->process_queue(kConsoleReceiveQueue);
  ASSERT_EQ(rx.used_idx(), 3);
  EXPECT_EQ(guest_string(c, 5), "later");
}

TEST_F(ConsoleTest, InputSignalsTheBackendEventFd) {
  start();
  auto ev = con->backend_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].queue, kConsoleReceiveQueue);
  pollfd p{ev[0].fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  // From another thread, as the input pump does.
  std::thread([&] { con->enqueue_input(bytes_of("x")); }).join();
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  con->process_queue(kConsoleReceiveQueue);  // drains the eventfd even with no buffer
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  EXPECT_EQ(con->pending_input(), 1u);
}

TEST_F(ConsoleTest, InputBeyondTheLimitIsDroppedAndCounted) {
  start();
  std::string big(VirtioConsole::kMaxPendingInput + 100, 'a');
  con->enqueue_input(bytes_of(big));
  EXPECT_EQ(con->pending_input(), VirtioConsole::kMaxPendingInput);
  EXPECT_EQ(con->counters().dropped_input_bytes, 100u);
}

TEST_F(ConsoleTest, InputIsKeptUntilTheDriverIsReady) {
  auto r = VirtioConsole::create([](std::span<const uint8_t>) {});
  ASSERT_TRUE(r);
  (*r)->enqueue_input(bytes_of("typed early"));
  (*r)->process_queue(kConsoleReceiveQueue);  // not activated: ignored
  EXPECT_EQ((*r)->pending_input(), 11u);
}

TEST_F(ConsoleTest, EmergencyWriteSendsOneByte) {
  start();
  uint32_t v = 'Z' | 0xabcd00u;
  ASSERT_TRUE(
      con->write_config(kConsoleCfgEmergWr, std::span(reinterpret_cast<const uint8_t*>(&v), 4)));
  EXPECT_EQ(output, "Z");
  uint16_t cols = 80;
  EXPECT_FALSE(
      con->write_config(kConsoleCfgCols, std::span(reinterpret_cast<const uint8_t*>(&cols), 2)));
}

TEST_F(ConsoleTest, EmergencyWriteNeedsTheFeature) {
  start(std::nullopt, kCommonFeatures);
  uint32_t v = 'Z';
  EXPECT_FALSE(
      con->write_config(kConsoleCfgEmergWr, std::span(reinterpret_cast<const uint8_t*>(&v), 4)));
  EXPECT_EQ(output, "");
}

TEST_F(ConsoleTest, WritableBufferOnTransmitqNeedsReset) {
  start();
  uint64_t a = put_string("ok"), b = tx.alloc(8);
  tx.add_chain({{a, 2, false}, {b, 8, true}});
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_TRUE(con->needs_reset());
  EXPECT_EQ(output, "");
  EXPECT_EQ(tx.used_idx(), 0);
  EXPECT_EQ(config_irqs, 1);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], DeviceEvent::kActivated);
  EXPECT_EQ(events[1], DeviceEvent::kNeedsReset);
  // Processing stops until the driver resets the device.
  tx.add_chain({{put_string("more"), 4, false}});
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_EQ(output, "");
}

TEST_F(ConsoleTest, ReadableBufferOnReceiveqNeedsReset) {
  start();
  uint64_t a = rx.alloc(8);
  rx.add_chain({{a, 8, false}});
  con->enqueue_input(bytes_of("hi"));
  con->process_queue(kConsoleReceiveQueue);
  EXPECT_TRUE(con->needs_reset());
  EXPECT_EQ(rx.used_idx(), 0);
}

TEST_F(ConsoleTest, LoopingAndOutOfRangeChainsNeedResetNotACrash) {
  start();
  uint64_t a = put_string("abcdefgh");
  tx.set_desc(0, {a, 8, kDescFlagNext, 1});
  tx.set_desc(1, {a, 8, kDescFlagNext, 0});  // 0 -> 1 -> 0
  tx.publish(0);
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_TRUE(con->needs_reset());
  EXPECT_EQ(output, "");

  // After a reset the driver starts over; a buffer outside RAM fails again.
  con->set_status(0);
  rx.restart();
  tx.restart();
  start();
  tx.set_desc(0, {0xffff'ffff'0000ull, 0x1000, 0, 0});
  tx.publish(0);
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_TRUE(con->needs_reset());
}

TEST_F(ConsoleTest, HugeChainIsBoundedByTheQueue) {
  start();
  // A chain as long as the queue (16 descriptors, all over the same
  // buffer) is legal and written out in full; longer ones are loops (above).
  uint64_t a = put_string(std::string(256, 'q'));
  for (uint16_t i = 0; i < 16; ++i)
    tx.set_desc(i, {a, 256, static_cast<uint16_t>(i + 1 < 16 ? kDescFlagNext : 0),
                    static_cast<uint16_t>(i + 1)});
  tx.publish(0);
  con->process_queue(kConsoleTransmitQueue);
  EXPECT_FALSE(con->needs_reset());
  EXPECT_EQ(output.size(), 16u * 256);
}

TEST_F(ConsoleTest, DriverResetOfALiveDeviceIsAnEvent) {
  start();
  con->set_status(0);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], DeviceEvent::kReset);
  // A reset of a device that was never started (Linux does one at probe)
  // is not reported.
  con->set_status(0);
  EXPECT_EQ(events.size(), 2u);
}

}  // namespace
}  // namespace skiff::virtio
