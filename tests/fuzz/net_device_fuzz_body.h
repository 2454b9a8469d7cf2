// The body shared by the libFuzzer target (net_device_fuzz.cc) and the
// GCC-built mutation test (tests/virtio/net_fuzz_test.cc): arbitrary bytes
// become a script a hostile driver plays against a VirtioNet over the
// in-memory backend (tests/virtio/net_fake_backend.h) and a fake guest RAM:
// transmit chains (random split points, writable pieces, short or
// offload-claiming vnet headers, indirect tables past UIO_MAXIOV), control
// commands (any class/command/payload, missing ack or class bytes), receive
// chains and backend frames (up to a 64 KiB GSO frame, mergeable buffers or
// not), spurious kicks, resets and raw descriptor / avail-ring corruption.
//
// Properties checked after every step (a violation returns -1 and says why):
//   - no crash, no sanitizer report (ASan sees any stray pointer: guest RAM
//     is one heap block);
//   - NEEDS_RESET only for a chain that breaks virtio 1.2 §5.1.6 framing
//     (tx: writable bytes or shorter than the 12-byte header; ctrl: no ack
//     byte or no class/command; rx: readable bytes or shorter than the
//     header) or after raw ring corruption; such a chain always ends in it;
//   - a well-framed transmit chain ends in exactly one of: sent (the backend
//     got the frame byte for byte, behind the device's checked header with
//     num_buffers 0), a counted drop (tx_dropped) for a header the device
//     cannot honour (checked here independently: frame size, gso_type vs
//     negotiated HOST_* offloads, NEEDS_CSUM position), a counted backend
//     error, or left available when the backend is full;
//   - a well-framed control request is used with length 1 and acked OK or
//     ERR; ERR for classes whose feature was not negotiated; an OK
//     VQ_PAIRS_SET / GUEST_OFFLOADS_SET / MAC ADDR_SET really took effect
//     (active pairs, backend offloads, config space), an ERR changed nothing;
//   - the used ring stays consistent: entries only for chains made
//     available, in order (virtio-net completes in order), used length 0
//     for tx, 1 for ctrl, at most the chain's writable bytes for rx, never a
//     malformed chain;
//   - every received frame is either delivered intact (header fields and
//     payload, num_buffers chains, 1 without MRG_RXBUF), counted as dropped,
//     still in the backend or the one frame the device holds back.
//
// Input layout (missing bytes read as zero):
//   [0..3]  device feature bits the driver accepts (masked by the offer)
//   [4]     bits 0-1: queue pairs 1 + b % 3; bit 2: no control queue
//           (vhost-user style); bit 3: EVENT_IDX; bit 4: INDIRECT_DESC;
//           bit 5: the backend supports checksum offload only; bit 6: rate
//           limited (4000 bytes and 4 packets per 10 ms per direction and
//           pair, on a clock the script advances)
//   [5..]   steps: one op byte, then that op's bytes (see NetFuzzer::step)
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "virtio/devices/net.h"
#include "virtio/devices/net_wire.h"
#include "virtio/fake_driver.h"
#include "virtio/net_fake_backend.h"

namespace skiff::fuzz {

namespace netwire = virtio::netwire;

// Which outcomes an input reached (bits of exercise_net_device's result),
// so the mutation test can check its inputs explore the device.
enum NetFuzzOutcome : int {
  kNetTxSent = 1 << 0,
  kNetTxDropped = 1 << 1,
  kNetNeedsReset = 1 << 2,
  kNetCtrlAckOk = 1 << 3,
  kNetCtrlAckErr = 1 << 4,
  kNetRxDelivered = 1 << 5,
  kNetRxMerged = 1 << 6,      // a frame spread over more than one chain
  kNetTxLinearised = 1 << 7,  // more pieces than one writev takes
  kNetTxBackendFull = 1 << 8,
  kNetThrottled = 1 << 9,  // the rate limiter stopped a queue
};

class NetFuzzer {
 public:
  static constexpr uint16_t kQueueSize = 64;
  static constexpr uint64_t kRingStride = 8192;
  static constexpr uint64_t kRxSlot = 8192;
  static constexpr uint64_t kRam = virtio::testing::FakeGuest::kRamBase;
  static constexpr uint64_t kRingsBase = kRam;            // 7 queues x 8 KiB
  static constexpr uint64_t kCtrlArena = kRam + 0x10000;  // 8 KiB
  static constexpr uint64_t kTxArena = kRam + 0x12000;    // 160 KiB
  static constexpr uint64_t kTxArenaBytes = 160 * 1024;
  static constexpr uint64_t kRxArena = kTxArena + kTxArenaBytes;  // slot per (pair, desc)
  static constexpr size_t kRamBytes = 0x12000 + kTxArenaBytes + 3 * kQueueSize * kRxSlot;

