#include "devices/cmos_rtc.h"

#include <algorithm>

namespace skiff {

namespace {

constexpr uint64_t kIndexPort = 0;
constexpr uint64_t kDataPort = 1;

// Register indices (MC146818A Table 2; 0x32 is the PC century byte).
constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kDayOfWeek = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegA = 0x0a;
constexpr uint8_t kRegB = 0x0b;
constexpr uint8_t kRegC = 0x0c;
constexpr uint8_t kRegD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kRegAUip = 0x80;
constexpr uint8_t kRegADefault = 0x26;  // 32.768 kHz time base, 1.024 kHz rate
constexpr uint8_t kRegBSet = 0x80;
constexpr uint8_t kRegBBinary = 0x04;  // DM: 1 = binary, 0 = BCD
constexpr uint8_t kRegB24Hour = 0x02;
constexpr uint8_t kRegBDefault = kRegB24Hour;
constexpr uint8_t kRegDValidRam = 0x80;  // VRT

constexpr uint8_t kHourPm = 0x80;  // 12h mode: bit 7 of the hours byte

// UIP rises tBUC = 244 us before each update (datasheet, "Update Cycle").
constexpr auto kUipWindow = std::chrono::microseconds(244);

bool is_time_register(uint8_t index) {
  return index == kSeconds || index == kMinutes || index == kHours || index == kDayOfWeek ||
         index == kDayOfMonth || index == kMonth || index == kYear || index == kCentury;
}

void put16(uint8_t* ram, uint8_t index, uint64_t value) {
  ram[index] = static_cast<uint8_t>(value);
  ram[index + 1] = static_cast<uint8_t>(value >> 8);
}

}  // namespace

CmosRtc::CmosRtc(const CmosMemoryConfig& memory, Clock clock) : clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::system_clock::now(); };
  constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;
  const uint64_t low = memory.below_4g_bytes;
  // Base memory (KiB below 1 MiB, at most 640).
  put16(ram_, 0x15, std::min<uint64_t>(low / kKiB, 640));
  // Extended memory in KiB above 1 MiB (0x17/0x18, mirrored at 0x30/0x31),
  // saturating at 0xffff (64 MiB).
  uint64_t ext = low > kMiB ? std::min<uint64_t>((low - kMiB) / kKiB, 0xffff) : 0;
  put16(ram_, 0x17, ext);
  put16(ram_, 0x30, ext);
  // Memory between 16 MiB and 4 GiB in 64 KiB units (SeaBIOS reads this).
  uint64_t above16 =
      low > 16 * kMiB ? std::min<uint64_t>((low - 16 * kMiB) / (64 * kKiB), 0xffff) : 0;
  put16(ram_, 0x34, above16);
  // Memory above 4 GiB in 64 KiB units, 24 bits (saturating: 1 TiB).
  uint64_t high = std::min<uint64_t>(memory.above_4g_bytes / (64 * kKiB), 0xffffff);
  ram_[0x5b] = static_cast<uint8_t>(high);
  ram_[0x5c] = static_cast<uint8_t>(high >> 8);
  ram_[0x5d] = static_cast<uint8_t>(high >> 16);
  reset_control_locked();
}

void CmosRtc::reset() {
  std::lock_guard lock(mu_);
  reset_control_locked();
}

void CmosRtc::reset_control_locked() {
  ram_[kRegA] = kRegADefault;
  ram_[kRegB] = kRegBDefault;
  ram_[kRegC] = 0;
  ram_[kRegD] = kRegDValidRam;
  frozen_ = false;
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    // The index port is write-only and reads as all-ones (as on QEMU).
    data[i] = offset + i == kDataPort ? read_register(index_) : 0xff;
  }
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i == kIndexPort) {
      index_ = data[i] & 0x7f;  // bit 7 is the NMI mask: ignored
    } else if (offset + i == kDataPort) {
      write_register(index_, data[i]);
    }
  }
}

