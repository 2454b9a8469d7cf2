// PauseGate: stops every vCPU thread at a consistent point — KVM_RUN has
// returned and the exit is fully handled — and lets them continue. vCPU
// threads call park_if_paused() at the top of their run loop; the pausing
// thread sets the gate, kicks the vCPUs out of KVM_RUN and waits for all of
// them to park.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace skiff {

class PauseGate {
 public:
  // vCPU side: blocks while the gate is closed (and the VM is not stopping).
  void park_if_paused(const std::atomic<bool>& stopping) {
    std::unique_lock lock(mu_);
    if (!paused_) return;
    ++parked_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !paused_ || stopping.load(); });
    --parked_;
  }

  // Closes the gate, calls kick_all() and waits until `vcpus` threads have
  // parked or the VM is stopping. Returns false if it stopped instead.
  bool pause(unsigned vcpus, const std::function<void()>& kick_all,
             const std::atomic<bool>& stopping) {
    {
      std::lock_guard lock(mu_);
      paused_ = true;
    }
    kick_all();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return parked_ == vcpus || stopping.load(); });
    return parked_ == vcpus;
  }

  void resume() {
    std::lock_guard lock(mu_);
    paused_ = false;
    cv_.notify_all();
  }

  // Wakes parked vCPUs so they see `stopping` (the VM is ending).
  void wake_all() {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  [[nodiscard]] bool paused() const {
    std::lock_guard lock(mu_);
    return paused_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false;
  unsigned parked_ = 0;
};

}  // namespace skiff