  NetFuzzer(const uint8_t* data, size_t size) : data_(data), size_(size), guest_(kRamBytes) {}

  // Returns -1 with why() set if a property failed, else NetFuzzOutcome bits.
  int run() {
    uint32_t want = u32();
    uint8_t setup = byte();
    pairs_ = static_cast<uint16_t>(1 + (setup & 3) % 3);
    control_queue_ = !(setup & 4);
    event_idx_ = setup & 8;
    indirect_ = setup & 16;
    auto b = std::make_unique<virtio::testing::FakeNetBackend>(pairs_);
    if (setup & 32) b->supported = net::kOffloadCsum;
    backend_ = b.get();
    virtio::NetOptions o;
    o.mac = *net::MacAddress::parse("52:54:00:12:34:56");
    o.queue_size = kQueueSize;
    o.control_queue = control_queue_;
    if (setup & 64) {
      o.rate_limiter.bandwidth = {.size = 4000, .one_time_burst = 0, .refill_time_ms = 10};
      o.rate_limiter.ops = {.size = 4, .one_time_burst = 0, .refill_time_ms = 10};
      o.clock = [this] { return now_; };
    }
    auto r = virtio::VirtioNet::create(std::move(b), o);
    if (!r) return failed("create: " + r.error().message);
    net_ = std::move(*r);
    net_->set_memory(&guest_.mem);
    want_ = want;
    for (uint16_t q = 0; q < net_->num_queues(); ++q) {
      drivers_.push_back(std::make_unique<virtio::testing::FakeDriver>(
          guest_, kQueueSize, kRingsBase + q * kRingStride));
      queues_.emplace_back();
    }
    free_.assign(drivers_.size(), 0);
    expected_rx_.resize(pairs_);
    rx_dropped_base_.resize(pairs_);
    rx_skipped_.resize(pairs_);
    if (!start()) return -1;
    for (int steps = 0; steps < 64 && pos_ < size_; ++steps)
      if (!step()) return -1;
    return outcomes_;
  }

  [[nodiscard]] const std::string& why() const { return why_; }

 private:
  struct Outstanding {
    uint16_t head;
    uint16_t descriptors;  // in the ring's table (1 for an indirect chain)
    uint64_t writable;
    bool malformed;
    std::vector<virtio::testing::Buf> bufs;
  };
  struct QueueTrack {
    std::deque<Outstanding> out;
    unsigned in_flight = 0;  // descriptors of `out`
    uint16_t seen_used = 0;
    bool tainted = false;  // raw corruption: only crash-freedom is checked
  };

  // --- input
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() {
    uint16_t lo = byte();
    return static_cast<uint16_t>(lo | byte() << 8);
  }
  uint32_t u32() {
    uint32_t lo = u16();
    return lo | uint32_t{u16()} << 16;
  }

  int failed(std::string why) {
    why_ = std::move(why);
    return -1;
  }
  bool fail(std::string why) {
    why_ = std::move(why);
    return false;
  }
  bool has(unsigned bit) const { return net_->negotiated(bit); }

  // --- driver life cycle (virtio 1.2 §3.1.1)
  bool start() {
    using namespace virtio;
    uint64_t common = feature_bit(kFeatureVersion1) |
                      (event_idx_ ? feature_bit(kFeatureEventIdx) : 0) |
                      (indirect_ ? feature_bit(kFeatureIndirectDesc) : 0);
    net_->set_status(kStatusAcknowledge | kStatusDriver);
    net_->set_driver_features((net_->device_features() & want_) | common);
    net_->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    if (!(net_->status() & kStatusFeaturesOk)) {
      // Refused (a feature without its dependency, §5.1.3.1): a driver
      // would retry with fewer; so do we.
      net_->set_status(0);
      net_->set_status(kStatusAcknowledge | kStatusDriver);
      uint64_t basic = feature_bit(netwire::kFMac) | feature_bit(netwire::kFMrgRxbuf);
      net_->set_driver_features((net_->device_features() & want_ & basic) | common);
      net_->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
      if (!(net_->status() & kStatusFeaturesOk)) return fail("basic features refused");
    }
    for (uint16_t q = 0; q < net_->num_queues(); ++q) {
      drivers_[q]->restart();
      drivers_[q]->configure(*net_->queue(q));
      queues_[q] = QueueTrack{};
      free_[q] = 0;
    }
    net_->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    if (!net_->activated()) return fail("activation failed with valid rings");
    // §5.1.2: without MQ only receiveq1/transmitq1 exist (queue 2 is the
    // control queue then).
    usable_pairs_ = has(netwire::kFMq) ? pairs_ : 1;
    // Frames the device held back are gone with the reset; what the backend
    // still has is what rx may deliver next.
    for (uint16_t p = 0; p < pairs_; ++p) {
      expected_rx_[p].assign(backend_->rx[p].begin(), backend_->rx[p].end());
      rx_dropped_base_[p] = net_->stats(p).rx_dropped;
      rx_skipped_[p] = 0;
    }
    return true;
  }

