// skiff: one process per VM. Parses the command line, builds the machine,
// runs it (again after each guest reboot) and maps how it ended to the exit
// status documented in --help.
#include <csignal>
#include <cstdio>

#include <fmt/format.h>

#include "api/api_server.h"
#include "api/event_monitor.h"
#include "base/log.h"
#include "cli/skiff_options.h"
#include "vmm/exit_status.h"
#include "vmm/host_info.h"
#include "vmm/machine.h"
#include "vmm/vmm_service.h"

using namespace skiff;

namespace {

// skiff --api-socket: serve the API until vmm.shutdown; with --kernel, also
// create and boot that VM at start.
int serve_api(const cli::SkiffArgs& args) {
  // A client that hangs up mid-response must not kill the VMM.
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<api::EventMonitor> monitor;
  if (args.event_monitor) {
    auto m = api::EventMonitor::open(args.event_monitor->path, args.event_monitor->fd);
    if (!m) {
      fmt::print(stderr, "skiff: --event-monitor: {}\n", m.error().what());
      return kExitUsage;
    }
    monitor = std::move(*m);
  }
  api::EventMonitor* mon = monitor.get();
  VmmService vmm([mon](const VmmEvent& e) {
    if (mon) mon->write(e);
  });
  auto server = api::ApiServer::start({args.api_socket->path, args.api_socket->fd}, vmm);
  if (!server) {
    fmt::print(stderr, "skiff: --api-socket: {}\n", server.error().what());
    return kExitUsage;
  }
  if (args.has_kernel) {
    auto ok = vmm.create(args.vm);
    if (ok) ok = vmm.boot();
    if (!ok) {
      LOG_ERROR("{}", ok.error().message);
      if (!args.log_file.empty()) fmt::print(stderr, "skiff: {}\n", ok.error().message);
      return ok.error().kind == VmmError::Kind::kHost ? kExitHostError : kExitUsage;
    }
  }
  vmm.wait_for_vmm_shutdown();
  (*server)->stop();
  LOG_INFO("vmm.shutdown: exiting");
  return kExitPoweroff;
}

}  // namespace

int main(int argc, char** argv) {
  (void)since_process_start();  // anchor the boot-time clock first thing
  auto parsed = cli::parse_skiff_args(std::vector<std::string>(argv, argv + argc));
  if (auto* early = std::get_if<cli::EarlyExit>(&parsed)) {
    std::fputs(early->text.c_str(), early->status == 0 ? stdout : stderr);
    return early->status;
  }
  auto& args = std::get<cli::SkiffArgs>(parsed);
  if (auto r = init_logging(args.verbosity, args.log_file); !r) {
    fmt::print(stderr, "skiff: {}\n", r.error().what());
    return kExitUsage;
  }
  if (auto note = host_virtualisation_note(); !note.empty()) LOG_WARN("{}", note);
  if (args.api_socket) return serve_api(args);

  auto machine = Machine::create(args.vm);
  if (!machine) {
    LOG_ERROR("{}", machine.error().error.what());
    if (!args.log_file.empty()) fmt::print(stderr, "skiff: {}\n", machine.error().error.what());
    return machine.error().exit_status;
  }
  for (;;) {
    Outcome out = (*machine)->run();
    switch (out.reason) {
      case StopReason::kPoweroff:
        LOG_INFO("guest powered off");
        return kExitPoweroff;
      case StopReason::kReset:
        if (args.vm.no_reboot) {
          LOG_INFO("guest requested a reboot; exiting (--no-reboot)");
          return kExitPoweroff;
        }
        LOG_INFO("guest requested a reboot; restarting it");
        continue;
      case StopReason::kDebugExit:
        LOG_INFO("guest exited through the debug-exit port with status {}", out.debug_status);
        return out.debug_status & 0xff;  // what exit() keeps, as QEMU
      case StopReason::kGuestFailure:
        LOG_ERROR("guest failure: {}", out.detail);
        return kExitGuestFailure;
      case StopReason::kHostError:
        LOG_ERROR("host error while running the guest: {}", out.detail);
        return kExitHostError;
    }
  }
}
