#include "cli/kv_options.h"

#include <gtest/gtest.h>

namespace skiff::cli {
namespace {

TEST(ParseKv, SplitsPairsAndKeepsBracketedLists) {
  auto m = parse_kv("--cpus", "boot=2,affinity=[0@[2,3],1@[4]]", {"boot", "affinity"});
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->at("boot"), "2");
  EXPECT_EQ(m->at("affinity"), "[0@[2,3],1@[4]]");
}

TEST(ParseKv, UnknownKeyIsNamedWithTheExpectedOnes) {
  auto m = parse_kv("--cpus", "boot=2,bogus=1", {"boot", "max"});
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("'bogus'"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("boot, max"), std::string::npos) << m.error().message;
}

TEST(ParseKv, RejectsDuplicatesEmptyItemsAndUnbalancedBrackets) {
  EXPECT_FALSE(parse_kv("--x", "a=1,a=2", {"a"}));
  EXPECT_FALSE(parse_kv("--x", "a=1,,", {"a"}));
  EXPECT_FALSE(parse_kv("--x", "a=[1", {"a"}));
  EXPECT_FALSE(parse_kv("--x", "a=1]", {"a"}));
  EXPECT_FALSE(parse_kv("--x", "novalue", {"a"}));
}

TEST(ParseKv, BareItemGoesToTheBareKey) {
  auto m = parse_kv("--serial", "tty", {"mode"}, "mode");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->at("mode"), "tty");
}

TEST(ParseSize, AcceptsSuffixes) {
  EXPECT_EQ(*parse_size("s", "512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("s", "2G"), 2ull << 30);
  EXPECT_EQ(*parse_size("s", "4k"), 4096u);
  EXPECT_EQ(*parse_size("s", "1GiB"), 1ull << 30);
  EXPECT_EQ(*parse_size("s", "12345"), 12345u);
}

TEST(ParseSize, RejectsGarbageAndOverflowNamingTheValue) {
  for (const char* bad : {"", "M", "12Q", "-1", "1.5G", "99999999999T"}) {
    auto r = parse_size("--memory size", bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("--memory size"), std::string::npos);
  }
}

TEST(ParseUint, ChecksRange) {
  EXPECT_EQ(*parse_uint("n", "8", 1, 255), 8u);
  EXPECT_FALSE(parse_uint("n", "0", 1, 255));
  EXPECT_FALSE(parse_uint("n", "256", 1, 255));
  EXPECT_FALSE(parse_uint("n", "8x", 1, 255));
}

TEST(KvOptions, SplitTopLevelKeepsNestedBracketListsWhole) {
  auto items = split_top_level("--cpus", "boot=2,affinity=[0@[2,3],1@[4]],max=4");
  ASSERT_TRUE(items);
  EXPECT_EQ(*items, (std::vector<std::string_view>{"boot=2", "affinity=[0@[2,3],1@[4]]", "max=4"}));
  auto inner = split_top_level("--cpus affinity", "0@[2,3],1@[4]");
  ASSERT_TRUE(inner);
  EXPECT_EQ(*inner, (std::vector<std::string_view>{"0@[2,3]", "1@[4]"}));
  auto open = split_top_level("--cpus", "affinity=[0@[2,3]");
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().what().find("unbalanced '['"), std::string::npos);
  EXPECT_FALSE(split_top_level("--cpus", "affinity=0@2,3]]"));
}

}  // namespace
}  // namespace skiff::cli
