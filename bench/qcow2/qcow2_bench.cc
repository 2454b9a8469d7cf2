// qcow2_bench: throughput of the block library on a fully allocated qcow2
// image against the same bytes in a raw file, in the same run, and against
// `qemu-img bench` on the same qcow2 with the same access pattern.
//
// Workloads (synchronous, one request at a time, page cache on):
//   seq-read-1M / seq-write-1M   1 MiB requests at 0, 1M, 2M, ... (wrapping)
//   rand-read-4k / rand-write-4k 4 KiB requests at uniformly random aligned
//                                offsets (same seed for raw and qcow2)
// Each workload runs `--reps` short slices alternately on raw and qcow2,
// `--seconds` each; the best slice of each is reported (the host is shared:
// short alternating slices see the same load, and the best one is the one
// least disturbed by it).
//
// qemu-img comparison: qemu-img bench can only walk with a fixed step, so
// both sides walk offsets k * step mod size (1 MiB step for sequential,
// a step of 257 * 4 KiB for "scattered" 4 KiB, which visits every 4 KiB block
// once per pass), same request count, `-d 1` (one request in flight, like this
// library; also `-d 64`, qemu-img's default, for reference) and `-t writeback` (page cache, like
// this library; tmpfs has no O_DIRECT). qemu-img's own "Run completed in" time is used, so its
// process start-up is not counted.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/raw_image.h"

namespace {

using Clock = std::chrono::steady_clock;
using skiff::DiskImage;

struct Options {
  std::string dir = "/dev/shm";
  uint64_t size = 512ull << 20;
  uint64_t cluster_size = 65536;
  double seconds = 0.25;
  int reps = 8;
  std::string qemu_img = "qemu-img";  // "" = skip the comparison
  bool keep = false;
};

struct Workload {
  const char* name;
  uint64_t request;
  bool write;
  bool random;
};

constexpr Workload kWorkloads[] = {
    {"seq-read-1M", 1 << 20, false, false},
    {"seq-write-1M", 1 << 20, true, false},
    {"rand-read-4k", 4096, false, true},
    {"rand-write-4k", 4096, true, true},
};

struct Figures {
  uint64_t ops = 0;
  double seconds = 0;
  [[nodiscard]] double iops() const { return seconds > 0 ? double(ops) / seconds : 0; }
  [[nodiscard]] double mib_s(uint64_t request) const {
    return iops() * double(request) / double(1 << 20);
  }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "qcow2_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(skiff::Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().what());
  return std::move(*r);
}
void must(skiff::Result<> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().what());
}

struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : size(n), data(static_cast<uint8_t*>(std::aligned_alloc(4096, n))) {
    if (!data) die("out of memory");
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  size_t size;
  uint8_t* data;
};

// Same bytes into raw and qcow2; every qcow2 cluster is allocated by
// writing it through the library.
void make_images(const Options& o, const std::string& raw, const std::string& qcow2) {
  must(skiff::RawImage::create(raw, o.size), "creating the raw file");
  skiff::qcow2::CreateOptions co;
  co.size = o.size;
  co.cluster_size = o.cluster_size;
  must(skiff::qcow2::create(qcow2, co), "creating the qcow2 image");
  auto r = must(skiff::open_image(raw, {.format = "raw"}), "opening raw");
  auto q = must(skiff::open_image(qcow2, {.format = "qcow2"}), "opening qcow2");
  std::vector<uint8_t> chunk(1 << 20);
  std::mt19937_64 rng(42);
  for (uint64_t off = 0; off < o.size; off += chunk.size()) {
    for (size_t i = 0; i < chunk.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(&chunk[i], &v, 8);
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), o.size - off));
    must(r->write(off, std::span(chunk.data(), n)), "filling raw");
    must(q->write(off, std::span(chunk.data(), n)), "filling qcow2");
  }
  must(r->flush(), "flushing raw");
  must(q->flush(), "flushing qcow2");
}

// Offsets of a workload: sequential (wrapping), uniform random (seeded), or
// qemu-img bench's fixed step (k * step mod size).
class OffsetStream {
 public:
  OffsetStream(const Workload& w, uint64_t size, uint64_t step)
      : request_(w.request), random_(w.random), step_(step), blocks_(size / w.request) {}
  uint64_t next() {
    if (step_ != 0) {
      const uint64_t off = pos_;
      pos_ = (pos_ + step_) % (blocks_ * request_);
      return off;
    }
    if (random_) return std::uniform_int_distribution<uint64_t>(0, blocks_ - 1)(rng_) * request_;
    const uint64_t off = pos_;
    pos_ = (pos_ + request_) % (blocks_ * request_);
    return off;
  }

 private:
  uint64_t request_;
  bool random_;
  uint64_t step_;
  uint64_t blocks_;
  uint64_t pos_ = 0;
  std::mt19937_64 rng_{7};
};

// Runs `w` on `img` for `seconds` (or exactly `count` requests if nonzero).
Figures run(DiskImage& img, const Workload& w, uint64_t step, double seconds, uint64_t count) {
  AlignedBuffer buf(w.request);
  std::memset(buf.data, 0x5a, buf.size);
  OffsetStream offsets(w, img.size(), step);
  Figures f;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  for (;;) {
    if (count != 0 ? f.ops == count : (f.ops % 16 == 0 && Clock::now() >= deadline)) break;
    const uint64_t off = offsets.next();
    if (w.write) {
      must(img.write(off, std::span<const uint8_t>(buf.data, buf.size)), "write");
    } else {
      must(img.read(off, std::span(buf.data, buf.size)), "read");
    }
    ++f.ops;
  }
  f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return f;
}