std::tm CmosRtc::guest_time() const {
  if (frozen_) return frozen_time_;
  auto now = std::chrono::floor<std::chrono::seconds>(clock_().time_since_epoch()).count();
  std::time_t t = static_cast<std::time_t>(now + offset_seconds_);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

uint8_t CmosRtc::encode(int value) const {
  if (value < 0) value = 0;
  if (ram_[kRegB] & kRegBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>((((value / 10) % 10) << 4) | (value % 10));
}

int CmosRtc::decode(uint8_t value) const {
  if (ram_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t CmosRtc::encode_hours(int hours) const {
  if (ram_[kRegB] & kRegB24Hour) return encode(hours);
  // 12h mode: 12, 1, ..., 11 with bit 7 for PM.
  int h12 = hours % 12 == 0 ? 12 : hours % 12;
  return static_cast<uint8_t>(encode(h12) | (hours >= 12 ? kHourPm : 0));
}

int CmosRtc::decode_hours(uint8_t value) const {
  if (ram_[kRegB] & kRegB24Hour) return decode(value);
  int h = decode(static_cast<uint8_t>(value & ~kHourPm)) % 12;
  return (value & kHourPm) ? h + 12 : h;
}

uint8_t CmosRtc::read_register(uint8_t index) {
  switch (index) {
    case kSeconds:
      return encode(guest_time().tm_sec);
    case kMinutes:
      return encode(guest_time().tm_min);
    case kHours:
      return encode_hours(guest_time().tm_hour);
    case kDayOfWeek:
      return encode(guest_time().tm_wday + 1);  // 1 = Sunday
    case kDayOfMonth:
      return encode(guest_time().tm_mday);
    case kMonth:
      return encode(guest_time().tm_mon + 1);
    case kYear:
      return encode((guest_time().tm_year + 1900) % 100);
    case kCentury:
      return encode((guest_time().tm_year + 1900) / 100);
    case kRegA: {
      uint8_t a = ram_[kRegA] & static_cast<uint8_t>(~kRegAUip);
      if (!frozen_) {
        auto since_second = clock_().time_since_epoch() %
                            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                std::chrono::seconds(1));
        if (since_second >= std::chrono::seconds(1) - kUipWindow) a |= kRegAUip;
      }
      return a;
    }
    case kRegC:
      return 0;  // no interrupt flags: IRQ 8 is not emulated
    default:
      return ram_[index & 0x7f];
  }
}

void CmosRtc::set_time_field(std::tm& tm, uint8_t index, uint8_t value) const {
  switch (index) {
    case kSeconds:
      tm.tm_sec = decode(value);
      break;
    case kMinutes:
      tm.tm_min = decode(value);
      break;
    case kHours:
      tm.tm_hour = decode_hours(value);
      break;
    case kDayOfMonth:
      tm.tm_mday = decode(value);
      break;
    case kMonth:
      tm.tm_mon = decode(value) - 1;
      break;
    case kYear: {
      int century = (tm.tm_year + 1900) / 100;
      tm.tm_year = century * 100 + decode(value) - 1900;
      break;
    }
    case kCentury: {
      int year_in_century = (tm.tm_year + 1900) % 100;
      tm.tm_year = decode(value) * 100 + year_in_century - 1900;
      break;
    }
    default:
      break;  // day of week follows from the date; writes are ignored
  }
}

void CmosRtc::commit_time(std::tm tm) {
  // timegm normalises out-of-range fields (a guest writing 0x99 minutes gets
  // a later time, not a crash); -1 with errno means it could not.
  tm.tm_isdst = 0;
  std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return;
  auto now = std::chrono::floor<std::chrono::seconds>(clock_().time_since_epoch()).count();
  offset_seconds_ = static_cast<int64_t>(t) - static_cast<int64_t>(now);
}

void CmosRtc::write_register(uint8_t index, uint8_t value) {
  if (is_time_register(index)) {
    if (frozen_) {
      set_time_field(frozen_time_, index, value);
    } else {
      std::tm tm = guest_time();
      set_time_field(tm, index, value);
      commit_time(tm);
    }
    return;
  }
  switch (index) {
    case kRegA:
      ram_[kRegA] = value & static_cast<uint8_t>(~kRegAUip);  // UIP is read-only
      break;
    case kRegB: {
      bool set = value & kRegBSet;
      if (set && !frozen_) {
        frozen_time_ = guest_time();
        frozen_ = true;
      } else if (!set && frozen_) {
        frozen_ = false;
        commit_time(frozen_time_);
      }
      ram_[kRegB] = value;
      break;
    }
    case kRegC:
    case kRegD:
      break;  // read-only
    default:
      ram_[index & 0x7f] = value;
      break;
  }
}

}  // namespace skiff
