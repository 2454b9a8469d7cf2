#include "vmm/host_info.h"

#include <sys/stat.h>

namespace skiff {

bool guest_kernel_code_is_emulated() {
  struct stat st {};
  return ::stat("/sys/module/kvm_pvm", &st) == 0;
}

std::string host_virtualisation_note() {
  if (!guest_kernel_code_is_emulated()) return {};
  return "host KVM is kvm_pvm (nested, paravirtual): guest kernel-mode code is emulated "
         "instruction by instruction, so stock Linux kernels cannot boot here; ring-3 guest code "
         "runs at native speed";
}

}  // namespace skiff
