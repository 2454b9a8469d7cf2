#include "arch/x86/test_images.h"

#include <cstdio>

namespace skiff::x86::testing {

TestRam::TestRam(uint64_t low_size, uint64_t high_size)
    : low_(static_cast<uint8_t*>(std::calloc(low_size, 1))) {
  std::vector<MemoryRegion> regions{{0, low_size, low_.get()}};
  if (high_size != 0) {
    high_.reset(static_cast<uint8_t*>(std::calloc(high_size, 1)));
    regions.push_back({0x100000000, high_size, high_.get()});
  }
  auto m = GuestMemory::create(std::move(regions));
  if (!m) std::abort();
  mem_ = std::move(*m);
}

std::vector<uint8_t> TestRam::bytes(uint64_t gpa, uint64_t len) const {
  std::vector<uint8_t> out(len);
  if (!mem_.read(gpa, out)) {
    std::fprintf(stderr, "TestRam: [%#lx, +%#lx) is not RAM\n", gpa, len);
    std::abort();
  }
  return out;
}

std::string TestRam::cstring(uint64_t gpa) const {
  std::string s;
  for (;;) {
    auto c = get<uint8_t>(gpa + s.size());
    if (c == 0) return s;
    s.push_back(static_cast<char>(c));
  }
}

std::vector<uint8_t> make_bzimage(const BzImageSpec& s) {
  size_t sects = s.setup_sects == 0 ? 4 : s.setup_sects;
  std::vector<uint8_t> b((sects + 1) * 512, 0);
  put<uint8_t>(b, 0x1f1, s.setup_sects);
  put<uint16_t>(b, 0x1fa, 0xffff);  // vid_mode NORMAL
  put<uint16_t>(b, 0x1fe, 0xaa55);
  put<uint8_t>(b, 0x200, 0xeb);  // jmp short
  put<uint8_t>(b, 0x201, 0x6a);  // header ends at 0x26c
  std::memcpy(b.data() + 0x202, "HdrS", 4);
  put<uint16_t>(b, 0x206, s.version);
  put<uint8_t>(b, 0x211, s.loadflags);
  put<uint32_t>(b, 0x214, 0x100000);
  put<uint32_t>(b, 0x22c, s.initrd_addr_max);
  put<uint32_t>(b, 0x230, 0x200000);
  put<uint8_t>(b, 0x234, s.relocatable);
  put<uint8_t>(b, 0x235, 21);
  put<uint16_t>(b, 0x236, s.xloadflags);
  put<uint32_t>(b, 0x238, s.cmdline_size);
  put<uint64_t>(b, 0x258, s.pref_address);
  put<uint32_t>(b, 0x260, s.init_size);
  b.insert(b.end(), s.kernel.begin(), s.kernel.end());
  return b;
}

ElfImage make_elf(const ElfSpec& s) {
  ElfImage img;
  const size_t ehsize = s.is64 ? 64 : 52;
  img.phentsize = s.is64 ? 56 : 32;
  img.phoff = ehsize;
  const bool has_notes = !s.notes.empty();
  const size_t phnum = s.segments.size() + (has_notes ? 1 : 0);
  img.first_load_phdr = has_notes ? 1 : 0;

  std::vector<uint8_t> notes;
  for (const auto& n : s.notes) {
    size_t off = notes.size();
    put<uint32_t>(notes, off, static_cast<uint32_t>(n.name.size() + 1));
    put<uint32_t>(notes, off + 4, static_cast<uint32_t>(n.desc.size()));
    put<uint32_t>(notes, off + 8, n.type);
    notes.insert(notes.end(), n.name.begin(), n.name.end());
    notes.push_back(0);
    while (notes.size() % 4) notes.push_back(0);
    notes.insert(notes.end(), n.desc.begin(), n.desc.end());
    while (notes.size() % 4) notes.push_back(0);
  }

  std::vector<uint8_t>& b = img.bytes;
  b.assign(ehsize + phnum * img.phentsize, 0);
  b[0] = 0x7f;
  b[1] = 'E';
  b[2] = 'L';
  b[3] = 'F';
  b[4] = s.is64 ? 2 : 1;
  b[5] = 1;                 // little-endian
  b[6] = 1;                 // EV_CURRENT
  put<uint16_t>(b, 16, 2);  // ET_EXEC
  put<uint16_t>(b, 18, s.machine);
  put<uint32_t>(b, 20, 1);
  if (s.is64) {
    put<uint64_t>(b, 24, s.entry);
    put<uint64_t>(b, 32, img.phoff);
    put<uint16_t>(b, 52, static_cast<uint16_t>(ehsize));
    put<uint16_t>(b, 54, static_cast<uint16_t>(img.phentsize));
    put<uint16_t>(b, 56, static_cast<uint16_t>(phnum));
  } else {
    put<uint32_t>(b, 24, static_cast<uint32_t>(s.entry));
    put<uint32_t>(b, 28, static_cast<uint32_t>(img.phoff));
    put<uint16_t>(b, 40, static_cast<uint16_t>(ehsize));
    put<uint16_t>(b, 42, static_cast<uint16_t>(img.phentsize));
    put<uint16_t>(b, 44, static_cast<uint16_t>(phnum));
  }

  auto write_phdr = [&](size_t i, uint32_t type, uint64_t off, uint64_t paddr, uint64_t filesz,
                        uint64_t memsz, uint64_t align) {
    size_t p = img.phoff + i * img.phentsize;
    put<uint32_t>(b, p, type);
    if (s.is64) {
      put<uint32_t>(b, p + 4, 5);  // R+X
      put<uint64_t>(b, p + 8, off);
      put<uint64_t>(b, p + 16, paddr + 0xffffffff80000000ull);  // a kernel-like vaddr
      put<uint64_t>(b, p + 24, paddr);
      put<uint64_t>(b, p + 32, filesz);
      put<uint64_t>(b, p + 40, memsz);
      put<uint64_t>(b, p + 48, align);
    } else {
      put<uint32_t>(b, p + 4, static_cast<uint32_t>(off));
      put<uint32_t>(b, p + 8, static_cast<uint32_t>(paddr));
      put<uint32_t>(b, p + 12, static_cast<uint32_t>(paddr));
      put<uint32_t>(b, p + 16, static_cast<uint32_t>(filesz));
      put<uint32_t>(b, p + 20, static_cast<uint32_t>(memsz));
      put<uint32_t>(b, p + 24, 5);
      put<uint32_t>(b, p + 28, static_cast<uint32_t>(align));
    }
  };

  if (has_notes) {
    size_t off = b.size();
    b.insert(b.end(), notes.begin(), notes.end());
    write_phdr(0, 4, off, 0, notes.size(), notes.size(), 4);
  }
  for (size_t i = 0; i < s.segments.size(); ++i) {
    const auto& seg = s.segments[i];
    while (b.size() % 16) b.push_back(0);
    size_t off = b.size();
    img.segment_file_offsets.push_back(off);
    b.insert(b.end(), seg.data.begin(), seg.data.end());
    uint64_t memsz = seg.memsz != 0 ? seg.memsz : seg.data.size();
    write_phdr(img.first_load_phdr + i, 1, off, seg.paddr, seg.data.size(), memsz, 0x1000);
  }
  return img;
}

ElfSpec pvh_spec(uint64_t entry) {
  ElfSpec s;
  s.is64 = true;
  s.machine = 62;
  s.entry = 0xffffffff81000000ull;  // the 64-bit entry, which PVH must not use
  std::vector<uint8_t> desc(8);
  std::memcpy(desc.data(), &entry, 8);
  s.notes.push_back({"Xen", 18, desc});
  s.notes.push_back({"GNU", 3, {1, 2, 3, 4}});
  std::vector<uint8_t> code(0x1800);
  for (size_t i = 0; i < code.size(); ++i) code[i] = static_cast<uint8_t>(i * 7 + 1);
  std::vector<uint8_t> data(0x800, 0xd5);
  s.segments.push_back({0x100000, code, 0});
  s.segments.push_back({0x200000, data, 0x3000});  // 0x2800 bytes of bss
  return s;
}

std::vector<uint8_t> multiboot_header(uint32_t flags, std::optional<MultibootAout> aout,
                                      bool good_checksum) {
  std::vector<uint8_t> h;
  uint32_t magic = 0x1BADB002;
  uint32_t checksum = 0u - (magic + flags) + (good_checksum ? 0 : 1);
  put<uint32_t>(h, 0, magic);
  put<uint32_t>(h, 4, flags);
  put<uint32_t>(h, 8, checksum);
  if (aout) {
    put<uint32_t>(h, 12, aout->header_addr);
    put<uint32_t>(h, 16, aout->load_addr);
    put<uint32_t>(h, 20, aout->load_end_addr);
    put<uint32_t>(h, 24, aout->bss_end_addr);
    put<uint32_t>(h, 28, aout->entry_addr);
  }
  return h;
}

std::span<const uint8_t> as_span(const std::vector<uint8_t>& v) {
  return v;
}

}  // namespace skiff::x86::testing
