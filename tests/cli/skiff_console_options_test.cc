// --console: the virtio-console's host end, and its rule with --serial.
#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "skiff");
  args.insert(args.begin() + 1, {"--kernel", "/k"});
  return parse_skiff_args(args);
}

const SkiffArgs& ok(const std::variant<SkiffArgs, EarlyExit>& r) {
  if (auto* e = std::get_if<EarlyExit>(&r)) ADD_FAILURE() << e->text;
  return std::get<SkiffArgs>(r);
}

TEST(SkiffConsoleOptions, OffByDefaultWithTheSerialOnTheTerminal) {
  auto r = parse({});
  EXPECT_FALSE(ok(r).vm.console);
  EXPECT_EQ(ok(r).vm.serial, "tty");
  EXPECT_FALSE(ok(parse({"--console", "off"})).vm.console);
}

TEST(SkiffConsoleOptions, ModesMapToBackends) {
  EXPECT_EQ(ok(parse({"--console", "pty"})).vm.console->backend, "pty");
  EXPECT_EQ(ok(parse({"--console", "file=/tmp/hvc0.log"})).vm.console->backend,
            "file=/tmp/hvc0.log");
  // null: the device exists, its output is discarded.
  EXPECT_EQ(ok(parse({"--console", "null"})).vm.console->backend, "off");
  // Not on the terminal: the serial keeps its default.
  EXPECT_EQ(ok(parse({"--console", "pty"})).vm.serial, "tty");
}

TEST(SkiffConsoleOptions, ConsoleTtyMovesTheDefaultSerialOffTheTerminal) {
  auto r = parse({"--console", "tty"});
  EXPECT_EQ(ok(r).vm.console->backend, "tty");
  EXPECT_EQ(ok(r).vm.serial, "off");
  auto r2 = parse({"--console", "tty", "--serial", "file=/tmp/s"});
  EXPECT_EQ(ok(r2).vm.serial, "file=/tmp/s");
}

TEST(SkiffConsoleOptions, SerialTtyAndConsoleTtyAreRefused) {
  auto r = parse({"--serial", "tty", "--console", "tty"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 2);
  EXPECT_NE(e->text.find("--console tty and --serial tty"), std::string::npos) << e->text;
}

TEST(SkiffConsoleOptions, BadModesNameTheValue) {
  for (const char* bad : {"banana", "file=", "socket=/s", "TTY"}) {
    auto r = parse({"--console", bad});
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << bad;
    EXPECT_EQ(e->status, 2);
    EXPECT_NE(e->text.find("--console"), std::string::npos) << e->text;
    if (std::string_view(bad) != "file=") {
      EXPECT_NE(e->text.find(bad), std::string::npos) << e->text;
    }
  }
}

TEST(SkiffConsoleOptions, HelpDescribesTheModesAndTheSerialRule) {
  auto r = parse_skiff_args({"skiff", "--help"});
  const auto& text = std::get<EarlyExit>(r).text;
  for (const char* s : {"--console", "hvc0", "pty", "file=PATH", "null", "--serial tty"})
    EXPECT_NE(text.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace skiff::cli
