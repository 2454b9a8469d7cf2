// skiff-vhost: skiff's virtio devices served as vhost-user back ends to any
// VMM (DESIGN.md "Programs"; specs/vhost-user.rst). Argument parsing and
// wiring only: the protocol is src/vhost_user, the devices src/virtio.
//
//   skiff-vhost blk --socket PATH --disk path=P[,readonly=on][,num_queues=N]...
//   skiff-vhost rng --socket PATH [--src /dev/urandom]
//   skiff-vhost net --socket PATH --tap NAME [--num-queues N] [--mac M]
//
// The process keeps serving when a front end disconnects; SIGINT/SIGTERM
// end it (exit 0). Usage errors exit 2, start-up failures 1.
#include <signal.h>
#include <sys/signalfd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <optional>

#include "base/log.h"
#include "block/open_image.h"
#include "cli/skiff_vhost/vhost_options.h"
#include "net/tap.h"
#include "vhost_user/server.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/net.h"
#include "virtio/devices/rng.h"

namespace {

using namespace skiff;

constexpr int kExitUsage = 2;

// One line per queue; the multi-queue test reads these.
void log_blk_stats(const virtio::VirtioBlock& blk, uint16_t queues) {
  for (uint16_t i = 0; i < queues; ++i) {
    const auto& s = blk.stats(i);
    // async: requests served through the queue's io_uring; bounced: of
    // those, through a bounce buffer (direct=on with unaligned buffers).
    LOG_INFO(
        "blk-q{}: reads={} read_bytes={} writes={} write_bytes={} flushes={} errors={} async={} "
        "bounced={}",
        i, s.read_ops.load(), s.read_bytes.load(), s.write_ops.load(), s.write_bytes.load(),
        s.flush_ops.load(), s.errors.load(), s.async_ops.load(), s.bounced.load());
  }
}

// One line per queue pair; the Linux multi-queue test reads these.
void log_net_stats(const virtio::VirtioNet& net) {
  for (uint16_t i = 0; i < net.max_queue_pairs(); ++i) {
    const auto& s = net.stats(i);
    LOG_INFO(
        "net-q{}: rx_packets={} rx_bytes={} rx_dropped={} tx_packets={} tx_bytes={} "
        "tx_dropped={} tx_errors={}",
        i, s.rx_packets.load(), s.rx_bytes.load(), s.rx_dropped.load(), s.tx_packets.load(),
        s.tx_bytes.load(), s.tx_dropped.load(), s.tx_errors.load());
  }
}

// SIGINT/SIGTERM as a readable fd, so the server's poll sees them. Blocked
// before any thread starts, so every thread inherits the mask.
Result<Fd> stop_signal_fd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return fail("blocking SIGINT/SIGTERM");
  Fd fd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!fd) return fail_errno("signalfd");
  return fd;
}