// `qemu-img bench` with the same pattern; returns its "Run completed in"
// time, or a negative value if it failed.
double qemu_img_bench(const Options& o, const std::string& qcow2, const Workload& w, uint64_t step,
                      uint64_t count, int depth) {
  std::string cmd = o.qemu_img + " bench -f qcow2 -t writeback -d " + std::to_string(depth) +
                    " -c " + std::to_string(count) + " -s " + std::to_string(w.request) + " -S " +
                    std::to_string(step) + (w.write ? " -w" : "") + " '" + qcow2 + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char line[512];
  double secs = -1;
  while (std::fgets(line, sizeof line, p))
    if (std::sscanf(line, "Run completed in %lf seconds", &secs) == 1) break;
  while (std::fgets(line, sizeof line, p)) {
  }
  const int st = ::pclose(p);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
  return secs;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--dir") {
      o.dir = value();
    } else if (a == "--size-mib") {
      o.size = std::stoull(value()) << 20;
    } else if (a == "--cluster-size") {
      o.cluster_size = std::stoull(value());
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--reps") {
      o.reps = std::max(1, std::stoi(value()));
    } else if (a == "--qemu-img") {
      o.qemu_img = value();
    } else if (a == "--no-qemu-img") {
      o.qemu_img.clear();
    } else if (a == "--keep") {
      o.keep = true;
    } else {
      die("usage: qcow2_bench [--dir DIR] [--size-mib N] [--cluster-size BYTES] [--seconds S] "
          "[--reps N] [--qemu-img PATH | --no-qemu-img] [--keep]");
    }
  }
  if (o.size < (16ull << 20)) die("--size-mib must be at least 16");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const std::string raw = o.dir + "/skiff-qcow2-bench.raw";
  const std::string qcow2 = o.dir + "/skiff-qcow2-bench.qcow2";
  std::printf("qcow2_bench: %s, %llu MiB, cluster %llu, best of %d x %.2f s, sync, page cache\n",
              o.dir.c_str(), static_cast<unsigned long long>(o.size >> 20),
              static_cast<unsigned long long>(o.cluster_size), o.reps, o.seconds);
  make_images(o, raw, qcow2);

  std::printf("\n%-14s %12s %12s %12s %12s %8s\n", "workload", "raw MiB/s", "raw IOPS",
              "qcow2 MiB/s", "qcow2 IOPS", "q/raw");
  {
    auto r = must(skiff::open_image(raw, {.format = "raw"}), "opening raw");
    auto q = must(skiff::open_image(qcow2, {.format = "qcow2"}), "opening qcow2");
    for (const Workload& w : kWorkloads) {
      Figures best_raw, best_q;
      for (int rep = 0; rep < o.reps; ++rep) {
        const Figures fr = run(*r, w, 0, o.seconds, 0);
        const Figures fq = run(*q, w, 0, o.seconds, 0);
        if (fr.iops() > best_raw.iops()) best_raw = fr;
        if (fq.iops() > best_q.iops()) best_q = fq;
      }
      std::printf("%-14s %12.0f %12.0f %12.0f %12.0f %8.2f\n", w.name, best_raw.mib_s(w.request),
                  best_raw.iops(), best_q.mib_s(w.request), best_q.iops(),
                  best_q.iops() / best_raw.iops());
    }
    must(q->flush(), "flushing qcow2");
  }

  if (!o.qemu_img.empty()) {
    std::printf(
        "\nsame qcow2, same pattern (offset k*step mod size); skiff: one request in flight, "
        "qemu-img bench -d 1 and -d 64 (its default)\n");
    std::printf("%-14s %10s %8s %12s %12s %8s %12s %8s\n", "workload", "step", "count",
                "skiff IOPS", "qemu -d1", "s/q-d1", "qemu -d64", "s/q-d64");
    for (const Workload& w : kWorkloads) {
      const uint64_t step = w.random ? 257 * w.request : w.request;
      // About `seconds` of qemu-img's run at a rate near the library's.
      Figures probe;
      {
        auto q = must(skiff::open_image(qcow2, {.format = "qcow2"}), "opening qcow2");
        probe = run(*q, w, step, std::min(0.3, o.seconds), 0);
      }
      const uint64_t count = std::max<uint64_t>(64, uint64_t(probe.iops() * o.seconds));
      double best_s = 0, best_q = 0, best_q64 = 0;
      for (int rep = 0; rep < std::min(o.reps, 3); ++rep) {
        {
          auto q = must(skiff::open_image(qcow2, {.format = "qcow2"}), "opening qcow2");
          const Figures f = run(*q, w, step, 0, count);
          must(q->flush(), "flushing qcow2");
          best_s = std::max(best_s, f.iops());
        }
        for (int depth : {1, 64}) {
          const double secs = qemu_img_bench(o, qcow2, w, step, count, depth);
          if (secs < 0) die("qemu-img bench failed (is qemu-utils installed?)");
          // qemu-img prints 3 decimals; a 0.000 s run cannot give a rate.
          double& best = depth == 1 ? best_q : best_q64;
          if (secs > 0) best = std::max(best, double(count) / secs);
        }
      }
      std::printf("%-14s %10llu %8llu %12.0f %12.0f %8.2f %12.0f %8.2f\n", w.name,
                  static_cast<unsigned long long>(step), static_cast<unsigned long long>(count),
                  best_s, best_q, best_q > 0 ? best_s / best_q : 0.0, best_q64,
                  best_q64 > 0 ? best_s / best_q64 : 0.0);
    }
  }
  if (!o.keep) {
    std::remove(raw.c_str());
    std::remove(qcow2.c_str());
  }
  return 0;
}
