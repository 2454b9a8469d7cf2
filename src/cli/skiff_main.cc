// skiff: one process per VM. Parses the command line, builds the machine,
// runs it (again after each guest reboot) and maps how it ended to the exit
// status documented in --help.
#include <cstdio>

#include <fmt/format.h>

#include "base/log.h"
#include "cli/skiff_options.h"
#include "vmm/exit_status.h"
#include "vmm/host_info.h"
#include "vmm/machine.h"

using namespace skiff;

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
