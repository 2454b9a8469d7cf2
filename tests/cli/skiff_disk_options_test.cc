// --disk and --rng (virtio-pci devices).
#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), {"skiff", "--kernel", "/k"});
  return parse_skiff_args(args);
}

TEST(SkiffDiskOptions, RepeatedDisksKeepTheirOrderAndSettings) {
  auto r =
      parse({"--disk", "path=/a.img", "--disk",
             "path=/b.qcow2,readonly=on,num_queues=2,queue_size=128,direct=on,serial=SN1,id=d1"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_EQ(a->vm.disks.size(), 2u);
  EXPECT_EQ(a->vm.disks[0].path, "/a.img");
  EXPECT_FALSE(a->vm.disks[0].read_only);
  EXPECT_EQ(a->vm.disks[0].num_queues, 0);  // default: one per vCPU, decided by the vmm
  EXPECT_EQ(a->vm.disks[0].queue_size, 256);
  const DiskConfig& b = a->vm.disks[1];
  EXPECT_EQ(b.path, "/b.qcow2");
  EXPECT_TRUE(b.read_only);
  EXPECT_EQ(b.num_queues, 2);
  EXPECT_EQ(b.queue_size, 128);
  EXPECT_TRUE(b.direct);
  EXPECT_EQ(b.serial, "SN1");
  EXPECT_EQ(b.id, "d1");
  EXPECT_FALSE(a->vm.rng);
}

TEST(SkiffDiskOptions, BadDiskValuesAreUsageErrorsNamingTheValue) {
  for (const char* bad :
       {"readonly=on", "path=/a,queue_size=100", "path=/a,queue_size=65536", "path=/a,num_queues=0",
        "path=/a,readonly=maybe", "path=/a,bogus=1", "path=/a,serial=123456789012345678901"}) {
    auto r = parse({"--disk", bad});
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << bad;
    EXPECT_EQ(e->status, 2) << bad;
    EXPECT_NE(e->text.find("--disk"), std::string::npos) << e->text;
  }
}

TEST(SkiffDiskOptions, VhostUserDiskTakesASocketAndSharedMemory) {
  auto r = parse({"--memory", "size=1G,shared=on", "--disk",
                  "vhost_user=on,socket=/run/blk.sock,num_queues=2,queue_size=128,id=v0"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_EQ(a->vm.disks.size(), 1u);
  const DiskConfig& d = a->vm.disks[0];
  EXPECT_TRUE(d.vhost_user);
  EXPECT_EQ(d.vhost_socket, "/run/blk.sock");
  EXPECT_EQ(d.path, "");
  EXPECT_EQ(d.num_queues, 2);
  EXPECT_EQ(d.queue_size, 128);
  EXPECT_EQ(d.id, "v0");
}

TEST(SkiffDiskOptions, VhostUserDiskErrorsNameTheProblem) {
  struct Case {
    std::vector<std::string> args;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {{"--disk", "vhost_user=on,socket=/s"}, "--memory shared=on"},
           {{"--memory", "shared=on", "--disk", "vhost_user=on"}, "needs socket=PATH"},
           {{"--memory", "shared=on", "--disk", "vhost_user=on,socket=/s,path=/a.img"},
            "path= does not go with vhost_user=on"},
           {{"--memory", "shared=on", "--disk", "vhost_user=on,socket=/s,readonly=on"},
            "readonly= does not go with vhost_user=on"},
           {{"--disk", "path=/a.img,socket=/s"}, "socket=/s needs vhost_user=on"},
           {{"--disk", "vhost_user=maybe,socket=/s"}, "maybe"},
       }) {
    auto r = parse(c.args);
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << c.want;
    EXPECT_EQ(e->status, 2) << c.want;
    EXPECT_NE(e->text.find(c.want), std::string::npos) << e->text;
  }
  // Huge pages are shared memory too.
  auto r = parse({"--memory", "hugepages=on", "--disk", "vhost_user=on,socket=/s"});
  EXPECT_NE(std::get_if<SkiffArgs>(&r), nullptr) << std::get<EarlyExit>(r).text;
}

TEST(SkiffDiskOptions, RngWithAndWithoutSource) {
  auto r = parse({"--rng"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_TRUE(a->vm.rng);
  EXPECT_EQ(a->vm.rng->source, "");
  r = parse({"--rng", "src=/dev/urandom"});
  a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_TRUE(a->vm.rng);
  EXPECT_EQ(a->vm.rng->source, "/dev/urandom");
  r = parse({"--rng", "file=/x"});
  EXPECT_NE(std::get_if<EarlyExit>(&r), nullptr);
}

}  // namespace
}  // namespace skiff::cli
