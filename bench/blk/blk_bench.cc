// blk_bench: 4 KiB random reads at queue depth N through the virtio-blk
// device code (VirtioBlock over a raw file, io_uring per queue), driven by
// an in-process fake driver that keeps N requests in flight on one queue,
// the way the transports do it: wait on the queue's completion eventfd, hand
// the finished requests' slots back to the avail ring, process_queue().
// Prints IOPS and IOPS per CPU-second of the whole process (getrusage:
// every thread, including io_uring's io-wq workers). bench/blk/run.sh runs
// it next to fio on the same file and prints the ratio.
//
//   blk_bench --file PATH [--seconds S] [--depth N] [--sync]
#include <linux/virtio_blk.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "block/raw_image.h"
#include "virtio/devices/blk.h"
#include "virtio/fake_driver.h"

using namespace skiff;
using namespace skiff::virtio;

namespace {

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](timeval t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

int usage() {
  std::fprintf(stderr, "usage: blk_bench --file PATH [--seconds S] [--depth N] [--sync]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  double seconds = 3;
  uint32_t depth = 32;
  bool sync = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--file" && i + 1 < argc)
      path = argv[++i];
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (a == "--depth" && i + 1 < argc)
      depth = static_cast<uint32_t>(std::atoi(argv[++i]));
    else if (a == "--sync")
      sync = true;
    else
      return usage();
  }
  if (path.empty() || depth == 0 || depth > 64) return usage();

  auto image = RawImage::open(path, false);
  if (!image) {
    std::fprintf(stderr, "blk_bench: %s\n", image.error().what().c_str());
    return 1;
  }
  uint64_t sectors = (*image)->size() / 512;
  // Slot i uses descriptors 3i..3i+2 (header, 4 KiB data, status): a fixed
  // layout, so a slot can be reposted as soon as it is used, in any order.
  constexpr uint16_t kQueueSize = 256;
  BlkOptions opts;
  opts.queue_size = kQueueSize;
  opts.use_io_uring = !sync;
  auto dev = VirtioBlock::create(std::move(*image), opts);
  if (!dev) {
    std::fprintf(stderr, "blk_bench: %s\n", dev.error().what().c_str());
    return 1;
  }
  VirtioBlock& blk = **dev;
  testing::FakeGuest guest(4 << 20);
  testing::FakeDriver driver(guest, kQueueSize);
  blk.set_memory(&guest.mem);
  blk.set_interrupt([](InterruptKind, uint16_t) {});
  blk.set_status(kStatusAcknowledge | kStatusDriver);
  blk.set_driver_features(blk.device_features());
  blk.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  driver.configure(*blk.queue(0));
  blk.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);

  std::mt19937_64 rng(1);
  std::vector<uint64_t> hdr(depth), data(depth), status(depth);
  for (uint32_t i = 0; i < depth; ++i) {
    hdr[i] = driver.alloc(16);
    data[i] = driver.alloc(4096 + 4096);
    data[i] = (data[i] + 4095) & ~4095ull;
    status[i] = driver.alloc(16);
    auto d = static_cast<uint16_t>(3 * i);
    driver.set_desc(d, {hdr[i], 16, kDescFlagNext, static_cast<uint16_t>(d + 1)});
    driver.set_desc(d + 1,
                    {data[i], 4096, kDescFlagNext | kDescFlagWrite, static_cast<uint16_t>(d + 2)});
    driver.set_desc(d + 2, {status[i], 1, kDescFlagWrite, 0});
  }
  auto post = [&](uint32_t i) {
    uint64_t sector = (rng() % (sectors / 8)) * 8;  // 4 KiB aligned
    guest.put(hdr[i], virtio_blk_outhdr{VIRTIO_BLK_T_IN, 0, sector});
    driver.publish(static_cast<uint16_t>(3 * i));
  };
  for (uint32_t i = 0; i < depth; ++i) post(i);

  std::vector<BackendEvent> events = blk.backend_events();
  if (!sync && events.empty()) {
    std::fprintf(stderr, "blk_bench: the device has no io_uring\n");
    return 1;
  }
  // Wait like the transports do: epoll, the completion eventfd edge-triggered.
  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!sync) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, events[0].fd, &ev) != 0) {
      std::perror("blk_bench: epoll_ctl");
      return 1;
    }
  }
  uint16_t seen = 0;
  uint64_t done = 0, errors = 0;
  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = cpu_seconds();
  auto deadline = t0 + std::chrono::duration<double>(seconds);
  blk.process_queue(0);
  while (std::chrono::steady_clock::now() < deadline) {
    // Sleep only when the device answered nothing new (a guest driver would
    // have had its interrupt for those and posted more at once).
    if (!sync && driver.used_idx() == seen) {
      epoll_event ev{};
      (void)::epoll_wait(ep.get(), &ev, 1, 100);
    }
    uint16_t used = driver.used_idx();
    for (; seen != used; ++seen) {
      VirtqUsedElem e = driver.used_elem(seen);
      uint32_t slot = e.id / 3;
      if (guest.host(status[slot], 1)[0] != VIRTIO_BLK_S_OK) ++errors;
      ++done;
      post(slot);
    }
    blk.process_queue(0);
    if (blk.needs_reset()) {
      std::fprintf(stderr, "blk_bench: device failed\n");
      return 1;
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = cpu_seconds() - cpu0;
  if (errors) std::fprintf(stderr, "blk_bench: %llu requests failed\n", (unsigned long long)errors);
  std::printf("ios=%llu wall_s=%.3f cpu_s=%.3f iops=%.0f iops_per_cpu_s=%.0f async=%llu\n",
              (unsigned long long)done, wall, cpu, static_cast<double>(done) / wall,
              static_cast<double>(done) / cpu, (unsigned long long)blk.stats(0).async_ops.load());
  return errors ? 1 : 0;
}
