#include "kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

namespace skiff::kvm {

namespace {

// ioctl retried on EINTR; returns -1 with errno set on failure.
template <typename... Args>
int xioctl(int fd, unsigned long req, Args... args) {
  int r;
  do {
    r = ::ioctl(fd, req, args...);
  } while (r < 0 && errno == EINTR);
  return r;
}

// Variable-length KVM structures (kvm_cpuid2, kvm_msrs, kvm_msr_list) end in
// a flexible array. Linux 6.1's uapi headers declare it with
// __DECLARE_FLEX_ARRAY, whose empty-struct trick has size 1 in C++: sizeof()
// and the entries' offset differ from the C ABI, and so do the ioctl numbers
// computed from sizeof(). So skiff lays these out by hand: a header of
// `header_bytes` (the C layout) followed by the entries, and uses ioctl
// numbers built from the C sizes.
class FlexBuffer {
 public:
  FlexBuffer(size_t header_bytes, size_t entry_bytes, size_t n)
      : words_((header_bytes + entry_bytes * n + 7) / 8, 0), header_bytes_(header_bytes) {}
  uint32_t* count() { return reinterpret_cast<uint32_t*>(words_.data()); }
  uint8_t* entries() { return reinterpret_cast<uint8_t*>(words_.data()) + header_bytes_; }
  void* get() { return words_.data(); }

 private:
  std::vector<uint64_t> words_;
  size_t header_bytes_;
};

constexpr size_t kCpuidHeader = 8;    // struct kvm_cpuid2 { __u32 nent, padding; entries[] }
constexpr size_t kMsrsHeader = 8;     // struct kvm_msrs { __u32 nmsrs, pad; entries[] }
constexpr size_t kMsrListHeader = 4;  // struct kvm_msr_list { __u32 nmsrs; indices[] }
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kCpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kCpuidHeader);
constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, kMsrListHeader);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kMsrsHeader);
// struct kvm_irq_routing { __u32 nr, flags; entries[] } (also a flex array).
constexpr size_t kIrqRoutingHeader = 8;
constexpr unsigned long kSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, kIrqRoutingHeader);
static_assert(sizeof(kvm_irq_routing_entry) == 48, "kvm_irq_routing_entry has a fixed C layout");
static_assert(sizeof(kvm_ioeventfd) == 64 && sizeof(kvm_irqfd) == 32 && sizeof(kvm_msi) == 32);

kvm_ioeventfd ioeventfd_args(uint64_t addr, uint32_t len, int fd, std::optional<uint64_t> match) {
  kvm_ioeventfd e{};
  e.addr = addr;
  e.len = len;
  e.fd = fd;
  if (match) {
    e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    e.datamatch = *match;
  }
  return e;
}


}  // namespace

Result<System> System::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT)
      return fail("{} does not exist: load the kvm module (modprobe kvm_intel or kvm_amd) or "
                  "enable virtualisation in the firmware",
                  path);
    if (e == EACCES || e == EPERM)
      return fail("no permission to open {}: run as root or add your user to the 'kvm' group",
                  path);
    return fail_with(e, "cannot open {}", path);
  }
  System s;
  s.fd_.reset(fd);
  int version = xioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return fail("{}: KVM API version {} is not the supported version {}", path, version,
                KVM_API_VERSION);
  int size = xioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) return fail_errno("KVM_GET_VCPU_MMAP_SIZE");
  s.vcpu_mmap_size_ = static_cast<size_t>(size);
  return s;
}

