#include "vmm/machine_devices.h"

#include <algorithm>

#include "arch/x86/layout.h"
#include "base/log.h"
#include "chardev/char_backend.h"
#include "chardev/input_pump.h"
#include "devices/acpi_pm.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/ged.h"
#include "devices/i8042.h"
#include "devices/post_code.h"
#include "devices/serial_16550.h"

namespace skiff {

MachineDevices::~MachineDevices() {
  // The input pump calls into the UART: stop it before anything else goes.
  serial_input_.reset();
}

Result<std::unique_ptr<MachineDevices>> MachineDevices::create(
    const VmConfig& config, VmEvents& events, std::function<void(uint32_t, bool)> set_irq,
    Bus& pio, Bus& /*mmio*/) {
  std::unique_ptr<MachineDevices> d(new MachineDevices());

  // COM1: 16550A at 0x3f8, IRQ 4, with the host end chosen by --serial.
  auto spec = SKIFF_TRY(parse_char_backend_spec(config.serial, "--serial"));
  d->serial_backend_ = SKIFF_TRY(CharBackend::open(spec, "serial"));
  d->com1_irq_ = std::make_unique<GsiLine>(x86::kIrqCom1, set_irq);
  CharBackend* backend = d->serial_backend_.get();
  d->serial_ = std::make_shared<Serial16550>(
      *d->com1_irq_, [backend](std::span<const uint8_t> bytes) { backend->write(bytes); });
  SKIFF_TRY_VOID(pio.insert(d->serial_, x86::kPortCom1, Serial16550::kSize));
  if (backend->input_fd() >= 0) {
    Serial16550* uart = d->serial_.get();
    d->serial_input_ = SKIFF_TRY(InputPump::start(
        backend->input_fd(), [uart](std::span<const uint8_t> b) { uart->enqueue_input(b); },
        "serial-in"));
  }

  // CMOS RTC and NVRAM, with the RAM sizes a PC BIOS would record.
  CmosMemoryConfig cmos;
  cmos.below_4g_bytes = std::min(config.memory_size, x86::kMaxLowRam);
  cmos.above_4g_bytes = config.memory_size - cmos.below_4g_bytes;
  d->rtc_ = std::make_shared<CmosRtc>(cmos);
  SKIFF_TRY_VOID(pio.insert(d->rtc_, x86::kPortCmosIndex, CmosRtc::kSize));

  // i8042: only its reset line (command 0xfe) matters to a VM.
  d->i8042_ = std::make_shared<I8042>(events);
  SKIFF_TRY_VOID(pio.insert(d->i8042_, x86::kPortI8042Data, I8042::kSize));

  // HW-reduced ACPI sleep control/status and reset registers (FADT points here).
  AcpiPmConfig pm;
  pm.s5_sleep_type = x86::kAcpiS5SleepType;
  pm.reset_value = x86::kAcpiResetValue;
  d->acpi_pm_ = std::make_shared<AcpiPm>(events, pm);
  SKIFF_TRY_VOID(pio.insert(d->acpi_pm_, x86::kPortAcpiSleepControl, AcpiPm::kSize));

  // Test and measurement ports: isa-debug-exit and the boot-time marker.
  d->debug_exit_ = std::make_shared<DebugExit>(events);
  SKIFF_TRY_VOID(pio.insert(d->debug_exit_, x86::kPortDebugExit, DebugExit::kSize));
  d->post_code_ = std::make_shared<PostCode>();
  SKIFF_TRY_VOID(pio.insert(d->post_code_, x86::kPortPost, PostCode::kSize));

  // ACPI Generic Event Device: the power button's event register and line
  // (its AML is added to the DSDT by Machine::build).
  d->ged_irq_ = std::make_unique<GsiLine>(x86::kGsiGed, std::move(set_irq));
  d->ged_ = std::make_shared<Ged>(*d->ged_irq_);
  SKIFF_TRY_VOID(pio.insert(d->ged_, x86::kPortGed, Ged::kSize));
  return d;
}

void MachineDevices::reset() {
  serial_->reset();
  rtc_->reset();
  i8042_->reset();
  ged_->reset();
}

std::map<std::string, std::map<std::string, uint64_t>> MachineDevices::counters() const {
  std::map<std::string, std::map<std::string, uint64_t>> out;
  Serial16550::Counters s = serial_->counters();
  out["serial"] = {{"tx_bytes", s.tx_bytes},
                   {"rx_bytes", s.rx_bytes},
                   {"dropped_input_bytes", s.dropped_input_bytes}};
  out["boot_markers"] = {{"writes", post_code_->total_writes()}};
  out["ged"] = {{"events", ged_->triggered()}, {"pending", ged_->pending()}};
  return out;
}

void MachineDevices::press_power_button() { ged_->trigger(Ged::kEventPowerButton); }

}  // namespace skiff
