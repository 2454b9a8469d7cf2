#include "virtio/devices/net.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <map>

#include "virtio/devices/net_wire.h"
#include "virtio/fake_driver.h"
#include "virtio/net_fake_backend.h"
#include "virtio/net_fixture.h"

namespace skiff::virtio {
namespace {

using namespace nettest;

TEST_F(NetFixture, ConfigSpaceHoldsMacStatusAndPairs) {
  start(2, kAll);
  uint8_t cfg[10];
  ASSERT_TRUE(net->read_config(0, cfg));
  net::MacAddress mac;
  std::memcpy(mac.bytes.data(), cfg, 6);
  EXPECT_EQ(mac.to_string(), "52:54:00:12:34:56");
  EXPECT_EQ(cfg[6] | cfg[7] << 8, kStatusLinkUp);
  EXPECT_EQ(cfg[8] | cfg[9] << 8, 2);
  EXPECT_EQ(net->num_queues(), 5);
  EXPECT_EQ(net->ctrl_queue_index(), 4);
  for (unsigned f : {kFMac, kFStatus, kFMrgRxbuf, kFCsum, kFGuestCsum, kFHostTso4, kFGuestTso6,
                     kFCtrlVq, kFCtrlRx, kFCtrlVlan, kFMq})
    EXPECT_TRUE(net->device_features() & bit(f)) << f;
}

TEST_F(NetFixture, OffloadsFollowTheBackend) {
  auto b = std::make_unique<FakeNetBackend>(1);
  b->supported = net::kOffloadCsum;
  auto n = VirtioNet::create(std::move(b), {});
  ASSERT_TRUE(n);
  EXPECT_TRUE((*n)->device_features() & bit(kFGuestCsum));
  EXPECT_FALSE((*n)->device_features() & bit(kFGuestTso4));
  EXPECT_FALSE((*n)->device_features() & bit(kFHostUfo));
  EXPECT_FALSE((*n)->device_features() & bit(kFMq));  // one pair
}

TEST_F(NetFixture, ActivationSetsNegotiatedGuestOffloads) {
  start(1, ~(bit(kFGuestTso6) | bit(kFGuestUfo) | bit(kFGuestEcn)));
  EXPECT_EQ(backend->offloads, net::kOffloadCsum | net::kOffloadTso4);
}

TEST_F(NetFixture, RefusesFeaturesWithoutTheirDependencies) {
  auto b = std::make_unique<FakeNetBackend>(1);
  auto n = std::move(*VirtioNet::create(std::move(b), {}));
  n->set_status(kStatusAcknowledge | kStatusDriver);
  n->set_driver_features(kCommonFeatures | bit(kFGuestTso4));  // without GUEST_CSUM
  n->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(n->status() & kStatusFeaturesOk);
}

TEST_F(NetFixture, TransmitsHeaderAndFrame) {
  start(1, kAll);
  auto f = frame_bytes(1514, 3);
  send(f);
  net->process_queue(1);
  ASSERT_EQ(backend->sent[0].size(), 1u);
  EXPECT_EQ(backend->sent[0][0], with_header(f));
  EXPECT_EQ(tx().used_idx(), 1);
  EXPECT_EQ(tx().used_elem(0).len, 0u);
  EXPECT_EQ(irqs[1], 1);
  EXPECT_EQ(net->stats(0).tx_packets, 1u);
  EXPECT_EQ(net->stats(0).tx_bytes, 1514u);
}

TEST_F(NetFixture, TransmitsTsoFrameWhenNegotiated) {
  start(1, kAll);
  Header h{};
  h.flags = kHdrNeedsCsum;
  h.gso_type = kGsoTcpV4;
  h.gso_size = 1448;
  h.hdr_len = 54;
  h.csum_start = 34;
  h.csum_offset = 16;
  auto f = frame_bytes(60000, 9);
  send(f, h);
  net->process_queue(1);
  ASSERT_EQ(backend->sent[0].size(), 1u);
  EXPECT_EQ(backend->sent[0][0], with_header(f, h));
}

TEST_F(NetFixture, DropsFramesWithHeadersItCannotHonour) {
  start(1, ~(bit(kFHostTso6) | bit(kFHostUfo)));
  auto f = frame_bytes(100, 1);
  Header tso6{};
  tso6.gso_type = kGsoTcpV6;  // not negotiated
  Header csum_out{};
  csum_out.flags = kHdrNeedsCsum;
  csum_out.csum_start = 90;
  csum_out.csum_offset = 10;  // 90 + 10 + 2 > 100
  Header bad_type{};
  bad_type.gso_type = 7;
  Header ecn_alone{};
  ecn_alone.gso_type = kGsoEcn;
  send(f, tso6);
  send(f, csum_out);
  send(f, bad_type);
  send(f, ecn_alone);
  send(frame_bytes(10, 1));                       // shorter than Ethernet
  send(frame_bytes(net::kMaxFrameBytes + 1, 1));  // longer than any frame
  send(f);                                        // fine
  net->process_queue(1);
  EXPECT_FALSE(net->needs_reset());
  EXPECT_EQ(backend->sent[0].size(), 1u);
  EXPECT_EQ(net->stats(0).tx_dropped, 6u);
  EXPECT_EQ(tx().used_idx(), 7);
}

TEST_F(NetFixture, ShortTransmitHeaderNeedsReset) {
  start(1, kAll);
  uint64_t g = tx().alloc(8);
  tx().add_chain({{g, 8, false}});
  net->process_queue(1);
  EXPECT_TRUE(net->needs_reset());
  EXPECT_TRUE(backend->sent[0].empty());
}

TEST_F(NetFixture, WritableTransmitBufferNeedsReset) {
  start(1, kAll);
  uint64_t g = tx().alloc(64), w = tx().alloc(64);
  tx().add_chain({{g, 64, false}, {w, 64, true}});
  net->process_queue(1);
  EXPECT_TRUE(net->needs_reset());
}

TEST_F(NetFixture, FullBackendLeavesTheChainForTheNextPass) {
  start(1, kAll);
  backend->refuse_sends = 1;
  send(frame_bytes(60, 1));
  net->process_queue(1);
  EXPECT_EQ(tx().used_idx(), 0);
  EXPECT_TRUE(backend->sent[0].empty());
  net->process_queue(1);
  EXPECT_EQ(tx().used_idx(), 1);
  EXPECT_EQ(backend->sent[0].size(), 1u);
}

TEST_F(NetFixture, TransmitsWhatIsAvailableAsOneBatchInOrder) {
  start(1, kAll);
  for (uint8_t i = 0; i < 5; ++i) send(frame_bytes(60 + i, i));
  net->process_queue(1);
  EXPECT_EQ(backend->batches, std::vector<size_t>{5});
  ASSERT_EQ(backend->sent[0].size(), 5u);
  for (uint8_t i = 0; i < 5; ++i)
    EXPECT_EQ(backend->sent[0][i].size(), net::kVnetHeaderBytes + 60 + i) << "frame " << int{i};
  EXPECT_EQ(tx().used_idx(), 5);
  EXPECT_EQ(net->stats(0).tx_packets, 5u);
}

TEST_F(NetFixture, BackendFullMidBatchLeavesTheRestInOrderForTheNextKick) {
  start(1, kAll);
  for (uint8_t i = 0; i < 5; ++i) send(frame_bytes(60 + i, i));
  backend->accept_before_full = 2;
  net->process_queue(1);
  EXPECT_EQ(tx().used_idx(), 2);
  ASSERT_EQ(backend->sent[0].size(), 2u);
  backend->accept_before_full = -1;
  net->process_queue(1);
  EXPECT_EQ(tx().used_idx(), 5);
  ASSERT_EQ(backend->sent[0].size(), 5u);
  for (uint8_t i = 0; i < 5; ++i)
    EXPECT_EQ(backend->sent[0][i].size(), net::kVnetHeaderBytes + 60 + i) << "frame " << int{i};
  EXPECT_EQ(net->stats(0).tx_packets, 5u);
}

TEST_F(NetFixture, BadHeaderMidBatchIsDroppedBetweenTwoBatches) {
  start(1, kAll);
  send(frame_bytes(60, 1));
  Header bad{};
  bad.gso_type = 0x55;  // no such GSO type
  send(frame_bytes(61, 2), bad);
  send(frame_bytes(62, 3));
  net->process_queue(1);
  EXPECT_FALSE(net->needs_reset());
  EXPECT_EQ((backend->batches), (std::vector<size_t>{1, 1}));
  ASSERT_EQ(backend->sent[0].size(), 2u);
  EXPECT_EQ(backend->sent[0][0].size(), net::kVnetHeaderBytes + 60);
  EXPECT_EQ(backend->sent[0][1].size(), net::kVnetHeaderBytes + 62);
  EXPECT_EQ(tx().used_idx(), 3);
  EXPECT_EQ(net->stats(0).tx_dropped, 1u);
  EXPECT_EQ(net->stats(0).tx_packets, 2u);
}

TEST_F(NetFixture, BackendErrorsAreCountedNotFatal) {
  start(1, kAll);
  backend->fail_sends = true;
  send(frame_bytes(60, 1));
  net->process_queue(1);
  EXPECT_FALSE(net->needs_reset());
  EXPECT_EQ(tx().used_idx(), 1);
  EXPECT_EQ(net->stats(0).tx_errors, 1u);
}

TEST_F(NetFixture, ReceivesIntoOneChainWithoutMergeableBuffers) {
  start(1, ~bit(kFMrgRxbuf));
  auto bufs = post_rx(2, 2048);
  auto f = frame_bytes(1000, 5);
  Header h{};
  h.flags = 2;  // DATA_VALID from the host
  backend->rx[0].push_back(with_header(f, h));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 1);
  EXPECT_EQ(rx().used_elem(0).len, 1012u);
  EXPECT_EQ(header_at(bufs[0]).num_buffers, 1);
  EXPECT_EQ(header_at(bufs[0]).flags, 2);  // GUEST_CSUM negotiated: kept
  auto got = guest.host(bufs[0] + 12, 1000);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), f.begin()));
  EXPECT_EQ(irqs[0], 1);
  EXPECT_EQ(net->stats(0).rx_packets, 1u);
}

