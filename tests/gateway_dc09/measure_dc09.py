"""Measure DC-09 delivery against pysiaalarm's threaded receiver on 127.0.0.1:
events/s and ACK latency, one event in flight, plain and AES, SIA-DCS and
ADM-CID. Not a test; run:

    PYTHONPATH=tests/gateway_dc09 .venv/bin/python tests/gateway_dc09/measure_dc09.py
"""

import asyncio
import queue
import time

from pysiaalarm import SIAAccount, SIAClient
from callbox_gateway.forward_dc09 import Dc09Config, Dc09Sink
from _dc09_receivers import event

async def main(encrypted, token, n=500):
    q = queue.Queue()
    c = SIAClient("127.0.0.1", 0, [SIAAccount("0042", "0123456789ABCDEF" if encrypted else None)], q.put)
    c.start()
    rx = {"host": "127.0.0.1", "port": c.sia_server.server_address[1]}
    if encrypted: rx.update(key="0123456789ABCDEF", key_format="ascii")
    sink = Dc09Sink(Dc09Config.from_dict({"format": token, "supervision_interval_s": 0, "receivers": [rx]}))
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        await sink.deliver(event("panic", seq=i))
        lat.append((time.perf_counter() - t) * 1000)
    dt = time.perf_counter() - t0
    await sink.close(); c.stop()
    lat.sort()
    print("%s %s: %d events, %.0f events/s, ACK latency p50 %.2f ms p99 %.2f ms" % (token, "AES-128" if encrypted else "plain", n, n / dt, lat[n // 2], lat[int(n * 0.99)]))

if __name__ == "__main__":
    for tok in ("SIA-DCS", "ADM-CID"):
        for enc in (False, True):
            asyncio.run(main(enc, tok))