  bool reset_and_restart() {
    net_->set_status(0);
    if (net_->status() != 0) return fail("status not 0 after reset");
    return start();
  }

  // After a step on queue q: NEEDS_RESET must have been allowed; then the
  // driver resets, as Linux does.
  bool settle(bool reset_allowed) {
    if (!net_->needs_reset()) return true;
    outcomes_ |= kNetNeedsReset;
    if (!reset_allowed) return fail("NEEDS_RESET for well-formed input");
    return reset_and_restart();
  }

  // --- building chains
  uint64_t tx_alloc(uint64_t len) {
    uint64_t at = tx_next_;
    tx_next_ = (tx_next_ + len + 15) & ~15ull;
    return at;
  }
  bool room(uint16_t q, unsigned descriptors) const {
    return queues_[q].in_flight + descriptors <= kQueueSize;
  }
  // Makes `bufs` available on queue q (direct, or through one indirect
  // table at `table`). The caller checked room().
  void add(uint16_t q, const std::vector<virtio::testing::Buf>& bufs, bool indirect, uint64_t table,
           bool malformed) {
    auto& d = *drivers_[q];
    uint16_t head;
    if (indirect) {
      for (size_t i = 0; i < bufs.size(); ++i) {
        bool last = i + 1 == bufs.size();
        guest_.put(table + 16 * i,
                   virtio::VirtqDesc{
                       bufs[i].gpa, bufs[i].len,
                       static_cast<uint16_t>((bufs[i].writable ? virtio::kDescFlagWrite : 0) |
                                             (last ? 0 : virtio::kDescFlagNext)),
                       static_cast<uint16_t>(last ? 0 : i + 1)});
      }
      // FakeDriver::add_indirect allocates from its own data area; ours
      // lives in the arenas, so publish by hand through the same ring.
      head = next_free(q);
      d.set_desc(head,
                 {table, static_cast<uint32_t>(16 * bufs.size()), virtio::kDescFlagIndirect, 0});
      d.publish(head);
      free_[q] = static_cast<uint16_t>((head + 1) % kQueueSize);
    } else {
      head = next_free(q);
      for (size_t i = 0; i < bufs.size(); ++i) {
        uint16_t idx = static_cast<uint16_t>((head + i) % kQueueSize);
        bool last = i + 1 == bufs.size();
        d.set_desc(idx, {bufs[i].gpa, bufs[i].len,
                         static_cast<uint16_t>((bufs[i].writable ? virtio::kDescFlagWrite : 0) |
                                               (last ? 0 : virtio::kDescFlagNext)),
                         static_cast<uint16_t>(last ? 0 : (idx + 1) % kQueueSize)});
      }
      d.publish(head);
      free_[q] = static_cast<uint16_t>((head + bufs.size()) % kQueueSize);
    }
    uint64_t w = 0;
    for (auto& b : bufs)
      if (b.writable) w += b.len;
    auto n = static_cast<uint16_t>(indirect ? 1 : bufs.size());
    queues_[q].out.push_back({head, n, w, malformed, bufs});
    queues_[q].in_flight += n;
  }
  // Chains complete in order, so descriptors are handed out in a circle
  // and room() keeps the ones in flight from being overwritten.
  uint16_t next_free(uint16_t q) const { return free_[q]; }

  // Reads the used entries added since the last look; calls `on(out, len)`
  // for each, in order. False if the device used what it was never given.
  template <typename F>
  bool drain_used(uint16_t q, F on) {
    auto& t = queues_[q];
    auto& d = *drivers_[q];
    uint16_t now = d.used_idx();
    uint16_t added = static_cast<uint16_t>(now - t.seen_used);
    if (t.tainted) {
      t.seen_used = now;
      return true;
    }
    if (added > t.out.size())
      return fail("queue " + std::to_string(q) + ": " + std::to_string(added) +
                  " used entries for " + std::to_string(t.out.size()) + " available chains");
    for (uint16_t i = 0; i < added; ++i) {
      virtio::VirtqUsedElem e = d.used_elem(static_cast<uint16_t>(t.seen_used + i));
      Outstanding o = t.out.front();
      if (e.id != o.head)
        return fail("queue " + std::to_string(q) + ": used id " + std::to_string(e.id) +
                    ", expected head " + std::to_string(o.head) + " (in order)");
      if (o.malformed) return fail("queue " + std::to_string(q) + ": malformed chain was used");
      if (e.len > o.writable)
        return fail("queue " + std::to_string(q) + ": used len " + std::to_string(e.len) +
                    " beyond " + std::to_string(o.writable) + " writable bytes");
      t.out.pop_front();
      t.in_flight -= o.descriptors;
      if (!on(o, e.len)) return false;
    }
    t.seen_used = now;
    return true;
  }