int System::check_extension(long cap) const {
  int r = xioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<> System::require_extension(long cap, const char* name) const {
  if (check_extension(cap) <= 0)
    return fail("this host's KVM lacks {}, which skiff needs: use a newer kernel", name);
  return {};
}

Result<std::vector<kvm_cpuid_entry2>> System::supported_cpuid() const {
  for (size_t n = 128; n <= 1024; n *= 2) {
    FlexBuffer buf(kCpuidHeader, sizeof(kvm_cpuid_entry2), n);
    *buf.count() = static_cast<uint32_t>(n);
    if (xioctl(fd_.get(), kGetSupportedCpuid, buf.get()) == 0) {
      std::vector<kvm_cpuid_entry2> out(*buf.count());
      std::memcpy(out.data(), buf.entries(), out.size() * sizeof(kvm_cpuid_entry2));
      return out;
    }
    if (errno != E2BIG) return fail_errno("KVM_GET_SUPPORTED_CPUID");
  }
  return fail("KVM_GET_SUPPORTED_CPUID: more than 1024 entries");
}

Result<std::vector<uint32_t>> System::msr_index_list() const {
  uint32_t probe = 0;
  if (xioctl(fd_.get(), kGetMsrIndexList, &probe) < 0 && errno != E2BIG)
    return fail_errno("KVM_GET_MSR_INDEX_LIST");
  FlexBuffer buf(kMsrListHeader, sizeof(uint32_t), probe);
  *buf.count() = probe;
  if (xioctl(fd_.get(), kGetMsrIndexList, buf.get()) < 0)
    return fail_errno("KVM_GET_MSR_INDEX_LIST");
  std::vector<uint32_t> out(*buf.count());
  std::memcpy(out.data(), buf.entries(), out.size() * sizeof(uint32_t));
  return out;
}

Result<Vm> System::create_vm() const {
  int fd = xioctl(fd_.get(), KVM_CREATE_VM, 0);
  if (fd < 0) return fail_errno("KVM_CREATE_VM");
  Vm vm;
  vm.fd_.reset(fd);
  vm.vcpu_mmap_size_ = vcpu_mmap_size_;
  return vm;
}

int Vm::check_extension(long cap) const {
  int r = xioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<> Vm::set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                    uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
    return fail_errno("KVM_SET_USER_MEMORY_REGION slot {} at {:#x} (+{:#x})", slot, gpa, size);
  return {};
}

Result<> Vm::set_tss_addr(uint64_t addr) {
  if (xioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
    return fail_errno("KVM_SET_TSS_ADDR {:#x}", addr);
  return {};
}

Result<> Vm::set_identity_map_addr(uint64_t addr) {
  uint64_t a = addr;
  if (xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &a) < 0)
    return fail_errno("KVM_SET_IDENTITY_MAP_ADDR {:#x}", addr);
  return {};
}

Result<> Vm::create_irqchip() {
  if (xioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return fail_errno("KVM_CREATE_IRQCHIP");
  return {};
}

Result<> Vm::create_pit2() {
  kvm_pit_config c{};
  c.flags = KVM_PIT_SPEAKER_DUMMY;
  if (xioctl(fd_.get(), KVM_CREATE_PIT2, &c) < 0) return fail_errno("KVM_CREATE_PIT2");
  return {};
}

Result<> Vm::set_irq_line(uint32_t gsi, bool level) {
  kvm_irq_level l{};
  l.irq = gsi;
  l.level = level ? 1 : 0;
  if (xioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) return fail_errno("KVM_IRQ_LINE gsi {}", gsi);
  return {};
}

Result<> Vm::set_clock(uint64_t ns) {
  kvm_clock_data c{};
  c.clock = ns;
  if (xioctl(fd_.get(), KVM_SET_CLOCK, &c) < 0) return fail_errno("KVM_SET_CLOCK");
  return {};
}

Result<uint64_t> Vm::get_clock() {
  kvm_clock_data c{};
  if (xioctl(fd_.get(), KVM_GET_CLOCK, &c) < 0) return fail_errno("KVM_GET_CLOCK");
  return c.clock;
}

Result<Vcpu> Vm::create_vcpu(uint32_t id) {
  int fd = xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return fail_errno("KVM_CREATE_VCPU {}", id);
  Vcpu v;
  v.fd_.reset(fd);
  v.id_ = id;
  void* p = ::mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail_errno("mmap of vCPU {} run area", id);
  v.run_ = static_cast<kvm_run*>(p);
  v.mmap_size_ = vcpu_mmap_size_;
  return v;
}

Vcpu::~Vcpu() {
  if (run_ != nullptr) ::munmap(run_, mmap_size_);
}

Vcpu::Vcpu(Vcpu&& o) noexcept
    : fd_(std::move(o.fd_)),
      run_(std::exchange(o.run_, nullptr)),
      mmap_size_(o.mmap_size_),
      id_(o.id_) {}

Vcpu& Vcpu::operator=(Vcpu&& o) noexcept {
  if (this != &o) {
    if (run_ != nullptr) ::munmap(run_, mmap_size_);
    fd_ = std::move(o.fd_);
    run_ = std::exchange(o.run_, nullptr);
    mmap_size_ = o.mmap_size_;
    id_ = o.id_;
  }
  return *this;
}

Result<> Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      run_->exit_reason = KVM_EXIT_INTR;
      return {};
    }
    return fail_errno("KVM_RUN on vCPU {}", id_);
  }
  return {};
}

#define SKIFF_VCPU_GET(type, name, req)                                      \
  Result<type> Vcpu::name() const {                                          \
    type v{};                                                                \
    if (xioctl(fd_.get(), req, &v) < 0) return fail_errno(#req " on vCPU {}", id_); \
    return v;                                                                \
  }
#define SKIFF_VCPU_SET(type, name, req)                                      \
  Result<> Vcpu::name(const type& v) {                                       \
    if (xioctl(fd_.get(), req, &v) < 0) return fail_errno(#req " on vCPU {}", id_); \
    return {};                                                               \
  }

SKIFF_VCPU_GET(kvm_regs, get_regs, KVM_GET_REGS)
SKIFF_VCPU_SET(kvm_regs, set_regs, KVM_SET_REGS)
SKIFF_VCPU_GET(kvm_sregs, get_sregs, KVM_GET_SREGS)
SKIFF_VCPU_SET(kvm_sregs, set_sregs, KVM_SET_SREGS)
SKIFF_VCPU_SET(kvm_fpu, set_fpu, KVM_SET_FPU)
SKIFF_VCPU_GET(kvm_lapic_state, get_lapic, KVM_GET_LAPIC)
SKIFF_VCPU_SET(kvm_lapic_state, set_lapic, KVM_SET_LAPIC)
SKIFF_VCPU_GET(kvm_mp_state, get_mp_state, KVM_GET_MP_STATE)
SKIFF_VCPU_SET(kvm_mp_state, set_mp_state, KVM_SET_MP_STATE)

#undef SKIFF_VCPU_GET
#undef SKIFF_VCPU_SET

Result<> Vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
  FlexBuffer buf(kCpuidHeader, sizeof(kvm_cpuid_entry2), entries.size());
  *buf.count() = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.entries(), entries.data(), entries.size_bytes());
  if (xioctl(fd_.get(), kSetCpuid2, buf.get()) < 0)
    return fail_errno("KVM_SET_CPUID2 on vCPU {}", id_);
  return {};
}

