// VmmService: the VMM object the management API drives. It holds at most
// one VM: its VmConfig and, once booted, its Machine, run on a thread of its
// own (`vm-run`) that restarts the guest after a reboot unless no_reboot.
//
// States (Cloud Hypervisor's VmState, plus "no VM yet"):
//
//   (none) --create--> Created --boot--> Running <--pause/resume--> Paused
//                                           |  ^                       |
//      guest power-off, debug exit, failure |  | boot                  |
//                     or vm.shutdown        v  |                       |
//                                         Shutdown <---vm.shutdown-----+
//   delete: any state --> (none)
//
// Commands are serialised by one mutex, so a command sees a settled state
// and either completes or changes nothing. Wrong-state commands fail with a
// VmmError saying what state the VM is in. The VM changes only through
// Machine's public methods.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "vmm/config.h"
#include "vmm/device_events.h"
#include "vmm/exit_status.h"

namespace skiff {

class Machine;

enum class VmState { kNone, kCreated, kRunning, kPaused, kShutdown };

// "Created", "Running", "Paused", "Shutdown" (the API's VmState enum); "None".
[[nodiscard]] std::string_view vm_state_name(VmState s);

// Why a command was refused. The API maps the kind to an HTTP status.
struct VmmError {
  enum class Kind {
    kNotCreated,     // no VM exists (404)
    kWrongState,     // the VM exists but cannot do this now (405)
    kAlreadyExists,  // vm.create while a VM exists (409)
    kInvalidConfig,  // the configuration cannot work (400)
    kHost,           // KVM or a host resource failed (500)
  };
  Kind kind;
  std::string message;
};

template <typename T = void>
using VmmResult = std::expected<T, VmmError>;

struct VmInfo {
  VmState state = VmState::kNone;
  VmConfig config;
  uint64_t memory_actual_size = 0;
};

// device or "vcpuN" -> counter name -> value.
using CounterMap = std::map<std::string, std::map<std::string, uint64_t>>;

// A lifecycle event for the event monitor ("vm", "booting", {}).
struct VmmEvent {
  std::string source;
  std::string event;
  std::map<std::string, std::string> properties;
};

// A virtio device event as the event monitor shows it, in Cloud
// Hypervisor's shape: source "virtio-device", event "activated"/"reset",
// properties {"id": ...}, plus "error" when the device failed (NEEDS_RESET).
[[nodiscard]] VmmEvent virtio_device_vmm_event(const VirtioDeviceEvent& e);

// What the API needs from the VMM; an interface so the request handler and
// its fuzzer run without KVM.
class VmmControl {
 public:
  virtual ~VmmControl() = default;
  [[nodiscard]] virtual VmmResult<> create(const VmConfig& config) = 0;
  [[nodiscard]] virtual VmmResult<> boot() = 0;
  [[nodiscard]] virtual VmmResult<> shutdown() = 0;
  [[nodiscard]] virtual VmmResult<> reboot() = 0;
  [[nodiscard]] virtual VmmResult<> pause() = 0;
  [[nodiscard]] virtual VmmResult<> resume() = 0;
  [[nodiscard]] virtual VmmResult<> power_button() = 0;
  [[nodiscard]] virtual VmmResult<> delete_vm() = 0;
  [[nodiscard]] virtual VmmResult<VmInfo> info() = 0;
  [[nodiscard]] virtual VmmResult<CounterMap> counters() = 0;
  // vm.resize desired_balloon: the balloon's new target in bytes (config
  // num_pages; the guest's driver inflates or deflates to it). Before boot
  // it only changes the configuration the VM will boot with.
  [[nodiscard]] virtual VmmResult<> resize_balloon(uint64_t /*bytes*/) {
    return std::unexpected(VmmError{VmmError::Kind::kInvalidConfig, "no balloon support"});
  }
  // Stops the VM (if any) and asks the process to exit.
  virtual void shutdown_vmm() = 0;
};

// KVM exit reason names used in counters ("io", "mmio", "hlt", ...);
// "exit_<n>" for reasons without a name.
[[nodiscard]] std::string kvm_exit_reason_name(size_t reason);

class VmmService final : public VmmControl {
 public:
  using EventSink = std::function<void(const VmmEvent&)>;

  // sink receives every lifecycle event, from the calling or the vm-run
  // thread; it must not call back into the service.
  explicit VmmService(EventSink sink = {});
  ~VmmService() override;
  VmmService(const VmmService&) = delete;
  VmmService& operator=(const VmmService&) = delete;

  VmmResult<> create(const VmConfig& config) override;
  VmmResult<> boot() override;
  VmmResult<> shutdown() override;
  VmmResult<> reboot() override;
  VmmResult<> pause() override;
  VmmResult<> resume() override;
  VmmResult<> power_button() override;
  VmmResult<> delete_vm() override;
  VmmResult<VmInfo> info() override;
  VmmResult<CounterMap> counters() override;
  VmmResult<> resize_balloon(uint64_t bytes) override;
  void shutdown_vmm() override;

  // Blocks until shutdown_vmm() was called.
  void wait_for_vmm_shutdown();

  [[nodiscard]] VmState state() const;
  // How the last run ended (after the VM reached Shutdown), if it did.
  [[nodiscard]] std::optional<Outcome> last_outcome() const;

 private:
  void run_loop();
  // Stops a Running/Paused VM and joins the vm-run thread. command_mu_ held.
  void stop_vm_locked();
  void emit(std::string_view event, std::map<std::string, std::string> props = {});
  VmmResult<> require_state(std::string_view what, std::initializer_list<VmState> allowed) const;

  EventSink sink_;
  std::mutex command_mu_;  // one command at a time

  mutable std::mutex state_mu_;  // guards the fields below; never held while blocking
  VmState state_ = VmState::kNone;
  VmConfig config_;
  std::optional<Outcome> last_outcome_;
  bool stop_requested_ = false;    // vm.shutdown/delete: do not reboot
  bool reboot_requested_ = false;  // vm.reboot: reboot even under no_reboot

  std::unique_ptr<Machine> machine_;  // set while Running/Paused and until the next boot/delete
  std::thread runner_;

  std::mutex vmm_mu_;
  std::condition_variable vmm_cv_;
  bool vmm_shutdown_ = false;
};

}  // namespace skiff