  // --- steps
  bool step() {
    uint8_t op = byte();
    if (trace_) std::fprintf(stderr, "net fuzz: step op %u at byte %zu\n", op, pos_ - 1);
    switch (op % 8) {
      case 0:
      case 1:
        return tx_step();
      case 2:
        return ctrl_step();
      case 3:
        return rx_post_step();
      case 4:
      case 5:
        return rx_frame_step();
      case 6:
        return corrupt_step();
      default: {
        if (op & 0x80) return reset_and_restart();
        if (op & 0x40) now_ += std::chrono::milliseconds(byte());  // time passes
        // A spurious kick (or a backend event) on any queue.
        auto q = static_cast<uint16_t>(byte() % net_->num_queues());
        if (q % 2 == 0 && q / 2 < usable_pairs_) return rx_process(static_cast<uint16_t>(q / 2));
        net_->process_queue(q);
        return settle(any_tainted_or_malformed());
      }
    }
  }

  bool any_tainted_or_malformed() const {
    for (auto& t : queues_) {
      if (t.tainted) return true;
      for (auto& o : t.out)
        if (o.malformed) return true;
    }
    return false;
  }

  // tx: [flags][pair][len u16][pieces][12 header bytes][pieces-1 splits u16]
  //     [writable piece position, with flags bit 2]
  //   flags bit 0-1: backend normal / full once / failing; bit 2: a
  //   writable piece; bit 3: indirect; bit 4: +64 KiB length; bit 5: many
  //   tiny pieces (indirect, beyond UIO_MAXIOV); bit 6: header shorter than
  //   12 (total length = len % 12). With bit 5 no splits are read.
  bool tx_step() {
    uint8_t flags = byte();
    auto pair = static_cast<uint16_t>(byte() % usable_pairs_);
    const uint16_t q = static_cast<uint16_t>(2 * pair + 1);
    uint64_t len = u16() | ((flags & 16) ? 0x10000u : 0u);
    if (flags & 64) len %= net::kVnetHeaderBytes;
    len = std::min<uint64_t>(len, net::kVnetHeaderBytes + net::kMaxFrameBytes + 64);
    unsigned pieces = 1 + byte() % 4;
    uint8_t hdr[net::kVnetHeaderBytes];
    for (auto& h : hdr) h = byte();
    bool many = (flags & 32) && indirect_ && len >= 1100 + net::kVnetHeaderBytes;
    bool indirect = ((flags & 8) && indirect_) || many;
    std::vector<uint16_t> splits;
    if (!(flags & 32))
      for (unsigned i = 0; i + 1 < pieces; ++i) splits.push_back(u16());
    uint8_t writable_at = (flags & 4) ? byte() : 0;
    if (flags & 32) pieces = many ? 1100 : 1;
    if (!queues_[q].out.empty() || queues_[q].tainted) return true;

    // The bytes: header then a pattern; split at input-chosen points.
    tx_next_ = kTxArena;
    std::vector<uint8_t> bytes(static_cast<size_t>(len));
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = i < sizeof hdr ? hdr[i] : static_cast<uint8_t>(i * 13 + flags);
    std::vector<virtio::testing::Buf> bufs;
    uint64_t off = 0;
    for (unsigned i = 0; i < pieces && off < len; ++i) {
      uint64_t left = len - off;
      uint64_t take = i + 1 == pieces ? left
                      : many          ? 1
                                      : std::min<uint64_t>(left, 1 + splits[i] % (left + 1));
      uint64_t g = tx_alloc(take);
      std::memcpy(guest_.host(g, static_cast<size_t>(take)).data(), bytes.data() + off,
                  static_cast<size_t>(take));
      bufs.push_back({g, static_cast<uint32_t>(take), false});
      off += take;
    }
    bool writable_piece = flags & 4;
    if (writable_piece) {
      uint64_t g = tx_alloc(64);
      bufs.insert(bufs.begin() + static_cast<long>(writable_at % (bufs.size() + 1)), {g, 64, true});
    }
    if (bufs.empty()) {
      uint64_t g = tx_alloc(1);
      bufs.push_back({g, 1, true});
      writable_piece = true;
    }
    if (!room(q, indirect ? 1 : static_cast<unsigned>(bufs.size()))) return true;
    // §5.1.6.2 framing: header + frame, all driver-readable.
    const bool malformed = writable_piece || len < net::kVnetHeaderBytes;
    uint64_t table = indirect ? tx_alloc(16 * bufs.size()) : 0;
    add(q, bufs, indirect, table, malformed);
    if (many) outcomes_ |= kNetTxLinearised;

    int mode = flags & 3;
    backend_->refuse_sends = mode == 1 ? 1 : 0;
    backend_->fail_sends = mode == 2;
    const virtio::NetQueueStats& st = net_->stats(pair);
    uint64_t sent0 = st.tx_packets, dropped0 = st.tx_dropped, errors0 = st.tx_errors;
    uint64_t throttled0 = st.tx_throttled;
    size_t frames0 = backend_->sent[pair].size();
    net_->process_queue(q);
    if (malformed) {
      if (!net_->needs_reset()) return fail("malformed tx chain did not need a reset");
      return settle(true);
    }
    if (net_->needs_reset()) return settle(false);
    if (mode == 1 && header_ok(hdr, len - net::kVnetHeaderBytes)) {
      // Backend full: the chain stays available and goes on the next kick.
      if (drivers_[q]->used_idx() != queues_[q].seen_used)
        return fail("tx chain used although the backend was full");
      outcomes_ |= kNetTxBackendFull;
      net_->process_queue(q);
    }
    // Over the rate: the chain waits in the ring until the limiter's timer
    // fires; let (fake) time pass as the timer would.
    for (int i = 0;
         i < 4 && drivers_[q]->used_idx() == queues_[q].seen_used && st.tx_throttled != throttled0;
         ++i) {
      outcomes_ |= kNetThrottled;
      now_ += std::chrono::seconds(1);
      net_->process_queue(q);
    }
    backend_->fail_sends = false;
    uint64_t ds = st.tx_packets - sent0, dd = st.tx_dropped - dropped0, de = st.tx_errors - errors0;
    if (!drain_used(q, [&](const Outstanding&, uint32_t used_len) {
          return used_len == 0 ? true : fail("tx used len " + std::to_string(used_len));
        }))
      return false;
    if (!queues_[q].out.empty()) return fail("tx chain not used");
    if (!header_ok(hdr, len - net::kVnetHeaderBytes)) {
      if (dd != 1 || ds != 0 || de != 0) return fail("bad tx header not counted as one drop");
      outcomes_ |= kNetTxDropped;
      return true;
    }
    if (mode == 2) return de == 1 && ds == 0 ? true : fail("backend error not counted");
    if (ds != 1 || dd != 0 || de != 0 || backend_->sent[pair].size() != frames0 + 1)
      return fail("valid tx frame not sent exactly once");
    // The backend got the checked header (num_buffers 0) and the frame.
    std::vector<uint8_t> want = bytes;
    want[10] = want[11] = 0;
    if (backend_->sent[pair].back() != want) return fail("sent frame differs from the chain");
    outcomes_ |= kNetTxSent;
    return true;
  }

