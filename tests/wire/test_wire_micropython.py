"""The golden vectors on the real MicroPython unix port (the interpreter the
box runs), with the full heap and with a 64 KiB heap like an ESP32 without
PSRAM."""

import json
import re
import subprocess

import pytest

from callbox_tools.mpy import FIRMWARE_DIR, mpy_cross_path, run_micropython

import _wire_vectors as V

pytestmark = pytest.mark.micropython

SCRIPT = V.VECTORS_FILE.parents[1] / "wire" / "mpy_check_vectors.py"
SUMMARY = re.compile(
    r"^mpy_check_vectors valid=(\d+) invalid=(\d+) replay=(\d+) unencodable=(\d+) checks=(\d+) failures=(\d+) heap_free_min=(\d+)$",
    re.M,
)


def _run(vectors_file, *extra, heapsize=None):
    proc = run_micropython(SCRIPT, vectors_file, *extra, heapsize=heapsize, timeout=300)
    m = SUMMARY.search(proc.stdout)
    assert m, "no summary line\nstdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    names = ("valid", "invalid", "replay", "unencodable", "checks", "failures", "heap_free_min")
    return proc, dict(zip(names, (int(x) for x in m.groups())))


def _assert_all_ran(proc, got):
    doc = V.doc()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert got["failures"] == 0
    # Every vector of every section was checked, none skipped.
    assert (got["valid"], got["invalid"], got["replay"], got["unencodable"]) == (
        len(doc["valid"]), len(doc["invalid"]), len(doc["replay"]), len(doc["unencodable"]))
    # At least: per frame vector decode + whole + bytewise + every split + 2 per garbage kind.
    floor = sum(len(V.wire_bytes(v)) + 1 + 3 for v in V.every())
    assert got["checks"] >= floor


def test_every_vector_on_micropython():
    proc, got = _run(V.VECTORS_FILE)
    _assert_all_ran(proc, got)


@pytest.fixture(scope="module")
def wire_mpy(tmp_path_factory):
    """firmware/wire.py compiled by the real mpy-cross for the host port, as
    modules ship to the box: a 64 KiB heap cannot compile the source."""
    out = tmp_path_factory.mktemp("wire_mpy")
    subprocess.run([mpy_cross_path(), "-o", str(out / "wire.mpy"), str(FIRMWARE_DIR / "wire.py")], check=True, timeout=120)
    return out


def test_every_vector_on_micropython_with_a_64k_heap(wire_mpy):
    proc, got = _run(V.VECTORS_FILE, wire_mpy, heapsize="64k")
    _assert_all_ran(proc, got)
    assert 0 < got["heap_free_min"] < 64 * 1024


def test_the_checker_fails_on_a_wrong_vector(tmp_path):
    # The MicroPython checker is not a rubber stamp: change one meaning and
    # one reason and it must report failures and exit 1.
    lines = V.VECTORS_FILE.read_text().splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        if changed == 0 and '"name": "alarm_emergency_ghantaghar"' in line:
            lines[i] = line.replace('"kind": "emergency"', '"kind": "panic"')
            changed += 1
        elif changed == 1 and '"reason": "crc"' in line:
            lines[i] = line.replace('"reason": "crc"', '"reason": "auth"')
            changed += 1
    assert changed == 2
    bad = tmp_path / "wire.json"
    bad.write_text("".join(lines))
    json.loads(bad.read_text())
    proc, got = _run(bad)
    assert proc.returncode == 1
    assert got["failures"] >= 2
    assert "FAIL alarm_emergency_ghantaghar" in proc.stdout
