"""`pip install bindings/python` offline, as a new user does it: a fresh venv
(its pip from the interpreter's ensurepip wheel), `pip install --no-index` of
the package (the in-tree backend danu_build.py needs nothing from an index),
then the installed danu loads a tiny model and generates the golden greedy
tokens. Then the same with `pip install -e` (PEP 660).

Exits 77 (skipped) when no venv with pip can be created here (Debian:
apt-get install python3-venv). Run by meson (suite "bindings") with
DANU_LIBRARY and DANU_SOURCE_ROOT set, or by hand:
    DANU_LIBRARY=build/lib/libdanu.so python3 bindings/python/tests/test_install.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("DANU_SOURCE_ROOT") or os.path.normpath(os.path.join(HERE, "..", "..", ".."))
PKG = os.path.join(ROOT, "bindings", "python")
DATA = os.path.join(ROOT, "tests", "data")

# What the installed package must do: from its own location, not the source tree.
CHECK = r"""
import os, sys
import danu
where = os.path.dirname(os.path.abspath(danu.__file__))
assert where.startswith(sys.argv[1]), (where, sys.argv[1])
g = {}
for line in open(os.path.join(sys.argv[2], "golden", "tiny-a.capital.txt")):
    p = line.split()
    if p and p[0] in ("prompt", "greedy"):
        g[p[0]] = [int(x) for x in p[1:]]
path = os.path.join(sys.argv[3], "tiny-a.gguf")
if not os.path.exists(path):
    danu.synth_write(path, os.path.join(sys.argv[2], "llama2-tokenizer", "tokenizer.model"), "tiny-a", 7, "gguf", "bf16")
with danu.Model(path) as m, danu.Context(m, n_ctx=64, temperature=0.0, threads=1) as c:
    c.eval(g["prompt"])
    list(c.generate(4))
    assert c.tokens[len(g["prompt"]):] == g["greedy"][:4], c.tokens
print("danu", danu.version(), "from", where, "with libdanu", danu.library_version(), ": greedy tokens match")
"""


def run(cmd, env, what):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=300)
    print("$ " + " ".join(cmd))
    print(p.stdout)
    if p.returncode != 0:
        sys.exit("FAIL: %s (exit %d)" % (what, p.returncode))
    return p.stdout


def main():
    if not os.environ.get("DANU_LIBRARY"):
        sys.exit("FAIL: DANU_LIBRARY must name the built libdanu.so")
    tmp = tempfile.mkdtemp(prefix="danu-install-")
    try:
        venv = os.path.join(tmp, "venv")
        p = subprocess.run([sys.executable, "-m", "venv", venv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        py = os.path.join(venv, "bin", "python")
        if p.returncode != 0 or subprocess.run([py, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL).returncode != 0:
            print("SKIP: cannot create a venv with pip here (%s); on Debian: apt-get install python3-venv\n%s"
                  % (sys.executable, p.stdout))
            sys.exit(77)

        # A copy of the package as a user's checkout has it (no caches written into the source tree).
        src = os.path.join(tmp, "python")
        shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("__pycache__", "tests", "*.egg-info", "build",
                                                               "dist"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
                   PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1",
                   # any attempt to reach the network fails at once
                   http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
                   HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
        models = os.path.join(tmp, "models")
        os.mkdir(models)
        site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()
        cwd = os.getcwd()
        os.chdir(tmp)      # nothing importable from the working directory
        try:
            run([py, "-m", "pip", "install", "--no-index", src], env, "pip install --no-index bindings/python")
            run([py, "-c", CHECK, site, DATA, models], env, "the installed package")
            run([py, "-m", "pip", "uninstall", "-y", "danu"], env, "pip uninstall")
            run([py, "-m", "pip", "install", "--no-index", "-e", src], env, "pip install --no-index -e")
            run([py, "-c", CHECK, src, DATA, models], env, "the editable install")
        finally:
            os.chdir(cwd)
        print("PASS: pip install (plain and editable) offline, import, load, generate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