TEST_F(NetFixture, ClearsHeaderFlagsWithoutGuestCsum) {
  start(1, ~(bit(kFGuestCsum) | bit(kFGuestTso4) | bit(kFGuestTso6) | bit(kFGuestEcn) |
             bit(kFGuestUfo) | bit(kFCtrlGuestOffloads)));
  auto bufs = post_rx(1, 2048);
  Header h{};
  h.flags = 2;
  backend->rx[0].push_back(with_header(frame_bytes(60, 1), h));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 1);
  EXPECT_EQ(header_at(bufs[0]).flags, 0);
}

TEST_F(NetFixture, MergeableBuffersSpreadAFrameOverChains) {
  start(1, kAll);
  auto bufs = post_rx(8, 600);
  auto f = frame_bytes(1500, 7);
  backend->rx[0].push_back(with_header(f));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 3);
  EXPECT_EQ(header_at(bufs[0]).num_buffers, 3);
  EXPECT_EQ(rx().used_elem(0).len, 600u);
  EXPECT_EQ(rx().used_elem(1).len, 600u);
  EXPECT_EQ(rx().used_elem(2).len, 312u);
  std::vector<uint8_t> got;
  for (int i = 0; i < 3; ++i) {
    auto p = guest.host(bufs[i], rx().used_elem(i).len);
    got.insert(got.end(), p.begin(), p.end());
  }
  EXPECT_EQ(got, with_header(f, Header{0, 0, 0, 0, 0, 0, 3}));
  // The chains the frame did not need are used by the next one.
  backend->rx[0].push_back(with_header(frame_bytes(100, 1)));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 4);
  EXPECT_EQ(rx().used_elem(3).id, 3u);
}

