// VirtioBalloon: the traditional memory balloon (virtio 1.2 §5.5). The host
// sets a target (config num_pages, in 4 KiB pages); the guest's driver
// gives that many pages to the balloon by putting their page frame numbers
// on the inflateq, takes them back through the deflateq and reports how
// many it holds in config `actual`.
//
// What the device does with them:
//   - inflateq: every PFN (little-endian u32, §5.5.6: 4 KiB units whatever
//     the guest page size) is checked against guest RAM and the page is
//     given back to the host with GuestMemory::discard (MADV_DONTNEED, or a
//     punched hole for shared memfd RAM), so the VMM's RSS really drops.
//     Runs of consecutive PFNs are discarded with one call. A PFN outside
//     RAM (a hole, a BAR) is ignored and counted, as QEMU does: the driver
//     can only balloon pages it owns, so such a PFN frees nothing and
//     harms nothing (§5.5.6.1 gives the device no duty for it).
//     Over huge-page RAM (hugetlb memfd) only whole host pages can be
//     freed: the 4 KiB pieces of a partly ballooned huge page are
//     remembered (a bitmap per page, at most kMaxPartialPages pages, like
//     QEMU's "partially ballooned page") and the page is discarded once all
//     of it is in the balloon. That is safe only if the driver cannot reuse
//     a piece before its deflate reaches the device, so pieces are tracked
//     only with VIRTIO_BALLOON_F_MUST_TELL_HOST negotiated (offered always;
//     Linux tells the host first anyway).
//   - deflateq: checked the same way; takes pieces out of the huge-page
//     tracker, nothing else: a discarded page faults back in (zero-filled)
//     on its next access.
//   - statsq (VIRTIO_BALLOON_F_STATS_VQ, offered always): the driver posts
//     one buffer of {le16 tag, le64 val} entries (§5.5.6.3); the device
//     reads it, keeps the buffer and, every statistics_polling_interval
//     seconds (a timerfd, BackendEvent), hands it back to ask for fresh
//     figures. Interval 0: only what the driver sends on its own.
//   - reporting_vq (VIRTIO_BALLOON_F_REPORTING, free_page_reporting=on):
//     device-writable buffers that point at free guest pages (§5.5.6.6);
//     whole host pages inside them are discarded (never tracked: the pages
//     stay the guest's), the buffers returned.
//   - VIRTIO_BALLOON_F_DEFLATE_ON_OOM (deflate_on_oom=on): a feature bit
//     only; the driver deflates under memory pressure by itself.
// Queue numbering (§5.5.2): inflateq 0, deflateq 1, then statsq and
// reporting_vq only if negotiated, so reporting_vq is 2 without stats.
//
// Hostile driver (NEEDS_RESET, one log line): device-writable buffers on
// the inflate/deflate/stats queues, readable ones on reporting_vq, a PFN
// array that is not a multiple of 4 bytes or longer than kMaxPfnBytes, a
// stats buffer that is not a whole number of 10-byte entries or a second
// stats buffer while one is held (§5.5.6.3: at most one).
//
// Not here: VIRTIO_BALLOON_F_FREE_PAGE_HINT (live-migration hinting),
// PAGE_POISON, save/restore.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>

#include "base/fd.h"
#include "virtio/device.h"

namespace skiff::virtio {

inline constexpr uint32_t kVirtioIdBalloon = 5;  // VIRTIO_ID_BALLOON

// Feature bits (§5.5.3).
inline constexpr unsigned kBalloonFeatureMustTellHost = 0;
inline constexpr unsigned kBalloonFeatureStatsVq = 1;
inline constexpr unsigned kBalloonFeatureDeflateOnOom = 2;
inline constexpr unsigned kBalloonFeatureReporting = 5;

inline constexpr uint64_t kBalloonPageSize = 4096;  // VIRTIO_BALLOON_PFN_SHIFT 12
inline constexpr size_t kBalloonStatCount = 10;     // VIRTIO_BALLOON_S_NR

// Statistic names, by tag (§5.5.6.3), as Cloud Hypervisor's counters name them.
[[nodiscard]] std::string_view balloon_stat_name(size_t tag);

struct BalloonOptions {
  uint64_t initial_target_bytes = 0;  // --balloon size
  bool deflate_on_oom = false;
  bool free_page_reporting = false;
  uint32_t stats_interval_s = 0;  // 0: no polling
};

class VirtioBalloon final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // 64 Ki PFNs (256 MiB) per request; Linux sends at most 256
  // (VIRTIO_BALLOON_ARRAY_PFNS_MAX).
  static constexpr uint64_t kMaxPfnBytes = 256 * 1024;
  // Huge pages tracked while partly ballooned; the oldest is forgotten
  // beyond this (its pieces stay with the guest's balloon, unfreed).
  static constexpr size_t kMaxPartialPages = 64;

