"""Forwarding to the console over real HTTP (an aiohttp server in the test
plays the console of docs/console-api.md): success, 401, 500, timeouts, 400,
and a ten-minute outage compressed with an injected clock."""

import asyncio
import logging

from aiohttp import web

from callbox_gateway.clock import FakeClock
from callbox_gateway.forward import ForwardPolicy, Forwarder
from callbox_gateway.forward_http import ConsoleSink
from callbox_gateway.observe import Metrics
from callbox_gateway.sim import SimBox
from callbox_gateway.store import Store

from gw_helpers import LteBox, config, start, wait_for


class Console:
    """The receiving side of POST /api/v1/events, /media, /health."""

    def __init__(self, token="consoletok", gateway_id="gw-kanpur-01"):
        self.token = token
        self.gateway_id = gateway_id
        self.events = {}  # event_id -> body (idempotent)
        self.order = []  # event ids in arrival order, duplicates included
        self.requests = 0
        self.mode = "ok"  # ok | 500 | hang | 503
        self.bad_ids = set()  # answered 400
        self.health = []
        self.media = []
        self.down_until = None  # with a fake clock: 503 while clock < this
        self.clock = None

    async def start(self):
        app = web.Application()
        app.router.add_post("/api/v1/events", self.h_events)
        app.router.add_post("/api/v1/health", self.h_health)
        app.router.add_post("/api/v1/media", self.h_media)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        await self.runner.cleanup()

    def _auth(self, request):
        return request.headers.get("Authorization") == "Bearer " + self.token and request.headers.get("X-Callbox-Gateway") == self.gateway_id

    async def h_events(self, request):
        self.requests += 1
        if not self._auth(request):
            return web.json_response({"error": "bad token"}, status=401)
        if self.down_until is not None and self.clock.monotonic() < self.down_until:
            return web.json_response({"error": "down"}, status=503)
        if self.mode == "500":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(2)
        body = await request.json()
        evs = body["events"]
        for e in evs:
            for k in ("event_id", "box_id", "kind", "restore", "press_time", "received_time", "link", "junction"):
                if k not in e:
                    return web.json_response({"error": "missing " + k}, status=400)
            assert not any(k.startswith("_") for k in e), "private fields leaked"
            if e["event_id"] in self.bad_ids:
                return web.json_response({"error": "malformed"}, status=400)
        acc, dup = [], []
        for e in evs:
            self.order.append(e["event_id"])
            (dup if e["event_id"] in self.events else acc).append(e["event_id"])
            self.events.setdefault(e["event_id"], e)
        return web.json_response({"accepted": acc, "duplicates": dup})

    async def h_health(self, request):
        if not self._auth(request):
            return web.json_response({"error": "bad token"}, status=401)
        self.health.append(await request.json())
        return web.json_response({})

    async def h_media(self, request):
        if not self._auth(request):
            return web.json_response({"error": "bad token"}, status=401)
        body = await request.json()
        if body["event_id"] not in self.events:
            return web.json_response({"error": "unknown"}, status=404)
        self.media.append(body)
        return web.json_response({})


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def sink_cfg(console, **kw):
    d = {"type": "console", "name": "console", "url": console.url, "timeout_s": 1.0, "health_interval_s": 0.2}
    d.update(kw)
    return [d]


FAST = ForwardPolicy(base_s=0.02, cap_s=0.1)


def test_alarms_forwarded_in_order_once_with_health(tmp_path):
    async def main():
        console = await Console().start()
        a, b = SimBox(0x2A), SimBox(0x2B)
        gw = await start(config(tmp_path, [a, b], sinks=sink_cfg(console)), forward_policy=FAST)
        try:
            ca, cb = await LteBox.connect(gw, a), await LteBox.connect(gw, b)
            for i in range(10):
                await ca.send(a.alarm("panic"))
                await cb.send(b.alarm("emergency"))
                await ca.recv()
                await cb.recv()
            await wait_for(lambda: len(console.events) == 20)
            for box in (0x2A, 0x2B):
                seq = [e for e in console.order if e.startswith("%08x-" % box)]
                assert seq == ["%08x-%08x" % (box, i) for i in range(1, 11)]  # in order per box, once
            e = console.events["0000002a-00000001"]
            assert e["junction"] == "Junction 42" and e["lat"] == 26.45 and e["press_time_synced"] is True
            assert e["press_time"].endswith("Z") and e["link"] == "lte" and e["snapshot_url"] is None
            await wait_for(lambda: console.health and any(bx["online"] for bx in console.health[-1]["boxes"]))
            assert console.health[-1]["gateway_id"] == "gw-kanpur-01"
            await wait_for(lambda: gw.store.queue_depth().get(("console", "pending"), 0) == 0)
            # Media attached later (issue 7's hook): POST /api/v1/media.
            from callbox_gateway.app import Hooks

            Hooks(gw).on_media("0000002a-00000001", {"snapshot_url": "/api/v1/media/0000002a-00000001/snapshot.jpg", "clip": None})
            await wait_for(lambda: console.media)
            assert console.media[0]["event_id"] == "0000002a-00000001"
        finally:
            await gw.stop()
            await console.stop()

    run(main())


