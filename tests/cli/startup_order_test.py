"""skiff's start-up functions are laid out side by side (src/cli/startup_order.txt).

The list goes stale as code changes (scripts/startup-order rewrites it):
these fail when too many listed functions are gone from the program, or
when a program linked with lld does not have them together.
"""
import os
import subprocess
import unittest

ROOT = os.path.join(os.path.dirname(__file__), "../..")
BUILD_DIR = os.environ.get("SKIFF_BUILD_DIR", os.path.join(ROOT, "build/main"))
SKIFF = os.path.join(BUILD_DIR, "src/cli/skiff")
ORDER = os.path.join(ROOT, "src/cli/startup_order.txt")


def listed():
    with open(ORDER) as f:
        return [line.strip() for line in f if line.strip()]


def function_symbols():
    """name -> (address, size) of every sized function symbol in skiff."""
    out = subprocess.run(["nm", "-S", "--defined-only", SKIFF], capture_output=True, text=True, check=True)
    symbols = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            symbols.setdefault(parts[3], (int(parts[0], 16), int(parts[1], 16)))
    return symbols


def linked_by_lld():
    out = subprocess.run(["readelf", "-p", ".comment", SKIFF], capture_output=True, text=True)
    return "LLD" in out.stdout


class StartupOrder(unittest.TestCase):
    def test_most_listed_functions_still_exist(self):
        names, symbols = listed(), function_symbols()
        present = [n for n in names if n in symbols]
        self.assertGreater(len(names), 100)
        self.assertGreaterEqual(len(present) / len(names), 0.8,
                                f"only {len(present)} of {len(names)} functions in {ORDER} are in skiff: "
                                "run scripts/startup-order")

    def test_listed_functions_lie_together(self):
        if not linked_by_lld():
            self.skipTest("skiff was not linked by lld, which alone reads the ordering file")
        symbols = function_symbols()
        spans = [symbols[n] for n in listed() if n in symbols]
        lo = min(a for a, _ in spans)
        hi = max(a + s for a, s in spans)
        total = sum(s for _, s in {a: s for a, s in spans}.items())  # aliases once
        # Alignment padding between functions is all that may lie between them.
        self.assertLess(hi - lo, total * 1.3 + 4096,
                        f"listed functions span {hi - lo} bytes for {total} bytes of code: "
                        "the ordering file was not applied")


if __name__ == "__main__":
    unittest.main()
