#!/usr/bin/env python3
"""Prints the functions of one program that callgrind saw run.

  callgrind_functions.py OBJECT_SUFFIX FILE...

FILEs are callgrind outputs of runs with --demangle=no; OBJECT_SUFFIX picks
the program's own code (e.g. /src/cli/skiff) from the libraries'. The names
(mangled, as in the symbol table) come out once each, sorted: the format
lld's --symbol-ordering-file reads. (Which of them comes first matters
little, as long as they all lie together; sorted, a rerun on unchanged code
rewrites nothing.)
Callgrind compresses names: "fn=(12) name" defines id 12, later "fn=(12)"
refers to it; objects likewise with ob=/cob=, and cfn= defines too.
"""
import re
import sys

DEF = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
# What callgrind names that is not a symbol: "(below main)", bare addresses.
NOT_A_SYMBOL = re.compile(r"^\(|^0x[0-9a-f]+$|\s")
# Callgrind's marks on a name: 'N for the Nth level of recursion.
RECURSION = re.compile(r"'\d+$")


def functions(path, suffix):
    objects, names, seen = {}, {}, []
    current_object = ""
    with open(path) as f:
        for line in f:
            m = DEF.match(line.rstrip("\n"))
            if not m:
                continue
            kind, ident, name = m.groups()
            table = objects if kind.endswith("ob") else names
            if name:
                table[ident] = name
            if kind == "ob":
                current_object = objects.get(ident, "")
            elif kind == "fn" and current_object.endswith(suffix):
                symbol = RECURSION.sub("", names[ident])
                if not NOT_A_SYMBOL.search(symbol):
                    seen.append(symbol)
    return seen


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    suffix, out = sys.argv[1], set()
    for path in sys.argv[2:]:
        out.update(functions(path, suffix))
    if not out:
        sys.exit(f"callgrind_functions.py: no function of an object ending in {suffix} ran")
    sys.stdout.write("".join(f"{name}\n" for name in sorted(out)))


if __name__ == "__main__":
    main()
