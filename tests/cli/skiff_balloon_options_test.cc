// --balloon (virtio-balloon on PCI).
#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), {"skiff", "--kernel", "/k", "--memory", "size=1G"});
  return parse_skiff_args(args);
}

TEST(SkiffBalloonOptions, AllSettings) {
  auto r =
      parse({"--balloon",
             "size=256M,deflate_on_oom=on,free_page_reporting=on,statistics_polling_interval=5"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_TRUE(a->vm.balloon);
  EXPECT_EQ(a->vm.balloon->size, 256u << 20);
  EXPECT_TRUE(a->vm.balloon->deflate_on_oom);
  EXPECT_TRUE(a->vm.balloon->free_page_reporting);
  EXPECT_EQ(a->vm.balloon->statistics_polling_interval, 5u);
}

TEST(SkiffBalloonOptions, DefaultsAndAbsence) {
  auto r = parse({"--balloon", "size=0"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_TRUE(a->vm.balloon);
  EXPECT_EQ(a->vm.balloon->size, 0u);
  EXPECT_FALSE(a->vm.balloon->deflate_on_oom);
  EXPECT_FALSE(a->vm.balloon->free_page_reporting);
  EXPECT_EQ(a->vm.balloon->statistics_polling_interval, 0u);
  auto none = parse({});
  ASSERT_NE(std::get_if<SkiffArgs>(&none), nullptr);
  EXPECT_FALSE(std::get<SkiffArgs>(none).vm.balloon);
}

TEST(SkiffBalloonOptions, BadValuesAreUsageErrorsNamingTheValue) {
  for (auto [bad, word] : std::vector<std::pair<const char*, const char*>>{
           {"deflate_on_oom=on", "size"},
           {"size=2G", "size=2G"},  // more than --memory
           {"size=lots", "lots"},
           {"size=1M,deflate_on_oom=maybe", "maybe"},
           {"size=1M,statistics_polling_interval=-1", "-1"},
           {"size=1M,statistics_polling_interval=99999999", "99999999"},
           {"size=1M,bogus=1", "bogus"}}) {
    auto r = parse({"--balloon", bad});
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << bad;
    EXPECT_EQ(e->status, 2) << bad;
    EXPECT_NE(e->text.find("--balloon"), std::string::npos) << e->text;
    EXPECT_NE(e->text.find(word), std::string::npos) << e->text;
  }
}

TEST(SkiffBalloonOptions, HelpDescribesIt) {
  auto r = parse_skiff_args({"skiff", "--help"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  for (const char* w : {"--balloon", "deflate_on_oom", "free_page_reporting",
                        "statistics_polling_interval", "desired_balloon"})
    EXPECT_NE(e->text.find(w), std::string::npos) << w;
}

}  // namespace
}  // namespace skiff::cli
