// Cloud Hypervisor-style option values: "key=value,key=value". Lists inside
// brackets ("affinity=[0@[2,3]]") are kept whole. Errors name the option,
// the bad item and what was expected.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace skiff::cli {

using KvMap = std::map<std::string, std::string, std::less<>>;

// Splits `value` (of option `option`, for messages) into key=value pairs.
// Keys must be in `allowed`; a key given twice is an error. An item without
// '=' is stored under `bare_key` when that is non-empty ("--serial tty").
[[nodiscard]] Result<KvMap> parse_kv(std::string_view option, std::string_view value,
                                     std::initializer_list<std::string_view> allowed,
                                     std::string_view bare_key = {});

// Splits `value` at the commas that are not inside [...] ("a=1,b=[2,3]" ->
// "a=1", "b=[2,3]"); unbalanced brackets are an error naming `option`.
[[nodiscard]] Result<std::vector<std::string_view>> split_top_level(std::string_view option,
                                                                    std::string_view value);

// "512M", "2G", "1048576", "4K": bytes. Suffixes K, M, G, T (powers of 1024,
// either case, optional trailing 'B' or 'iB').
[[nodiscard]] Result<uint64_t> parse_size(std::string_view option, std::string_view text);

// A decimal integer in [min, max].
[[nodiscard]] Result<uint64_t> parse_uint(std::string_view option, std::string_view text,
                                          uint64_t min, uint64_t max);

// "on"/"off" (also true/false).
[[nodiscard]] Result<bool> parse_switch(std::string_view option, std::string_view text);

}  // namespace skiff::cli
