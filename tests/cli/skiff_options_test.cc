#include "cli/skiff_options.h"

#include <gtest/gtest.h>

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "skiff");
  return parse_skiff_args(args);
}

TEST(SkiffOptions, ParsesCloudHypervisorStyleOptions) {
  auto r =
      parse({"--kernel", "/k", "--initramfs", "/i", "--cmdline", "console=ttyS0", "--cpus",
             "boot=4", "--memory", "size=2G", "--serial", "file=/tmp/s", "-vv", "--no-reboot"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_EQ(a->vm.kernel, "/k");
  EXPECT_EQ(a->vm.initramfs, "/i");
  EXPECT_EQ(a->vm.cmdline, "console=ttyS0");
  EXPECT_EQ(a->vm.boot_cpus, 4u);
  EXPECT_EQ(a->vm.memory_size, 2ull << 30);
  EXPECT_EQ(a->vm.serial, "file=/tmp/s");
  EXPECT_EQ(a->verbosity, 2);
  EXPECT_TRUE(a->vm.no_reboot);
}

TEST(SkiffOptions, VersionPrintsSkiffVersion) {
  auto r = parse({"--version"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 0);
  EXPECT_TRUE(e->text.starts_with("skiff v")) << e->text;
}

TEST(SkiffOptions, HelpDocumentsEveryOptionAndExitStatus) {
  auto r = parse({"--help"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 0);
  for (const char* opt : {"--kernel", "--initramfs", "--cmdline", "--cpus", "--memory", "--serial",
                          "--log-file", "-v", "--no-reboot", "--version", "Exit status", "0xf4"})
    EXPECT_NE(e->text.find(opt), std::string::npos) << opt;
}

TEST(SkiffOptions, BadValuesExitWithStatus2NamingTheValue) {
  struct Case {
    std::vector<std::string> args;
    const char* named;
  } cases[] = {
      {{"--kernel", "/k", "--cpus", "boot=0"}, "0"},
      {{"--kernel", "/k", "--cpus", "boot=300"}, "300"},
      {{"--kernel", "/k", "--cpus", "cores=2"}, "cores"},
      {{"--kernel", "/k", "--memory", "size=12Q"}, "12Q"},
      {{"--kernel", "/k", "--memory", "size=1M"}, "1M"},
      {{"--kernel", "/k", "--bogus"}, "--bogus"},
      {{"--cmdline", "x"}, "--kernel"},
  };
  for (const auto& c : cases) {
    auto r = parse(c.args);
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << c.named;
    EXPECT_EQ(e->status, 2) << e->text;
    EXPECT_NE(e->text.find(c.named), std::string::npos) << e->text;
  }
}

}  // namespace
}  // namespace skiff::cli

namespace skiff::cli {
namespace {

TEST(SkiffOptions, ApiSocketMakesKernelOptional) {
  auto r = parse({"--api-socket", "path=/tmp/a.sock", "--event-monitor", "fd=5"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_FALSE(a->has_kernel);
  ASSERT_TRUE(a->api_socket);
  EXPECT_EQ(a->api_socket->path, "/tmp/a.sock");
  EXPECT_EQ(a->api_socket->fd, -1);
  ASSERT_TRUE(a->event_monitor);
  EXPECT_EQ(a->event_monitor->fd, 5);
}

TEST(SkiffOptions, ApiSocketTakesABarePathOrAnFd) {
  auto r = parse({"--api-socket", "/run/skiff.sock", "--kernel", "/k"});
  ASSERT_NE(std::get_if<SkiffArgs>(&r), nullptr);
  EXPECT_EQ(std::get<SkiffArgs>(r).api_socket->path, "/run/skiff.sock");
  EXPECT_TRUE(std::get<SkiffArgs>(r).has_kernel);
  r = parse({"--api-socket", "fd=3"});
  ASSERT_NE(std::get_if<SkiffArgs>(&r), nullptr);
  EXPECT_EQ(std::get<SkiffArgs>(r).api_socket->fd, 3);
}

TEST(SkiffOptions, BadApiSocketValuesAreUsageErrors) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--api-socket", "path=/a,fd=3"},
                                        {"--api-socket", "fd=-1"},
                                        {"--api-socket", "fd=x"},
                                        {"--api-socket", "path="},
                                        {"--api-socket", "sock=/a"},
                                        {"--event-monitor", "fd=1", "--cmdline", "x"}}) {
    auto r = parse(args);
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << args[1];
    EXPECT_EQ(e->status, 2) << args[1];
  }
}

}  // namespace
}  // namespace skiff::cli
