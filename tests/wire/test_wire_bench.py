"""`callbox bench codec --json` prints one JSON object with the figures the
issue asks for (structure only: speed is measured, not asserted, here)."""

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.micropython

CALLBOX = pathlib.Path(sys.executable).with_name("callbox")


def test_bench_codec_json_structure():
    proc = subprocess.run([str(CALLBOX), "bench", "codec", "--json", "--seconds", "0.05", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one JSON line, got %r" % proc.stdout
    figures = json.loads(lines[0])
    assert isinstance(figures, dict)
    for side in ("cpython", "micropython"):
        for key in ("encode_per_s", "decode_verify_per_s"):
            value = figures[side][key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, (side, key, value)
    for key in ("alarm_bytes", "heartbeat_bytes"):
        assert isinstance(figures[key], int) and figures[key] > 0
    # Sizes follow from the layout: 25 bytes overhead + payload + COBS byte + 2 delimiters.
    assert figures["alarm_bytes"] == 25 + 12 + 1 + 2
    assert figures["heartbeat_bytes"] == 25 + 21 + 1 + 2
