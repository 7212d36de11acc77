"""Every firmware module compiles with the real mpy-cross for the ESP32
(-march=xtensawin): the box runs .mpy files (or frozen modules), never
source it would have to compile in a 56 KiB heap.

Modules are discovered at test time, so modules other engineers add are
covered. A file under firmware/ that runs only on CPython (a host-side
helper) opts out with the marker line `# callbox: cpython-only` in its first
five lines."""

import pathlib
import subprocess

import pytest

from callbox_tools.mpy import FIRMWARE_DIR, mpy_cross_path

pytestmark = pytest.mark.micropython

CPYTHON_ONLY_MARKER = "# callbox: cpython-only"
# .mpy header (py/persistentcode.c): b"M", format version 6, then the
# feature byte: (arch << 2) | sub-version, or 0 for bytecode-only files,
# which run on any port; then the small-int width in bits (31 on the
# 32-bit ESP32).
MPY_MAGIC = b"M\x06"
ARCH_XTENSAWIN = 10
MPY_SUB_VERSION = 3
SMALL_INT_BITS_32BIT = 31


def _is_cpython_only(path):
    with open(path, encoding="utf-8") as f:
        head = [f.readline() for _ in range(5)]
    return any(line.strip() == CPYTHON_ONLY_MARKER for line in head)


def firmware_modules():
    mods = []
    for p in sorted(FIRMWARE_DIR.rglob("*.py")):
        if p.name == "__init__.py" or "__pycache__" in p.parts or _is_cpython_only(p):
            continue
        mods.append(p)
    return mods


def _compile(src, out, cwd):
    # Compile from inside firmware/ so the name stored in the .mpy (shown in
    # tracebacks on the box) is the module path, not this machine's path.
    return subprocess.run([mpy_cross_path(), "-march=xtensawin", "-o", str(out), str(src)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def _check_header(data, name):
    assert data[:2] == MPY_MAGIC, "%s: not a v6 .mpy: %r" % (name, data[:4])
    feature = data[2]
    if feature:
        assert feature >> 2 == ARCH_XTENSAWIN, "%s: native code for arch %d, not xtensawin" % (name, feature >> 2)
        assert feature & 3 == MPY_SUB_VERSION
    assert data[3] == SMALL_INT_BITS_32BIT, "%s: small ints of %d bits" % (name, data[3])


def test_every_firmware_module_compiles_for_the_esp32(tmp_path):
    mods = firmware_modules()
    assert any(p.name == "wire.py" for p in mods)
    total = 0
    sizes = {}
    errors = []
    for src in mods:
        rel = src.relative_to(FIRMWARE_DIR)
        out = tmp_path / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = _compile(rel, out, FIRMWARE_DIR)
        if proc.returncode != 0:
            errors.append("%s: %s" % (rel, (proc.stderr or proc.stdout).strip()))
            continue
        data = out.read_bytes()
        _check_header(data, str(rel))
        sizes[str(rel)] = len(data)
        total += len(data)
    assert not errors, "mpy-cross -march=xtensawin failed:\n" + "\n".join(errors)
    assert len(sizes) == len(mods)
    # The figure for the report: pytest -s shows it, -rA keeps it.
    print("\nfirmware .mpy for xtensawin: %d modules, %d bytes total" % (len(sizes), total))
    for name in sorted(sizes):
        print("  %-28s %6d" % (name, sizes[name]))


def test_march_really_targets_xtensawin(tmp_path):
    # Bytecode-only files carry no arch in the header, so prove the flag is
    # honoured with a native function: its header must name xtensawin.
    src = tmp_path / "native_probe.py"
    src.write_text("import micropython\n@micropython.native\ndef add(a, b):\n    return a + b\n")
    proc = _compile(src.name, tmp_path / "native_probe.mpy", tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = (tmp_path / "native_probe.mpy").read_bytes()
    _check_header(data, "native_probe")
    assert data[2] == (ARCH_XTENSAWIN << 2) | MPY_SUB_VERSION


def test_mpy_cross_reports_a_syntax_error(tmp_path):
    # The compile step fails loudly, naming the file, when a module is broken.
    src = tmp_path / "broken.py"
    src.write_text("def f(:\n    pass\n")
    proc = _compile(src.name, tmp_path / "broken.mpy", tmp_path)
    assert proc.returncode != 0
    assert "broken.py" in proc.stderr and "SyntaxError" in proc.stderr
    assert not (tmp_path / "broken.mpy").exists()


def test_discovery_skips_marked_cpython_only_files(tmp_path):
    p = tmp_path / "host_helper.py"
    p.write_text('"""Runs on the laptop."""\n# callbox: cpython-only\nimport os\n')
    assert _is_cpython_only(p)
    q = tmp_path / "box_module.py"
    q.write_text("x = 1\n" * 5 + "# callbox: cpython-only\n")  # line 6: too late to count
    assert not _is_cpython_only(q)
