// PCI INTx as the machine wires it: pin P of device S drives the GSI
// x86::pci_intx_gsi(S, P) — the same function the DSDT's _PRT describes.
//
// INTx# signals are shareable, wired-OR lines (PCI Local Bus 3.0 §2.2.6):
// with more devices than GSIs several functions drive one GSI, and the GSI
// must stay asserted while any of them asserts it. PciIntxRouter counts the
// asserting lines per GSI and calls set_irq (the Machine's KVM_IRQ_LINE)
// only when a GSI's level changes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/interrupt.h"

namespace skiff {

class PciIntxRouter {
 public:
  using SetIrq = std::function<void(uint32_t gsi, bool level)>;
  explicit PciIntxRouter(SetIrq set_irq);
  ~PciIntxRouter();
  PciIntxRouter(const PciIntxRouter&) = delete;
  PciIntxRouter& operator=(const PciIntxRouter&) = delete;

  // The line for INTx# pin `pin` (0 = INTA#) of device `slot`; owned by the
  // router, valid as long as it. Callable from any thread.
  [[nodiscard]] IrqLine* line(uint8_t slot, uint8_t pin);

  // How many lines assert `gsi` now.
  [[nodiscard]] unsigned asserted(uint32_t gsi) const;

 private:
  class Line;
  void change(uint32_t gsi, bool raise);

  SetIrq set_irq_;
  mutable std::mutex mu_;
  std::map<uint32_t, unsigned> asserted_;  // GSI -> asserting lines
  std::vector<std::unique_ptr<Line>> lines_;
};

}  // namespace skiff
