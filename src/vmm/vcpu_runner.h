// One vCPU thread (`vcpuN`) looping on KVM_RUN. Port I/O and MMIO exits are
// dispatched synchronously through the Bus; anything that ends the run
// (shutdown, failure) is reported through VcpuContext::stop.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "devices/bus.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"
#include "vmm/exit_status.h"
#include "vmm/pause_gate.h"

namespace skiff {

struct VcpuContext {
  Bus* pio = nullptr;
  Bus* mmio = nullptr;
  const GuestMemory* memory = nullptr;
  const std::atomic<bool>* stopping = nullptr;
  PauseGate* pause = nullptr;
  // Called at most once per vCPU, from the vCPU thread, when it decides the VM must stop.
  std::function<void(Outcome)> stop;
};

// Which vCPU a runner is (its index, which names the thread `vcpuN`; the
// KVM vCPU id is its APIC ID, which differs when the topology is not flat)
// and the host CPUs its thread is pinned to (empty: not pinned).
struct VcpuPlacement {
  uint32_t index = 0;
  std::vector<uint32_t> host_cpus;
};

// KVM exit reasons are small integers (KVM_EXIT_*); one counter each.
inline constexpr size_t kMaxExitReason = 64;
using ExitCounts = std::array<uint64_t, kMaxExitReason>;

class VcpuRunner {
 public:
  VcpuRunner(kvm::Vcpu vcpu, VcpuContext ctx, VcpuPlacement placement)
      : vcpu_(std::move(vcpu)), ctx_(std::move(ctx)), placement_(std::move(placement)) {}
  ~VcpuRunner() { join(); }
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  [[nodiscard]] kvm::Vcpu& vcpu() { return vcpu_; }
  // Starts the thread; it names itself and applies the pinning before its
  // first KVM_RUN (a pinning failure stops the VM as a host error).
  void start();
  // Makes KVM_RUN return promptly (immediate_exit + a signal to the thread).
  void kick();
  void join();

  // How many times KVM_RUN returned, by exit reason (reads are racy but
  // each counter is atomic; the API reports them as they are).
  [[nodiscard]] ExitCounts exit_counts() const;

  // Installs the no-op kick signal handler; call once before starting vCPUs.
  static void install_kick_handler();

 private:
  void loop();
  // Returns false when the loop must end.
  bool handle_exit();
  void fail(std::string what);

  kvm::Vcpu vcpu_;
  VcpuContext ctx_;
  VcpuPlacement placement_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::array<std::atomic<uint64_t>, kMaxExitReason> exit_counts_{};
};

}  // namespace skiff
