// The 2 MiB huge page pool, grown for one test through
// /proc/sys/vm/nr_hugepages and put back when the test ends. Tests that use
// it run serially (tests/memory/CMakeLists.txt: memory.host).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace skiff::test {

// The 2 MiB pool of /proc/sys/vm/nr_hugepages, grown for one test and put
// back afterwards.
class HugePagePool {
 public:
  static constexpr const char* kDir = "/sys/kernel/mm/hugepages/hugepages-2048kB";
  static uint64_t read(const std::string& name) {
    std::ifstream in(std::string(kDir) + "/" + name);
    uint64_t v = 0;
    in >> v;
    return v;
  }
  // Grows the pool by `pages`; false (with the reason) if it could not.
  bool grow(uint64_t pages, std::string* why) {
    old_ = read("nr_hugepages");
    if (!write(old_ + pages)) {
      *why = "cannot write /proc/sys/vm/nr_hugepages (needs root)";
      return false;
    }
    grown_ = true;
    if (read("free_hugepages") < pages) {
      *why = "the kernel could not find " + std::to_string(pages) +
             " free 2 MiB pages for the pool (fragmented host memory)";
      return false;
    }
    return true;
  }
  ~HugePagePool() {
    if (grown_) write(old_);
  }

 private:
  static bool write(uint64_t n) {
    std::ofstream out("/proc/sys/vm/nr_hugepages");
    out << n;
    out.flush();
    return static_cast<bool>(out);
  }
  uint64_t old_ = 0;
  bool grown_ = false;
};

}  // namespace skiff::test
