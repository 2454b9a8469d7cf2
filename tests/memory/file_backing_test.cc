// --memory-zone file=PATH against the real kernel: what the guest writes is
// (shared=on) or is not (shared=off) in the file, a directory gets an
// unlinked temporary file, and bad paths are refused naming the value.
// hugetlbfs and small-tmpfs mounts are in file_mount_test.cc (serial).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "memory/guest_ram.h"
#include "memory/proc_maps.h"
#include "memory/ram_file.h"
#include "memory/temp_dir.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

RamOptions file_options(const std::string& path, bool shared) {
  RamOptions o;
  o.file = path;
  o.shared = shared;
  return o;
}

Result<GuestRam> make(uint64_t size, RamOptions o, uint64_t gpa = 0) {
  RamZone z{"f", {{gpa, size}}, std::move(o)};
  return GuestRam::create(std::span(&z, 1));
}

std::vector<uint8_t> pread_all(int fd, uint64_t offset, size_t len) {
  std::vector<uint8_t> out(len);
  EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
  return out;
}

std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, size_t len) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  auto out = pread_all(fd, offset, len);
  ::close(fd);
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_size);
}

std::string error_of(const Result<GuestRam>& r) {
  return r ? std::string("(created)") : r.error().message;
}

TEST(FileBacking, SharedFileIsCreatedAndGuestWritesReachIt) {
  test::TempDir dir;
  std::string path = dir.path() + "/ram";
  auto ram = make(4 * kMiB, file_options(path, true), kMiB);
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_EQ(file_size(path), 4 * kMiB);
  const MemoryRegion& r = ram->memory().regions()[0];
  EXPECT_GE(r.fd, 0) << "a shared file zone exports its fd like a memfd (vhost-user)";
  EXPECT_EQ(r.fd_offset, 0u);
  std::string e = test::proc_entry("smaps", r.host).value_or("");
  EXPECT_NE(e.find(" rw-s "), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;

  std::vector<uint8_t> data{1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(ram->memory().write(kMiB + 3 * kMiB + 100, data));
  EXPECT_EQ(file_bytes(path, 3 * kMiB + 100, data.size()), data);
  // The fd's offset is where the balloon punches: the page reads as zero.
  ASSERT_TRUE(ram->memory().discard(kMiB + 3 * kMiB, 4096));
  EXPECT_EQ(file_bytes(path, 3 * kMiB + 100, data.size()), std::vector<uint8_t>(8, 0));
}

TEST(FileBacking, SharedFileKeepsItsDataAndIsNeverShrunk) {
  test::TempDir dir;
  std::string shorter = dir.path() + "/short", longer = dir.path() + "/long";
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  write_file(shorter, data);
  write_file(longer, std::vector<uint8_t>(6 * kMiB + 3, 0x33));
  {
    auto a = make(2 * kMiB, file_options(shorter, true));
    ASSERT_TRUE(a) << a.error().what();
    EXPECT_EQ(file_size(shorter), 2 * kMiB) << "extended to the zone";
    std::vector<uint8_t> seen(data.size());
    ASSERT_TRUE(a->memory().read(0, seen));
    EXPECT_EQ(seen, data) << "the guest sees the file's bytes";
    auto b = make(2 * kMiB, file_options(longer, true));
    ASSERT_TRUE(b) << b.error().what();
    // Reboot: the user's file keeps what the guest wrote.
    ASSERT_TRUE(a->memory().write_obj<uint32_t>(64, 0xfeedf00d));
    a->discard_all();
    EXPECT_EQ(*a->memory().read_obj<uint32_t>(64), 0xfeedf00du);
  }
  EXPECT_EQ(file_size(longer), 6 * kMiB + 3) << "a longer file is used as is";
  EXPECT_EQ(file_bytes(longer, 6 * kMiB, 3), std::vector<uint8_t>(3, 0x33));
}

TEST(FileBacking, PrivateFileIsReadButNeverWritten) {
  test::TempDir dir;
  std::string path = dir.path() + "/image";
  std::vector<uint8_t> data(2 * kMiB);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ (i >> 9));
  write_file(path, data);
  auto ram = make(2 * kMiB, file_options(path, false));
  ASSERT_TRUE(ram) << ram.error().what();
  const MemoryRegion& r = ram->memory().regions()[0];
  EXPECT_EQ(r.fd, -1) << "guest writes are not in the file: no fd for vhost-user";
  std::string e = test::proc_entry("smaps", r.host).value_or("");
  EXPECT_NE(e.find(" rw-p "), std::string::npos) << e;

  std::vector<uint8_t> seen(4096);
  ASSERT_TRUE(ram->memory().read(kMiB, seen));
  EXPECT_EQ(seen, std::vector<uint8_t>(data.begin() + kMiB, data.begin() + kMiB + 4096));
  std::vector<uint8_t> junk(4096, 0xab);
  ASSERT_TRUE(ram->memory().write(kMiB, junk));
  ASSERT_TRUE(ram->memory().read(kMiB, seen));
  EXPECT_EQ(seen, junk);
  EXPECT_EQ(file_bytes(path, 0, data.size()), data) << "the file is untouched";
  // Reboot: back to the file's contents.
  ram->discard_all();
  ASSERT_TRUE(ram->memory().read(kMiB, seen));
  EXPECT_EQ(seen, std::vector<uint8_t>(data.begin() + kMiB, data.begin() + kMiB + 4096));
}

TEST(FileBacking, DirectoryGetsAnUnlinkedTemporaryFile) {
  test::TempDir dir;
  auto ram = make(4 * kMiB, file_options(dir.path(), true));
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "O_TMPFILE leaves no name behind";
  const MemoryRegion& r = ram->memory().regions()[0];
  ASSERT_GE(r.fd, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(r.fd, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
  ASSERT_TRUE(ram->memory().write_obj<uint64_t>(2 * kMiB, 0x1122334455667788));
  auto bytes = pread_all(r.fd, 2 * kMiB, 8);
  EXPECT_EQ(bytes[0], 0x88);
  EXPECT_EQ(bytes[7], 0x11);
}

TEST(FileBacking, TmpfsDirectoryBacksTheZone) {
  struct statfs fs {};
  if (::statfs("/dev/shm", &fs) != 0 || static_cast<uint64_t>(fs.f_type) != TMPFS_MAGIC)
    GTEST_SKIP() << "skipped: /dev/shm is not a tmpfs here";
  auto ram = make(4 * kMiB, file_options("/dev/shm", true));
  ASSERT_TRUE(ram) << ram.error().what();
  const MemoryRegion& r = ram->memory().regions()[0];
  std::string e = test::proc_entry("smaps", r.host).value_or("");
  EXPECT_NE(e.find(" rw-s "), std::string::npos) << e;
  EXPECT_NE(e.find("/dev/shm"), std::string::npos) << e;
  ASSERT_TRUE(ram->memory().write_obj<uint32_t>(4096, 0xabcd));
  auto bytes = pread_all(r.fd, 4096, 2);
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0xcd, 0xab}));
}