  // Independent statement of what §5.1.6.2 lets the device act on.
  bool header_ok(const uint8_t* raw, uint64_t frame_len) const {
    using namespace netwire;
    Header h;
    std::memcpy(&h, raw, sizeof h);
    if (frame_len < 14 || frame_len > net::kMaxFrameBytes) return false;
    unsigned gso = h.gso_type & 0x7f;
    bool ecn = h.gso_type & kGsoEcn;
    if (gso == kGsoNone && ecn) return false;
    if (gso == kGsoTcpV4 && !has(kFHostTso4)) return false;
    if (gso == kGsoTcpV6 && !has(kFHostTso6)) return false;
    if (gso == kGsoUdp && !has(kFHostUfo)) return false;
    if (gso != kGsoNone && gso != kGsoTcpV4 && gso != kGsoTcpV6 && gso != kGsoUdp) return false;
    if (ecn && !has(kFHostEcn)) return false;
    if (h.flags & kHdrNeedsCsum) {
      if (!has(kFCsum)) return false;
      if (uint64_t{h.csum_start} + h.csum_offset + 2 > frame_len) return false;
    }
    return true;
  }

  // ctrl: [framing][class][command][len u16][data...]
  //   framing bit 0: no ack byte; bit 1: class and command in separate
  //   descriptors; bit 2: only the class byte; bit 3: a 4-byte ack buffer
  bool ctrl_step() {
    int qi = net_->ctrl_queue_index();
    uint8_t framing = byte();
    uint8_t cls = byte(), cmd = byte();
    size_t len = u16() % 1024;
    std::vector<uint8_t> payload(len);
    for (auto& x : payload) x = byte();
    if (qi < 0) return true;
    auto q = static_cast<uint16_t>(qi);
    if (!queues_[q].out.empty() || queues_[q].tainted || !room(q, 5)) return true;
    uint64_t at = kCtrlArena;
    std::vector<virtio::testing::Buf> bufs;
    guest_.put<uint8_t>(at, cls);
    guest_.put<uint8_t>(at + 1, cmd);
    if (framing & 4) {
      bufs.push_back({at, 1, false});
    } else if (framing & 2) {
      bufs.push_back({at, 1, false});
      bufs.push_back({at + 1, 1, false});
    } else {
      bufs.push_back({at, 2, false});
    }
    at += 16;
    if (!payload.empty() && !(framing & 4)) {
      std::memcpy(guest_.host(at, len).data(), payload.data(), len);
      bufs.push_back({at, static_cast<uint32_t>(len), false});
      at += (len + 15) & ~size_t{15};
    }
    uint64_t ack = at;
    guest_.put<uint32_t>(ack, 0xeeeeeeee);
    if (!(framing & 1)) bufs.push_back({ack, (framing & 8) ? 4u : 1u, true});
    // §5.1.6.5: class + command readable, then the ack byte writable.
    uint64_t readable = 0;
    for (auto& b : bufs)
      if (!b.writable) readable += b.len;
    const bool malformed = (framing & 1) || readable < 2;
    add(q, bufs, false, 0, malformed);
    uint16_t pairs_before = net_->active_queue_pairs();
    unsigned offloads_before = backend_->offloads;
    net_->process_queue(q);
    if (malformed) {
      if (!net_->needs_reset()) return fail("malformed control request did not need a reset");
      return settle(true);
    }
    if (net_->needs_reset()) return settle(false);
    uint8_t ackv = 0xee;
    if (!drain_used(q, [&](const Outstanding&, uint32_t used_len) {
          ackv = guest_.get<uint8_t>(ack);
          return used_len == 1 ? true : fail("ctrl used len " + std::to_string(used_len));
        }))
      return false;
    if (!queues_[q].out.empty()) return fail("control request not used");
    if (ackv != virtio::kNetCtrlOk && ackv != virtio::kNetCtrlErr)
      return fail("ack " + std::to_string(ackv));
    using namespace netwire;
    // ERR for what the driver may not ask (§5.1.6.5: class depends on feature).
    bool allowed = (cls == kCtrlRx && has(kFCtrlRx)) ||
                   (cls == kCtrlMac && cmd == kCtrlMacTableSet && has(kFCtrlRx)) ||
                   (cls == kCtrlMac && cmd == kCtrlMacAddrSet && has(kFCtrlMacAddr)) ||
                   (cls == kCtrlVlan && has(kFCtrlVlan)) || (cls == kCtrlMq && has(kFMq)) ||
                   (cls == kCtrlGuestOffloads && has(kFCtrlGuestOffloads));
    if (ackv == virtio::kNetCtrlOk && !allowed)
      return fail("OK for class " + std::to_string(cls) + " command " + std::to_string(cmd));
    if (ackv == virtio::kNetCtrlOk && cls == kCtrlMq && cmd == kCtrlMqVqPairsSet) {
      uint16_t want = len >= 2 ? static_cast<uint16_t>(payload[0] | payload[1] << 8) : 0;
      if (want < 1 || want > pairs_ || net_->active_queue_pairs() != want)
        return fail("VQ_PAIRS_SET " + std::to_string(want) + " acked OK, active " +
                    std::to_string(net_->active_queue_pairs()));
    }
    // §5.1.6.5.2: an address set by ADDR_SET shows in the config space.
    if (ackv == virtio::kNetCtrlOk && cls == kCtrlMac && cmd == kCtrlMacAddrSet) {
      uint8_t cfg[6];
      if (len != 6 || !net_->read_config(0, cfg) || std::memcmp(cfg, payload.data(), 6) != 0)
        return fail("MAC ADDR_SET acked OK but the config space does not show it");
    }
    // §5.1.6.5.6: the offloads the driver asked for reach the backend.
    if (ackv == virtio::kNetCtrlOk && cls == kCtrlGuestOffloads) {
      uint64_t bits = 0;
      if (len != 8) return fail("GUEST_OFFLOADS_SET of " + std::to_string(len) + " bytes acked OK");
      std::memcpy(&bits, payload.data(), 8);
      unsigned want = 0;
      if (bits & virtio::feature_bit(kFGuestCsum)) want |= net::kOffloadCsum;
      if (bits & virtio::feature_bit(kFGuestTso4)) want |= net::kOffloadTso4;
      if (bits & virtio::feature_bit(kFGuestTso6)) want |= net::kOffloadTso6;
      if (bits & virtio::feature_bit(kFGuestEcn)) want |= net::kOffloadTsoEcn;
      if (bits & virtio::feature_bit(kFGuestUfo)) want |= net::kOffloadUfo;
      if (backend_->offloads != want)
        return fail("GUEST_OFFLOADS_SET acked OK, backend offloads " +
                    std::to_string(backend_->offloads) + " want " + std::to_string(want));
    }
    if (ackv == virtio::kNetCtrlErr && net_->active_queue_pairs() != pairs_before)
      return fail("queue pairs changed by a failed command");
    if (ackv == virtio::kNetCtrlErr && backend_->offloads != offloads_before)
      return fail("offloads changed by a failed command");
    outcomes_ |= ackv == virtio::kNetCtrlOk ? kNetCtrlAckOk : kNetCtrlAckErr;
    return true;
  }

