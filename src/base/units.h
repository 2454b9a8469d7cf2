// Binary size suffixes shared by every size the user types (skiff's
// `--memory size=2G`, skiff-img's `create img.qcow2 10G`): one table, so the
// programs cannot disagree about what a letter means.
#pragma once

namespace skiff {

// The power of two a size suffix letter stands for, either case: B 0, K 10,
// M 20, G 30, T 40, P 50, E 60; -1 for any other character. Callers decide
// which of these they accept.
[[nodiscard]] constexpr int binary_suffix_shift(char c) {
  switch (c | 0x20) {  // ASCII lower case; digits and others stay unmatched
    case 'b':
      return 0;
    case 'k':
      return 10;
    case 'm':
      return 20;
    case 'g':
      return 30;
    case 't':
      return 40;
    case 'p':
      return 50;
    case 'e':
      return 60;
    default:
      return -1;
  }
}

}  // namespace skiff