  struct Counters {
    std::atomic<uint64_t> inflated_pages{0};  // PFNs discarded through inflateq
    std::atomic<uint64_t> deflated_pages{0};
    std::atomic<uint64_t> reported_bytes{0};  // freed through reporting_vq
    std::atomic<uint64_t> ignored_pfns{0};    // outside RAM
    std::atomic<uint64_t> discard_errors{0};  // the host refused a discard
    std::atomic<uint64_t> stats_updates{0};   // stats buffers received
  };

  [[nodiscard]] static Result<std::unique_ptr<VirtioBalloon>> create(const BalloonOptions& opts);

  // A new target (bytes, rounded down to 4 KiB pages): config num_pages
  // changes and the driver gets a config-change interrupt (§5.5.6.1).
  // Callable from any thread.
  [[nodiscard]] Result<> set_target(uint64_t bytes);
  [[nodiscard]] uint64_t target_bytes() const;
  // What the driver says the balloon holds (config actual), in bytes.
  [[nodiscard]] uint64_t actual_bytes() const;

  [[nodiscard]] const Counters& counters() const { return counters_; }
  // The last value the driver reported for `tag`, if it ever did.
  [[nodiscard]] std::optional<uint64_t> stat(size_t tag) const;

  [[nodiscard]] std::vector<BackendEvent> backend_events() const override;

 protected:
  [[nodiscard]] Result<> on_activate() override;
  void on_reset() override;
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  [[nodiscard]] Result<> on_config_write(uint64_t offset, std::span<const uint8_t> in) override;

 private:
  enum class Role { kInflate, kDeflate, kStats, kReporting, kNone };

  VirtioBalloon(const BalloonOptions& opts, uint64_t features, uint16_t num_queues, Fd timer);
  [[nodiscard]] Role role_of(uint16_t index) const;
  [[nodiscard]] Result<> handle_pfns(Queue& queue, uint16_t index, bool inflate);
  [[nodiscard]] Result<> handle_stats(Queue& queue, uint16_t index);
  [[nodiscard]] Result<> handle_reporting(Queue& queue, uint16_t index);
  // Discards [gpa, gpa + len), counting a host refusal instead of failing.
  void discard(uint64_t gpa, uint64_t len);
  // Inflated 4 KiB pages [gpa, gpa + len) within one region: discarded
  // directly, or through the partial-huge-page tracker.
  // `track`: remember partial huge pages (inflate), or free whole host
  // pages only (free page reporting: the pages stay the guest's).
  void give_back(uint64_t gpa, uint64_t len, bool track);
  // One 4 KiB piece of a huge page of `page_size` bytes in or out of the balloon.
  void track_piece(uint64_t gpa, uint64_t page_size, bool inflated);

  uint32_t stats_interval_s_;
  Fd timer_;  // timerfd for the stats polling interval; invalid when 0
  DescriptorChain chain_;
  std::optional<uint16_t> held_stats_;  // head of the stats buffer we hold
  struct PartialPage {
    std::vector<uint64_t> bits;  // one per 4 KiB piece
    uint64_t count = 0;
    uint64_t age = 0;
  };
  std::map<uint64_t, PartialPage> partial_;  // by huge page gpa; device thread only
  uint64_t partial_clock_ = 0;
  std::atomic<uint32_t> target_pages_{0};
  std::atomic<uint32_t> actual_pages_{0};
  Counters counters_;
  std::array<std::atomic<uint64_t>, kBalloonStatCount> stats_{};
  std::atomic<uint32_t> stats_seen_{0};  // bit per tag
};

}  // namespace skiff::virtio