  // rx post: [pair][count][per chain: flags, len u16]
  //   flags bits 0-1: descriptors 1 + b % 3; bit 2: a readable piece;
  //   bit 3: indirect
  bool rx_post_step() {
    auto pair = static_cast<uint16_t>(byte() % usable_pairs_);
    const auto q = static_cast<uint16_t>(2 * pair);
    unsigned count = 1 + byte() % 8;
    std::vector<std::pair<uint8_t, uint64_t>> specs;
    for (unsigned c = 0; c < count; ++c) {
      uint8_t flags = byte();
      specs.emplace_back(flags, u16() % kRxSlot);
    }
    for (auto [flags, len] : specs) {
      unsigned n = 1 + (flags & 3) % 3;
      bool indirect = (flags & 8) && indirect_;
      if (queues_[q].tainted || !room(q, indirect ? 1 : n)) return true;
      uint16_t head = next_free(q);
      // Direct chains: descriptor i's buffer in its own slot; indirect: the
      // table and all buffers inside the head's slot.
      auto slot = [&](uint16_t desc) {
        return kRxArena + (uint64_t{pair} * kQueueSize + desc % kQueueSize) * kRxSlot;
      };
      std::vector<virtio::testing::Buf> bufs;
      uint64_t base = slot(head) + (indirect ? 64 : 0);
      uint64_t piece = std::max<uint64_t>(1, indirect ? std::min(len, kRxSlot - 64) / n : len);
      for (unsigned i = 0; i < n; ++i) {
        uint64_t g = indirect ? base + i * piece : slot(static_cast<uint16_t>(head + i));
        bufs.push_back({g, static_cast<uint32_t>(piece), true});
      }
      bool readable_piece = flags & 4;
      if (readable_piece) bufs.front().writable = false;  // readable first, as §2.7.4 orders
      uint64_t w = 0;
      for (auto& b : bufs)
        if (b.writable) w += b.len;
      // §5.1.6.3: writable only, room for the header.
      bool malformed = readable_piece || w < net::kVnetHeaderBytes;
      add(q, bufs, indirect, slot(head), malformed);
    }
    return true;
  }

