// KSM on mergeable guest RAM (--memory mergeable=on): two GuestRams with the
// same page contents, as two VMs booted from the same image would have, get
// their pages merged once ksmd runs. ksmd is switched on for the test and
// its settings put back; runs serially (tests/memory/CMakeLists.txt).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "memory/guest_ram.h"

namespace skiff {
namespace {

constexpr uint64_t kPages = 1024;  // 4 MiB per "VM"
constexpr const char* kKsm = "/sys/kernel/mm/ksm/";

std::string read_ksm(const std::string& name) {
  std::ifstream in(kKsm + name);
  std::string v;
  in >> v;
  return v;
}

bool write_ksm(const std::string& name, const std::string& v) {
  std::ofstream out(kKsm + name);
  out << v;
  out.flush();
  return static_cast<bool>(out);
}

// Pages of this process that KSM has merged (Linux 6.1+), or -1.
long merged_pages() {
  std::ifstream in("/proc/self/ksm_merging_pages");
  long v = -1;
  in >> v;
  return v;
}

// ksmd's run/pages_to_scan/sleep_millisecs, restored on scope exit.
class KsmdRunning {
 public:
  bool start(std::string* why) {
    for (const char* k : {"run", "pages_to_scan", "sleep_millisecs"})
      saved_.emplace_back(k, read_ksm(k));
    if (!write_ksm("pages_to_scan", "5000") || !write_ksm("sleep_millisecs", "10") ||
        !write_ksm("run", "1")) {
      *why = std::string("cannot write ") + kKsm + " (needs root)";
      return false;
    }
    return true;
  }
  ~KsmdRunning() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) write_ksm(it->first, it->second);
  }

 private:
  std::vector<std::pair<std::string, std::string>> saved_;
};

Result<GuestRam> guest(bool mergeable) {
  RamOptions o;
  o.mergeable = mergeable;
  RamZone z{"", {{0, kPages * 4096}}, o};
  auto ram = GuestRam::create(std::span(&z, 1));
  if (!ram) return ram;
  // Page i holds the byte pattern i+1 (not zero: KSM may treat zero pages
  // differently), the same in every "VM".
  auto bytes = *ram->memory().slice(0, kPages * 4096);
  for (uint64_t i = 0; i < kPages; ++i)
    std::memset(bytes.data() + i * 4096, static_cast<int>(i % 251 + 1), 4096);
  return ram;
}

TEST(Ksm, IdenticalMergeableGuestsShareTheirPages) {
  if (access(kKsm, F_OK) != 0) GTEST_SKIP() << "skipped: no /sys/kernel/mm/ksm (CONFIG_KSM off)";
  if (merged_pages() < 0) GTEST_SKIP() << "skipped: no /proc/self/ksm_merging_pages (Linux < 6.1)";
  KsmdRunning ksmd;
  std::string why;
  if (!ksmd.start(&why)) GTEST_SKIP() << "skipped: " << why;

  // Plain RAM first: identical, but not mergeable, so nothing is merged.
  {
    auto a = guest(false), b = guest(false);
    ASSERT_TRUE(a && b);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(merged_pages(), 0);
  }
  auto a = guest(true), b = guest(true);
  ASSERT_TRUE(a && b) << (a ? b.error().what() : a.error().what());
  uint64_t sharing_before = std::stoull(read_ksm("pages_sharing"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // 2 x 1024 pages with 251 distinct contents: all but 251 can go.
  while (merged_pages() < static_cast<long>(kPages) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(merged_pages(), static_cast<long>(kPages))
      << "ksmd merged too few pages; pages_sharing " << sharing_before << " -> "
      << read_ksm("pages_sharing");
  EXPECT_GT(std::stoull(read_ksm("pages_sharing")), sharing_before);
  // The contents are unchanged: merging is invisible to the guest.
  EXPECT_EQ(*a->memory().read_obj<uint8_t>(5 * 4096 + 7), 6);
}

}  // namespace
}  // namespace skiff
