#include "vmm/pci_intx.h"

#include "arch/x86/pci_irq.h"

namespace skiff {

// One function's INTx# output: remembers its own level so that repeated
// raises (every used buffer while the ISR is unread) count once.
class PciIntxRouter::Line final : public IrqLine {
 public:
  Line(PciIntxRouter& router, uint32_t gsi) : router_(router), gsi_(gsi) {}
  void set_level(bool high) override {
    std::lock_guard lock(router_.mu_);
    if (high == high_) return;
    high_ = high;
    router_.change(gsi_, high);
  }

 private:
  PciIntxRouter& router_;
  uint32_t gsi_;
  bool high_ = false;  // under router_.mu_
};

PciIntxRouter::PciIntxRouter(SetIrq set_irq) : set_irq_(std::move(set_irq)) {}
PciIntxRouter::~PciIntxRouter() = default;

IrqLine* PciIntxRouter::line(uint8_t slot, uint8_t pin) {
  std::lock_guard lock(mu_);
  lines_.push_back(std::make_unique<Line>(*this, x86::pci_intx_gsi(slot, pin)));
  return lines_.back().get();
}

unsigned PciIntxRouter::asserted(uint32_t gsi) const {
  std::lock_guard lock(mu_);
  auto it = asserted_.find(gsi);
  return it == asserted_.end() ? 0 : it->second;
}

// Called with mu_ held, so that the level KVM sees follows the count in
// order (two devices on one GSI changing at once from two threads).
void PciIntxRouter::change(uint32_t gsi, bool raise) {
  unsigned& n = asserted_[gsi];
  if (raise) {
    if (n++ == 0 && set_irq_) set_irq_(gsi, true);
  } else if (n > 0 && --n == 0 && set_irq_) {
    set_irq_(gsi, false);
  }
}

}  // namespace skiff