TEST(FileBacking, AdjacentFileZonesTakeABufferAcrossTheBoundary) {
  test::TempDir dir;
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, file_options(dir.path() + "/a", true)},
                             {"b", {{2 * kMiB, 2 * kMiB}}, file_options(dir.path(), true)}};
  auto ram = GuestRam::create(zones);
  ASSERT_TRUE(ram) << ram.error().what();
  std::vector<uint8_t> data(64, 0x42);
  ASSERT_TRUE(ram->memory().write(2 * kMiB - 32, data));
  EXPECT_EQ(file_bytes(dir.path() + "/a", 2 * kMiB - 32, 32), std::vector<uint8_t>(32, 0x42));
  EXPECT_EQ(pread_all(ram->memory().regions()[1].fd, 0, 32), std::vector<uint8_t>(32, 0x42));
}

TEST(FileBacking, BadPathsAreRefusedNamingTheValue) {
  test::TempDir dir;
  std::string small = dir.path() + "/small";
  write_file(small, std::vector<uint8_t>(4096, 1));
  struct Case {
    RamOptions options;
    const char* message;
  };
  for (const auto& [o, message] : std::vector<Case>{
           {file_options(dir.path() + "/no/such/ram", true),
            "does not exist"},  // the directory is missing
           {file_options("/dev/null", true), "file=/dev/null is a character device"},
           {file_options(dir.path() + "/missing", false), "does not exist: with shared=off"},
           {file_options(small, false), "has 4096 bytes, fewer than size=4194304"},
           {file_options(small + "/x", true), "is not a directory"},
       }) {
    auto ram = make(4 * kMiB, o);
    EXPECT_NE(error_of(ram).find(message), std::string::npos) << message << ": " << error_of(ram);
    EXPECT_NE(error_of(ram).find("--memory-zone id=f"), std::string::npos) << error_of(ram);
  }
  EXPECT_NE(error_of(make(4 * kMiB, file_options(dir.path() + "/no/such/ram", true)))
                .find("directory " + dir.path() + "/no/such does not exist"),
            std::string::npos);
  // Nothing was created or changed on the way.
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/missing"));
  EXPECT_EQ(file_size(small), 4096u);

  RamOptions huge = file_options(dir.path(), true);
  huge.hugepages = true;
  EXPECT_NE(error_of(make(4 * kMiB, huge)).find("with hugepages=on: give one of them"),
            std::string::npos);
  RamOptions ksm = file_options(dir.path(), false);
  ksm.mergeable = true;
  EXPECT_NE(error_of(make(4 * kMiB, ksm)).find("mergeable=on with file="), std::string::npos);
}

TEST(FileBacking, SharedMappingNeedsRoomOnTheFileSystem) {
  // The check itself, with the file system's free space given: mounting a
  // small tmpfs is in file_mount_test.cc.
  RamFileInfo f;
  f.path = "/mnt/x";
  f.directory = true;
  f.free_bytes = 3 * kMiB;
  auto r = check_ram_file("--memory-zone id=z", f, 4 * kMiB, file_options(f.path, true));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("file=/mnt/x: no space: the zone needs 4 MiB more on its file "
                                   "system, which has 3 MiB free"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(check_ram_file("z", f, 4 * kMiB, file_options(f.path, false)))
      << "a private mapping writes nothing to the file";
  f.directory = false;
  f.exists = true;
  f.file_size = f.allocated = 2 * kMiB;  // half of it is on disk already
  EXPECT_TRUE(check_ram_file("z", f, 4 * kMiB, file_options(f.path, true)));
}

}  // namespace
}  // namespace skiff
