// A guest failure report: registers, segment state and the bytes at RIP,
// so a triple fault or emulation failure can be diagnosed from the log.
#pragma once

#include <string>

#include "kvm/kvm.h"
#include "memory/guest_memory.h"

namespace skiff {

[[nodiscard]] std::string dump_vcpu(const kvm::Vcpu& vcpu, const GuestMemory& memory);

}  // namespace skiff
