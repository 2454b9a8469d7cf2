#include "vmm/vmm_service.h"

#include <linux/kvm.h>
#include <pthread.h>

#include <algorithm>
#include <array>
#include <chrono>

#include <fmt/format.h>

#include "base/log.h"
#include "vmm/cpu_placement.h"
#include "vmm/machine.h"

namespace skiff {

namespace {

using Kind = VmmError::Kind;
using namespace std::chrono_literals;

std::unexpected<VmmError> error(Kind kind, std::string message) {
  return std::unexpected(VmmError{kind, std::move(message)});
}

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kPoweroff:
      return "poweroff";
    case StopReason::kReset:
      return "reset";
    case StopReason::kDebugExit:
      return "debug-exit";
    case StopReason::kGuestFailure:
      return "guest-failure";
    case StopReason::kHostError:
      return "host-error";
  }
  return "unknown";
}

// How long a command waits for the vm-run thread to (re)start the vCPUs
// before it gives up: building a VM takes milliseconds; this is a bound
// for a loaded host, not a delay.
constexpr auto kStartWait = 10s;

}  // namespace

std::string_view vm_state_name(VmState s) {
  switch (s) {
    case VmState::kNone:
      return "None";
    case VmState::kCreated:
      return "Created";
    case VmState::kRunning:
      return "Running";
    case VmState::kPaused:
      return "Paused";
    case VmState::kShutdown:
      return "Shutdown";
  }
  return "None";
}

std::string kvm_exit_reason_name(size_t reason) {
  // KVM_EXIT_* (linux/kvm.h) in the lower-case form perf's kvm_exit uses.
  static constexpr std::array<std::pair<size_t, const char*>, 16> kNames{{
      {KVM_EXIT_UNKNOWN, "unknown"},
      {KVM_EXIT_EXCEPTION, "exception"},
      {KVM_EXIT_IO, "io"},
      {KVM_EXIT_HYPERCALL, "hypercall"},
      {KVM_EXIT_DEBUG, "debug"},
      {KVM_EXIT_HLT, "hlt"},
      {KVM_EXIT_MMIO, "mmio"},
      {KVM_EXIT_IRQ_WINDOW_OPEN, "irq_window_open"},
      {KVM_EXIT_SHUTDOWN, "shutdown"},
      {KVM_EXIT_FAIL_ENTRY, "fail_entry"},
      {KVM_EXIT_INTR, "intr"},
      {KVM_EXIT_SET_TPR, "set_tpr"},
      {KVM_EXIT_TPR_ACCESS, "tpr_access"},
      {KVM_EXIT_NMI, "nmi"},
      {KVM_EXIT_INTERNAL_ERROR, "internal_error"},
      {KVM_EXIT_SYSTEM_EVENT, "system_event"},
  }};
  for (auto [n, name] : kNames)
    if (n == reason) return name;
  return fmt::format("exit_{}", reason);
}

VmmService::VmmService(EventSink sink) : sink_(std::move(sink)) {}

VmmService::~VmmService() {
  std::lock_guard command(command_mu_);
  if (state() == VmState::kRunning || state() == VmState::kPaused) stop_vm_locked();
  if (runner_.joinable()) runner_.join();
}

VmState VmmService::state() const {
  std::lock_guard lock(state_mu_);
  return state_;
}

std::optional<Outcome> VmmService::last_outcome() const {
  std::lock_guard lock(state_mu_);
  return last_outcome_;
}

VmmEvent virtio_device_vmm_event(const VirtioDeviceEvent& e) {
  VmmEvent out{"virtio-device", e.event, {{"id", e.id}}};
  if (!e.error.empty()) out.properties["error"] = e.error;
  return out;
}

void VmmService::emit(std::string_view event, std::map<std::string, std::string> props) {
  if (sink_) sink_(VmmEvent{"vm", std::string(event), std::move(props)});
}

VmmResult<> VmmService::require_state(std::string_view what,
                                      std::initializer_list<VmState> allowed) const {
  VmState s = state();
  for (VmState a : allowed)
    if (s == a) return {};
  if (s == VmState::kNone)
    return error(Kind::kNotCreated,
                 fmt::format("cannot {}: no VM has been created (vm.create first)", what));
  std::string list;
  for (VmState a : allowed)
    list += fmt::format("{}{}", list.empty() ? "" : " or ", vm_state_name(a));
  return error(Kind::kWrongState,
               fmt::format("cannot {}: the VM is {} (must be {})", what, vm_state_name(s), list));
}

