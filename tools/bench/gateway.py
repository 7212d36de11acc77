"""`callbox bench gateway`: the junction gateway under load.

- A gateway process (`callbox gateway`, its own core) with 1,000 registered
  LTE boxes and a fresh database (synchronous=FULL, as deployed).
- A load-generator process (callbox_gateway.loadgen) with 1,000 simulated
  boxes over real TCP: authenticated frames per second ingested and ACKed
  (closed loop), then p50/p99 ACK latency at an offered 5,000 frames/s.
- The RS-485 poll cycle for 32 simulated boxes at 115200 baud on a
  baud-paced bus (callbox_gateway.sim.SimBus), measured in this process.

Keys: boxes, frames_per_s, ack_p50_ms, ack_p99_ms, rs485_cycle_ms_32, and
more (gateway CPU seconds, the wire minimum for the bus cycle)."""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

NAME = "gateway"
HELP = "gateway: frames/s and ACK latency from 1,000 LTE boxes, RS-485 poll cycle for 32 boxes"

FIRST_BOX = 0x10000


def add_arguments(parser):
    parser.add_argument("--boxes", type=int, default=1000, help="simulated LTE boxes (default 1000)")
    parser.add_argument("--frames", type=int, default=20, help="frames per box in the throughput phase (default 20)")
    parser.add_argument("--rate", type=float, default=5000.0, help="offered frames/s in the latency phase (default 5000)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the latency phase (default 4 s)")
    parser.add_argument("--bus-boxes", type=int, default=32, help="boxes on the simulated RS-485 bus (default 32)")
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous for the bench gateway (default FULL)")


def _cpu_s(pid):
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _ack_delay(http_port):
    """The gateway's ack_delay_seconds{link="lte"} histogram from /metrics:
    {le: cumulative count}."""
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^callbox_gateway_ack_delay_seconds_bucket\{link="lte",le="([^"]+)"\} (\d+)$', text, re.M):
        out[float(m.group(1))] = int(m.group(2))
    return out


def _bucket_pct(before, after, q):
    """Upper bound (ms) of the bucket holding the q-quantile of after - before."""
    les = sorted(after)
    delta = [(le, after[le] - before.get(le, 0)) for le in les]
    total = delta[-1][1] if delta else 0
    if not total:
        return None, 0
    for le, cum in delta:
        if cum >= q * total:
            return (None if le == float("inf") else round(le * 1000, 1)), total
    return None, total