TEST_F(NetFixture, LargeFrameOverflowsIntoMoreChains) {
  start(1, kAll);
  auto bufs = post_rx(60, 1536);
  auto f = frame_bytes(65000, 11);
  backend->rx[0].push_back(with_header(f));
  net->process_queue(0);
  uint16_t n = header_at(bufs[0]).num_buffers;
  ASSERT_EQ(rx().used_idx(), n);
  EXPECT_EQ(n, (65012 + 1535) / 1536);
  std::vector<uint8_t> got;
  for (int i = 0; i < n; ++i) {
    auto p = guest.host(bufs[i], rx().used_elem(i).len);
    got.insert(got.end(), p.begin(), p.end());
  }
  ASSERT_EQ(got.size(), 65012u);
  EXPECT_TRUE(std::equal(f.begin(), f.end(), got.begin() + 12));
}

TEST_F(NetFixture, FrameWaitsUntilEnoughBuffersArePosted) {
  start(1, kAll);
  post_rx(2, 1536);
  auto f = frame_bytes(9000, 13);
  backend->rx[0].push_back(with_header(f));
  backend->rx[0].push_back(with_header(frame_bytes(64, 2)));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 0);
  EXPECT_EQ(net->stats(0).rx_dropped, 0u);
  post_rx(8, 1536);  // the driver posts more and notifies
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 7);  // 6 chains for 9012 bytes, 1 for the small frame
  EXPECT_EQ(net->stats(0).rx_packets, 2u);
  EXPECT_EQ(rx().used_elem(6).len, 76u);
}

