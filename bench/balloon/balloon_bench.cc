// balloon_bench: how fast the balloon gives guest RAM back to the host
// through the device path — a driver in this process posts 256-PFN arrays
// on the inflateq (as Linux's virtio_balloon does) of a VirtioBalloon over
// real mmap'd RAM — against the host's own floor measured in the same run:
// madvise(MADV_DONTNEED) (or fallocate(PUNCH_HOLE) for --shared) of the
// same pages, once per 4 KiB page (a device that does not batch) and in
// 1 MiB calls (what batching contiguous PFNs can reach).
//
//   balloon_bench [--mib N (1024)] [--shared] [--reps N (3)]
//
// Reclaimed = the drop of this process's RSS (/proc/self/statm), so a path
// that frees nothing scores zero. Prints one line per path and the ratios.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "virtio/devices/balloon.h"
#include "virtio/fake_driver.h"

using namespace skiff;
using namespace skiff::virtio;

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBase = 0x40000000;  // guest address of the big region

uint64_t rss() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Sample {
  double seconds = 0;
  uint64_t reclaimed = 0;
  double mib_per_s() const { return static_cast<double>(reclaimed) / kMiB / seconds; }
};

// The median by reclaim rate.
Sample median(std::vector<Sample> v) {
  std::sort(v.begin(), v.end(),
            [](const Sample& a, const Sample& b) { return a.mib_per_s() < b.mib_per_s(); });
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 1024;
  bool shared = false;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mib" && i + 1 < argc) {
      mib = std::stoull(argv[++i]);
    } else if (a == "--shared") {
      shared = true;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::stoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: balloon_bench [--mib N] [--shared] [--reps N]\n");
      return 2;
    }
  }
  const uint64_t size = mib * kMiB;
  int fd = -1;
  void* host;
  if (shared) {
    fd = ::memfd_create("balloon-bench", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      std::perror("memfd");
      return 1;
    }
    host = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  } else {
    host = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  if (host == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  auto* bytes = static_cast<uint8_t*>(host);
  // 4 KiB pages: the balloon's unit; no THP, so "per page" means per page.
  if (!shared) ::madvise(host, size, MADV_NOHUGEPAGE);
  auto touch = [&] {
    for (uint64_t off = 0; off < size; off += 4096) bytes[off] = 1;
  };

  testing::FakeGuest rings(1 << 20);
  MemoryRegion big{kBase, size, bytes};
  big.fd = fd;
  rings.mem = *GuestMemory::create(
      {{testing::FakeGuest::kRamBase, rings.ram.size(), rings.ram.data()}, big});
  const uint32_t first_pfn = kBase >> 12;
  const uint64_t pages = size / 4096;

  auto device_run = [&]() -> Sample {
    auto dev = std::move(*VirtioBalloon::create({}));
    dev->set_memory(&rings.mem);
    testing::FakeDriver drv(rings, 256);
    dev->set_status(kStatusAcknowledge | kStatusDriver);
    dev->set_driver_features(kCommonFeatures);
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    drv.configure(*dev->queue(0));
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    uint64_t buf = drv.alloc(1024);
    auto* pfns = reinterpret_cast<uint32_t*>(rings.host(buf, 1024).data());
    touch();
    uint64_t before = rss();
    double t0 = now();
    for (uint64_t done = 0; done < pages; done += 256) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(256, pages - done));
      for (uint32_t i = 0; i < n; ++i) pfns[i] = first_pfn + static_cast<uint32_t>(done + i);
      drv.add_chain({{buf, n * 4, false}});
      dev->process_queue(0);
    }
    double t = now() - t0;
    if (dev->needs_reset() || dev->counters().inflated_pages != pages) {
      std::fprintf(stderr, "balloon_bench: the device did not take every page\n");
      std::exit(1);
    }
    return {t, before - std::min(before, rss())};
  };
  auto raw_run = [&](uint64_t chunk) -> Sample {
    touch();
    uint64_t before = rss();
    double t0 = now();
    for (uint64_t off = 0; off < size; off += chunk) {
      int r = shared ? ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   static_cast<off_t>(off), static_cast<off_t>(chunk))
                     : ::madvise(bytes + off, chunk, MADV_DONTNEED);
      if (r != 0) {
        std::perror("discard");
        std::exit(1);
      }
    }
    double t = now() - t0;
    return {t, before - std::min(before, rss())};
  };

  std::vector<Sample> dev_r, page_r, mib_r;
  for (int i = 0; i < reps; ++i) {  // interleaved, so drift hits all three
    dev_r.push_back(device_run());
    page_r.push_back(raw_run(4096));
    mib_r.push_back(raw_run(kMiB));
  }
  Sample d = median(dev_r), p = median(page_r), m = median(mib_r);
  const char* how = shared ? "fallocate(PUNCH_HOLE), memfd MAP_SHARED"
                           : "madvise(MADV_DONTNEED), private anonymous";
  std::printf("balloon inflate of %llu MiB (%s), median of %d:\n",
              static_cast<unsigned long long>(mib), how, reps);
  auto line = [](const char* what, const Sample& r) {
    std::printf("  %-38s %8.0f MiB/s  (%.0f MiB reclaimed in %.1f ms)\n", what, r.mib_per_s(),
                static_cast<double>(r.reclaimed) / kMiB, r.seconds * 1000);
  };
  line("device: inflateq, 256-PFN requests", d);
  line("host floor: one call per 4 KiB page", p);
  line("host floor: one call per 1 MiB", m);
  std::printf("  ratio device / per-page calls: %.2f\n", d.mib_per_s() / p.mib_per_s());
  std::printf("  ratio device / 1 MiB calls:    %.2f\n", d.mib_per_s() / m.mib_per_s());
  return 0;
}
