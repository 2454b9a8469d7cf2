#include "vmm/machine.h"

#include <cstring>

#include <fmt/format.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot_cpu_state.h"
#include "arch/x86/boot_loader.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/ged_aml.h"
#include "arch/x86/layout.h"
#include "arch/x86/msr.h"
#include "arch/x86/ram_layout.h"
#include "base/log.h"
#include "chardev/char_backend.h"
#include "devices/ged.h"
#include "virtio/devices/balloon.h"
#include "vmm/cpu_placement.h"
#include "vmm/host_info.h"
#include "vmm/machine_devices.h"
#include "vmm/memory_layout.h"
#include "vmm/pci_devices.h"

namespace skiff {

namespace {

// CPUID.01H:EDX bit 12: the vCPU has MTRRs (KVM then emulates them).
bool has_mtrr(const std::vector<kvm_cpuid_entry2>& cpuid) {
  for (const auto& e : cpuid)
    if (e.function == 1) return (e.edx >> 12) & 1;
  return false;
}

// LAPIC LVT LINT0 as ExtINT (the 8259 PIC's output) and LINT1 as NMI, as a
// PC BIOS leaves them (MP spec §3.6.2.2 virtual-wire mode); Linux relies on
// this to use the PIC before it switches to the IOAPIC.
Result<> set_lapic_lints(kvm::Vcpu& vcpu) {
  constexpr size_t kLvtLint0 = 0x350;
  constexpr size_t kLvtLint1 = 0x360;
  constexpr uint32_t kDeliveryExtInt = 0x7 << 8;
  constexpr uint32_t kDeliveryNmi = 0x4 << 8;
  kvm_lapic_state lapic = SKIFF_TRY(vcpu.get_lapic());
  auto set = [&](size_t reg, uint32_t mode) {
    uint32_t v;
    std::memcpy(&v, lapic.regs + reg, 4);
    v = (v & ~0x700u) | mode;
    std::memcpy(lapic.regs + reg, &v, 4);
  };
  set(kLvtLint0, kDeliveryExtInt);
  set(kLvtLint1, kDeliveryNmi);
  return vcpu.set_lapic(lapic);
}

// x87 and SSE control words at their power-on values (SDM Vol. 1 §8.1.5,
// §10.2.3): FCW 0x37f, MXCSR 0x1f80.
kvm_fpu initial_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return fpu;
}

}  // namespace

Machine::Machine(VmConfig config) : config_(std::move(config)) {}

Machine::~Machine() {
  teardown();
}

