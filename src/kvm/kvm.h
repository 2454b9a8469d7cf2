// RAII wrappers over /dev/kvm (KVM API: Documentation/virt/kvm/api.rst).
// The only code in skiff that issues KVM ioctls; no policy lives here —
// callers decide what to configure, these classes only make the calls and
// turn failures into errors that name the ioctl.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace skiff::kvm {

class Vm;
class Vcpu;

// The /dev/kvm system handle.
class System {
 public:
  // Opens /dev/kvm and checks the API version; the error says what to do
  // when the device is missing or not accessible.
  [[nodiscard]] static Result<System> open(const std::string& path = "/dev/kvm");

  // KVM_CHECK_EXTENSION on the system fd: > 0 when supported.
  [[nodiscard]] int check_extension(long cap) const;
  // Fails with a message naming the capability when it is missing.
  [[nodiscard]] Result<> require_extension(long cap, const char* name) const;

  [[nodiscard]] Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  [[nodiscard]] Result<std::vector<uint32_t>> msr_index_list() const;
  [[nodiscard]] Result<Vm> create_vm() const;
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  size_t vcpu_mmap_size_ = 0;
};

class Vm {
 public:
  [[nodiscard]] int check_extension(long cap) const;

  [[nodiscard]] Result<> set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size,
                                                void* host, uint32_t flags = 0);
  [[nodiscard]] Result<> set_tss_addr(uint64_t addr);
  [[nodiscard]] Result<> set_identity_map_addr(uint64_t addr);
  [[nodiscard]] Result<> create_irqchip();
  [[nodiscard]] Result<> create_pit2();
  // KVM_IRQ_LINE: drive a GSI of the in-kernel irqchip.
  [[nodiscard]] Result<> set_irq_line(uint32_t gsi, bool level);
  [[nodiscard]] Result<> set_clock(uint64_t ns);
  [[nodiscard]] Result<uint64_t> get_clock();
  [[nodiscard]] Result<Vcpu> create_vcpu(uint32_t id);
  [[nodiscard]] int fd() const { return fd_.get(); }

  // KVM_IOEVENTFD (api.rst §4.59): a guest MMIO write of `len` bytes (1, 2,
  // 4 or 8) at `addr` signals `eventfd` in the kernel instead of exiting;
  // with `datamatch`, only writes of that value. Unregister with the same
  // arguments.
  [[nodiscard]] Result<> register_ioeventfd(uint64_t addr, uint32_t len, int eventfd,
                                            std::optional<uint64_t> datamatch = std::nullopt);
  [[nodiscard]] Result<> unregister_ioeventfd(uint64_t addr, uint32_t len, int eventfd,
                                              std::optional<uint64_t> datamatch = std::nullopt);
  // KVM_IRQFD (api.rst §4.75): signalling `eventfd` injects `gsi` (an
  // irqchip pin or an MSI route set with set_gsi_routing).
  [[nodiscard]] Result<> register_irqfd(int eventfd, uint32_t gsi);
  [[nodiscard]] Result<> unregister_irqfd(int eventfd, uint32_t gsi);
  // KVM_SET_GSI_ROUTING (api.rst §4.52): replaces the whole routing table.
  // Note that it also replaces the default irqchip routes of GSIs 0-23:
  // callers include those they still need.
  [[nodiscard]] Result<> set_gsi_routing(std::span<const kvm_irq_routing_entry> entries);
  // KVM_SIGNAL_MSI (api.rst §4.71): delivers one MSI. Returns false if it
  // was blocked (no vCPU accepted it, e.g. a disabled or absent LAPIC).
  [[nodiscard]] Result<bool> signal_msi(uint64_t address, uint32_t data);

  // Entry builders for set_gsi_routing.
  [[nodiscard]] static kvm_irq_routing_entry msi_route(uint32_t gsi, uint64_t address,
                                                       uint32_t data);
  [[nodiscard]] static kvm_irq_routing_entry irqchip_route(uint32_t gsi, uint32_t irqchip,
                                                           uint32_t pin);

 private:
  friend class System;
  Fd fd_;
  size_t vcpu_mmap_size_ = 0;
};

// A vCPU fd plus its mmapped kvm_run structure.
class Vcpu {
 public:
  Vcpu() = default;
  ~Vcpu();
  Vcpu(Vcpu&& o) noexcept;
  Vcpu& operator=(Vcpu&& o) noexcept;
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  // KVM_RUN. EINTR/EAGAIN (a kick) return success with exit_reason
  // KVM_EXIT_INTR so callers handle them like any other exit.
  [[nodiscard]] Result<> run();
  [[nodiscard]] kvm_run* run_data() const { return run_; }

  [[nodiscard]] Result<kvm_regs> get_regs() const;
  [[nodiscard]] Result<> set_regs(const kvm_regs& r);
  [[nodiscard]] Result<kvm_sregs> get_sregs() const;
  [[nodiscard]] Result<> set_sregs(const kvm_sregs& s);
  [[nodiscard]] Result<> set_fpu(const kvm_fpu& f);
  [[nodiscard]] Result<> set_cpuid(std::span<const kvm_cpuid_entry2> entries);
  // Returns how many MSRs KVM accepted; fails if not all of them were.
  [[nodiscard]] Result<> set_msrs(std::span<const kvm_msr_entry> entries);
  [[nodiscard]] Result<kvm_lapic_state> get_lapic() const;
  [[nodiscard]] Result<> set_lapic(const kvm_lapic_state& s);
  [[nodiscard]] Result<kvm_mp_state> get_mp_state() const;
  [[nodiscard]] Result<> set_mp_state(const kvm_mp_state& s);
  // Linear address -> guest physical through the vCPU's current page tables.
  [[nodiscard]] Result<uint64_t> translate(uint64_t linear) const;
  [[nodiscard]] uint32_t id() const { return id_; }
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  friend class Vm;
  Fd fd_;
  kvm_run* run_ = nullptr;
  size_t mmap_size_ = 0;
  uint32_t id_ = 0;
};

}  // namespace skiff::kvm
