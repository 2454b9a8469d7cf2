// A stand-in for /dev/kvm, loaded with LD_PRELOAD, for hosts without KVM.
//
// It answers the KVM ioctls skiff issues (src/kvm/kvm.cc) the way a KVM
// host would, without running anything: create calls hand out memfds (so
// close(), mmap() of the vCPU run area and fcntl() work), "set" calls
// succeed, "get" calls return zeroes, the host's own CPUID or (vCPU 0's
// registers) what was set. The first KVM_RUN of vCPU 0 reports what
// tests/guests/exit_now.S does on its first instruction, `out 0xf4, al`
// with al = 0, so skiff exits with status 1; SKIFF_FAKE_KVM_EXITS scripts
// other exits (scripted_exit()). Other KVM_RUNs wait until skiff kicks the
// vCPU (immediate_exit, or a signal). QEMU kicks through KVM_SET_SIGNAL_MASK, which this ignores:
// run QEMU with one vCPU only.
//
// What it is for (never for production):
//  - bench/boot/run.sh --fake-kvm: skiff's own share of a boot (its wall
//    time, CPU time and peak RSS up to the guest's first instruction and
//    back), measurable on hosts without /dev/kvm;
//  - tests/kvm/fake_kvm_test.py: the guest state skiff hands to KVM_RUN,
//    and what skiff does on each kind of exit.
//
// With SKIFF_FAKE_KVM_REPORT=PATH, the first KVM_RUN of vCPU 0 writes to
// PATH one "key value" line per fact: the memory slots (slot N GPA SIZE),
// rip, rsp, rsi, rbx, rax, rflags, cr0, cr3, cr4, efer, cs_l, cs_db, and
// guest memory in hex: 0x240 bytes at rsi (a Linux zero page with its
// setup header) and 64 at rbx (hvm_start_info, Multiboot information),
// "none" where that is not RAM.
//
// With SKIFF_FAKE_KVM_RAM=PATH it also writes memory slot 0 to PATH as it
// is at that moment (a sparse file: pages of zeroes are holes), for tests
// that follow the boot structures to what they point at.
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum kind { NONE, SYSTEM, VM, VCPU };
enum { MAX_FDS = 4096, MAX_SLOTS = 32, RUN_BYTES = 3 * 4096, IO_DATA_OFFSET = 4096 };

struct slot {
  uint64_t gpa, size, host;
};

static struct {
  unsigned char kind[MAX_FDS];
  unsigned vcpu_id[MAX_FDS];
  struct kvm_run* run[MAX_FDS];
  struct slot slots[MAX_SLOTS];
  struct kvm_regs regs;
  struct kvm_sregs sregs;
  unsigned vcpu0_runs;
} st;

// The C library's own functions, looked up on first use (another library's
// constructor may call them before this one's would have run).
static int real_close(int fd) {
  static int (*fn)(int);
  if (!fn) fn = (int (*)(int))dlsym(RTLD_NEXT, "close");
  return fn(fd);
}

static int real_ioctl(int fd, unsigned long req, unsigned long arg) {
  static int (*fn)(int, unsigned long, ...);
  if (!fn) fn = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
  return fn(fd, req, arg);
}

static int fail(int e) {
  errno = e;
  return -1;
}

static enum kind kind_of(int fd) {
  return fd >= 0 && fd < MAX_FDS ? (enum kind)st.kind[fd] : NONE;
}