  // rx frame: [pair][len u16][flags][12 header bytes][16 frame-start bytes]
  //   flags bit 0: +64 KiB length; bit 1: don't process now;
  //   bit 2: two frames
  bool rx_frame_step() {
    auto pair = static_cast<uint16_t>(byte() % usable_pairs_);
    uint64_t len = u16();
    uint8_t flags = byte();
    if (flags & 1) len += 0x10000;
    len = std::clamp<uint64_t>(len, 1, net::kVnetHeaderBytes + net::kMaxFrameBytes);
    std::vector<uint8_t> f(static_cast<size_t>(len));
    for (size_t i = 0; i < f.size(); ++i)
      f[i] = i < 28 ? byte() : static_cast<uint8_t>(i * 7 + flags);
    for (int k = 0; k < ((flags & 4) ? 2 : 1); ++k) {
      backend_->rx[pair].push_back(f);
      expected_rx_[pair].push_back(f);
    }
    if (flags & 2) return true;
    return rx_process(pair);
  }

  bool rx_process(uint16_t pair) {
    const auto q = static_cast<uint16_t>(2 * pair);
    const virtio::NetQueueStats& st = net_->stats(pair);
    uint64_t throttled0 = st.rx_throttled;
    net_->process_queue(q);
    if (st.rx_throttled != throttled0) outcomes_ |= kNetThrottled;
    if (net_->needs_reset()) return settle(any_tainted_or_malformed());
    if (queues_[q].tainted) {
      // Corrupted ring: which chains got which frames is unknowable; start
      // accounting afresh from what the backend still has (until a reset,
      // the queue stays tainted and only crash-freedom is checked).
      (void)drain_used(q, [](const Outstanding&, uint32_t) { return true; });
      expected_rx_[pair].assign(backend_->rx[pair].begin(), backend_->rx[pair].end());
      rx_dropped_base_[pair] = st.rx_dropped;
      rx_skipped_[pair] = 0;
      return true;
    }
    const bool mrg = has(netwire::kFMrgRxbuf);
    // Gather each delivered frame from its chains (num_buffers of them).
    std::vector<uint8_t> frame;
    unsigned left = 0, chains = 0;
    uint64_t& skipped = rx_skipped_[pair];
    auto finish = [&]() -> bool {
      // Frames are delivered in order; any before it were dropped.
      auto& exp = expected_rx_[pair];
      while (!exp.empty()) {
        const auto& e = exp.front();
        bool same = e.size() == frame.size() &&
                    std::memcmp(e.data() + 1, frame.data() + 1, 9) == 0 &&  // gso..csum
                    std::memcmp(e.data() + 12, frame.data() + 12, e.size() - 12) == 0;
        exp.pop_front();
        if (same) return true;
        ++skipped;
      }
      return fail("delivered rx frame of " + std::to_string(frame.size()) +
                  " bytes matches no frame the backend had");
    };
    if (!drain_used(q, [&](const Outstanding& o, uint32_t used_len) {
          std::vector<uint8_t> got;
          uint64_t need = used_len;
          for (auto& b : o.bufs) {
            uint64_t n = std::min<uint64_t>(need, b.len);
            auto h = guest_.host(b.gpa, static_cast<size_t>(n));
            got.insert(got.end(), h.begin(), h.end());
            need -= n;
          }
          if (left == 0) {
            if (used_len < net::kVnetHeaderBytes) return fail("rx used len below the header");
            netwire::Header h;
            std::memcpy(&h, got.data(), sizeof h);
            if (h.num_buffers == 0 || (!mrg && h.num_buffers != 1))
              return fail("num_buffers " + std::to_string(h.num_buffers));
            left = h.num_buffers;
            chains = left;
            frame.clear();
          }
          frame.insert(frame.end(), got.begin(), got.end());
          if (--left == 0) {
            if (chains > 1) outcomes_ |= kNetRxMerged;
            outcomes_ |= kNetRxDelivered;
            return finish();
          }
          return true;
        }))
      return false;
    if (left != 0) return fail("rx frame missing " + std::to_string(left) + " chains");
    // Every frame not delivered was counted as dropped, is still in the
    // backend, or is held back by the device: the one frame in its spill
    // buffer, or the rest of one batch read (kMaxRecvBatch at most).
    uint64_t dropped = st.rx_dropped - rx_dropped_base_[pair];
    if (skipped > dropped) return fail("rx frames lost without being counted");
    uint64_t gone = expected_rx_[pair].size() - backend_->rx[pair].size();
    if (expected_rx_[pair].size() < backend_->rx[pair].size() || gone < dropped - skipped ||
        gone - (dropped - skipped) > net::kMaxRecvBatch)
      return fail(std::to_string(gone) + " rx frames left the backend, " +
                  std::to_string(dropped - skipped) + " of them counted as dropped");
    return true;
  }