VmmResult<> VmmService::create(const VmConfig& config) {
  std::lock_guard command(command_mu_);
  if (state() != VmState::kNone)
    return error(Kind::kAlreadyExists,
                 fmt::format("cannot create: a VM already exists ({}); vm.delete it first",
                             vm_state_name(state())));
  if (config.kernel.empty()) return error(Kind::kInvalidConfig, "payload.kernel is required");
  if (config.boot_cpus == 0 || config.boot_cpus > kMaxVcpus)
    return error(Kind::kInvalidConfig, fmt::format("cpus.boot_vcpus={} is out of range [1, {}]",
                                                   config.boot_cpus, kMaxVcpus));
  if (auto r = validate_cpu_placement(config); !r)
    return error(Kind::kInvalidConfig, r.error().what());
  if (config.memory_size < kMinMemory || config.memory_size % 4096 != 0)
    return error(Kind::kInvalidConfig,
                 fmt::format("memory.size={} must be a multiple of 4096 and at least {}",
                             config.memory_size, kMinMemory));
  std::lock_guard lock(state_mu_);
  config_ = config;
  state_ = VmState::kCreated;
  last_outcome_.reset();
  return {};
}

VmmResult<> VmmService::boot() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("boot", {VmState::kCreated, VmState::kShutdown}); !r) return r;
  if (runner_.joinable()) runner_.join();  // the previous run has ended (Shutdown)
  machine_.reset();
  emit("booting");
  VmConfig config;
  {
    std::lock_guard lock(state_mu_);
    config = config_;
  }
  // Device events come from vCPU and device threads straight to the sink.
  auto m = Machine::create(config, [this](const VirtioDeviceEvent& e) {
    if (sink_) sink_(virtio_device_vmm_event(e));
  });
  if (!m) {
    Kind kind = m.error().exit_status == kExitUsage ? Kind::kInvalidConfig : Kind::kHost;
    return error(kind, fmt::format("cannot boot: {}", m.error().error.what()));
  }
  machine_ = std::move(*m);
  {
    std::lock_guard lock(state_mu_);
    state_ = VmState::kRunning;
    stop_requested_ = false;
    reboot_requested_ = false;
    last_outcome_.reset();
  }
  runner_ = std::thread([this] { run_loop(); });
  emit("booted");
  return {};
}

void VmmService::run_loop() {
  pthread_setname_np(pthread_self(), "vm-run");
  for (;;) {
    Outcome out = machine_->run();
    bool restart;
    {
      std::lock_guard lock(state_mu_);
      restart = out.reason == StopReason::kReset && !stop_requested_ &&
                (reboot_requested_ || !config_.no_reboot);
      reboot_requested_ = false;
      if (restart) {
        state_ = VmState::kRunning;  // a reboot from Paused comes back running
      } else {
        state_ = VmState::kShutdown;
        last_outcome_ = out;
      }
    }
    if (restart) {
      LOG_INFO("guest rebooting");
      emit("reboot");
      continue;
    }
    if (out.reason == StopReason::kGuestFailure || out.reason == StopReason::kHostError) {
      LOG_ERROR("VM stopped: {}: {}", stop_reason_name(out.reason), out.detail);
      emit("guest-failure", {{"detail", out.detail}});
    }
    std::map<std::string, std::string> props{{"reason", std::string(stop_reason_name(out.reason))}};
    if (out.reason == StopReason::kDebugExit) props["status"] = std::to_string(out.debug_status);
    emit("shutdown", std::move(props));
    return;
  }
}

// Waits until `pred` holds or the deadline passes, polling: the vCPU-start
// moment has no notification in Machine and the wait is short.
template <typename Pred>
static bool wait_until(Pred pred, std::chrono::steady_clock::duration limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

void VmmService::stop_vm_locked() {
  {
    std::lock_guard lock(state_mu_);
    stop_requested_ = true;
  }
  // A power-off request can be lost while the vm-run thread is between two
  // runs (reboot), so ask again until the thread has ended.
  while (state() != VmState::kShutdown) {
    if (machine_->running()) machine_->request_poweroff();
    std::this_thread::sleep_for(1ms);
  }
  if (runner_.joinable()) runner_.join();
}

VmmResult<> VmmService::shutdown() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("shut down", {VmState::kRunning, VmState::kPaused}); !r) return r;
  stop_vm_locked();
  return {};
}

VmmResult<> VmmService::reboot() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("reboot", {VmState::kRunning, VmState::kPaused}); !r) return r;
  if (!wait_until([&] { return machine_->running() || state() == VmState::kShutdown; },
                  kStartWait) ||
      state() == VmState::kShutdown)
    return error(Kind::kWrongState, "cannot reboot: the VM stopped");
  {
    std::lock_guard lock(state_mu_);
    reboot_requested_ = true;
  }
  machine_->request_reset();
  return {};
}

VmmResult<> VmmService::pause() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("pause", {VmState::kRunning}); !r) return r;
  emit("pausing");
  // Right after boot or a reboot the vCPU threads may not be started yet.
  wait_until([&] { return machine_->running() || state() != VmState::kRunning; }, kStartWait);
  if (auto r = machine_->pause(); !r)
    return error(state() == VmState::kRunning ? Kind::kHost : Kind::kWrongState, r.error().what());
  {
    std::lock_guard lock(state_mu_);
    if (state_ == VmState::kRunning) state_ = VmState::kPaused;
  }
  emit("paused");
  return {};
}