def _lte(args, tmp):
    from callbox_gateway.sim import key_for_box

    from ..errors import CommandError

    cfg = pathlib.Path(tmp) / "gw.toml"
    lines = ['data_dir = "%s"' % (pathlib.Path(tmp) / "data"), "[http]", "port = 0", 'admin_token = "bench"', 'console_token = "bench"',
             "[lte]", "port = 0", "max_connections = %d" % (args.boxes + 100), "[storage]", 'synchronous = "%s"' % args.synchronous]
    for i in range(args.boxes):
        b = FIRST_BOX + i
        lines += ["[[boxes]]", "box_id = %d" % b, 'key = "%s"' % key_for_box(b).hex(), 'link = "lte"']
    cfg.write_text("\n".join(lines) + "\n")
    errlog = open(pathlib.Path(tmp) / "gateway.log", "w+")
    gw = subprocess.Popen([sys.executable, "-m", "callbox_tools.cli", "gateway", "--config", str(cfg)],
                          stdout=subprocess.PIPE, stderr=errlog, text=True)
    try:
        line = gw.stdout.readline()
        m = re.search(r"lte 127\.0\.0\.1:(\d+)", line)
        h = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m or not h:
            errlog.seek(0)
            raise CommandError("bench gateway did not start: %s %s" % (line, errlog.read()[-2000:]))
        cpu0 = _cpu_s(gw.pid)
        t0 = time.perf_counter()
        load = subprocess.Popen([sys.executable, "-m", "callbox_gateway.loadgen", "--port", m.group(1), "--boxes", str(args.boxes),
                                 "--first-box", str(FIRST_BOX), "--frames", str(args.frames), "--rate", str(args.rate),
                                 "--seconds", str(args.seconds), "--phase-sync"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            phase = load.stdout.readline()
            before = _ack_delay(int(h.group(1))) if '"latency"' in phase else {}
            load.stdin.write("go\n")
            load.stdin.flush()
            out, err = load.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            load.kill()
            raise CommandError("load generator did not finish within 300 s") from None
        wall = time.perf_counter() - t0
        cpu1 = _cpu_s(gw.pid)
        if load.returncode != 0:
            raise CommandError("load generator failed: %s" % err[-2000:])
        res = json.loads(out.strip().splitlines()[-1])
        after = _ack_delay(int(h.group(1)))
        res["gw_ack_p50_ms_le"], _ = _bucket_pct(before, after, 0.50)
        res["gw_ack_p99_ms_le"], res["gw_ack_count"] = _bucket_pct(before, after, 0.99)
        res["gateway_cpu_s"] = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
        res["gateway_cpu_share"] = round(res["gateway_cpu_s"] / wall, 2) if res["gateway_cpu_s"] is not None else None
        return res
    finally:
        gw.terminate()
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()


def _bus(n, tmp):
    import asyncio

    from callbox_gateway.app import Gateway
    from callbox_gateway.config import from_dict
    from callbox_gateway.rs485 import BusTiming
    from callbox_gateway.sim import SimBox, SimBus

    boxes = [SimBox(0x20000 + a, addr=a) for a in range(1, n + 1)]
    bus = SimBus(boxes, turnaround_ms=1.0)
    cfg = from_dict({"data_dir": str(pathlib.Path(tmp) / "bus"), "http": {"port": 0, "admin_token": "b", "console_token": "b"},
                     "lte": {"enabled": False}, "rs485": {"url": bus.url},
                     "boxes": [{"box_id": b.box_id, "key": b.secret.hex(), "link": "rs485", "bus_addr": b.addr} for b in boxes]})

    async def main():
        gw = Gateway(cfg)
        await gw.start()
        try:
            while len(gw.bus.cycle_times) < 10:
                await asyncio.sleep(0.05)
            return sorted(gw.bus.cycle_times)
        finally:
            await gw.stop()
            bus.close()

    times = asyncio.run(asyncio.wait_for(main(), 120))
    t = BusTiming(115200, 1.0)
    return {"median_ms": round(times[len(times) // 2] * 1000, 1), "max_ms": round(times[-1] * 1000, 1),
            "wire_minimum_ms": round(t.cycle_s(n) * 1000, 1)}


def run(args):
    # The machine's load when the run started: the figures depend on it.
    load1 = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="callbox-bench-gw-") as tmp:
        lte = _lte(args, tmp)
        bus = _bus(args.bus_boxes, tmp)
    lat = lte["latency"]
    return {
        "boxes": lte["boxes"],
        "frames_per_s": lte["frames_per_s"],
        "ack_p50_ms": lat["p50_ms"],
        "ack_p99_ms": lat["p99_ms"],
        "rs485_cycle_ms_32" if args.bus_boxes == 32 else "rs485_cycle_ms_%d" % args.bus_boxes: bus["median_ms"],
        "latency_offered_per_s": lat["offered_per_s"],
        "latency_acked": lat["acked"],
        "latency_sent": lat["sent"],
        "ack_max_ms": lat["max_ms"],
        "throughput_frames": lte["throughput_frames"],
        "gateway_cpu_s": lte["gateway_cpu_s"],
        # Frames ACKed over both phases per CPU-second the gateway process
        # used: its rate on one core of its own, whatever else the machine runs.
        "frames_per_cpu_s": round((lte["throughput_frames"] + lat["acked"]) / lte["gateway_cpu_s"]) if lte["gateway_cpu_s"] else None,
        "loadgen_cpu_s": lte.get("loadgen_cpu_s"),
        "gateway_cpu_share": lte["gateway_cpu_share"],
        "connect_s": lte["connect_s"],
        "rs485_cycle_max_ms": bus["max_ms"],
        "rs485_wire_minimum_ms": bus["wire_minimum_ms"],
        "synchronous": args.synchronous,
        # The gateway's own share of the latency phase's ACK delay (from the
        # frame being read to its ACK written), as the upper edge of its
        # /metrics histogram bucket: the rest of ack_p99_ms is the frame
        # waiting in the socket to be read (the process not on a CPU) and the
        # load generator's own scheduling.
        "gateway_ack_p50_ms_at_most": lte.get("gw_ack_p50_ms_le"),
        "gateway_ack_p99_ms_at_most": lte.get("gw_ack_p99_ms_le"),
        "load_avg_1m": load1,
    }
