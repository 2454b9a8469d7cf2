// --memory-zone file= on file systems the test mounts itself: hugetlbfs
// (huge pages from a pool the test grows and puts back, page size from
// statfs) and a small tmpfs (no space). The mounts live in a private mount
// namespace of this test process, so nothing else on the host sees them and
// they vanish with it. Skips say why (not root, no hugetlbfs, ...).
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "memory/guest_ram.h"
#include "memory/huge_page_pool.h"
#include "memory/proc_maps.h"
#include "memory/temp_dir.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A file system mounted on a fresh directory, in this process's own mount
// namespace (entered once).
class Mount {
 public:
  Mount(const char* type, const std::string& options) {
    static std::string ns_error = enter_private_namespace();
    if (!ns_error.empty()) {
      why_ = ns_error;
      return;
    }
    if (::mount("none", dir_.path().c_str(), type, 0, options.c_str()) != 0) {
      why_ = std::string("cannot mount ") + type + " (" + options + "): " + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~Mount() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  [[nodiscard]] bool ok() const { return mounted_; }
  [[nodiscard]] const std::string& why() const { return why_; }
  [[nodiscard]] const std::string& path() const { return dir_.path(); }

 private:
  static std::string enter_private_namespace() {
    if (::unshare(CLONE_NEWNS) != 0)
      return std::string("cannot create a mount namespace: ") + std::strerror(errno);
    // Mounts made here must not propagate back to the host's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return std::string("cannot make / private in the test's mount namespace: ") +
             std::strerror(errno);
    return "";
  }
  test::TempDir dir_;
  bool mounted_ = false;
  std::string why_;
};

Result<GuestRam> make(uint64_t size, const std::string& file, bool shared) {
  RamOptions o;
  o.file = file;
  o.shared = shared;
  RamZone z{"h", {{0, size}}, o};
  return GuestRam::create(std::span(&z, 1));
}

std::string error_of(const Result<GuestRam>& r) {
  return r ? std::string("(created)") : r.error().message;
}

TEST(FileMount, HugetlbfsDirectoryGivesHugePages) {
  if (access(test::HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  Mount m("hugetlbfs", "pagesize=2M");
  if (!m.ok()) GTEST_SKIP() << "skipped: " << m.why();
  test::HugePagePool pool;
  std::string why;
  if (!pool.grow(8, &why)) GTEST_SKIP() << "skipped: " << why;
  uint64_t free_before = test::HugePagePool::read("free_hugepages");
  for (bool shared : {true, false}) {
    SCOPED_TRACE(shared ? "shared=on" : "shared=off");
    auto ram = make(4 * kMiB, m.path(), shared);
    ASSERT_TRUE(ram) << ram.error().what();
    EXPECT_TRUE(std::filesystem::is_empty(m.path())) << "the temporary file has no name";
    const MemoryRegion& r = ram->memory().regions()[0];
    EXPECT_EQ(r.fd >= 0, shared);
    // Pages are reserved from the pool at mmap: no SIGBUS later.
    EXPECT_EQ(test::HugePagePool::read("resv_hugepages") +
                  (free_before - test::HugePagePool::read("free_hugepages")),
              2u);
    ASSERT_TRUE(ram->memory().write_obj<uint64_t>(3 * kMiB, 0x0123456789abcdef));
    EXPECT_EQ(*ram->memory().read_obj<uint64_t>(3 * kMiB), 0x0123456789abcdefu);
    std::string e = test::proc_entry("smaps", r.host).value_or("");
    EXPECT_NE(e.find("KernelPageSize:     2048 kB"), std::string::npos) << e;
    EXPECT_NE(test::smaps_vm_flags(e).find(" ht "), std::string::npos) << e;
    if (shared) {
      EXPECT_EQ(ram->memory().page_size(0), 2 * kMiB) << "what the balloon can free";
    }
  }
  // A named file on the mount: created at the zone's size, and kept.
  auto named = make(2 * kMiB, m.path() + "/ram", true);
  ASSERT_TRUE(named) << named.error().what();
  EXPECT_EQ(std::filesystem::file_size(m.path() + "/ram"), 2 * kMiB);
}

TEST(FileMount, HugetlbfsZoneMustBeAWholeNumberOfItsPages) {
  Mount m("hugetlbfs", "pagesize=2M");
  if (!m.ok()) GTEST_SKIP() << "skipped: " << m.why();
  auto ram = make(3 * kMiB, m.path(), true);
  std::string want =
      "--memory-zone id=h: size=3145728 is not a multiple of the 2 MiB huge page "
      "size of file=" +
      m.path() + " (hugetlbfs)";
  EXPECT_NE(error_of(ram).find(want), std::string::npos) << error_of(ram);
}

TEST(FileMount, HugetlbfsShortPoolIsRefusedWithTheDocumentedMessage) {
  if (access(test::HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  Mount m("hugetlbfs", "pagesize=2M");
  if (!m.ok()) GTEST_SKIP() << "skipped: " << m.why();
  uint64_t free = test::HugePagePool::read("free_hugepages");
  auto ram = make((free + 2) * 2 * kMiB, m.path(), true);
  std::string want = "--memory-zone id=h: file=" + m.path() + " (hugetlbfs): needs " +
                     std::to_string(free + 2) + " 2 MiB pages, only " + std::to_string(free) +
                     " free";
  EXPECT_NE(error_of(ram).find(want), std::string::npos) << error_of(ram);
}

TEST(FileMount, SmallTmpfsHasNoSpaceForASharedZone) {
  Mount m("tmpfs", "size=4m");
  if (!m.ok()) GTEST_SKIP() << "skipped: " << m.why();
  auto big = make(8 * kMiB, m.path(), true);
  EXPECT_NE(error_of(big).find("file=" + m.path() +
                               ": no space: the zone needs 8 MiB more on its file system, which "
                               "has 4 MiB free"),
            std::string::npos)
      << error_of(big);
  auto named = make(8 * kMiB, m.path() + "/ram", true);
  EXPECT_NE(error_of(named).find("no space"), std::string::npos) << error_of(named);
  EXPECT_FALSE(std::filesystem::exists(m.path() + "/ram")) << "refused before creating the file";
  // Private: guest writes never reach the file, so its size does not matter.
  auto priv = make(8 * kMiB, m.path(), false);
  EXPECT_TRUE(priv) << error_of(priv);
  // Shared and fitting: every page can be written (a page tmpfs could not
  // store would be a SIGBUS here).
  auto fits = make(2 * kMiB, m.path(), true);
  ASSERT_TRUE(fits) << error_of(fits);
  auto span = *fits->memory().slice(0, 2 * kMiB);
  std::memset(span.data(), 0x5a, span.size());
}

}  // namespace
}  // namespace skiff