static int new_fd(enum kind k, size_t bytes) {
  int fd = memfd_create("fake-kvm", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (fd >= MAX_FDS || (bytes && ftruncate(fd, (off_t)bytes) < 0)) {
    real_close(fd);
    return fail(EMFILE);
  }
  st.kind[fd] = (unsigned char)k;
  return fd;
}

static int is_kvm_path(const char* path) {
  return path && strcmp(path, "/dev/kvm") == 0;
}

int open(const char* path, int flags, ...) {
  if (is_kvm_path(path)) return new_fd(SYSTEM, 0);
  va_list ap;
  va_start(ap, flags);
  // A mode argument exists only with O_CREAT or O_TMPFILE (which includes
  // O_DIRECTORY's bit: compare all of it), as glibc's __OPEN_NEEDS_MODE.
  int needs_mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
  mode_t mode = needs_mode ? va_arg(ap, mode_t) : 0;
  va_end(ap);
  static int (*real)(const char*, int, ...);
  if (!real) real = (int (*)(const char*, int, ...))dlsym(RTLD_NEXT, "open");
  return real(path, flags, mode);
}

int open64(const char* path, int flags, ...) __attribute__((alias("open")));

int close(int fd) {
  if (kind_of(fd) != NONE) {
    if (st.run[fd]) munmap(st.run[fd], RUN_BYTES);
    st.run[fd] = NULL;
    st.kind[fd] = NONE;
  }
  return real_close(fd);
}

// KVM_CAP_* answers: counts where skiff reads a number, "yes" otherwise.
static int check_extension(long cap) {
  switch (cap) {
    case KVM_CAP_NR_VCPUS:
    case KVM_CAP_MAX_VCPUS:
    case KVM_CAP_MAX_VCPU_ID:
      return 1024;
    case KVM_CAP_NR_MEMSLOTS:
      return MAX_SLOTS;
    case KVM_CAP_IRQ_ROUTING:
      return 4096;  // routes (KVM_MAX_IRQ_ROUTES)
    case KVM_CAP_MCE:
      return 32;                // machine-check banks
    case KVM_CAP_NESTED_STATE:  // a size: 0 = no nested state to save
    case KVM_CAP_X86_SMM:
      return 0;
    default:
      return 1;
  }
}

// KVM_GET_SUPPORTED_CPUID: the host's leaves (what KVM starts from), the
// indexed ones with their subleaves, and KVM's hypervisor leaves.
static int supported_cpuid(void* arg) {
  uint32_t* nent = arg;
  struct kvm_cpuid_entry2* out = (struct kvm_cpuid_entry2*)((char*)arg + 8);
  struct kvm_cpuid_entry2 all[160];
  unsigned n = 0;
  uint32_t a, b, c, d;
  const uint32_t bases[] = {0, 0x80000000u};
  for (unsigned base = 0; base < 2; ++base) {
    __cpuid(bases[base], a, b, c, d);
    uint32_t max = a < bases[base] + 0x20 ? a : bases[base] + 0x20;
    for (uint32_t leaf = bases[base]; leaf <= max; ++leaf) {
      int indexed = leaf == 4 || leaf == 7 || leaf == 0xb || leaf == 0xd || leaf == 0x1f;
      for (uint32_t sub = 0; sub < (indexed ? 8u : 1u) && n < 150; ++sub) {
        __cpuid_count(leaf, sub, a, b, c, d);
        if (indexed && sub > 0 && a == 0 && b == 0 && c == 0 && d == 0) break;
        all[n++] = (struct kvm_cpuid_entry2){.function = leaf,
                                             .index = sub,
                                             .flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
                                             .eax = a,
                                             .ebx = b,
                                             .ecx = c,
                                             .edx = d};
      }
    }
  }
  all[n++] = (struct kvm_cpuid_entry2){.function = 0x40000000u,
                                       .eax = 0x40000001u,
                                       .ebx = 0x4b4d564b,
                                       .ecx = 0x564b4d56,
                                       .edx = 0x4d};  // "KVMKVMKVM"
  all[n++] = (struct kvm_cpuid_entry2){.function = 0x40000001u};
  if (*nent < n) {
    *nent = n;
    return fail(E2BIG);
  }
  *nent = n;
  memcpy(out, all, n * sizeof all[0]);
  return 0;
}

// struct kvm_msr_list: a count, then the indices; too small a count is
// answered with E2BIG and the count needed (callers probe with 0).
static int msr_list(void* arg, const uint32_t* msrs, uint32_t n) {
  uint32_t* count = arg;
  if (*count < n) {
    *count = n;
    return fail(E2BIG);
  }
  *count = n;
  memcpy(count + 1, msrs, n * sizeof msrs[0]);
  return 0;
}

static const uint32_t kFeatureMsrs[] = {0x8b};  // IA32_UCODE_REV
static const uint32_t kMsrs[] = {0x10,       0x174,      0x175,      0x176,      0x1a0,
                                 0x277,      0xc0000080, 0xc0000081, 0xc0000082, 0xc0000084,
                                 0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103};

static const uint8_t* guest_bytes(uint64_t gpa, uint64_t len) {
  for (int i = 0; i < MAX_SLOTS; ++i) {
    const struct slot* s = &st.slots[i];
    if (s->size && gpa >= s->gpa && gpa - s->gpa <= s->size - len)
      return (const uint8_t*)(uintptr_t)(s->host + (gpa - s->gpa));
  }
  return NULL;
}

static void report_bytes(FILE* f, const char* name, uint64_t gpa, unsigned len) {
  const uint8_t* p = guest_bytes(gpa, len);
  fprintf(f, "%s ", name);
  for (unsigned i = 0; p && i < len; ++i) fprintf(f, "%02x", p[i]);
  fprintf(f, "%s\n", p ? "" : "none");
}

static void dump_ram(const char* path) {
  static const uint8_t zero[4096];
  const struct slot* s = &st.slots[0];
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  for (uint64_t off = 0; off < s->size; off += sizeof zero) {
    const uint8_t* page = (const uint8_t*)(uintptr_t)(s->host + off);
    if (memcmp(page, zero, sizeof zero) != 0 && pwrite(fd, page, sizeof zero, (off_t)off) < 0)
      break;
  }
  if (ftruncate(fd, (off_t)s->size) < 0) perror("fake_kvm: sizing the RAM image");
  real_close(fd);
}

static void report(void) {
  const char* ram = getenv("SKIFF_FAKE_KVM_RAM");
  if (ram && st.slots[0].size) dump_ram(ram);
  const char* path = getenv("SKIFF_FAKE_KVM_REPORT");
  FILE* f = path ? fopen(path, "we") : NULL;
  if (!f) return;
  for (int i = 0; i < MAX_SLOTS; ++i)
    if (st.slots[i].size)
      fprintf(f, "slot %d 0x%llx 0x%llx\n", i, (unsigned long long)st.slots[i].gpa,
              (unsigned long long)st.slots[i].size);
  const struct kvm_regs* r = &st.regs;
  const struct kvm_sregs* s = &st.sregs;
  fprintf(f, "rip 0x%llx\nrsp 0x%llx\nrsi 0x%llx\nrbx 0x%llx\nrax 0x%llx\nrflags 0x%llx\n", r->rip,
          r->rsp, r->rsi, r->rbx, r->rax, r->rflags);
  fprintf(f, "cr0 0x%llx\ncr3 0x%llx\ncr4 0x%llx\nefer 0x%llx\ncs_l %u\ncs_db %u\n", s->cr0, s->cr3,
          s->cr4, s->efer, s->cs.l, s->cs.db);
  report_bytes(f, "at_rsi", r->rsi, 0x240);
  report_bytes(f, "at_rbx", r->rbx, 64);
  fclose(f);
}

// Exit number `n` of vCPU 0 from SKIFF_FAKE_KVM_EXITS (a comma-separated
// list; default "io:0xf4:0"): io:PORT:BYTE (an out of one byte), shutdown
// (a triple fault), emulation (KVM could not emulate `ud2`), reset and
// poweroff (system events). False when the list has no exit `n`.
static int scripted_exit(struct kvm_run* run, unsigned n) {
  const char* list = getenv("SKIFF_FAKE_KVM_EXITS");
  if (!list || !*list) list = "io:0xf4:0";
  for (; n > 0 && list; --n) {
    list = strchr(list, ',');
    if (list) ++list;
  }
  if (!list || !*list) return 0;
  char tok[64];
  size_t len = strcspn(list, ",");
  snprintf(tok, sizeof tok, "%.*s", (int)len, list);
  unsigned port, byte;
  memset(run, 0, sizeof *run);
  if (sscanf(tok, "io:%i:%i", &port, &byte) == 2) {
    run->exit_reason = KVM_EXIT_IO;
    run->io.direction = KVM_EXIT_IO_OUT;
    run->io.size = 1;
    run->io.port = (uint16_t)port;
    run->io.count = 1;
    run->io.data_offset = IO_DATA_OFFSET;
    ((uint8_t*)run)[IO_DATA_OFFSET] = (uint8_t)byte;
  } else if (strcmp(tok, "shutdown") == 0) {
    run->exit_reason = KVM_EXIT_SHUTDOWN;
  } else if (strcmp(tok, "emulation") == 0) {
    run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
    run->emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
    run->emulation_failure.ndata = 3;
    run->emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
    run->emulation_failure.insn_size = 2;
    run->emulation_failure.insn_bytes[0] = 0x0f;
    run->emulation_failure.insn_bytes[1] = 0x0b;
  } else if (strcmp(tok, "reset") == 0 || strcmp(tok, "poweroff") == 0) {
    run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
    run->system_event.type = tok[0] == 'r' ? KVM_SYSTEM_EVENT_RESET : KVM_SYSTEM_EVENT_SHUTDOWN;
  } else {
    fprintf(stderr, "fake_kvm: SKIFF_FAKE_KVM_EXITS: no such exit '%s'\n", tok);
    abort();
  }
  return 1;
}

// vCPU 0's runs give the scripted exits in turn (the first also writes the
// report); once they are used up, and on the other vCPUs, KVM_RUN waits for
// skiff's kick like a halted vCPU would.
static int run(int fd) {
  struct kvm_run* run = st.run[fd];
  if (!run) {
    void* p = mmap(NULL, RUN_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -1;
    run = st.run[fd] = p;
  }
  if (st.vcpu_id[fd] == 0) {
    unsigned n = __atomic_fetch_add(&st.vcpu0_runs, 1, __ATOMIC_SEQ_CST);
    if (n == 0) report();
    if (scripted_exit(run, n)) return 0;
  }
  while (!__atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST)) {
    struct timespec ms = {0, 1000000};
    if (nanosleep(&ms, NULL) < 0) break;  // a signal: KVM_RUN returns EINTR
  }
  return fail(EINTR);
}

// KVM_GET_MSRS (system: feature MSRs; vCPU): every MSR reads 0.
static int get_msrs(void* arg) {
  uint32_t n = *(const uint32_t*)arg;
  struct kvm_msr_entry* e = (struct kvm_msr_entry*)((char*)arg + 8);
  for (uint32_t i = 0; i < n; ++i) e[i].data = 0;
  return (int)n;
}

static int system_ioctl(unsigned long req, unsigned long arg) {
  switch (req) {
    case KVM_GET_API_VERSION:
      return KVM_API_VERSION;
    case KVM_GET_VCPU_MMAP_SIZE:
      return RUN_BYTES;
    case KVM_CHECK_EXTENSION:
      return check_extension((long)arg);
    case KVM_CREATE_VM:
      return new_fd(VM, 0);
  }
  // The flexible-array ioctls: skiff numbers them by the C header size
  // (src/kvm/kvm.cc), so match type and number only.
  switch (req & 0xffff) {
    case KVM_GET_SUPPORTED_CPUID & 0xffff:
      return supported_cpuid((void*)arg);
    case KVM_GET_MSR_INDEX_LIST & 0xffff:
      return msr_list((void*)arg, kMsrs, sizeof kMsrs / sizeof kMsrs[0]);
    case KVM_GET_MSR_FEATURE_INDEX_LIST & 0xffff:
      return msr_list((void*)arg, kFeatureMsrs, 1);
    case KVM_GET_MSRS & 0xffff:
      return get_msrs((void*)arg);
  }
  // What QEMU asks beyond skiff (bench/boot/run.sh --fake-kvm runs both).
  switch (req) {
    case KVM_X86_GET_MCE_CAP_SUPPORTED:  // MCG_LMCE_P | MCG_SER_P | MCG_CTL_P, 10 banks
      *(uint64_t*)arg = (1ull << 27) | (1ull << 24) | (1ull << 8) | 10;
      return 0;
    case KVM_GET_DEVICE_ATTR: {  // KVM_X86_XCOMP_GUEST_SUPP: the host's XCR0
      const struct kvm_device_attr* a = (const void*)arg;
      uint32_t lo, hi;
      __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      *(uint64_t*)(uintptr_t)a->addr = (uint64_t)hi << 32 | lo;
      return 0;
    }
  }
  if ((_IOC_DIR(req) & _IOC_READ) && arg) {  // any other "get": zeroes
    memset((void*)arg, 0, _IOC_SIZE(req));
    return 0;
  }
  return fail(ENOTTY);
}

static int vm_ioctl(unsigned long req, unsigned long arg) {
  switch (req) {
    case KVM_CHECK_EXTENSION:
      return check_extension((long)arg);
    case KVM_CREATE_VCPU: {
      int fd = new_fd(VCPU, RUN_BYTES);
      if (fd >= 0) st.vcpu_id[fd] = (unsigned)arg;
      return fd;
    }
    case KVM_SET_USER_MEMORY_REGION: {
      const struct kvm_userspace_memory_region* m = (const void*)arg;
      if (m->slot >> 16) return 0;  // another address space (QEMU's SMM): not reported
      if (m->slot >= MAX_SLOTS) return fail(EINVAL);
      st.slots[m->slot] = (struct slot){m->guest_phys_addr, m->memory_size, m->userspace_addr};
      return 0;
    }
    case KVM_SIGNAL_MSI:
      return 1;
    case KVM_CREATE_DEVICE:  // no in-kernel devices beyond the irqchip and PIT
      return fail(ENODEV);
    case KVM_GET_CLOCK:
      memset((void*)arg, 0, sizeof(struct kvm_clock_data));
      return 0;
  }
  // Any other "get": zeroes (KVM_GET_IRQCHIP, KVM_GET_PIT2, ...); any
  // "set" or create (KVM_CREATE_IRQCHIP, KVM_IRQFD, ...): done.
  if ((_IOC_DIR(req) & _IOC_READ) && arg) memset((void*)arg, 0, _IOC_SIZE(req));
  return 0;
}

static int vcpu_ioctl(int fd, unsigned long req, unsigned long arg) {
  switch (req) {
    case KVM_RUN:
      return run(fd);
    case KVM_SET_REGS:
      if (st.vcpu_id[fd] == 0) st.regs = *(const struct kvm_regs*)arg;
      return 0;
    case KVM_SET_SREGS:
      if (st.vcpu_id[fd] == 0) st.sregs = *(const struct kvm_sregs*)arg;
      return 0;
    case KVM_GET_REGS:  // vCPU 0 "ran" nothing: as it was set
      if (st.vcpu_id[fd] != 0) break;
      *(struct kvm_regs*)arg = st.regs;
      return 0;
    case KVM_GET_SREGS:
      if (st.vcpu_id[fd] != 0) break;
      *(struct kvm_sregs*)arg = st.sregs;
      return 0;
    case KVM_TRANSLATE: {
      struct kvm_translation* t = (void*)arg;
      t->physical_address = t->linear_address;
      t->valid = 1;
      return 0;
    }
  }
  if ((req & 0xffff) == (KVM_SET_MSRS & 0xffff)) return (int)*(const uint32_t*)arg;
  if ((req & 0xffff) == (KVM_GET_MSRS & 0xffff)) return get_msrs((void*)arg);
  // Any other "get": zeroes (KVM_GET_REGS, _SREGS, _LAPIC, _MP_STATE ...).
  if ((_IOC_DIR(req) & _IOC_READ) && arg) memset((void*)arg, 0, _IOC_SIZE(req));
  return 0;
}

int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  switch (kind_of(fd)) {
    case SYSTEM:
      return system_ioctl(req, arg);
    case VM:
      return vm_ioctl(req, arg);
    case VCPU:
      return vcpu_ioctl(fd, req, arg);
    case NONE:
      break;
  }
  return real_ioctl(fd, req, arg);
}
