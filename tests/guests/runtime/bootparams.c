/* Boot information from the loader, PVH, Multiboot v1 or Linux boot_params
 * (bzImage), into one struct boot_info. Everything the loader hands over is treated as hostile:
 * the VMM under test may be wrong, and a wrong pointer must produce an
 * ERROR= line, not a page fault. */
#include "runtime.h"

struct boot_info boot_info;

/* The boot page tables identity-map [0, 1 GiB). */
#define IDENTITY_MAP_END 0x40000000ull

#define MMIO_MAP_START 0xfe000000ull
#define MMIO_MAP_END 0x100000000ull

bool phys_range_ok(uint64_t addr, uint64_t len) {
  return addr < IDENTITY_MAP_END && len <= IDENTITY_MAP_END - addr;
}

bool mmio_range_ok(uint64_t addr, uint64_t len) {
  return addr >= MMIO_MAP_START && addr < MMIO_MAP_END && len <= MMIO_MAP_END - addr;
}

/* A NUL-terminated string of at most max bytes inside the identity map. */
static const char* checked_string(uint64_t addr, uint64_t max, const char* what) {
  if (addr == 0) return "";
  if (!phys_range_ok(addr, 1))
    guest_fail("%s at 0x%llx is outside guest RAM", what, (unsigned long long)addr);
  const char* s = phys(addr);
  for (uint64_t i = 0; i < max && phys_range_ok(addr, i + 1); i++)
    if (s[i] == 0) return s;
  guest_fail("%s at 0x%llx is not NUL-terminated", what, (unsigned long long)addr);
}

#define CMDLINE_MAX 0x10000

/* xen/include/public/arch-x86/hvm/start_info.h: struct hvm_start_info
 * (version 1 adds memmap_paddr/memmap_entries at 40/48), modlist entries of
 * 32 bytes (paddr, size, cmdline_paddr, reserved), memmap entries of 24
 * bytes (addr, size, type, reserved). */
struct pvh_start_info {
  uint32_t magic, version, flags, nr_modules;
  uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
  uint32_t memmap_entries, reserved;
};
struct pvh_module {
  uint64_t paddr, size, cmdline_paddr, reserved;
};
struct pvh_memmap_entry {
  uint64_t addr, size;
  uint32_t type, reserved;
};

static void parse_pvh(uint64_t paddr) {
  if (!phys_range_ok(paddr, sizeof(struct pvh_start_info)))
    guest_fail("hvm_start_info at 0x%llx is outside guest RAM", (unsigned long long)paddr);
  const struct pvh_start_info* si = phys(paddr);
  if (si->magic != PVH_START_MAGIC)
    guest_fail("hvm_start_info magic 0x%x, want 0x%x", si->magic, PVH_START_MAGIC);
  boot_info.cmdline = checked_string(si->cmdline_paddr, CMDLINE_MAX, "PVH cmdline");
  boot_info.rsdp_paddr = si->rsdp_paddr;
  if (si->nr_modules > MAX_MODULES)
    guest_fail("PVH nr_modules %u > %u", si->nr_modules, MAX_MODULES);
  if (si->nr_modules) {
    if (!phys_range_ok(si->modlist_paddr, (uint64_t)si->nr_modules * sizeof(struct pvh_module)))
      guest_fail("PVH modlist at 0x%llx is outside guest RAM",
                 (unsigned long long)si->modlist_paddr);
    const struct pvh_module* m = phys(si->modlist_paddr);
    for (uint32_t i = 0; i < si->nr_modules; i++)
      boot_info.modules[i] = (struct boot_module){m[i].paddr, m[i].size};
    boot_info.n_modules = si->nr_modules;
  }
  if (si->version >= 1 && si->memmap_entries) {
    if (si->memmap_entries > MAX_MEM_RANGES)
      guest_fail("PVH memmap_entries %u > %u", si->memmap_entries, MAX_MEM_RANGES);
    if (!phys_range_ok(si->memmap_paddr,
                       (uint64_t)si->memmap_entries * sizeof(struct pvh_memmap_entry)))
      guest_fail("PVH memmap at 0x%llx is outside guest RAM", (unsigned long long)si->memmap_paddr);
    const struct pvh_memmap_entry* e = phys(si->memmap_paddr);
    for (uint32_t i = 0; i < si->memmap_entries; i++)
      boot_info.mem[i] = (struct mem_range){e[i].addr, e[i].size, e[i].type};
    boot_info.n_mem = si->memmap_entries;
  }
}

/* Multiboot spec 0.6.96 §3.3: multiboot_info; mmap entries are
 * (size, base_addr, length, type) where size excludes itself; module
 * entries are (mod_start, mod_end, string, reserved). */
