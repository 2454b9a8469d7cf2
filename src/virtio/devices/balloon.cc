#include "virtio/devices/balloon.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "virtio/buffers.h"

namespace skiff::virtio {

namespace {

// struct virtio_balloon_config (§5.5.4): only the two fields that exist
// without FREE_PAGE_HINT / PAGE_POISON, which skiff does not offer.
constexpr uint64_t kConfigNumPages = 0;
constexpr uint64_t kConfigActual = 4;
constexpr size_t kConfigSize = 8;

// struct virtio_balloon_stat (§5.5.6.3): le16 tag, le64 val, packed.
constexpr uint64_t kStatEntryBytes = 10;
// Linux sends 10 entries; a stats buffer beyond this is not a driver's.
constexpr uint64_t kMaxStatsBytes = 64 * 1024;

constexpr std::array<std::string_view, kBalloonStatCount> kStatNames{
    "swap_in",      "swap_out",         "major_faults", "minor_faults",        "free_memory",
    "total_memory", "available_memory", "disk_caches",  "hugetlb_allocations", "hugetlb_failures"};

}  // namespace

std::string_view balloon_stat_name(size_t tag) {
  return tag < kStatNames.size() ? kStatNames[tag] : std::string_view{};
}

Result<std::unique_ptr<VirtioBalloon>> VirtioBalloon::create(const BalloonOptions& opts) {
  if (opts.initial_target_bytes / kBalloonPageSize > std::numeric_limits<uint32_t>::max())
    return fail("balloon size {} is larger than the device can express (16 TiB)",
                opts.initial_target_bytes);
  // MUST_TELL_HOST: Linux tells before reusing pages anyway; offering it
  // makes that a rule the huge-page tracker can rely on (give_back).
  uint64_t features =
      feature_bit(kBalloonFeatureStatsVq) | feature_bit(kBalloonFeatureMustTellHost);
  uint16_t queues = 3;  // inflateq, deflateq, statsq
  if (opts.deflate_on_oom) features |= feature_bit(kBalloonFeatureDeflateOnOom);
  if (opts.free_page_reporting) {
    features |= feature_bit(kBalloonFeatureReporting);
    ++queues;
  }
  Fd timer;
  if (opts.stats_interval_s != 0) {
    int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return fail_errno("timerfd_create for the balloon's statistics polling");
    timer.reset(fd);
  }
  return std::unique_ptr<VirtioBalloon>(
      new VirtioBalloon(opts, features, queues, std::move(timer)));
}

VirtioBalloon::VirtioBalloon(const BalloonOptions& opts, uint64_t features, uint16_t num_queues,
                             Fd timer)
    : VirtioDevice(kVirtioIdBalloon, "balloon", features, num_queues, kQueueSize),
      stats_interval_s_(opts.stats_interval_s),
      timer_(std::move(timer)) {
  config_bytes().assign(kConfigSize, 0);
  auto pages = static_cast<uint32_t>(opts.initial_target_bytes / kBalloonPageSize);
  target_pages_ = pages;
  std::memcpy(config_bytes().data() + kConfigNumPages, &pages, sizeof pages);
}

std::vector<BackendEvent> VirtioBalloon::backend_events() const {
  // statsq is queue 2 whenever it exists (§5.5.2); the timer is armed only
  // when the driver negotiated it.
  if (!timer_.valid()) return {};
  return {BackendEvent{timer_.get(), 2}};
}

Result<> VirtioBalloon::set_target(uint64_t bytes) {
  uint64_t pages = bytes / kBalloonPageSize;
  if (pages > std::numeric_limits<uint32_t>::max())
    return fail("balloon size {} is larger than the device can express (16 TiB)", bytes);
  auto p = static_cast<uint32_t>(pages);
  target_pages_.store(p, std::memory_order_release);
  // §5.5.6.1: the device changes num_pages and notifies the driver of the
  // configuration change; update_config raises the interrupt.
  update_config(std::span(reinterpret_cast<const uint8_t*>(&p), sizeof p), kConfigNumPages);
  return {};
}

uint64_t VirtioBalloon::target_bytes() const {
  return uint64_t{target_pages_.load(std::memory_order_acquire)} * kBalloonPageSize;
}

uint64_t VirtioBalloon::actual_bytes() const {
  return uint64_t{actual_pages_.load(std::memory_order_acquire)} * kBalloonPageSize;
}

std::optional<uint64_t> VirtioBalloon::stat(size_t tag) const {
  if (tag >= kBalloonStatCount || !(stats_seen_.load() & (1u << tag))) return std::nullopt;
  return stats_[tag].load(std::memory_order_relaxed);
}

Result<> VirtioBalloon::on_config_write(uint64_t offset, std::span<const uint8_t> in) {
  // The driver writes `actual` only (§5.5.6.1); num_pages is the device's.
  if (offset < kConfigActual)
    return fail("balloon: driver write [{:#x}, +{}) into num_pages ignored", offset, in.size());
  std::memcpy(config_bytes().data() + offset, in.data(), in.size());
  uint32_t actual;
  std::memcpy(&actual, config_bytes().data() + kConfigActual, sizeof actual);
  actual_pages_.store(actual, std::memory_order_release);
  return {};
}

Result<> VirtioBalloon::on_activate() {
  if (timer_.valid() && negotiated(kBalloonFeatureStatsVq)) {
    itimerspec its{};
    its.it_interval.tv_sec = stats_interval_s_;
    its.it_value.tv_sec = stats_interval_s_;
    if (::timerfd_settime(timer_.get(), 0, &its, nullptr) < 0)
      return fail_errno("arming the balloon's statistics timer");
  }
  return {};
}

void VirtioBalloon::on_reset() {
  if (timer_.valid()) {
    itimerspec off{};
    (void)::timerfd_settime(timer_.get(), 0, &off, nullptr);
  }
  held_stats_.reset();
  partial_.clear();
  // The driver's balloon is gone with it (a rebooted guest starts empty).
  actual_pages_.store(0, std::memory_order_release);
  std::memset(config_bytes().data() + kConfigActual, 0, 4);
}

VirtioBalloon::Role VirtioBalloon::role_of(uint16_t index) const {
  if (index == 0) return Role::kInflate;
  if (index == 1) return Role::kDeflate;
  // §5.5.2: the optional queues take the next indices only when negotiated.
  uint16_t next = 2;
  if (negotiated(kBalloonFeatureStatsVq)) {
    if (index == next) return Role::kStats;
    ++next;
  }
  if (negotiated(kBalloonFeatureReporting) && index == next) return Role::kReporting;
  return Role::kNone;
}

Result<> VirtioBalloon::handle_queue(uint16_t index, Queue& queue) {
  switch (role_of(index)) {
    case Role::kInflate:
      return handle_pfns(queue, index, true);
    case Role::kDeflate:
      return handle_pfns(queue, index, false);
    case Role::kStats:
      return handle_stats(queue, index);
    case Role::kReporting:
      return handle_reporting(queue, index);
    case Role::kNone:
      break;  // a queue the negotiated features do not give a meaning: ignore
  }
  return {};
}

void VirtioBalloon::discard(uint64_t gpa, uint64_t len) {
  if (auto r = memory()->discard(gpa, len); !r)
    counters_.discard_errors.fetch_add(1, std::memory_order_relaxed);
}

void VirtioBalloon::give_back(uint64_t gpa, uint64_t len, bool track) {
  uint64_t page = memory()->page_size(gpa);
  if (page <= kBalloonPageSize) {
    discard(gpa, len);
    return;
  }
  uint64_t end = gpa + len;
  uint64_t whole_start = std::min((gpa + page - 1) & ~(page - 1), end);
  uint64_t whole_end = std::max(end & ~(page - 1), whole_start);
  // Pieces are remembered only when the driver must tell before reusing a
  // page (MUST_TELL_HOST, §5.5.6.1): then a deflate always reaches the
  // tracker before the guest writes the page again, and completing a huge
  // page later cannot discard memory the guest took back.
  track = track && negotiated(kBalloonFeatureMustTellHost);
  if (track)
    for (uint64_t a = gpa; a < whole_start; a += kBalloonPageSize) track_piece(a, page, true);
  if (whole_end > whole_start) {
    for (uint64_t p = whole_start; p < whole_end; p += page) partial_.erase(p);
    discard(whole_start, whole_end - whole_start);
  }
  if (track)
    for (uint64_t a = whole_end; a < end; a += kBalloonPageSize) track_piece(a, page, true);
}

void VirtioBalloon::track_piece(uint64_t gpa, uint64_t page, bool inflated) {
  uint64_t base = gpa & ~(page - 1);
  uint64_t index = (gpa - base) / kBalloonPageSize;
  auto it = partial_.find(base);
  if (it == partial_.end()) {
    if (!inflated) return;
    if (partial_.size() >= kMaxPartialPages) {
      auto oldest = std::min_element(partial_.begin(), partial_.end(),
                                     [](auto& a, auto& b) { return a.second.age < b.second.age; });
      partial_.erase(oldest);
    }
    it = partial_.emplace(base, PartialPage{}).first;
    it->second.bits.assign(static_cast<size_t>((page / kBalloonPageSize + 63) / 64), 0);
  }
  PartialPage& p = it->second;
  p.age = ++partial_clock_;
  uint64_t& word = p.bits[static_cast<size_t>(index / 64)];
  uint64_t bit = uint64_t{1} << (index % 64);
  if (inflated && !(word & bit)) {
    word |= bit;
    ++p.count;
  } else if (!inflated && (word & bit)) {
    word &= ~bit;
    --p.count;
  }
  if (p.count == page / kBalloonPageSize) {
    partial_.erase(it);
    discard(base, page);  // every piece is in the balloon: the page can go
  } else if (p.count == 0) {
    partial_.erase(it);
  }
}

Result<> VirtioBalloon::handle_pfns(Queue& queue, uint16_t index, bool inflate) {
  const GuestMemory& mem = *memory();
  const char* what = inflate ? "inflateq" : "deflateq";
  bool used_any = false;
  for (;;) {
    if (!SKIFF_TRY(queue.pop_into(chain_))) break;
    if (chain_.writable_bytes() != 0)
      return fail(
          "{} request has {} device-writable bytes (§5.5.6: PFN arrays are driver-readable)", what,
          chain_.writable_bytes());
    uint64_t n = chain_.readable_bytes();
    if (n % 4 != 0) return fail("{} request of {} bytes is not a whole number of PFNs", what, n);
    if (n > kMaxPfnBytes)
      return fail("{} request of {} PFNs is above the limit of {}", what, n / 4, kMaxPfnBytes / 4);

    // Runs of consecutive PFNs within one RAM region: one discard each.
    uint64_t run_start = 0, run_len = 0;
    uint64_t valid = 0, ignored = 0;
    auto flush = [&] {
      if (run_len != 0 && inflate) give_back(run_start, run_len, true);
      run_len = 0;
    };
    // A PFN may straddle two buffers (§2.7.4: no assumption on framing).
    uint8_t carry[4];
    size_t carried = 0;
    for (auto buf : chain_.readable()) {
      for (uint8_t byte : buf) {
        carry[carried++] = byte;
        if (carried < 4) continue;
        carried = 0;
        uint32_t pfn;
        std::memcpy(&pfn, carry, 4);  // le32; skiff is x86-64 only
        uint64_t gpa = uint64_t{pfn} * kBalloonPageSize;
        if (!mem.contains(gpa, kBalloonPageSize)) {
          ++ignored;
          continue;
        }
        ++valid;
        if (!inflate) {
          if (!partial_.empty()) {
            uint64_t page = mem.page_size(gpa);
            if (page > kBalloonPageSize) track_piece(gpa, page, false);
          }
          continue;
        }
        if (run_len != 0 && gpa == run_start + run_len &&
            mem.contains(run_start, run_len + kBalloonPageSize)) {
          run_len += kBalloonPageSize;
          continue;
        }
        flush();
        run_start = gpa;
        run_len = kBalloonPageSize;
      }
    }
    flush();
    (inflate ? counters_.inflated_pages : counters_.deflated_pages)
        .fetch_add(valid, std::memory_order_relaxed);
    if (ignored) counters_.ignored_pfns.fetch_add(ignored, std::memory_order_relaxed);
    SKIFF_TRY_VOID(queue.add_used(chain_.head(), 0));
    used_any = true;
  }
  if (used_any) signal_used(index);
  return {};
}

Result<> VirtioBalloon::handle_stats(Queue& queue, uint16_t index) {
  // The polling timer: hand the held buffer back, which asks the driver
  // for fresh figures (§5.5.6.3). The timerfd is edge-triggered: drain it.
  if (timer_.valid()) {
    uint64_t ticks = 0;
    if (::read(timer_.get(), &ticks, sizeof ticks) == sizeof ticks && ticks != 0 && held_stats_) {
      SKIFF_TRY_VOID(queue.add_used(*held_stats_, 0));
      held_stats_.reset();
      signal_used(index);
    }
  }
  for (;;) {
    if (!SKIFF_TRY(queue.pop_into(chain_))) break;
    if (held_stats_) return fail("statsq: a second buffer while the device holds one (§5.5.6.3)");
    if (chain_.writable_bytes() != 0)
      return fail("statsq buffer has {} device-writable bytes", chain_.writable_bytes());
    uint64_t n = chain_.readable_bytes();
    if (n % kStatEntryBytes != 0 || n > kMaxStatsBytes)
      return fail("statsq buffer of {} bytes is not a list of 10-byte entries", n);
    uint8_t entry[kStatEntryBytes];
    for (uint64_t off = 0; off < n; off += kStatEntryBytes) {
      copy_from_buffers(chain_.readable(), off, entry);
      uint16_t tag;
      uint64_t val;
      std::memcpy(&tag, entry, 2);
      std::memcpy(&val, entry + 2, 8);
      if (tag >= kBalloonStatCount) continue;  // unknown tags are ignored (§5.5.6.3)
      stats_[tag].store(val, std::memory_order_relaxed);
      stats_seen_.fetch_or(1u << tag, std::memory_order_release);
    }
    counters_.stats_updates.fetch_add(1, std::memory_order_relaxed);
    held_stats_ = chain_.head();  // kept until the next polling tick
  }
  return {};
}

Result<> VirtioBalloon::handle_reporting(Queue& queue, uint16_t index) {
  const GuestMemory& mem = *memory();
  bool used_any = false;
  for (;;) {
    if (!SKIFF_TRY(queue.pop_into(chain_))) break;
    if (chain_.readable_bytes() != 0)
      return fail(
          "reporting_vq request has {} driver-readable bytes (§5.5.6.6: free pages are "
          "device-writable buffers)",
          chain_.readable_bytes());
    for (auto buf : chain_.writable()) {
      auto gpa = mem.gpa_of(buf);
      if (!gpa) return fail("reporting_vq buffer is not guest RAM");  // Queue checked it
      // Whole 4 KiB pages only; Linux reports 2 MiB+ blocks, so nothing is lost.
      uint64_t start = (*gpa + kBalloonPageSize - 1) & ~(kBalloonPageSize - 1);
      uint64_t end = (*gpa + buf.size()) & ~(kBalloonPageSize - 1);
      if (end <= start) continue;
      // Reported pages stay the guest's: whole host pages only, never tracked.
      give_back(start, end - start, false);
      counters_.reported_bytes.fetch_add(end - start, std::memory_order_relaxed);
    }
    SKIFF_TRY_VOID(queue.add_used(chain_.head(), 0));
    used_any = true;
  }
  if (used_any) signal_used(index);
  return {};
}

}  // namespace skiff::virtio
