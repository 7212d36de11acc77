"""The gateway in-process on real TCP: LTE listener with its per-connection
limits, the admin API, /health and /metrics."""

import asyncio
import json

import aiohttp

from callbox_firmware import wire
from callbox_gateway.sim import SimBox

from gw_helpers import T, LteBox, box_rec, config, start, wait_for


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_alarm_over_lte_acked_after_commit(tmp_path):
    async def main():
        box = SimBox(42)
        gw = await start(config(tmp_path, [box]))
        try:
            c = await LteBox.connect(gw, box)
            await c.send(box.alarm("emergency"))
            ack = await c.recv()
            assert ack.type_name == "ACK" and ack.msg["status"] == "stored" and ack.msg["event"] == 1
            # The ACK came after the commit: the event is on disk now.
            assert [e["kind"] for e in gw.store.events(42)] == ["emergency"]
            await c.send(box.alarm("emergency", event=1))
            assert (await c.recv()).msg["status"] == "duplicate"
            box.clock_synced = False  # a box that never had its clock set
            await c.send(box.heartbeat())
            assert (await c.recv()).msg["acked_type"] == "HEARTBEAT"
            # ... gets a time_sync COMMAND right after the heartbeat's ACK.
            sync = await c.recv()
            assert sync.msg["type"] == "COMMAND" and sync.msg["op"] == "time_sync"
            import struct
            import time

            assert abs(struct.unpack(">IH", sync.msg["args"])[0] - time.time()) < 5
            await c.send(box.heartbeat())  # still unsynced: not asked again within a minute
            assert (await c.recv()).msg["acked_type"] == "HEARTBEAT"
            assert gw.metrics.get("time_syncs_sent") == 1
            assert gw.store.event_count() == 1
            # Downlink: CALL_STATE reaches the box over its connection.
            from callbox_gateway.app import Hooks

            assert Hooks(gw).send_call_state(42, "ringing", 1, "connecting")
            cs = await c.recv()
            assert cs.msg["state"] == "ringing" and cs.msg["prompt"] == "connecting"
            c.close()
        finally:
            await gw.stop()

    run(main())


def test_bad_connections_do_not_starve_good_ones(tmp_path):
    async def main():
        good, wrongkey = SimBox(1), SimBox(2)
        cfg = config(tmp_path, [good, wrongkey], lte={"max_bad_frames": 5, "auth_timeout_s": 1.0})
        gw = await start(cfg)
        try:
            # An oversize run, garbage, forged frames, a silent socket.
            big_r, big_w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
            big_w.write(b"\x01" * 100_000)
            garb_r, garb_w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
            garb_w.write(bytes(range(1, 256)) * 50 + b"\x00" + b"\x55\x00" * 50)
            forged = await LteBox.connect(gw, wrongkey)
            liar = SimBox(2, key=bytes(32))
            for _ in range(10):
                await forged.send(liar.alarm())
            silent_r, silent_w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
            c = await LteBox.connect(gw, good)
            for i in range(20):
                await c.send(good.alarm("panic"))
                assert (await c.recv()).msg["status"] == "stored"
            assert await forged.closed()
            assert await LteBox(None, garb_r, garb_w).closed()
            assert await LteBox(None, big_r, big_w).closed()
            assert await LteBox(None, silent_r, silent_w).closed()  # auth_timeout_s
            m = gw.metrics
            assert m.get("frames_rejected", reason="auth", link="lte") >= 5
            assert m.get("frames_rejected", reason="oversize", link="lte") >= 1
            assert m.get("lte_closed", reason="bad_frames") >= 2
            assert m.get("lte_closed", reason="auth_timeout") >= 1
            assert gw.store.event_count() == 20
            c.close()
        finally:
            await gw.stop()

    run(main())


def test_frame_rate_limit_slows_but_loses_nothing(tmp_path):
    async def main():
        box = SimBox(8)
        gw = await start(config(tmp_path, [box], lte={"frames_per_s": 200.0, "burst_frames": 10}))
        try:
            c = await LteBox.connect(gw, box)
            await c.send(b"".join(box.alarm() for _ in range(60)))  # a burst far over the bucket
            acks = [await c.recv() for _ in range(60)]
            assert sorted(a.msg["event"] for a in acks) == list(range(1, 61))
            assert gw.metrics.get("lte_rate_limited") >= 1
            assert gw.store.event_count() == 60
            c.close()
        finally:
            await gw.stop()

    run(main())


