"""`callbox bench latency` through the real CLI on the virtual rig: the keys
the issue names, no alarm lost or duplicated, and a valid PNG histogram."""

import json
import struct
import subprocess
import sys
import pathlib

import pytest

from callbox_rig.plot import bins, histogram_png


def test_histogram_bins_and_png_structure():
    counts, width = bins([1.0, 2.0, 40.0], n=4)
    assert counts == [2, 0, 0, 1] and width == 10.0
    png = histogram_png([("a", [1.0, 2.0]), ("b", [])])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (640, 400)


@pytest.mark.slow
def test_bench_latency_rs485_json_and_plot(tmp_path):
    exe = pathlib.Path(sys.executable).parent / "callbox"
    plot = tmp_path / "lat.png"
    r = subprocess.run([str(exe), "bench", "latency", "--link", "rs485", "--presses", "6", "--boxes", "2",
                        "--interval-ms", "300", "--json", "--plot", str(plot)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["link"] == "rs485" and out["presses"] == 6
    assert out["lost"] == 0 and out["duplicated"] == 0
    for which in ("ack_ms", "console_ms"):
        q = out[which]
        assert set(q) == {"p50", "p95", "p99", "max"}
        assert 0 < q["p50"] <= q["p95"] <= q["p99"] <= q["max"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_latency_rejects_a_bad_rig_file(tmp_path):
    exe = pathlib.Path(sys.executable).parent / "callbox"
    r = subprocess.run([str(exe), "bench", "latency", "--rig", str(tmp_path / "nope.toml"), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "not found" in r.stderr and "--rig" in r.stderr
