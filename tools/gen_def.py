#!/usr/bin/env python3
"""gen_def.py HEADER OUT.def - the DLL's export list: every DANU_API function
of danu.h (parsed as tests/abi/hdrcheck.py does, so the ELF checks and the
DLL agree)."""
import importlib.util
import os
import sys


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: gen_def.py include/danu.h out.def\n")
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("hdrcheck", os.path.join(here, "..", "tests", "abi", "hdrcheck.py"))
    hc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hc)
    with open(argv[1], encoding="utf-8") as f:
        h = hc.parse(f.read())
    names = sorted(name for name, _, _ in h["functions"])
    if not names:
        sys.stderr.write("gen_def.py: no DANU_API function in %s\n" % argv[1])
        return 1
    with open(argv[2], "w", encoding="utf-8", newline="\n") as f:
        f.write("LIBRARY danu.dll\nEXPORTS\n")
        for n in names:
            f.write("    %s\n" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