def test_admin_api_add_revoke_without_restart(tmp_path):
    async def main():
        gw = await start(config(tmp_path))
        base = "http://127.0.0.1:%d" % gw.http_port
        hdr = {"Authorization": "Bearer admintok"}
        box = SimBox(77)
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(base + "/api/v1/admin/boxes", json=box_rec(box)) as r:
                    assert r.status == 401
                async with s.post(base + "/api/v1/admin/boxes", json=box_rec(box), headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401
                async with s.post(base + "/api/v1/admin/boxes", json={"box_id": 77, "key": "xyz"}, headers=hdr) as r:
                    assert r.status == 400 and "hex" in (await r.json())["error"]
                async with s.post(base + "/api/v1/admin/boxes", data=b"not json", headers=hdr) as r:
                    assert r.status == 400
                async with s.post(base + "/api/v1/admin/boxes", json=box_rec(box), headers=hdr) as r:
                    assert r.status == 201
                async with s.get(base + "/api/v1/admin/boxes", headers=hdr) as r:
                    listing = await r.text()
                    assert '"box_id": 77' in listing and box.secret.hex() not in listing
                c = await LteBox.connect(gw, box)
                await c.send(box.alarm())
                assert (await c.recv()).msg["status"] == "stored"
                async with s.delete(base + "/api/v1/admin/boxes/77", headers=hdr) as r:
                    assert r.status == 200
                assert await c.closed()
                c2 = await LteBox.connect(gw, box)
                await c2.send(box.alarm())
                await wait_for(lambda: gw.metrics.get("frames_rejected", reason="unknown_box", link="lte") >= 1)
                async with s.delete(base + "/api/v1/admin/boxes/77", headers=hdr) as r:
                    assert r.status == 404
                async with s.get(base + "/health") as r:
                    h = await r.json()
                    assert h["status"] == "ok" and h["boxes"] == 0
                async with s.get(base + "/metrics") as r:
                    text = await r.text()
                    assert 'callbox_gateway_frames_rejected_total{link="lte",reason="unknown_box"}' in text
                    assert "# TYPE callbox_gateway_events_stored_total counter" in text
                c2.close()
            # Keys and tokens are not in the logs' repr of the config.
            assert "admintok" not in repr(gw.cfg)
        finally:
            await gw.stop()

    run(main())


def test_tls_listener(tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True)
    if r.returncode != 0:
        import pytest

        pytest.skip("openssl cannot make a test certificate here")

    async def main():
        box = SimBox(5)
        gw = await start(config(tmp_path, [box], lte={"tls_cert": str(cert), "tls_key": str(key)}))
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            rd, wr = await asyncio.open_connection("127.0.0.1", gw.lte.port, ssl=ctx)
            c = LteBox(box, rd, wr)
            await c.send(box.alarm())
            assert (await c.recv()).msg["status"] == "stored"
            c.close()
        finally:
            await gw.stop()

    run(main())


def test_alarm_below_event_start_is_stored_and_acked_with_a_warning(tmp_path, caplog):
    """A replacement box that was not given its event_start: its alarm must
    still be stored and ACKed (the warning must never break the ingest)."""

    async def main():
        box = SimBox(77)
        cfg = config(tmp_path, [box])
        cfg.boxes[0]["event_start"] = 100
        gw = await start(cfg)
        try:
            c = await LteBox.connect(gw, box)
            await c.send(box.alarm("panic"))  # event 1 < event_start 100
            ack = await c.recv()
            assert ack.type_name == "ACK" and ack.msg["status"] == "stored" and ack.msg["event"] == 1
            assert [e["kind"] for e in gw.store.events(77)] == ["panic"]
            c.close()
        finally:
            await gw.stop()

    import logging

    with caplog.at_level(logging.WARNING):
        run(main())
    assert "alarm_below_event_start" in caplog.text
