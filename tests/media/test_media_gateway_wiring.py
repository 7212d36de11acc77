"""The media service inside the whole gateway (callbox_gateway.app), with a
box on the LTE listener (real TCP, real codec) and an operator that is a real
aiortc peer (no browser needed for signalling and ICE on 127.0.0.1):

- the media folder defaults to <data_dir>/media, never the current directory;
- an Emergency press while the box's call is connected hangs the call up
  (the box hears CALL_STATE ended), except in the guard time just after the
  answer; the press itself is stored like any alarm;
- a console COMMAND selftest also runs the gateway's speaker/mic loopback,
  whose result joins the box's own self-test in the health report."""

import asyncio
import json

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from callbox_firmware import wire
from callbox_gateway.app import Gateway
from callbox_gateway.config import from_dict
from callbox_gateway.media import service as media_service
from callbox_gateway.sim import SimBox
from media_helpers import BOX, TOKEN

pytestmark = pytest.mark.slow
T = 30.0  # one awaited step on a loaded machine


class Box:
    """A SimBox on a real TCP connection to the gateway's LTE listener."""

    def __init__(self, sim, reader, writer):
        self.sim, self.r, self.w = sim, reader, writer
        self.fr = wire.FrameReader()
        self.frames = []
        self.states = []  # every CALL_STATE received, in order

    async def send(self, frame):
        self.w.write(frame)
        await self.w.drain()

    async def next(self, pred, timeout=T):
        """The next downlink frame matching pred (others are kept)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for i, f in enumerate(self.frames):
                if pred(f):
                    return self.frames.pop(i)
            data = await asyncio.wait_for(self.r.read(4096), max(0.01, end - loop.time()))
            assert data, "the gateway closed the box's connection"
            for p in self.fr.feed(data):
                f = self.sim.decode_down(p)
                self.frames.append(f)
                if f.type_name == "CALL_STATE":
                    self.states.append(f.msg["state"])


def is_ack(event):
    return lambda f: f.type_name == "ACK" and f.msg["event"] == event


def call_state(state):
    return lambda f: f.type_name == "CALL_STATE" and f.msg["state"] == state


async def until(pred, timeout=T, step=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not met within %.0f s" % timeout
        await asyncio.sleep(step)


async def operator_call(session, base, event_id):
    """An operator's peer: receives video, sends (silent) audio."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    body = {"event_id": event_id, "box_id": BOX, "sdp": pc.localDescription.sdp, "type": "offer", "operator": "asha"}
    async with session.post(base + "/api/v1/calls", json=body, headers={"Authorization": "Bearer " + TOKEN}) as r:
        got = await r.json()
        assert r.status == 200, got
    await pc.setRemoteDescription(RTCSessionDescription(got["sdp"], "answer"))
    return pc, got["call_id"]


def test_media_dir_hangup_from_box_and_selftest_command(tmp_path, monkeypatch):
    sim = SimBox(BOX)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # where a relative default would have put the media
    cfg = from_dict({
        "data_dir": str(tmp_path / "gw"),
        "http": {"port": 0, "admin_token": "admintok", "console_token": TOKEN},
        "lte": {"port": 0},
        "boxes": [{"box_id": BOX, "key": sim.secret.hex(), "link": "lte", "junction": "Ghantaghar Square"}],
        "media": {"pre_s": 1.0, "post_s": 1.0, "selftest_interval_s": 0.0, "prompts": False,
                  "defaults": {"video": {"width": 320, "height": 240, "fps": 10, "keyframe_interval_s": 1.0}},
                  "boxes": [{"box_id": BOX}]},
    })

    async def main():
        gw = Gateway(cfg)
        await gw.start()
        pc = None
        try:
            assert gw.media is not None and gw.media_has_box(BOX) and not gw.media_has_box(BOX + 1)
            assert gw.media.cfg.media_path == tmp_path / "gw" / "media"
            r, w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
            box = Box(sim, r, w)
            base = "http://127.0.0.1:%d" % gw.http_port
            async with aiohttp.ClientSession() as s:
                # The citizen presses Emergency: stored, ACKed, the box rings.
                await box.send(sim.alarm("emergency"))
                assert (await box.next(is_ack(1))).msg["status"] == "stored"
                await box.next(call_state("ringing"))
                pc, call_id = await operator_call(s, base, "%08x-%08x" % (BOX, 1))
                await box.next(call_state("connected"))
                session = gw.media.calls[call_id]

                # Pressed again at once (still holding it, or pressing to be
                # sure): within the guard time, the call goes on.
                monkeypatch.setattr(media_service, "HANGUP_GUARD_S", 3600.0)
                await box.send(sim.alarm("emergency"))
                assert (await box.next(is_ack(2))).msg["status"] == "stored"
                await asyncio.sleep(0.5)
                assert session.machine.state == "connected"

                # Pressed after the guard time: the citizen hangs up.
                monkeypatch.setattr(media_service, "HANGUP_GUARD_S", 0.0)
                await box.send(sim.alarm("emergency"))
                assert (await box.next(is_ack(3))).msg["status"] == "stored"
                await box.next(call_state("ended"))
                assert session.machine.ended_by == "box"
                async with s.get(base + "/api/v1/calls/" + call_id, headers={"Authorization": "Bearer " + TOKEN}) as r2:
                    assert (await r2.json())["state"] == "ended"
                # Every press is an alarm on record, none lost to the call logic.
                assert [e["event_id"][-1] for e in gw.store.events(BOX) if e["kind"] == "emergency"] == ["1", "2", "3"]
                # The presses during the call did not ring the box again.
                assert box.states[box.states.index("connected"):] == ["connected", "ended"]

                # The console asks for a self-test: the box gets the COMMAND
                # and the gateway runs the tone loopback on its audio.
                async with s.post(base + "/api/v1/boxes/%d/commands" % BOX, json={"op": "selftest"},
                                  headers={"Authorization": "Bearer " + TOKEN}) as r3:
                    body = await r3.json()
                    assert r3.status == 202 and body["box_command"] is True and body["audio_selftest"] is True
                cmd = await box.next(lambda f: f.type_name == "COMMAND")
                assert cmd.msg["op"] == "selftest" and cmd.msg["request"] == body["request"]
                data = json.dumps({"flash": "pass", "emergency": "pass", "panic": "pass"}).encode()
                await box.send(sim.frame({"type": "RESULT", "request": cmd.msg["request"], "op": "selftest", "status": "ok", "data": data}))

                def selftest():
                    return [b for b in gw.health_report()["boxes"] if b["box_id"] == BOX][0]["selftest"] or {}

                await until(lambda: {"speaker", "mic", "flash", "panic"} <= set(selftest().get("items", {})), timeout=60)
                st = selftest()
                assert st["items"]["speaker"] == "pass" and st["items"]["mic"] == "pass", st
                assert st["passed"] is True
            w.close()
        finally:
            if pc is not None:
                await pc.close()
            await gw.stop()
        assert not (cwd / "callbox-media").exists() and list(cwd.iterdir()) == []

    asyncio.run(asyncio.wait_for(main(), 150))