TEST_F(NetFixture, OversizedFrameWithoutMergeableBuffersIsDropped) {
  start(1, ~bit(kFMrgRxbuf));
  auto bufs = post_rx(1, 1526);
  backend->rx[0].push_back(with_header(frame_bytes(4000, 1)));
  backend->rx[0].push_back(with_header(frame_bytes(100, 1)));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 1);  // the chain went to the second frame
  EXPECT_EQ(rx().used_elem(0).len, 112u);
  EXPECT_EQ(net->stats(0).rx_dropped, 1u);
  EXPECT_FALSE(net->needs_reset());
}

TEST_F(NetFixture, StopsWhenBuffersRunOutAndResumesOnKick) {
  start(1, kAll);
  post_rx(2, 2048);
  for (int i = 0; i < 5; ++i) backend->rx[0].push_back(with_header(frame_bytes(1000, i)));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 2);
  EXPECT_EQ(backend->rx[0].size(), 3u);
  post_rx(10, 2048);
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 5);
  EXPECT_TRUE(backend->rx[0].empty());
}

TEST_F(NetFixture, ReadableReceiveBufferNeedsReset) {
  start(1, kAll);
  uint64_t g = rx().alloc(2048);
  rx().add_chain({{g, 2048, false}});
  backend->rx[0].push_back(with_header(frame_bytes(100, 1)));
  net->process_queue(0);
  EXPECT_TRUE(net->needs_reset());
}

TEST_F(NetFixture, ReceiveChainShorterThanHeaderNeedsReset) {
  start(1, kAll);
  uint64_t g = rx().alloc(8);
  rx().add_chain({{g, 8, true}});
  backend->rx[0].push_back(with_header(frame_bytes(100, 1)));
  net->process_queue(0);
  EXPECT_TRUE(net->needs_reset());
}

TEST_F(NetFixture, RxModeAndMacTableFilterFrames) {
  start(1, kAll);
  post_rx(16, 2048);
  auto to = [](std::array<uint8_t, 6> dst) {
    auto f = frame_bytes(60, 1);
    std::memcpy(f.data(), dst.data(), 6);
    f[12] = 0x08;
    f[13] = 0x00;
    return with_header(f);
  };
  std::array<uint8_t, 6> own{0x52, 0x54, 0, 0x12, 0x34, 0x56}, other{0x52, 0x54, 0, 9, 9, 9},
      listed{0x02, 0, 0, 0, 0, 7}, bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
      mcast{0x01, 0, 0x5e, 0, 0, 1};
  // Promiscuous until the driver says otherwise.
  backend->rx[0].push_back(to(other));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 1);

  EXPECT_EQ(command(kCtrlRx, kCtrlRxPromisc, {0}), kNetCtrlOk);
  std::vector<uint8_t> table{1, 0, 0, 0};
  table.insert(table.end(), listed.begin(), listed.end());
  table.insert(table.end(), {0, 0, 0, 0});  // no multicast entries
  EXPECT_EQ(command(kCtrlMac, kCtrlMacTableSet, table), kNetCtrlOk);
  for (auto d : {own, other, listed, bcast, mcast}) backend->rx[0].push_back(to(d));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 4);  // own, listed, broadcast
  EXPECT_EQ(net->stats(0).rx_dropped, 2u);

  EXPECT_EQ(command(kCtrlRx, kCtrlRxAllmulti, {1}), kNetCtrlOk);
  EXPECT_EQ(command(kCtrlRx, kCtrlRxNobcast, {1}), kNetCtrlOk);
  for (auto d : {bcast, mcast}) backend->rx[0].push_back(to(d));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 5);  // multicast only
}

