"""In-tree PEP 517 / PEP 660 build backend of the danu package (pure stdlib).

pyproject.toml names it with `requires = []` and `backend-path = ["."]`, so
`pip install bindings/python` needs nothing from the network: no setuptools,
no wheel. It writes a pure-Python wheel (danu/*.py, METADATA, WHEEL, RECORD
with sha256 hashes), an sdist (the files below), and for `pip install -e` an
editable wheel holding a .pth file that points at this directory.

Metadata comes from pyproject.toml's [project] table (tomllib where present,
else a reader for the subset that file uses).
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "danu"
SDIST_FILES = ["pyproject.toml", "README.md", "danu_build.py"]
_EPOCH = (1980, 1, 1, 0, 0, 0)   # fixed zip timestamps: the same sources give the same wheel


# ---- metadata ---------------------------------------------------------------------------
def _parse_value(text):
    text = text.strip()
    if text.startswith('"'):
        return text[1:text.index('"', 1)]
    if text.startswith("["):
        return re.findall(r'"([^"]*)"', text)
    if text.startswith("{"):
        return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', text))
    raise ValueError("pyproject.toml: unsupported value %r" % text)


def _read_pyproject(path):
    """{table: {key: value}} of the TOML subset pyproject.toml uses: strings,
    arrays of strings (possibly over several lines), inline tables of strings."""
    try:
        import tomllib
        with open(path, "rb") as f:
            return tomllib.load(f)
    except ImportError:
        pass
    tables, current, pending = {}, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip()
            if pending is not None:
                pending[1] += " " + line
                if "]" in line:
                    current[pending[0]] = _parse_value(pending[1])
                    pending = None
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = re.match(r"^\[([\w.-]+)\]$", line.strip())
            if m:
                current = tables
                for part in m.group(1).split("."):
                    current = current.setdefault(part, {})
                continue
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if value.startswith("[") and "]" not in value:
                pending = [key, value]
            else:
                current[key] = _parse_value(value)
    return tables


def _project():
    return _read_pyproject(os.path.join(HERE, "pyproject.toml"))["project"]


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"]]
    if p.get("description"):
        lines.append("Summary: " + p["description"])
    lic = p.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        lines.append("License: " + lic["text"])
    if p.get("requires-python"):
        lines.append("Requires-Python: " + p["requires-python"])
    for c in p.get("classifiers", []):
        lines.append("Classifier: " + c)
    for d in p.get("dependencies", []):
        lines.append("Requires-Dist: " + d)
    readme = p.get("readme")
    if not readme:
        return "\n".join(lines) + "\n"
    lines.append("Description-Content-Type: text/markdown")
    with open(os.path.join(HERE, readme), encoding="utf-8") as f:
        return "\n".join(lines) + "\n\n" + f.read()


def _dist_name():
    p = _project()
    return re.sub(r"[-_.]+", "_", p["name"]).lower(), p["version"]


WHEEL_TEXT = "Wheel-Version: 1.0\nGenerator: danu_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


# ---- wheels ---------------------------------------------------------------------------
def _package_files():
    """(path in the wheel, path on disk) of the package's .py files, sorted."""
    out = []
    root = os.path.join(HERE, PACKAGE)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                full = os.path.join(d, f)
                out.append((os.path.relpath(full, HERE).replace(os.sep, "/"), full))
    return out


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(directory, entries):
    """entries: [(name, bytes)] of the package part; adds .dist-info and RECORD."""
    name, version = _dist_name()
    info = "%s-%s.dist-info" % (name, version)
    entries = list(entries) + [(info + "/METADATA", _metadata().encode("utf-8")),
                               (info + "/WHEEL", WHEEL_TEXT.encode())]
    record = [_record_line(n, d) for n, d in entries] + [info + "/RECORD,,"]
    entries.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    filename = "%s-%s-py3-none-any.whl" % (name, version)
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            zi = zipfile.ZipInfo(n, _EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return filename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(n, _read(p)) for n, p in _package_files()])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a wheel whose .pth file puts this directory on sys.path."""
    name, _ = _dist_name()
    return _write_wheel(wheel_directory, [("__editable__.%s.pth" % name, (HERE + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    name, version = _dist_name()
    base = "%s-%s" % (name, version)
    filename = base + ".tar.gz"
    files = [(f, os.path.join(HERE, f)) for f in SDIST_FILES] + _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        def add(arcname, data):
            ti = tarfile.TarInfo(base + "/" + arcname)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
            tar.addfile(ti, io.BytesIO(data))
        for arcname, path in files:
            add(arcname, _read(path))
        add("PKG-INFO", _metadata().encode("utf-8"))
    return filename
