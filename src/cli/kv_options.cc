#include "cli/kv_options.h"

#include <charconv>
#include <vector>

#include <fmt/ranges.h>

#include "base/units.h"

namespace skiff::cli {

Result<std::vector<std::string_view>> split_top_level(std::string_view option,
                                                      std::string_view value) {
  std::vector<std::string_view> items;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i) {
    char c = i < value.size() ? value[i] : ',';
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) return fail("{}: unbalanced ']' in '{}'", option, value);
    if (c == ',' && depth == 0) {
      items.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0) return fail("{}: unbalanced '[' in '{}'", option, value);
  return items;
}

Result<KvMap> parse_kv(std::string_view option, std::string_view value,
                       std::initializer_list<std::string_view> allowed, std::string_view bare_key) {
  KvMap out;
  auto items = SKIFF_TRY(split_top_level(option, value));
  for (std::string_view item : items) {
    if (item.empty()) return fail("{}: empty item in '{}'", option, value);
    std::string_view key, val;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      if (bare_key.empty())
        return fail("{}: '{}' is not of the form key=value (in '{}')", option, item, value);
      key = bare_key;
      val = item;
    } else {
      key = item.substr(0, eq);
      val = item.substr(eq + 1);
    }
    bool known = false;
    for (auto a : allowed) known |= (a == key);
    if (!known)
      return fail("{}: unknown key '{}' in '{}' (expected one of: {})", option, key, value,
                  fmt::join(allowed, ", "));
    if (!out.emplace(std::string(key), std::string(val)).second)
      return fail("{}: key '{}' given twice in '{}'", option, key, value);
  }
  return out;
}

Result<uint64_t> parse_uint(std::string_view option, std::string_view text, uint64_t min,
                            uint64_t max) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size())
    return fail("{}: '{}' is not a number", option, text);
  if (v < min || v > max) return fail("{}: {} is out of range [{}, {}]", option, v, min, max);
  return v;
}

Result<uint64_t> parse_size(std::string_view option, std::string_view text) {
  std::string_view digits = text;
  uint64_t shift = 0;
  for (std::string_view suffix : {"iB", "B"}) {
    if (digits.size() > suffix.size() && digits.ends_with(suffix)) {
      digits.remove_suffix(suffix.size());
      break;
    }
  }
  if (!digits.empty()) {
    // K, M, G and T only: larger sizes are not meaningful for a VM.
    int s = binary_suffix_shift(digits.back());
    if (s >= 10 && s <= 40) {
      shift = static_cast<uint64_t>(s);
      digits.remove_suffix(1);
    }
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size())
    return fail("{}: invalid size '{}' (expected a number with an optional K, M, G or T suffix)",
                option, text);
  if (shift != 0 && v > (UINT64_MAX >> shift))
    return fail("{}: size '{}' is too large", option, text);
  return v << shift;
}

Result<bool> parse_switch(std::string_view option, std::string_view text) {
  if (text == "on" || text == "true") return true;
  if (text == "off" || text == "false") return false;
  return fail("{}: '{}' is not on or off", option, text);
}

}  // namespace skiff::cli