VmmResult<> VmmService::resume() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("resume", {VmState::kPaused}); !r) return r;
  emit("resuming");
  if (auto r = machine_->resume(); !r) return error(Kind::kHost, r.error().what());
  {
    std::lock_guard lock(state_mu_);
    if (state_ == VmState::kPaused) state_ = VmState::kRunning;
  }
  emit("resumed");
  return {};
}

VmmResult<> VmmService::power_button() {
  std::lock_guard command(command_mu_);
  if (auto r = require_state("press the power button", {VmState::kRunning}); !r) return r;
  machine_->press_power_button();
  emit("power-button");
  return {};
}

VmmResult<> VmmService::delete_vm() {
  std::lock_guard command(command_mu_);
  VmState s = state();
  if (s == VmState::kNone) return error(Kind::kNotCreated, "cannot delete: no VM has been created");
  if (s == VmState::kRunning || s == VmState::kPaused) stop_vm_locked();
  if (runner_.joinable()) runner_.join();
  machine_.reset();
  {
    std::lock_guard lock(state_mu_);
    state_ = VmState::kNone;
    config_ = VmConfig{};
    last_outcome_.reset();
  }
  emit("deleted");
  return {};
}

VmmResult<VmInfo> VmmService::info() {
  std::lock_guard command(command_mu_);
  std::lock_guard lock(state_mu_);
  if (state_ == VmState::kNone) return error(Kind::kNotCreated, "no VM has been created");
  // Cloud Hypervisor: RAM minus what the balloon holds (what the guest's
  // driver reports in config `actual`, virtio 1.2 §5.5.4).
  uint64_t actual = config_.memory_size;
  if (machine_ && (state_ == VmState::kRunning || state_ == VmState::kPaused))
    if (auto b = machine_->balloon_actual_bytes()) actual -= std::min(*b, actual);
  return VmInfo{state_, config_, actual};
}

VmmResult<> VmmService::resize_balloon(uint64_t bytes) {
  std::lock_guard command(command_mu_);
  VmState s = state();
  if (s == VmState::kNone) return error(Kind::kNotCreated, "cannot resize: no VM has been created");
  uint64_t ram;
  {
    std::lock_guard lock(state_mu_);
    if (!config_.balloon)
      return error(Kind::kInvalidConfig,
                   "desired_balloon: the VM has no balloon (create it with --balloon or a "
                   "VmConfig balloon)");
    ram = config_.memory_size;
  }
  if (bytes > ram)
    return error(Kind::kInvalidConfig,
                 fmt::format("desired_balloon {} is larger than guest RAM ({} bytes)", bytes, ram));
  if (machine_ && (s == VmState::kRunning || s == VmState::kPaused))
    if (auto r = machine_->resize_balloon(bytes); !r)
      return error(Kind::kInvalidConfig, r.error().what());
  std::lock_guard lock(state_mu_);
  if (config_.balloon) config_.balloon->size = bytes;  // a later boot starts from it
  return {};
}

VmmResult<CounterMap> VmmService::counters() {
  std::lock_guard command(command_mu_);
  if (state() == VmState::kNone) return error(Kind::kNotCreated, "no VM has been created");
  CounterMap out;
  if (!machine_) return out;  // Created, never booted: nothing counted yet
  auto exits = machine_->exit_counts();
  for (size_t cpu = 0; cpu < exits.size(); ++cpu) {
    auto& m = out[fmt::format("vcpu{}", cpu)];
    for (size_t reason :
         {size_t{KVM_EXIT_IO}, size_t{KVM_EXIT_MMIO}, size_t{KVM_EXIT_HLT}, size_t{KVM_EXIT_INTR}})
      m[kvm_exit_reason_name(reason)] = 0;  // always present, so clients need not guess
    for (size_t reason = 0; reason < exits[cpu].size(); ++reason)
      if (exits[cpu][reason] != 0) m[kvm_exit_reason_name(reason)] = exits[cpu][reason];
  }
  for (auto& [dev, values] : machine_->device_counters()) out[dev] = values;
  return out;
}

void VmmService::shutdown_vmm() {
  {
    std::lock_guard command(command_mu_);
    VmState s = state();
    if (s == VmState::kRunning || s == VmState::kPaused) stop_vm_locked();
  }
  if (sink_) sink_(VmmEvent{"vmm", "shutdown", {}});
  std::lock_guard lock(vmm_mu_);
  vmm_shutdown_ = true;
  vmm_cv_.notify_all();
}

void VmmService::wait_for_vmm_shutdown() {
  std::unique_lock lock(vmm_mu_);
  vmm_cv_.wait(lock, [this] { return vmm_shutdown_; });
}

}  // namespace skiff