std::expected<std::unique_ptr<Machine>, StartError> Machine::create(const VmConfig& config,
                                                                    VirtioEventSink device_events) {
  auto config_error = [](const Error& e) { return std::unexpected(StartError{kExitUsage, e}); };
  auto host_error = [](const Error& e) { return std::unexpected(StartError{kExitHostError, e}); };

  if (config.boot_cpus == 0 || config.boot_cpus > kMaxVcpus)
    return config_error(
        {fmt::format("--cpus: boot={} is out of range [1, {}]", config.boot_cpus, kMaxVcpus)});
  // --cpus max/topology/affinity and --numa, against the host's CPUs.
  if (auto r = validate_cpu_placement(config); !r) return config_error(r.error());
  if (config.memory_size < kMinMemory)
    return config_error({fmt::format("--memory: size={} is below the minimum of {} MiB",
                                     config.memory_size, kMinMemory >> 20)});
  if (config.memory_size % 4096 != 0)
    return config_error(
        {fmt::format("--memory: size={} is not a multiple of 4 KiB", config.memory_size)});

  // --serial is checked again where the port is built; here so a bad value
  // is a usage error on a host without /dev/kvm too.
  if (auto r = parse_char_backend_spec(config.serial, "--serial"); !r)
    return config_error(r.error());

  std::unique_ptr<Machine> m(new Machine(config));
  // The kernel and initramfs, read and identified before anything else on
  // the host: a missing or unrecognised --kernel is a usage error (exit 2)
  // on every host, with or without /dev/kvm. Loaded (once) by build().
  std::vector<RamZone> zones = memory_zone_layout(config);
  uint64_t ram_bytes = 0;
  for (const auto& z : zones)
    for (const auto& r : z.ranges) ram_bytes += r.size;
  auto boot = x86::read_boot_files({config.kernel, config.initramfs, config.cmdline}, ram_bytes);
  if (!boot) return config_error(boot.error());
  m->boot_files_ = std::move(*boot);
  // Guest RAM zones with their host backing (--memory, --memory-zone),
  // before KVM: a short huge page pool or a bad NUMA node is reported the
  // same way on every host.
  auto ram = GuestRam::create(zones);
  if (!ram) return host_error(ram.error());
  m->ram_ = std::move(*ram);
  auto sys = kvm::System::open();
  if (!sys) return host_error(sys.error());
  m->kvm_ = std::move(*sys);
  for (auto [cap, name] :
       {std::pair{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        std::pair{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        std::pair{KVM_CAP_PIT2, "KVM_CAP_PIT2"}, std::pair{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        std::pair{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
    if (auto r = m->kvm_.require_extension(cap, name); !r) return host_error(r.error());
  }
  int max_vcpus = m->kvm_.check_extension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && config.effective_max_cpus() > static_cast<uint32_t>(max_vcpus))
    return config_error({fmt::format("--cpus: max={} exceeds this host's KVM limit of {}",
                                     config.effective_max_cpus(), max_vcpus)});
  // KVM's vCPU id is the APIC ID (api.rst KVM_CREATE_VCPU), which the
  // topology spreads out; KVM_CAP_MAX_VCPU_ID bounds it.
  int max_vcpu_id = m->kvm_.check_extension(KVM_CAP_MAX_VCPU_ID);
  auto topo = vcpu_topology(config);
  uint32_t top_apic_id = x86::apic_id(topo, config.effective_max_cpus() - 1);
  if (max_vcpu_id > 0 && top_apic_id >= static_cast<uint32_t>(max_vcpu_id))
    return config_error(
        {fmt::format("--cpus: the topology gives APIC ID {}, above this host's "
                     "KVM limit of {}",
                     top_apic_id, max_vcpu_id - 1)});
  auto cpuid = m->kvm_.supported_cpuid();
  if (!cpuid) return host_error(cpuid.error());
  m->supported_cpuid_ = std::move(*cpuid);
  auto msrs = m->kvm_.msr_index_list();
  if (!msrs) return host_error(msrs.error());
  m->supported_msrs_ = std::move(*msrs);

  Machine* self = m.get();
  auto devices = MachineDevices::create(
      config, *m, [self](uint32_t gsi, bool level) { self->set_irq(gsi, level); }, m->pio_,
      m->mmio_);
  if (!devices) return config_error(devices.error());
  m->devices_ = std::move(*devices);

  // PCI host bridge and the virtio-pci devices (--disk, --rng).
  m->pci_plumbing_ = std::make_unique<VmPlumbing>(m->vm_mu_, m->vm_);
  auto pci = PciDevices::create(
      config, m->ram_.memory(), m->pio_, m->mmio_, *m->pci_plumbing_,
      [self](uint32_t gsi, bool level) { self->set_irq(gsi, level); }, std::move(device_events));
  if (!pci) return config_error(pci.error());
  m->pci_ = std::move(*pci);

  // Load the kernel once now, so a bad kernel file is a configuration error
  // reported before anything runs.
  if (auto r = m->build(); !r) {
    return m->payload_error_ ? config_error(r.error()) : host_error(r.error());
  }
  return m;
}

Result<> Machine::build() {
  // 1. The KVM VM and its in-kernel interrupt controllers (PIC, IOAPIC,
  //    LAPIC) and PIT. The TSS and identity-map pages sit in the hole
  //    below 4 GiB where no RAM or device lives.
  {
    std::unique_lock lock(vm_mu_);
    vm_ = SKIFF_TRY(kvm_.create_vm());
  }
  SKIFF_TRY_VOID(vm_->set_identity_map_addr(x86::kIdentityMapAddr));
  SKIFF_TRY_VOID(vm_->set_tss_addr(x86::kTssAddr));
  SKIFF_TRY_VOID(vm_->create_irqchip());
  SKIFF_TRY_VOID(vm_->create_pit2());

  // 2. Guest RAM, one memory slot per range.
  uint32_t slot = 0;
  for (const auto& r : ram_.memory().regions())
    SKIFF_TRY_VOID(vm_->set_user_memory_region(slot++, r.gpa, r.size, r.host));
  const GuestMemory& mem = ram_.memory();

  // 3. Firmware tables the guest reads: ACPI (RSDP, XSDT, FADT, DSDT, MADT, MCFG).
  auto topology = vcpu_topology(config_);
  x86::AcpiConfig acpi;
  acpi.boot_cpus = config_.boot_cpus;
  acpi.max_cpus = config_.effective_max_cpus();
  acpi.topology = topology;
  acpi.numa_nodes = SKIFF_TRY(acpi_numa_nodes(config_, memory_zone_layout(config_)));
  pci::BarWindow mmio64 = pci_mmio64_window(config_.memory_size);
  acpi.pci_mmio64_start = mmio64.start;
  acpi.pci_mmio64_size = mmio64.end - mmio64.start;
  acpi.extra_devices.push_back(SKIFF_TRY(x86::ged_device(
      {.gsi = x86::kGsiGed, .port = x86::kPortGed, .power_button_bit = Ged::kEventPowerButton})));
  uint64_t rsdp = SKIFF_TRY(x86::write_acpi_tables(mem, acpi));

  // 4. The kernel, initramfs and command line, per the kernel's boot protocol.
  //    create() read the files; after a reboot they are read again.
  if (!boot_files_) {
    auto files = x86::read_boot_files({config_.kernel, config_.initramfs, config_.cmdline},
                                      mem.total_size());
    if (!files) {
      payload_error_ = true;  // the user's kernel/initramfs, not the host
      return std::unexpected(files.error());
    }
    boot_files_ = std::move(*files);
  }
  auto loaded = x86::load_boot_files(mem, *boot_files_, rsdp);
  x86::KernelFormat format = boot_files_->format;
  boot_files_.reset();  // the kernel and initramfs bytes are in guest RAM now
  if (!loaded) {
    payload_error_ = true;  // the user's kernel/initramfs/cmdline, not the host
    return std::unexpected(loaded.error());
  }
  x86::EntryState entry = *loaded;
  LOG_INFO("loaded {} kernel '{}', entry {:#x}", x86::kernel_format_name(format), config_.kernel,
           entry.rip);

  // 5. vCPUs: CPUID, MSRs and LAPIC LINT pins on each; boot registers on the
  //    BSP. APs wait in KVM for INIT/SIPI from the BSP (the MADT lists them).
  //    Only the boot vCPUs exist; the MADT and CPUID leave room for max
  //    (CPU hotplug itself is not implemented yet).
  x86::CpuidOptions cpuid_options;
  cpuid_options.tsc_deadline_timer = kvm_.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  VcpuContext ctx{&pio_,      &mmio_,       &mem,
                  &stopping_, &pause_gate_, [this](Outcome o) { stop(std::move(o)); }};
  for (uint32_t i = 0; i < config_.boot_cpus; ++i) {
    // The KVM vCPU id is the initial APIC ID; vCPU 0 (APIC ID 0) is the BSP.
    kvm::Vcpu vcpu = SKIFF_TRY(vm_->create_vcpu(x86::apic_id(topology, i)));
    auto cpuid = SKIFF_TRY(x86::build_cpuid(supported_cpuid_, i, config_.effective_max_cpus(),
                                            topology, cpuid_options));
    SKIFF_TRY_VOID(vcpu.set_cpuid(cpuid));
    x86::MsrSupport msr_support{supported_msrs_, has_mtrr(cpuid)};
    SKIFF_TRY_VOID(vcpu.set_msrs(x86::boot_msrs(msr_support)));
    SKIFF_TRY_VOID(set_lapic_lints(vcpu));
    if (i == 0) {
      kvm_regs regs{};
      kvm_sregs sregs = SKIFF_TRY(vcpu.get_sregs());
      SKIFF_TRY_VOID(x86::setup_boot_cpu(mem, entry, &regs, &sregs));
      SKIFF_TRY_VOID(vcpu.set_sregs(sregs));
      SKIFF_TRY_VOID(vcpu.set_regs(regs));
      SKIFF_TRY_VOID(vcpu.set_fpu(initial_fpu()));
    }
    std::lock_guard control(control_mu_);
    vcpus_.push_back(std::make_unique<VcpuRunner>(std::move(vcpu), ctx,
                                                  VcpuPlacement{i, vcpu_host_cpus(config_, i)}));
  }
  return {};
}

Outcome Machine::run() {
  if (!vm_) {
    // After a reset: clean RAM, reset devices, rebuild VM and vCPUs.
    ram_.discard_all();
    devices_->reset();
    pci_->reset();
    pci_plumbing_->vm_destroyed();
    if (auto r = build(); !r) return Outcome{StopReason::kHostError, 0, r.error().what()};
  }
  stopping_ = false;
  {
    std::lock_guard lock(outcome_mu_);
    outcome_.reset();
  }
  pause_gate_.resume();
  VcpuRunner::install_kick_handler();
  for (auto& v : vcpus_) v->start();
  running_ = true;

  Outcome result;
  {
    std::unique_lock lock(outcome_mu_);
    outcome_cv_.wait(lock, [this] { return outcome_.has_value(); });
    result = *outcome_;
  }
  teardown();
  return result;
}

void Machine::stop(Outcome outcome) {
  {
    std::lock_guard lock(outcome_mu_);
    if (outcome_) return;  // the first reason to stop wins
    outcome_ = std::move(outcome);
  }
  stopping_.store(true, std::memory_order_release);
  for (auto& v : vcpus_) v->kick();
  pause_gate_.wake_all();
  outcome_cv_.notify_all();
}

void Machine::teardown() {
  std::lock_guard control(control_mu_);
  running_ = false;
  stopping_ = true;
  pause_gate_.wake_all();
  for (auto& v : vcpus_) v->kick();
  for (auto& v : vcpus_) v->join();
  vcpus_.clear();
  std::unique_lock lock(vm_mu_);
  vm_.reset();
}

Result<> Machine::pause() {
  std::lock_guard control(control_mu_);
  if (!running_ || stopping_) return fail("cannot pause: the VM is not running");
  if (pause_gate_.paused()) return fail("cannot pause: the VM is already paused");
  bool parked = pause_gate_.pause(
      static_cast<unsigned>(vcpus_.size()),
      [this] {
        for (auto& v : vcpus_) v->kick();
      },
      stopping_);
  if (!parked) return fail("cannot pause: the VM stopped");
  // Freeze the guest's view of time: kvmclock resumes from this value.
  std::shared_lock lock(vm_mu_);
  paused_clock_ns_ = SKIFF_TRY(vm_->get_clock());
  return {};
}

Result<> Machine::resume() {
  std::lock_guard control(control_mu_);
  if (!running_ || stopping_) return fail("cannot resume: the VM is not running");
  if (!pause_gate_.paused()) return fail("cannot resume: the VM is not paused");
  {
    std::shared_lock lock(vm_mu_);
    SKIFF_TRY_VOID(vm_->set_clock(paused_clock_ns_));
  }
  pause_gate_.resume();
  return {};
}

std::vector<ExitCounts> Machine::exit_counts() const {
  std::lock_guard control(control_mu_);  // teardown() clears vcpus_ under it
  std::vector<ExitCounts> out;
  for (const auto& v : vcpus_) out.push_back(v->exit_counts());
  return out;
}

std::map<std::string, std::map<std::string, uint64_t>> Machine::device_counters() const {
  auto out = devices_->counters();
  out.merge(pci_->counters());
  return out;
}

Result<> Machine::resize_balloon(uint64_t bytes) {
  if (!pci_ || !pci_->balloon()) return fail("the VM has no balloon device (--balloon)");
  return pci_->balloon()->set_target(bytes);
}

std::optional<uint64_t> Machine::balloon_actual_bytes() const {
  if (!pci_ || !pci_->balloon()) return std::nullopt;
  return pci_->balloon()->actual_bytes();
}

void Machine::press_power_button() {
  devices_->press_power_button();
}

void Machine::request_poweroff() {
  stop(Outcome{StopReason::kPoweroff, 0, {}});
}
void Machine::request_reset() {
  stop(Outcome{StopReason::kReset, 0, {}});
}
void Machine::request_exit(int status) {
  stop(Outcome{StopReason::kDebugExit, status, {}});
}

void Machine::set_irq(uint32_t gsi, bool level) {
  std::shared_lock lock(vm_mu_);
  if (!vm_) return;  // between boots: the line is re-driven by the device reset
  if (auto r = vm_->set_irq_line(gsi, level); !r) LOG_WARN("{}", r.error().what());
}

}  // namespace skiff
