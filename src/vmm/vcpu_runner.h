// One vCPU thread (`vcpuN`) looping on KVM_RUN. Port I/O and MMIO exits are
// dispatched synchronously through the Bus; anything that ends the run
// (shutdown, failure) is reported through VcpuContext::stop.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "devices/bus.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"
#include "vmm/exit_status.h"

namespace skiff {

struct VcpuContext {
  Bus* pio = nullptr;
  Bus* mmio = nullptr;
  const GuestMemory* memory = nullptr;
  const std::atomic<bool>* stopping = nullptr;
  // Called at most once per vCPU, from the vCPU thread, when it decides the VM must stop.
  std::function<void(Outcome)> stop;
};

class VcpuRunner {
 public:
  VcpuRunner(kvm::Vcpu vcpu, VcpuContext ctx) : vcpu_(std::move(vcpu)), ctx_(std::move(ctx)) {}
  ~VcpuRunner() { join(); }
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  [[nodiscard]] kvm::Vcpu& vcpu() { return vcpu_; }
  void start();
  // Makes KVM_RUN return promptly (immediate_exit + a signal to the thread).
  void kick();
  void join();

  // Installs the no-op kick signal handler; call once before starting vCPUs.
  static void install_kick_handler();

 private:
  void loop();
  // Returns false when the loop must end.
  bool handle_exit();
  void fail(std::string what);

  kvm::Vcpu vcpu_;
  VcpuContext ctx_;
  std::thread thread_;
  std::atomic<bool> running_{false};
};

}  // namespace skiff