def test_401_500_timeout_keep_events_queued_then_deliver(tmp_path, caplog):
    async def main():
        console = await Console(token="the-right-one").start()
        box = SimBox(3)
        gw = await start(config(tmp_path, [box], sinks=sink_cfg(console, timeout_s=0.5)), forward_policy=FAST)
        try:
            c = await LteBox.connect(gw, box)
            for _ in range(3):
                await c.send(box.alarm())
                await c.recv()
            await wait_for(lambda: console.requests >= 4)  # refused again and again
            assert console.events == {}
            assert gw.store.queue_depth()[("console", "pending")] == 3
            warnings = [r for r in caplog.records if "forward_failed" in r.getMessage() and r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "token" in warnings[0].getMessage()
            assert "the-right-one" not in caplog.text and "consoletok" not in caplog.text
            console.token = "consoletok"
            console.mode = "500"
            n = console.requests
            await wait_for(lambda: console.requests >= n + 3)
            assert console.events == {}
            console.mode = "hang"
            await wait_for(lambda: gw.metrics.get("forward_failures", sink="console", retryable="true") >= 8)
            console.mode = "ok"
            await wait_for(lambda: len(console.events) == 3)
            await wait_for(lambda: gw.store.queue_depth().get(("console", "pending"), 0) == 0)
        finally:
            await gw.stop()
            await console.stop()

    with caplog.at_level(logging.INFO):
        run(main())


def test_400_parks_only_the_bad_event(tmp_path):
    async def main():
        console = await Console().start()
        box = SimBox(4)
        console.bad_ids = {"00000004-00000002"}
        gw = await start(config(tmp_path, [box], sinks=sink_cfg(console)), forward_policy=FAST)
        try:
            c = await LteBox.connect(gw, box)
            await c.send(b"".join(box.alarm() for _ in range(4)))
            for _ in range(4):
                await c.recv()
            await wait_for(lambda: len(console.events) == 3)
            assert sorted(console.events) == ["00000004-00000001", "00000004-00000003", "00000004-00000004"]
            await wait_for(lambda: gw.store.queue_depth().get(("console", "parked")) == 1)
            assert gw.metrics.get("forward_parked", sink="console") == 1
            assert gw.store.event_count() == 4  # the parked event is still on disk
        finally:
            await gw.stop()
            await console.stop()

    run(main())


def test_ten_minute_outage_compressed_with_fake_clock(tmp_path):
    async def main():
        clock = FakeClock()
        console = await Console().start()
        console.clock = clock
        console.down_until = 600.0  # ten minutes of 503
        store = Store(tmp_path / "g.db")
        events = []
        for box in (1, 2, 3):
            for n in range(1, 6):
                ev = {"event_id": "%08x-%08x" % (box, n), "box_id": box, "junction": "J", "lat": None, "lon": None, "kind": "panic",
                      "restore": False, "press_time": "2026-11-28T19:20:01.123Z", "press_time_synced": True,
                      "received_time": "2026-11-28T19:20:01.180Z", "link": "lte", "snapshot_url": None, "clip": None, "_received_s": 0.0}
                events.append(ev)
        store.transaction(lambda: [store.add_event(e, ["console"]) for e in events])
        sink = ConsoleSink(console.url, "consoletok", "gw-kanpur-01", timeout_s=5.0)
        fwd = Forwarder("console", sink, store, Metrics(), clock, ForwardPolicy(base_s=1, cap_s=60, batch=4, rand=lambda: 1.0))
        task = fwd.start()
        try:
            # The console has an event as soon as it answers; the forwarder
            # drops it from the queue once it has read that answer. Stopping
            # in between (CI did, under load) cancels the batch in flight,
            # which then stays queued for the next run: wait for both.
            await wait_for(lambda: len(console.events) == 15 and not store.pending("console", 100), timeout=60)
        finally:
            await fwd.stop()
            await sink.close()
            await console.stop()
        assert clock.monotonic() >= 600.0  # nothing went through during the outage
        assert max(clock.slept) <= 72.0 + 1e-6  # capped backoff (60 s x jitter 1.2)
        assert len(clock.slept) <= 20  # not a hot loop: ~11 tries over ten minutes
        # Every event once, in order per box, and the queue empty.
        assert sorted(console.events) == sorted(e["event_id"] for e in events)
        for box in (1, 2, 3):
            seq = [e for e in console.order if e.startswith("%08x-" % box)]
            assert seq == ["%08x-%08x" % (box, n) for n in range(1, 6)]
        assert store.pending("console", 100) == []
        assert task.done()

    run(main())