Result<> Vcpu::set_msrs(std::span<const kvm_msr_entry> entries) {
  FlexBuffer buf(kMsrsHeader, sizeof(kvm_msr_entry), entries.size());
  *buf.count() = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.entries(), entries.data(), entries.size_bytes());
  int n = xioctl(fd_.get(), kSetMsrs, buf.get());
  if (n < 0) return fail_errno("KVM_SET_MSRS on vCPU {}", id_);
  if (static_cast<size_t>(n) != entries.size())
    return fail("KVM_SET_MSRS on vCPU {}: KVM refused MSR {:#x}", id_,
                entries[static_cast<size_t>(n)].index);
  return {};
}

Result<> Vm::register_ioeventfd(uint64_t addr, uint32_t len, int eventfd,
                                std::optional<uint64_t> datamatch) {
  kvm_ioeventfd e = ioeventfd_args(addr, len, eventfd, datamatch);
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0)
    return fail_errno("KVM_IOEVENTFD at {:#x} (+{})", addr, len);
  return {};
}

Result<> Vm::unregister_ioeventfd(uint64_t addr, uint32_t len, int eventfd,
                                  std::optional<uint64_t> datamatch) {
  kvm_ioeventfd e = ioeventfd_args(addr, len, eventfd, datamatch);
  e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0)
    return fail_errno("KVM_IOEVENTFD deassign at {:#x} (+{})", addr, len);
  return {};
}

Result<> Vm::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd i{};
  i.fd = static_cast<uint32_t>(eventfd);
  i.gsi = gsi;
  if (xioctl(fd_.get(), KVM_IRQFD, &i) < 0) return fail_errno("KVM_IRQFD gsi {}", gsi);
  return {};
}

Result<> Vm::unregister_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd i{};
  i.fd = static_cast<uint32_t>(eventfd);
  i.gsi = gsi;
  i.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IRQFD, &i) < 0) return fail_errno("KVM_IRQFD deassign gsi {}", gsi);
  return {};
}

Result<> Vm::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) {
  FlexBuffer buf(kIrqRoutingHeader, sizeof(kvm_irq_routing_entry), entries.size());
  *buf.count() = static_cast<uint32_t>(entries.size());  // flags (next word) stay 0
  if (!entries.empty()) std::memcpy(buf.entries(), entries.data(), entries.size_bytes());
  if (xioctl(fd_.get(), kSetGsiRouting, buf.get()) < 0)
    return fail_errno("KVM_SET_GSI_ROUTING ({} entries)", entries.size());
  return {};
}

Result<bool> Vm::signal_msi(uint64_t address, uint32_t data) {
  kvm_msi m{};
  m.address_lo = static_cast<uint32_t>(address);
  m.address_hi = static_cast<uint32_t>(address >> 32);
  m.data = data;
  int r = xioctl(fd_.get(), KVM_SIGNAL_MSI, &m);
  if (r < 0) return fail_errno("KVM_SIGNAL_MSI address {:#x} data {:#x}", address, data);
  return r > 0;
}

kvm_irq_routing_entry Vm::msi_route(uint32_t gsi, uint64_t address, uint32_t data) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_MSI;
  e.u.msi.address_lo = static_cast<uint32_t>(address);
  e.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
  e.u.msi.data = data;
  return e;
}

kvm_irq_routing_entry Vm::irqchip_route(uint32_t gsi, uint32_t irqchip, uint32_t pin) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_IRQCHIP;
  e.u.irqchip.irqchip = irqchip;
  e.u.irqchip.pin = pin;
  return e;
}

Result<uint64_t> Vcpu::translate(uint64_t linear) const {
  kvm_translation t{};
  t.linear_address = linear;
  if (xioctl(fd_.get(), KVM_TRANSLATE, &t) < 0) return fail_errno("KVM_TRANSLATE {:#x}", linear);
  if (!t.valid) return fail("linear address {:#x} is not mapped", linear);
  return t.physical_address;
}

}  // namespace skiff::kvm
