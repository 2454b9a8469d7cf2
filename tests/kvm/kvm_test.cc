// The KVM wrappers against the real /dev/kvm: a few real-mode instructions
// that exit to userspace. Skipped (with the reason) where /dev/kvm is absent.
#include "kvm/kvm.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

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
