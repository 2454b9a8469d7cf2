// skiff-vhost: skiff's virtio devices served as vhost-user back ends to any
// VMM (DESIGN.md "Programs"; specs/vhost-user.rst). Argument parsing and
// wiring only: the protocol is src/vhost_user, the devices src/virtio.
//
//   skiff-vhost blk --socket PATH --disk path=P[,readonly=on][,num_queues=N]...
//   skiff-vhost rng --socket PATH [--src /dev/urandom]
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
#include "vhost_user/server.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/rng.h"

namespace {

using namespace skiff;

constexpr int kExitUsage = 2;

// One line per queue; the multi-queue test reads these.
void log_blk_stats(const virtio::VirtioBlock& blk, uint16_t queues) {
  for (uint16_t i = 0; i < queues; ++i) {
    const auto& s = blk.stats(i);
    LOG_INFO("blk-q{}: reads={} read_bytes={} writes={} write_bytes={} flushes={} errors={}", i,
             s.read_ops.load(), s.read_bytes.load(), s.write_ops.load(), s.write_bytes.load(),
             s.flush_ops.load(), s.errors.load());
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
      "Exit status: 0 after SIGINT/SIGTERM, 1 if the image or socket cannot be opened,\n"
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
                  "(on is not supported yet), serial=S (at most 20 bytes), format=raw|qcow2 "
                  "(default: probe)")
      ->required();

  std::optional<std::string> src;
  auto* rng = app.add_subcommand("rng", "virtio-rng (QEMU: vhost-user-rng-pci)");
  rng->add_option("--socket", socket, "Unix socket path to listen on")->required();
  rng->add_option("--src", src, "Entropy source file (default: getrandom(2))");

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
  auto dev = virtio::VirtioRng::create(src);
  if (!dev) {
    fmt::print(stderr, "skiff-vhost: {}\n", dev.error().what());
    return 1;
  }
  return serve(**dev, socket, stop->get(), {});
}