struct mb_info {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length, mmap_addr;
};
struct mb_module {
  uint32_t mod_start, mod_end, string, reserved;
};
enum { MBI_MEM = 1u << 0, MBI_CMDLINE = 1u << 2, MBI_MODS = 1u << 3, MBI_MMAP = 1u << 6 };

static void parse_multiboot(uint64_t paddr) {
  if (!phys_range_ok(paddr, sizeof(struct mb_info)))
    guest_fail("multiboot_info at 0x%llx is outside guest RAM", (unsigned long long)paddr);
  const struct mb_info* mbi = phys(paddr);
  if (mbi->flags & MBI_CMDLINE)
    boot_info.cmdline = checked_string(mbi->cmdline, CMDLINE_MAX, "multiboot cmdline");
  if ((mbi->flags & MBI_MODS) && mbi->mods_count) {
    if (mbi->mods_count > MAX_MODULES)
      guest_fail("multiboot mods_count %u > %u", mbi->mods_count, MAX_MODULES);
    if (!phys_range_ok(mbi->mods_addr, (uint64_t)mbi->mods_count * sizeof(struct mb_module)))
      guest_fail("multiboot mods_addr 0x%x is outside guest RAM", mbi->mods_addr);
    const struct mb_module* m = phys(mbi->mods_addr);
    for (uint32_t i = 0; i < mbi->mods_count; i++) {
      if (m[i].mod_end < m[i].mod_start) guest_fail("multiboot module %u ends before it starts", i);
      boot_info.modules[i] =
          (struct boot_module){m[i].mod_start, (uint64_t)m[i].mod_end - m[i].mod_start};
    }
    boot_info.n_modules = mbi->mods_count;
  }
  if (mbi->flags & MBI_MMAP) {
    if (!phys_range_ok(mbi->mmap_addr, mbi->mmap_length))
      guest_fail("multiboot mmap at 0x%x+0x%x is outside guest RAM", mbi->mmap_addr,
                 mbi->mmap_length);
    const uint8_t* p = phys(mbi->mmap_addr);
    uint32_t off = 0;
    while (off + 24 <= mbi->mmap_length) {
      uint32_t size;
      uint64_t base, len;
      uint32_t type;
      memcpy(&size, p + off, 4);
      memcpy(&base, p + off + 4, 8);
      memcpy(&len, p + off + 12, 8);
      memcpy(&type, p + off + 20, 4);
      if (size < 20) guest_fail("multiboot mmap entry at +%u has size %u < 20", off, size);
      if (boot_info.n_mem == MAX_MEM_RANGES)
        guest_fail("multiboot mmap has more than %u entries", MAX_MEM_RANGES);
      boot_info.mem[boot_info.n_mem++] = (struct mem_range){base, len, type};
      if (size > mbi->mmap_length - off - 4) break;
      off += size + 4;
    }
  } else if (mbi->flags & MBI_MEM) {
    /* Only mem_lower/mem_upper (KiB below 640K, KiB above 1M): synthesise. */
    boot_info.mem[0] = (struct mem_range){0, (uint64_t)mbi->mem_lower * 1024, 1};
    boot_info.mem[1] = (struct mem_range){0x100000, (uint64_t)mbi->mem_upper * 1024, 1};
    boot_info.n_mem = 2;
  }
}

/* Linux boot_params, the "zero page" (zero-page.rst; boot.rst for the
 * setup header copied in at 0x1f1). Offsets of the fields the guests use;
 * ext_* hold the high 32 bits of the matching header fields. */
enum {
  BP_SIZE = 0x1000,
  BP_ACPI_RSDP_ADDR = 0x070, /* u64 */
  BP_EXT_RAMDISK_IMAGE = 0x0c0,
  BP_EXT_RAMDISK_SIZE = 0x0c4,
  BP_EXT_CMD_LINE_PTR = 0x0c8,
  BP_E820_ENTRIES = 0x1e8, /* u8 */
  BP_HDR_MAGIC = 0x202,    /* "HdrS" */
  BP_RAMDISK_IMAGE = 0x218,
  BP_RAMDISK_SIZE = 0x21c,
  BP_CMD_LINE_PTR = 0x228,
  BP_E820_TABLE = 0x2d0, /* packed {u64 addr, u64 size, u32 type} */
  BP_E820_ENTRY_SIZE = 20,
};

static uint32_t bp_u32(const uint8_t* bp, uint32_t off) {
  uint32_t v;
  memcpy(&v, bp + off, sizeof v);
  return v;
}

/* A header field (low 32 bits) and its ext_* high half. */
static uint64_t bp_split_u64(const uint8_t* bp, uint32_t lo_off, uint32_t hi_off) {
  return bp_u32(bp, lo_off) | (uint64_t)bp_u32(bp, hi_off) << 32;
}

