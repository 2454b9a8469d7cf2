// The KVM wrappers against the real /dev/kvm: a few real-mode instructions
// that exit to userspace. Skipped (with the reason) where /dev/kvm is absent.
#include "kvm/kvm.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <cstring>

#include "memory/guest_ram.h"

namespace skiff::kvm {
namespace {

class KvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = System::open();
    if (!s) GTEST_SKIP() << "skipped: " << s.error().what();
    sys_ = std::move(*s);
  }
  System sys_;
};

TEST_F(KvmTest, OpenReportsMissingDeviceWithAHint) {
  auto s = System::open("/nonexistent/kvm");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("modprobe"), std::string::npos) << s.error().message;
}

TEST_F(KvmTest, SupportedCpuidIncludesBasicLeaves) {
  auto cpuid = sys_.supported_cpuid();
  ASSERT_TRUE(cpuid) << cpuid.error().what();
  bool leaf1 = false;
  for (const auto& e : *cpuid) leaf1 |= (e.function == 1);
  EXPECT_TRUE(leaf1);
}

TEST_F(KvmTest, RealModeOutExitsToUserspaceWithPortAndData) {
  auto vm = sys_.create_vm();
  ASSERT_TRUE(vm) << vm.error().what();
  RamRange range{0, 0x10000};
  auto ram = GuestRam::create(std::span(&range, 1));
  ASSERT_TRUE(ram);
  // mov al, 0x42; out 0xf4, al; mov al, 0x43; out 0xf4, al
  const uint8_t code[] = {0xb0, 0x42, 0xe6, 0xf4, 0xb0, 0x43, 0xe6, 0xf4};
  ASSERT_TRUE(ram->memory().write(0x1000, code));
  const auto& r = ram->memory().regions()[0];
  ASSERT_TRUE(vm->set_user_memory_region(0, r.gpa, r.size, r.host));
  auto vcpu = vm->create_vcpu(0);
  ASSERT_TRUE(vcpu) << vcpu.error().what();
  auto sregs = vcpu->get_sregs();
  ASSERT_TRUE(sregs);
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  ASSERT_TRUE(vcpu->set_sregs(*sregs));
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  ASSERT_TRUE(vcpu->set_regs(regs));

  for (uint8_t expected : {0x42, 0x43}) {
    ASSERT_TRUE(vcpu->run());
    kvm_run* run = vcpu->run_data();
    ASSERT_EQ(run->exit_reason, static_cast<uint32_t>(KVM_EXIT_IO));
    EXPECT_EQ(run->io.port, 0xf4);
    EXPECT_EQ(run->io.direction, KVM_EXIT_IO_OUT);
    EXPECT_EQ(reinterpret_cast<uint8_t*>(run)[run->io.data_offset], expected);
  }
}

}  // namespace
}  // namespace skiff::kvm

