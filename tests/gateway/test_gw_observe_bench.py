"""The ACK-delay histogram on /metrics (Prometheus text), and `callbox bench
gateway` end to end at a small scale: a gateway process, the load generator
process over real TCP, figures with the gateway's own share of the delay."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from callbox_gateway.observe import Metrics
from callbox_tools.bench.gateway import _bucket_pct


def test_histogram_renders_cumulative_buckets_sum_and_count():
    m = Metrics()
    for v in (0.0005, 0.003, 0.003, 0.04, 7.0):
        m.observe("ack_delay_seconds", v, link="lte")
    h = m.histogram("ack_delay_seconds", link="lte")
    assert h["count"] == 5 and abs(h["sum"] - 7.0465) < 1e-9
    text = m.render()
    assert "# TYPE callbox_gateway_ack_delay_seconds histogram" in text
    assert 'callbox_gateway_ack_delay_seconds_bucket{link="lte",le="0.001"} 1' in text
    assert 'callbox_gateway_ack_delay_seconds_bucket{link="lte",le="0.005"} 3' in text
    assert 'callbox_gateway_ack_delay_seconds_bucket{link="lte",le="0.05"} 4' in text
    assert 'callbox_gateway_ack_delay_seconds_bucket{link="lte",le="+Inf"} 5' in text
    assert 'callbox_gateway_ack_delay_seconds_count{link="lte"} 5' in text
    # Buckets are cumulative and never decrease.
    counts = [int(c) for c in re.findall(r'_bucket\{link="lte",le="[^"]+"\} (\d+)', text)]
    assert counts == sorted(counts)


def test_bucket_percentile_of_a_phase():
    before = {0.001: 10, 0.01: 10, 0.1: 10, float("inf"): 10}
    after = {0.001: 60, 0.01: 158, 0.1: 160, float("inf"): 160}  # the phase: 50, 98, 2 more
    assert _bucket_pct(before, after, 0.5) == (10.0, 150)
    assert _bucket_pct(before, after, 0.99) == (100.0, 150)
    assert _bucket_pct(after, after, 0.99) == (None, 0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_gateway_small_run_prints_the_figures(repo_root):
    exe = pathlib.Path(sys.executable).with_name("callbox")
    proc = subprocess.run([str(exe), "bench", "gateway", "--json", "--boxes", "50", "--frames", "4", "--rate", "200",
                           "--seconds", "1", "--bus-boxes", "4"], capture_output=True, text=True, timeout=200, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["boxes"] == 50 and r["throughput_frames"] == 200
    assert r["latency_acked"] == r["latency_sent"] > 0  # every frame of the phase ACKed
    assert 0 < r["ack_p50_ms"] <= r["ack_p99_ms"] <= r["ack_max_ms"]
    assert r["frames_per_s"] > 0 and r["frames_per_cpu_s"] > 0 and r["rs485_cycle_ms_4"] > 0
    # The gateway's own delay is part of the end-to-end one.
    assert r["gateway_ack_p99_ms_at_most"] is None or r["gateway_ack_p50_ms_at_most"] <= r["gateway_ack_p99_ms_at_most"]
    assert isinstance(r["load_avg_1m"], float)