static void parse_bzimage(uint64_t paddr) {
  if (!phys_range_ok(paddr, BP_SIZE))
    guest_fail("boot_params at 0x%llx is outside guest RAM", (unsigned long long)paddr);
  const uint8_t* bp = phys(paddr);
  /* The loader copies the setup header from the image, magic included: no
   * magic means RSI does not point at boot_params. */
  if (memcmp(bp + BP_HDR_MAGIC, "HdrS", 4) != 0)
    guest_fail("boot_params at 0x%llx has no HdrS setup header", (unsigned long long)paddr);
  uint64_t cmdline = bp_split_u64(bp, BP_CMD_LINE_PTR, BP_EXT_CMD_LINE_PTR);
  boot_info.cmdline = checked_string(cmdline, CMDLINE_MAX, "boot_params cmd_line_ptr");
  uint64_t rsdp;
  memcpy(&rsdp, bp + BP_ACPI_RSDP_ADDR, sizeof rsdp);
  boot_info.rsdp_paddr = rsdp;

  uint64_t rd_addr = bp_split_u64(bp, BP_RAMDISK_IMAGE, BP_EXT_RAMDISK_IMAGE);
  uint64_t rd_size = bp_split_u64(bp, BP_RAMDISK_SIZE, BP_EXT_RAMDISK_SIZE);
  if (rd_size) {
    boot_info.modules[0] = (struct boot_module){rd_addr, rd_size};
    boot_info.n_modules = 1;
  }

  uint32_t n = bp[BP_E820_ENTRIES];
  /* The zero page has room for 128 (E820_MAX_ENTRIES_ZEROPAGE); we take 64. */
  if (n > MAX_MEM_RANGES) guest_fail("boot_params e820_entries %u > %u", n, MAX_MEM_RANGES);
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t* e = bp + BP_E820_TABLE + i * BP_E820_ENTRY_SIZE;
    struct mem_range* r = &boot_info.mem[i];
    memcpy(&r->start, e, 8);
    memcpy(&r->len, e + 8, 8);
    memcpy(&r->type, e + 16, 4);
  }
  boot_info.n_mem = n;
}

void parse_boot_info(int proto, uint64_t info_paddr) {
  boot_info.proto = proto;
  boot_info.cmdline = "";
  if (proto == BOOT_PROTO_PVH)
    parse_pvh(info_paddr);
  else if (proto == BOOT_PROTO_MULTIBOOT)
    parse_multiboot(info_paddr);
  else if (proto == BOOT_PROTO_BZIMAGE)
    parse_bzimage(info_paddr);
  else
    guest_fail("entered at mb_entry without the Multiboot magic in EAX");
}

const char* boot_proto_name(int proto) {
  switch (proto) {
    case BOOT_PROTO_PVH:
      return "pvh";
    case BOOT_PROTO_MULTIBOOT:
      return "multiboot";
    case BOOT_PROTO_BZIMAGE:
      return "bzimage";
    default:
      return "unknown";
  }
}

bool parse_u64(const char* s, uint64_t* out) {
  uint64_t v = 0;
  unsigned base = 10;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) base = 16, s += 2;
  if (!*s) return false;
  for (; *s; s++) {
    unsigned d;
    if (*s >= '0' && *s <= '9')
      d = (unsigned)(*s - '0');
    else if (base == 16 && *s >= 'a' && *s <= 'f')
      d = (unsigned)(*s - 'a' + 10);
    else if (base == 16 && *s >= 'A' && *s <= 'F')
      d = (unsigned)(*s - 'A' + 10);
    else
      return false;
    if (v > (UINT64_MAX - d) / base) return false;
    v = v * base + d;
  }
  *out = v;
  return true;
}

bool cmdline_get(const char* key, char* out, size_t out_len) {
  size_t klen = strlen(key);
  const char* p = boot_info.cmdline;
  while (*p) {
    while (*p == ' ') p++;
    const char* tok = p;
    while (*p && *p != ' ') p++;
    size_t tlen = (size_t)(p - tok);
    if (tlen >= klen && memcmp(tok, key, klen) == 0 && (tlen == klen || tok[klen] == '=')) {
      const char* v = tlen == klen ? tok + klen : tok + klen + 1;
      size_t vlen = (size_t)(p - v);
      if (out_len == 0) return true;
      if (vlen >= out_len) vlen = out_len - 1;
      memcpy(out, v, vlen);
      out[vlen] = 0;
      return true;
    }
  }
  return false;
}

uint64_t cmdline_u64(const char* key, uint64_t dflt) {
  char buf[32];
  uint64_t v;
  if (!cmdline_get(key, buf, sizeof buf)) return dflt;
  if (!parse_u64(buf, &v)) guest_fail("cmdline %s=%s is not a number", key, buf);
  return v;
}