namespace skiff::kvm {
namespace {

TEST_F(KvmTest, VcpuAcceptsSupportedCpuidAndMsrs) {
  auto cpuid = sys_.supported_cpuid();
  ASSERT_TRUE(cpuid);
  auto msrs = sys_.msr_index_list();
  ASSERT_TRUE(msrs) << msrs.error().what();
  bool has_tsc = false;
  for (uint32_t m : *msrs) has_tsc |= (m == 0x10);
  EXPECT_TRUE(has_tsc) << "IA32_TSC missing from KVM_GET_MSR_INDEX_LIST";
  auto vm = sys_.create_vm();
  ASSERT_TRUE(vm);
  auto vcpu = vm->create_vcpu(0);
  ASSERT_TRUE(vcpu);
  EXPECT_TRUE(vcpu->set_cpuid(*cpuid));
  kvm_msr_entry tsc{};
  tsc.index = 0x10;
  EXPECT_TRUE(vcpu->set_msrs(std::span(&tsc, 1)));
  kvm_msr_entry bogus{};
  bogus.index = 0xdeadbeef;
  auto r = vcpu->set_msrs(std::span(&bogus, 1));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("0xdeadbeef"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace skiff::kvm

namespace skiff::kvm {
namespace {

// A real-mode VM with 64 KiB of RAM at 0 and `code` at 0x1000.
struct TinyVm {
  Vm vm;
  GuestRam ram;
  Vcpu vcpu;
};

Result<TinyVm> tiny_vm(System& sys, std::span<const uint8_t> code, bool irqchip = false) {
  TinyVm t{SKIFF_TRY(sys.create_vm()), {}, {}};
  if (irqchip) SKIFF_TRY_VOID(t.vm.create_irqchip());
  RamRange range{0, 0x10000};
  t.ram = SKIFF_TRY(GuestRam::create(std::span(&range, 1)));
  SKIFF_TRY_VOID(t.ram.memory().write(0x1000, code));
  const auto& r = t.ram.memory().regions()[0];
  SKIFF_TRY_VOID(t.vm.set_user_memory_region(0, r.gpa, r.size, r.host));
  t.vcpu = SKIFF_TRY(t.vm.create_vcpu(0));
  kvm_sregs sregs = SKIFF_TRY(t.vcpu.get_sregs());
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  SKIFF_TRY_VOID(t.vcpu.set_sregs(sregs));
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  SKIFF_TRY_VOID(t.vcpu.set_regs(regs));
  return t;
}

// mov ax, 0xd000; mov ds, ax; mov word [0], 0x1234; mov word [0], 0x5678;
// out 0xf4, al. Both writes hit guest-physical 0xd0000 (no RAM there).
constexpr uint8_t kTwoMmioWrites[] = {0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xc7, 0x06, 0x00, 0x00, 0x34,
                                      0x12, 0xc7, 0x06, 0x00, 0x00, 0x78, 0x56, 0xe6, 0xf4};
constexpr uint64_t kMmioAddr = 0xd0000;

uint64_t drain(const EventFd& e) {
  return e.consume();
}

TEST_F(KvmTest, IoeventfdTakesGuestMmioWritesWithoutAnExit) {
  auto t = tiny_vm(sys_, kTwoMmioWrites);
  ASSERT_TRUE(t) << t.error().what();
  auto efd = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(efd);
  ASSERT_TRUE(t->vm.register_ioeventfd(kMmioAddr, 2, efd->get()));
  ASSERT_TRUE(t->vcpu.run());
  // Both writes went to the eventfd; the first exit is the OUT.
  EXPECT_EQ(t->vcpu.run_data()->exit_reason, static_cast<uint32_t>(KVM_EXIT_IO));
  EXPECT_EQ(drain(*efd), 2u);
}

TEST_F(KvmTest, IoeventfdWithDatamatchOnlyTakesThatValue) {
  auto t = tiny_vm(sys_, kTwoMmioWrites);
  ASSERT_TRUE(t) << t.error().what();
  auto efd = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(efd);
  ASSERT_TRUE(t->vm.register_ioeventfd(kMmioAddr, 2, efd->get(), 0x5678));
  ASSERT_TRUE(t->vcpu.run());
  kvm_run* run = t->vcpu.run_data();
  ASSERT_EQ(run->exit_reason, static_cast<uint32_t>(KVM_EXIT_MMIO));  // 0x1234 exits
  EXPECT_EQ(run->mmio.phys_addr, kMmioAddr);
  EXPECT_TRUE(run->mmio.is_write);
  EXPECT_EQ(drain(*efd), 0u);
  ASSERT_TRUE(t->vcpu.run());
  EXPECT_EQ(run->exit_reason, static_cast<uint32_t>(KVM_EXIT_IO));
  EXPECT_EQ(drain(*efd), 1u);
}

TEST_F(KvmTest, UnregisteredIoeventfdLetsWritesExitAgain) {
  auto t = tiny_vm(sys_, kTwoMmioWrites);
  ASSERT_TRUE(t) << t.error().what();
  auto efd = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(efd);
  ASSERT_TRUE(t->vm.register_ioeventfd(kMmioAddr, 2, efd->get()));
  EXPECT_FALSE(t->vm.register_ioeventfd(kMmioAddr, 2, efd->get()));  // EEXIST
  ASSERT_TRUE(t->vm.unregister_ioeventfd(kMmioAddr, 2, efd->get()));
  auto again = t->vm.unregister_ioeventfd(kMmioAddr, 2, efd->get());
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("KVM_IOEVENTFD"), std::string::npos);
  ASSERT_TRUE(t->vcpu.run());
  EXPECT_EQ(t->vcpu.run_data()->exit_reason, static_cast<uint32_t>(KVM_EXIT_MMIO));
  EXPECT_EQ(drain(*efd), 0u);
}

TEST_F(KvmTest, IrqfdAndMsiRoutesNeedAnIrqchip) {
  const uint8_t hlt[] = {0xf4};
  auto plain = tiny_vm(sys_, hlt, /*irqchip=*/false);
  ASSERT_TRUE(plain) << plain.error().what();
  auto efd = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(efd);
  EXPECT_FALSE(plain->vm.register_irqfd(efd->get(), 5));

  auto t = tiny_vm(sys_, hlt, /*irqchip=*/true);
  ASSERT_TRUE(t) << t.error().what();
  std::vector<kvm_irq_routing_entry> routes;
  for (uint32_t pin = 0; pin < 24; ++pin)
    routes.push_back(Vm::irqchip_route(pin, KVM_IRQCHIP_IOAPIC, pin));
  routes.push_back(Vm::msi_route(24, 0xfee00000, 0x41));
  ASSERT_TRUE(t->vm.set_gsi_routing(routes));
  ASSERT_TRUE(t->vm.register_irqfd(efd->get(), 24));
  EXPECT_FALSE(t->vm.register_irqfd(efd->get(), 24));  // already bound
  efd->signal();
  ASSERT_TRUE(t->vm.unregister_irqfd(efd->get(), 24));
  // An MSI route with a GSI beyond KVM's limit is refused.
  routes.push_back(Vm::msi_route(1u << 30, 0xfee00000, 0x42));
  EXPECT_FALSE(t->vm.set_gsi_routing(routes));
}

TEST_F(KvmTest, SignalMsiReachesAnEnabledLapicOnly) {
  const uint8_t hlt[] = {0xf4};
  auto t = tiny_vm(sys_, hlt, /*irqchip=*/true);
  ASSERT_TRUE(t) << t.error().what();
  // The LAPIC starts software-disabled (SVR bit 8 clear): blocked.
  auto r = t->vm.signal_msi(0xfee00000, 0x41);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_FALSE(*r);
  auto lapic = t->vcpu.get_lapic();
  ASSERT_TRUE(lapic);
  uint32_t svr;
  std::memcpy(&svr, lapic->regs + 0xf0, 4);
  svr |= 0x100;
  std::memcpy(lapic->regs + 0xf0, &svr, 4);
  ASSERT_TRUE(t->vcpu.set_lapic(*lapic));
  r = t->vm.signal_msi(0xfee00000, 0x41);  // fixed, vector 0x41, APIC ID 0
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_TRUE(*r);
}

}  // namespace
}  // namespace skiff::kvm