  // corrupt: [queue][what][index u16][value u64][len u32][flags u16]
  bool corrupt_step() {
    auto q = static_cast<uint16_t>(byte() % net_->num_queues());
    uint8_t what = byte();
    uint16_t index = u16();
    uint64_t value = u32() | uint64_t{u32()} << 32;
    uint32_t len = u32();
    uint16_t flags = u16();
    auto& d = *drivers_[q];
    queues_[q].tainted = true;
    switch (what % 4) {
      case 0:  // a descriptor: address near RAM or anywhere
        if (!(what & 0x80)) value = kRam + value % kRamBytes;
        d.set_desc(static_cast<uint16_t>(index % kQueueSize),
                   {value, len, flags, static_cast<uint16_t>(flags >> 8)});
        break;
      case 1:
        d.set_avail_idx(index);
        break;
      case 2:
        d.publish(index);
        break;
      default:
        guest_.put<uint16_t>(d.avail_gpa() + 4 + 2ull * (index % kQueueSize), index);
        break;
    }
    net_->process_queue(q);
    return settle(true);
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  virtio::testing::FakeGuest guest_;
  std::vector<std::unique_ptr<virtio::testing::FakeDriver>> drivers_;
  std::vector<QueueTrack> queues_;
  std::vector<uint16_t> free_;
  std::vector<std::deque<std::vector<uint8_t>>> expected_rx_;  // pushed, not yet seen
  std::vector<uint64_t> rx_dropped_base_;                      // rx_dropped at activation
  std::vector<uint64_t> rx_skipped_;                           // expected frames passed over since
  virtio::testing::FakeNetBackend* backend_ = nullptr;
  std::unique_ptr<virtio::VirtioNet> net_;
  uint16_t pairs_ = 1;
  uint16_t usable_pairs_ = 1;  // pairs the negotiated features give the driver
  bool control_queue_ = true, event_idx_ = false, indirect_ = false;
  uint32_t want_ = 0;
  uint64_t tx_next_ = kTxArena;
  std::chrono::nanoseconds now_{1'000'000'000};  // the rate limiters' clock
  int outcomes_ = 0;
  std::string why_;
  // SKIFF_NET_FUZZ_TRACE=1: print each step (to turn a failing input into a test).
  bool trace_ = std::getenv("SKIFF_NET_FUZZ_TRACE") != nullptr;
};

// Returns -1 if a property failed (why, if given, says which), else the
// NetFuzzOutcome bits the input reached.
inline int exercise_net_device(const uint8_t* data, size_t size, std::string* why = nullptr) {
  NetFuzzer f(data, size);
  int r = f.run();
  if (r < 0 && why) *why = f.why();
  return r;
}

}  // namespace skiff::fuzz