TEST_F(NetFixture, VlanFilterPassesOnlyAddedIds) {
  start(1, kAll);
  post_rx(8, 2048);
  auto tagged = [](uint16_t vid) {
    auto f = frame_bytes(64, 1);
    f[12] = 0x81;
    f[13] = 0x00;
    f[14] = static_cast<uint8_t>(vid >> 8);
    f[15] = static_cast<uint8_t>(vid);
    return with_header(f);
  };
  EXPECT_EQ(command(kCtrlVlan, kCtrlVlanAdd, {10, 0}), kNetCtrlOk);
  EXPECT_EQ(command(kCtrlVlan, kCtrlVlanAdd, {0x00, 0x10}), kNetCtrlErr);  // 4096
  backend->rx[0].push_back(tagged(10));
  backend->rx[0].push_back(tagged(11));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 1);
  EXPECT_EQ(command(kCtrlVlan, kCtrlVlanDel, {10, 0}), kNetCtrlOk);
  backend->rx[0].push_back(tagged(10));
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 1);
}

TEST_F(NetFixture, QueuePairsFollowTheMqCommand) {
  start(4, kAll);
  EXPECT_EQ(net->active_queue_pairs(), 1);
  EXPECT_EQ(backend->enabled, (std::vector<bool>{true, false, false, false}));
  // Frames for a pair the driver has not enabled stay in the backend.
  post_rx(2, 2048, 2);
  backend->rx[2].push_back(with_header(frame_bytes(60, 1)));
  net->process_queue(4);
  EXPECT_EQ(rx(2).used_idx(), 0);

  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {3, 0}), kNetCtrlOk);
  EXPECT_EQ(net->active_queue_pairs(), 3);
  EXPECT_EQ(backend->enabled, (std::vector<bool>{true, true, true, false}));
  net->process_queue(4);
  EXPECT_EQ(rx(2).used_idx(), 1);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {0, 0}), kNetCtrlErr);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {5, 0}), kNetCtrlErr);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {2}), kNetCtrlErr);  // short
  EXPECT_EQ(net->active_queue_pairs(), 3);
}

TEST_F(NetFixture, ControlQueueIsQueueTwoWithoutMq) {
  start(2, ~bit(kFMq));
  EXPECT_EQ(net->ctrl_queue_index(), 2);
  EXPECT_EQ(command(kCtrlRx, kCtrlRxPromisc, {0}), kNetCtrlOk);
  EXPECT_EQ(command(kCtrlMq, kCtrlMqVqPairsSet, {1, 0}), kNetCtrlErr);  // MQ not negotiated
}

TEST_F(NetFixture, MacAddrSetUpdatesConfigSpace) {
  start(1, kAll);
  uint32_t gen = net->config_generation();
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, {0x02, 1, 2, 3, 4, 5}), kNetCtrlOk);
  uint8_t mac[6];
  ASSERT_TRUE(net->read_config(0, mac));
  EXPECT_EQ(mac[5], 5);
  EXPECT_NE(net->config_generation(), gen);
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, {1, 2, 3}), kNetCtrlErr);
}

