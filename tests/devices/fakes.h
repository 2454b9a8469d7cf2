// Test doubles for what the vmm layer gives devices (devices/interrupt.h).
#pragma once

#include <vector>

#include "devices/interrupt.h"

namespace skiff::testing {

// Records every level change so tests can check edges, not just the level.
class FakeIrqLine : public IrqLine {
 public:
  void set_level(bool high) override {
    level = high;
    history.push_back(high);
  }
  bool level = false;
  std::vector<bool> history;
};

class FakeVmEvents : public VmEvents {
 public:
  void request_poweroff() override { ++poweroffs; }
  void request_reset() override { ++resets; }
  void request_exit(int status) override { exits.push_back(status); }
  int poweroffs = 0;
  int resets = 0;
  std::vector<int> exits;
};

}  // namespace skiff::testing
