"""LTE load generator: many simulated boxes over real TCP, in their own
process, for `callbox bench gateway`.

    python -m callbox_gateway.loadgen --port P --boxes 1000 --first-box 0x10000 \
        --frames 20 --window 4 --rate 5000 --seconds 4

Two phases, printed as one JSON object:
1. throughput (closed loop): every box keeps `window` frames in flight and
   sends the next on each ACK, until each has sent `frames`; frames_per_s is
   ACKed frames over the wall time of the phase.
2. latency (open loop): all boxes together send `rate` frames/s, each box at
   its own random phase; ack_p50_ms / ack_p99_ms from write to ACK.

With --phase-sync it prints {"phase": "latency"} between the phases and waits
for a line on stdin (the bench reads the gateway's /metrics there).

Frames are HEARTBEATs with one ALARM in ten (each alarm a new event, so each
is committed). Frames are encoded before a phase starts so the generator's
own HMAC work does not slow the load; ACKs are matched by their acked counter
after the CRC check (the box-side verification is tested elsewhere).
"""

import argparse
import asyncio
import json
import random
import struct
import sys
import time

from callbox_firmware import wire

from . import codec
from .sim import SimBox


def _ack_counter(piece):
    """acked_counter of an ACK piece (CRC checked), or None."""
    try:
        body = codec.cobs_decode(piece)  # the fast path: less CPU taken from the gateway
    except wire.WireError:
        return None
    n = len(body)
    if n < wire.OVERHEAD or wire.crc32(body[: n - 4]) != struct.unpack(">I", body[n - 4 :])[0]:
        return None
    if body[1] != wire.MSG_ACK:
        return None
    return struct.unpack(">I", body[14:18])[0]


class BoxConn(asyncio.Protocol):
    def __init__(self, gen, box):
        self.gen = gen
        self.box = box
        self.reader = wire.FrameReader()
        self.transport = None
        self.frames = []  # (counter, bytes) ready to send
        self.sent_at = {}
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.connected.set_result(True)

    def connection_lost(self, exc):
        self.gen.lost += 1

    def prepare(self, n):
        self.frames = []
        for i in range(n):
            f = self.box.alarm("panic") if i % 10 == 9 else self.box.heartbeat()
            self.frames.append((self.box.counter, f))
        self.frames.reverse()

    def send_one(self):
        if not self.frames:
            return False
        c, f = self.frames.pop()
        self.sent_at[c] = time.perf_counter()
        self.transport.write(f)
        return True

    def data_received(self, data):
        now = time.perf_counter()
        for p in self.reader.feed(data):
            c = _ack_counter(p)
            t = self.sent_at.pop(c, None) if c is not None else None
            if t is None:
                continue
            self.gen.on_ack(self, now - t)


class Generator:
    def __init__(self, args):
        self.args = args
        self.conns = []
        self.lost = 0
        self.latencies = []
        self.acked = 0
        self.closed_loop = False
        self.done = None

    def on_ack(self, conn, latency):
        self.acked += 1
        if self.closed_loop:
            if not conn.send_one() and not conn.sent_at:
                self.finished += 1
                if self.finished == len(self.conns):
                    self.done.set_result(True)
        else:
            self.latencies.append(latency)

    async def connect(self):
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(100)

        async def one(i):
            box = SimBox(self.args.first_box + i)
            async with sem:
                _, c = await loop.create_connection(lambda: BoxConn(self, box), self.args.host, self.args.port)
            return c

        self.conns = await asyncio.gather(*(one(i) for i in range(self.args.boxes)))

    async def throughput(self):
        for c in self.conns:
            c.prepare(self.args.frames)
        self.closed_loop = True
        self.finished = 0
        self.acked = 0
        self.done = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        for c in self.conns:
            for _ in range(self.args.window):
                c.send_one()
        await asyncio.wait_for(self.done, self.args.timeout)
        dt = time.perf_counter() - t0
        self.closed_loop = False
        return self.acked / dt, dt

    async def latency(self):
        a = self.args
        per_box_hz = a.rate / len(self.conns)
        n = max(1, int(per_box_hz * a.seconds) + 1)
        for c in self.conns:
            c.prepare(n)
        self.latencies = []
        self.acked = 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.latency_window = [time.monotonic(), None]  # for lining up with a gateway trace
        rng = random.Random(1)
        # A schedule of (time, conn) merged over all boxes, sent in 1 ms ticks.
        sched = sorted((rng.random() / per_box_hz + k / per_box_hz, i) for i in range(len(self.conns)) for k in range(n))
        sched = [(t, i) for t, i in sched if t < a.seconds]
        j = 0
        while j < len(sched):
            now = loop.time() - t0
            while j < len(sched) and sched[j][0] <= now:
                self.conns[sched[j][1]].send_one()
                j += 1
            await asyncio.sleep(0.001)
        sent = j
        end = loop.time() + 5.0
        while self.acked < sent and loop.time() < end:
            await asyncio.sleep(0.01)
        self.latency_window[1] = time.monotonic()
        lat = sorted(self.latencies)
        return {"monotonic_window": [round(t, 4) for t in self.latency_window], "sent": sent, "acked": len(lat), "offered_per_s": round(sent / a.seconds),
                "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99), "max_ms": round(lat[-1] * 1000, 2) if lat else None}


def _pct(xs, q):
    if not xs:
        return None
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 2)


async def main_async(args):
    g = Generator(args)
    t0 = time.perf_counter()
    await g.connect()
    connect_s = time.perf_counter() - t0
    fps, dt = await g.throughput()
    if args.phase_sync:
        # Let the caller snapshot the gateway's own counters between phases.
        print(json.dumps({"phase": "latency"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    lat = await g.latency()
    for c in g.conns:
        c.transport.close()
    return {"loadgen_cpu_s": round(time.process_time(), 2), "boxes": len(g.conns), "connect_s": round(connect_s, 2), "frames_per_s": round(fps), "throughput_s": round(dt, 2),
            "throughput_frames": args.boxes * args.frames, "window": args.window, "latency": lat, "lost_connections": g.lost}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m callbox_gateway.loadgen")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--boxes", type=int, default=1000)
    p.add_argument("--first-box", type=lambda s: int(s, 0), default=0x10000)
    p.add_argument("--frames", type=int, default=20, help="frames per box in the throughput phase")
    p.add_argument("--window", type=int, default=4, help="frames in flight per box in the throughput phase")
    p.add_argument("--rate", type=float, default=5000.0, help="frames/s offered in the latency phase")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the latency phase")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--phase-sync", action="store_true",
                   help='print {"phase": "latency"} after the throughput phase and wait for a line on stdin')
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