TEST_F(NetFixture, GuestOffloadsCommandReachesTheBackend) {
  start(1, kAll);
  std::vector<uint8_t> csum_only(8, 0);
  csum_only[0] = 1 << kFGuestCsum;
  EXPECT_EQ(command(kCtrlGuestOffloads, kCtrlGuestOffloadsSet, csum_only), kNetCtrlOk);
  EXPECT_EQ(backend->offloads, net::kOffloadCsum);
  std::vector<uint8_t> host_bit(8, 0);
  host_bit[1] = 1 << (kFHostTso4 - 8);  // not a guest offload
  EXPECT_EQ(command(kCtrlGuestOffloads, kCtrlGuestOffloadsSet, host_bit), kNetCtrlErr);
}

TEST_F(NetFixture, UnknownOrMalformedCommandsAnswerErr) {
  start(1, kAll);
  EXPECT_EQ(command(kCtrlAnnounce, 0, {}), kNetCtrlErr);  // GUEST_ANNOUNCE not offered
  EXPECT_EQ(command(99, 0, {}), kNetCtrlErr);
  EXPECT_EQ(command(kCtrlRx, 6, {1}), kNetCtrlErr);
  EXPECT_EQ(command(kCtrlRx, kCtrlRxPromisc, {1, 1}), kNetCtrlErr);
  // A MAC table whose entry count runs past the data.
  EXPECT_EQ(command(kCtrlMac, kCtrlMacTableSet, {9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0}),
            kNetCtrlErr);
  EXPECT_EQ(command(kCtrlMac, kCtrlMacTableSet, {0xff, 0xff, 0xff, 0xff}), kNetCtrlErr);
  EXPECT_FALSE(net->needs_reset());
}

TEST_F(NetFixture, ControlRequestWithoutAckNeedsReset) {
  start(1, kAll);
  uint64_t h = ctrl().alloc(3);
  ctrl().add_chain({{h, 3, false}});
  net->process_queue(static_cast<uint16_t>(net->ctrl_queue_index()));
  EXPECT_TRUE(net->needs_reset());
}

TEST_F(NetFixture, ControlRequestWithoutClassNeedsReset) {
  start(1, kAll);
  uint64_t h = ctrl().alloc(1), a = ctrl().alloc(1);
  ctrl().add_chain({{h, 1, false}, {a, 1, true}});
  net->process_queue(static_cast<uint16_t>(net->ctrl_queue_index()));
  EXPECT_TRUE(net->needs_reset());
}

TEST_F(NetFixture, WithoutControlQueueEveryPairIsActive) {
  start(2, kAll, /*control_queue=*/false);
  EXPECT_EQ(net->num_queues(), 4);
  EXPECT_EQ(net->ctrl_queue_index(), -1);
  EXPECT_FALSE(net->device_features() & bit(kFCtrlVq));
  EXPECT_TRUE(net->device_features() & bit(kFMq));
  EXPECT_EQ(net->active_queue_pairs(), 2);
  post_rx(1, 2048, 1);
  backend->rx[1].push_back(with_header(frame_bytes(60, 1)));
  net->process_queue(2);
  EXPECT_EQ(rx(1).used_idx(), 1);
}

TEST_F(NetFixture, ResetRestoresTheConfiguredMac) {
  start(1, kAll);
  EXPECT_EQ(command(kCtrlMac, kCtrlMacAddrSet, {0x02, 1, 2, 3, 4, 5}), kNetCtrlOk);
  net->set_status(0);
  uint8_t mac[6];
  ASSERT_TRUE(net->read_config(0, mac));
  EXPECT_EQ(mac[0], 0x52);
}

TEST_F(NetFixture, BackendEventsNameEachQueueAndWhatToWatchFor) {
  auto b = std::make_unique<FakeNetBackend>(3);
  b->event_fds = {7, 8, 9};
  b->tx_event_fds = {17, 18, 19};
  auto n = std::move(*VirtioNet::create(std::move(b), {}));
  auto ev = n->backend_events();
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[2].fd, 9);
  EXPECT_EQ(ev[2].queue, 4);
  EXPECT_EQ(ev[2].events, uint32_t{EPOLLIN});
  // The tx queues wake when a full backend can take frames again.
  EXPECT_EQ(ev[4].fd, 18);
  EXPECT_EQ(ev[4].queue, 3);
  EXPECT_EQ(ev[4].events, uint32_t{EPOLLOUT});
}

}  // namespace
}  // namespace skiff::virtio
