#include "vmm/vcpu_runner.h"

#include <pthread.h>
#include <signal.h>

#include <fmt/format.h>

#include "base/log.h"
#include "vmm/cpu_placement.h"
#include "vmm/vcpu_dump.h"

namespace skiff {

namespace {

// The kick signal only has to interrupt KVM_RUN; the handler does nothing.
constexpr int kKickSignal = SIGUSR1;
void on_kick(int) {}

const char* exit_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "unknown";
    case KVM_EXIT_EXCEPTION:
      return "exception";
    case KVM_EXIT_HYPERCALL:
      return "hypercall";
    case KVM_EXIT_DEBUG:
      return "debug";
    case KVM_EXIT_HLT:
      return "hlt";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return "irq window open";
    case KVM_EXIT_NMI:
      return "nmi";
    case KVM_EXIT_TPR_ACCESS:
      return "tpr access";
    case KVM_EXIT_X86_RDMSR:
      return "rdmsr";
    case KVM_EXIT_X86_WRMSR:
      return "wrmsr";
    default:
      return "other";
  }
}

std::string internal_error(const kvm_run& run) {
  const auto& ef = run.emulation_failure;
  if (ef.suberror == KVM_INTERNAL_ERROR_EMULATION) {
    std::string s = "KVM could not emulate an instruction (emulation failure)";
    if (ef.ndata >= 3 && (ef.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
      s += "; instruction bytes:";
      for (unsigned i = 0; i < ef.insn_size && i < sizeof ef.insn_bytes; ++i)
        s += fmt::format(" {:02x}", ef.insn_bytes[i]);
    }
    return s;
  }
  const char* what = "internal error";
  if (run.internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX)
    what = "exception while delivering an exception";
  if (run.internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV) what = "event delivery failed";
  return fmt::format("KVM internal error {} ({})", run.internal.suberror, what);
}

}  // namespace

void VcpuRunner::install_kick_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  ::sigaction(kKickSignal, &sa, nullptr);
}

void VcpuRunner::start() {
  running_ = true;
  thread_ = std::thread([this] {
    // Pinned before it takes its name: whoever sees a `vcpuN` thread (the
    // placement tests read /proc/PID/task/*/comm) sees it on its host CPUs.
    if (!placement_.host_cpus.empty()) {
      if (auto r = pin_thread(pthread_self(), placement_.host_cpus); !r) {
        ctx_.stop(Outcome{StopReason::kHostError, 0,
                          fmt::format("vCPU {}: {}", placement_.index, r.error().what())});
        running_ = false;
        return;
      }
    }
    std::string name = fmt::format("vcpu{}", placement_.index);
    pthread_setname_np(pthread_self(), name.c_str());
    loop();
    running_ = false;
  });
}

void VcpuRunner::kick() {
  if (vcpu_.run_data() != nullptr)
    __atomic_store_n(&vcpu_.run_data()->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (thread_.joinable() && running_) pthread_kill(thread_.native_handle(), kKickSignal);
}

void VcpuRunner::join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuRunner::fail(std::string what) {
  Outcome o;
  o.reason = StopReason::kGuestFailure;
  o.detail = fmt::format("vCPU {}: {}\n{}", placement_.index, what, dump_vcpu(vcpu_, *ctx_.memory));
  ctx_.stop(std::move(o));
}

void VcpuRunner::loop() {
  while (!ctx_.stopping->load(std::memory_order_acquire)) {
    ctx_.pause->park_if_paused(*ctx_.stopping);
    if (ctx_.stopping->load(std::memory_order_acquire)) return;
    auto r = vcpu_.run();
    if (!r) {
      Outcome o{StopReason::kHostError, 0, r.error().what()};
      ctx_.stop(std::move(o));
      return;
    }
    if (!handle_exit()) return;
  }
}

ExitCounts VcpuRunner::exit_counts() const {
  ExitCounts out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = exit_counts_[i].load(std::memory_order_relaxed);
  return out;
}

bool VcpuRunner::handle_exit() {
  kvm_run* run = vcpu_.run_data();
  exit_counts_[std::min<size_t>(run->exit_reason, kMaxExitReason - 1)].fetch_add(
      1, std::memory_order_relaxed);
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      // kvm_run's I/O data lives inside the mmapped run area at data_offset;
      // KVM guarantees size * count bytes there (api.rst: KVM_EXIT_IO).
      auto* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; ++i) {
        std::span<uint8_t> bytes(data + i * run->io.size, run->io.size);
        if (run->io.direction == KVM_EXIT_IO_OUT)
          ctx_.pio->write(run->io.port, bytes);
        else
          ctx_.pio->read(run->io.port, bytes);
      }
      return true;
    }
    case KVM_EXIT_MMIO: {
      std::span<uint8_t> bytes(run->mmio.data, std::min<uint32_t>(run->mmio.len, 8));
      if (run->mmio.is_write)
        ctx_.mmio->write(run->mmio.phys_addr, bytes);
      else
        ctx_.mmio->read(run->mmio.phys_addr, bytes);
      return true;
    }
    case KVM_EXIT_INTR:
      run->immediate_exit = 0;
      return true;
    case KVM_EXIT_SHUTDOWN:
      fail("triple fault (KVM_EXIT_SHUTDOWN)");
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      fail(fmt::format("VM entry failed, hardware reason {:#x}",
                       run->fail_entry.hardware_entry_failure_reason));
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      fail(internal_error(*run));
      return false;
    case KVM_EXIT_SYSTEM_EVENT: {
      Outcome o;
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          o.reason = StopReason::kPoweroff;
          break;
        case KVM_SYSTEM_EVENT_RESET:
          o.reason = StopReason::kReset;
          break;
        default:
          fail(fmt::format("guest system event {}", run->system_event.type));
          return false;
      }
      ctx_.stop(std::move(o));
      return false;
    }
    default:
      fail(
          fmt::format("unhandled KVM exit {} ({})", run->exit_reason, exit_name(run->exit_reason)));
      return false;
  }
}

}  // namespace skiff
