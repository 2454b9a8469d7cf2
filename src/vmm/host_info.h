// Facts about the host that change what skiff can promise.
#pragma once

#include <string>

namespace skiff {

// True when the host's KVM runs guest kernel-mode code by emulating it
// instruction by instruction (the paravirtual nested `kvm_pvm` module): guest
// CPL-3 code runs natively, CPL-0 code ~1000x slower, and stock kernels die
// in early boot on instructions the emulator refuses.
[[nodiscard]] bool guest_kernel_code_is_emulated();

// One line that says so, for the start-up log; empty when not applicable.
[[nodiscard]] std::string host_virtualisation_note();

}  // namespace skiff