int serve(virtio::VirtioDevice& device, const std::string& socket, int stop_fd,
          const std::function<void()>& on_disconnect) {
  auto server = vhost_user::VhostUserServer::listen(socket);
  if (!server) {
    fmt::print(stderr, "skiff-vhost: {}\n", server.error().what());
    return 1;
  }
  vhost_user::VhostUserBackend backend(device);
  LOG_INFO("skiff-vhost: serving {} on {}", device.name(), socket);
  if (auto r = server->run(backend, stop_fd, on_disconnect); !r) {
    fmt::print(stderr, "skiff-vhost: {}\n", r.error().what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "skiff-vhost: serve skiff's virtio devices as vhost-user back ends (the back end listens on "
      "--socket; one front end at a time; a front end may disconnect and reconnect)"};
  app.require_subcommand(1);
  app.footer(
      "QEMU front end (guest RAM must be shareable):\n"
      "  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem\n"
      "  -chardev socket,id=c0,path=SOCK -device vhost-user-blk-pci,chardev=c0,num-queues=N\n"
      "  (or -device vhost-user-rng-pci,chardev=c0). QEMU's num-queues must not exceed\n"
      "  num_queues, its queue-size must not exceed queue_size.\n"
      "  net: -netdev vhost-user,id=n0,chardev=c0,queues=P\n"
      "       -device virtio-net-pci,netdev=n0,mq=on,vectors=2P+2,mac=M (P = --num-queues / 2;\n"
      "  QEMU keeps the control queue and its MAC; give it the same --mac).\n"
      "Exit status: 0 after SIGINT/SIGTERM, 1 if the image, tap or socket cannot be opened,\n"
      "2 for a usage error.");
  int verbosity = 0;
  std::string log_file;
  app.add_flag("-v", verbosity,
               "More log output: -v info (connections, per-queue counters), -vv debug");
  app.add_option("--log-file", log_file, "Log to FILE instead of stderr");

  std::string socket;
  std::string disk;
  auto* blk =
      app.add_subcommand("blk", "virtio-blk over a raw or qcow2 image (QEMU: vhost-user-blk-pci)");
  blk->add_option("--socket", socket, "Unix socket path to listen on")->required();
  blk->add_option("--disk", disk,
                  "path=FILE (required), readonly=on|off (default off), num_queues=N (1-64, "
                  "default 1), queue_size=N (power of 2, 2-32768, default 256), direct=on|off "
                  "(on: O_DIRECT, bypassing the host page cache; raw images on a file system "
                  "that supports it), serial=S (at most 20 bytes), format=raw|qcow2 "
                  "(default: probe)")
      ->required();

  std::optional<std::string> src;
  auto* rng = app.add_subcommand("rng", "virtio-rng (QEMU: vhost-user-rng-pci)");
  rng->add_option("--socket", socket, "Unix socket path to listen on")->required();
  rng->add_option("--src", src, "Entropy source file (default: getrandom(2))");

  std::string tap;
  uint64_t net_queues = 2;
  uint64_t net_queue_size = 256;
  std::string mac;
  auto* netc = app.add_subcommand(
      "net", "virtio-net over a tap interface (QEMU: -netdev vhost-user + virtio-net-pci)");
  netc->add_option("--socket", socket, "Unix socket path to listen on")->required();
  netc->add_option("--tap", tap,
                   "Tap interface to attach to (created if missing, which needs CAP_NET_ADMIN; "
                   "with more than one queue pair it must be multi_queue)")
      ->required();
  netc->add_option("--num-queues", net_queues,
                   "Virtqueues: 2 per queue pair (rx + tx), even, 2-64 (default 2); one tap "
                   "queue per pair");
  netc->add_option("--queue-size", net_queue_size,
                   "Entries per virtqueue (power of 2, default 256)");
  netc->add_option("--mac", mac,
                   "MAC address reported in the config space (default: random, locally "
                   "administered)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);
    return kExitUsage;
  }

  std::optional<cli::VhostDiskOptions> disk_opts;
  if (blk->parsed()) {
    auto d = cli::parse_vhost_disk(disk);
    if (!d) {
      fmt::print(stderr, "skiff-vhost: {}\n", d.error().what());
      return kExitUsage;
    }
    disk_opts = std::move(*d);
  }
  std::optional<cli::VhostNetOptions> net_opts;
  if (netc->parsed()) {
    auto n = cli::parse_vhost_net(tap, net_queues, mac, net_queue_size);
    if (!n) {
      fmt::print(stderr, "skiff-vhost: {}\n", n.error().what());
      return kExitUsage;
    }
    net_opts = std::move(*n);
  }
  if (auto r = init_logging(verbosity, log_file); !r) {
    fmt::print(stderr, "skiff-vhost: {}\n", r.error().what());
    return kExitUsage;
  }
  auto stop = stop_signal_fd();
  if (!stop) {
    fmt::print(stderr, "skiff-vhost: {}\n", stop.error().what());
    return 1;
  }

  if (disk_opts) {
    OpenImageOptions open;
    open.format = disk_opts->format;
    open.read_only = disk_opts->blk.read_only;
    open.direct = disk_opts->direct;
    auto image = open_image(disk_opts->path, open);
    if (!image) {
      fmt::print(stderr, "skiff-vhost: {}\n", image.error().what());
      return 1;
    }
    uint16_t queues = disk_opts->blk.num_queues;
    auto dev = virtio::VirtioBlock::create(std::move(*image), disk_opts->blk);
    if (!dev) {
      fmt::print(stderr, "skiff-vhost: {}\n", dev.error().what());
      return 1;
    }
    auto& device = **dev;
    int rc = serve(device, socket, stop->get(), [&] { log_blk_stats(device, queues); });
    log_blk_stats(device, queues);
    return rc;
  }
  if (net_opts) {
    auto backend = net::Tap::open(net_opts->tap, net_opts->queue_pairs);
    if (!backend) {
      fmt::print(stderr, "skiff-vhost: {}\n", backend.error().what());
      return 1;
    }
    auto dev = virtio::VirtioNet::create(std::move(*backend), net_opts->net);
    if (!dev) {
      fmt::print(stderr, "skiff-vhost: {}\n", dev.error().what());
      return 1;
    }
    auto& device = **dev;
    LOG_INFO("skiff-vhost: net on tap {} with {} queue pair(s), mac {}", net_opts->tap,
             net_opts->queue_pairs, net_opts->net.mac.to_string());
    int rc = serve(device, socket, stop->get(), [&] { log_net_stats(device); });
    log_net_stats(device);
    return rc;
  }
  auto dev = virtio::VirtioRng::create(src);
  if (!dev) {
    fmt::print(stderr, "skiff-vhost: {}\n", dev.error().what());
    return 1;
  }
  return serve(**dev, socket, stop->get(), {});
}
