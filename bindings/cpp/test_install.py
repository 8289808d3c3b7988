"""What `meson install` gives an embedder: danu.hpp next to danu.h, libdanu.a
and danu.pc. Installs the build tree into a temporary DESTDIR, then builds a
C++ program against the installed header with the static library alone
(plus -lm -lpthread, as `pkg-config --static --libs danu` says) and runs it.

usage: test_install.py MESON BUILD_DIR CXX...   (exit 77: cannot install here)
"""
import os
import shutil
import subprocess
import sys
import tempfile

PROGRAM = r"""
#include <danu.hpp>
#include <cstdio>
int main() {
    auto model = danu::Model::load("/nonexistent/model.gguf");
    if (model.ok() || model.code() != DANU_ERR_IO) return 1;
    std::printf("libdanu %s (static), missing model: %s\n", danu::version().c_str(), model.message().c_str());
    return 0;
}
"""


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    sys.exit("FAIL: `meson install` did not install %s" % name)


def main():
    meson, build, cxx = sys.argv[1], sys.argv[2], sys.argv[3:]
    tmp = tempfile.mkdtemp(prefix="danu-install-")
    try:
        dest = os.path.join(tmp, "dest")
        p = subprocess.run([meson, "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            print(p.stdout)
            print("SKIP: meson install into a DESTDIR failed here")
            sys.exit(77)
        h, hpp = find(dest, "danu.h"), find(dest, "danu.hpp")
        if os.path.dirname(h) != os.path.dirname(hpp):
            sys.exit("FAIL: danu.hpp installed in %s, danu.h in %s" % (hpp, h))
        static = find(dest, "libdanu.a")
        pc = find(dest, "danu.pc")
        with open(pc) as f:
            text = f.read()
        if "-lm" not in text:
            sys.exit("FAIL: danu.pc names no -lm for static linking:\n" + text)
        src = os.path.join(tmp, "app.cpp")
        with open(src, "w") as f:
            f.write(PROGRAM)
        exe = os.path.join(tmp, "app")
        cmd = cxx + ["-std=c++17", "-fno-exceptions", "-I", os.path.dirname(h), src, static, "-lm", "-lpthread",
                     "-o", exe]
        print("$ " + " ".join(cmd))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            sys.exit("FAIL: building against the installed header and libdanu.a:\n" + p.stdout)
        p = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        print(p.stdout)
        if p.returncode != 0:
            sys.exit("FAIL: the program built against the installed files exited %d" % p.returncode)
        print("PASS: danu.h + danu.hpp in %s, static link with libdanu.a -lm -lpthread" % os.path.dirname(h))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
