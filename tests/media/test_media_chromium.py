"""Two-way calls with a real headless Chromium (fake camera-less operator
with a fake mic playing a 440 Hz tone) against the real aiortc gateway side:
video frames and the box's 700 Hz tone reach the browser, the browser's tone
reaches the gateway, the recording holds both directions, CALL_STATE frames
follow the call, and nobody without the console token gets a call."""

import array
import json
import pathlib
import time
import urllib.request

import pytest

from callbox_gateway.media import pcm
from callbox_gateway.media.mux import decode_audio, probe
from media_helpers import BOX, BOX_TONE_HZ, BROWSER_TONE_HZ, TOKEN

pytestmark = [pytest.mark.chromium, pytest.mark.slow]


def api(server, method, path):
    req = urllib.request.Request(server.url + path, method=method, headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def states(server):
    return [(s, p) for _t, b, s, _e, p in server.hooks.call_states if b == BOX]


def open_page(chromium, server):
    page = chromium.new_page()
    page.goto(server.url + "/media-test/call.html")
    return page


def test_call_carries_video_and_both_tones_and_records_both_directions(server, chromium, tmp_path):
    page = open_page(chromium, server)
    try:
        # Without the console token, or with a wrong one: refused, no call.
        for token in (None, "not-the-token"):
            r = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": token})
            assert r["status"] == 401 and "console token" in r["error"]
        assert not server.service.calls and states(server) == []

        r = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": TOKEN, "eventId": "0000002a-00000007"})
        assert r["status"] == 200, r
        call_id = r["callId"]
        assert (r["width"], r["height"]) == (320, 240)
        assert r["setupMs"] < 10000  # the figure itself is `callbox bench call`'s job

        video = page.evaluate("([id, ms]) => countFrames(id, ms)", [call_id, 1500])
        assert video["frames"] >= 5, video  # 10 fps for 1.5 s, on a loaded machine
        heard = page.evaluate("([id, ms]) => listen(id, ms)", [call_id, 2000])
        assert heard["hz"] == pytest.approx(BOX_TONE_HZ, abs=10), "the browser hears the box mic: %s" % heard

        session = server.service.calls[call_id]
        deadline = time.monotonic() + 20
        while session.operator_stats.get("frames", 0) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        got = array.array("h", session.operator_pcm())[-48000:]
        assert len(got) == 48000, "the gateway received %d samples of the operator's mic" % len(got)
        hz, level = pcm.dominant_hz(got, 48000, 200, 2000, 10)
        assert hz == pytest.approx(BROWSER_TONE_HZ, abs=10), "the gateway hears the browser's mic: %s Hz %.0f dBFS" % (hz, level)

        # A second call to a busy box is refused, the first goes on.
        again = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": TOKEN})
        assert again["status"] == 409 and call_id in again["error"]
        status = json.loads(api(server, "GET", "/api/v1/calls/" + call_id))
        assert status["state"] == "connected" and status["duration_s"] > 0

        # The console ends the call, help dispatched: the box is told, and speaks.
        ended = json.loads(api(server, "DELETE", "/api/v1/calls/%s?outcome=dispatched" % call_id))
        assert ended["state"] == "ended" and ended["outcome"] == "dispatched" and ended["ended_by"] == "console"
        assert states(server) == [("ringing", "connecting"), ("connected", "none"), ("dispatched", "help_on_way")]
        assert server.service.boxes[BOX].mixer.busy(), "'help is on the way' is playing on the box speaker"

        # The recording: camera video, the box mic and the operator's mic.
        assert ended["recording_url"] == "/api/v1/media/%s/clip.mp4" % call_id
        path = tmp_path / "call.mp4"
        path.write_bytes(api(server, "GET", ended["recording_url"]))
        info = probe(path)
        assert [s["type"] for s in info["streams"]] == ["video", "audio", "audio"], info
        assert info["streams"][0]["count"] >= 20
        box_audio = array.array("h", decode_audio(path, 1, start_s=1.0))[:48000]
        operator_audio = array.array("h", decode_audio(path, 2, start_s=1.5))[:48000]
        assert pcm.dominant_hz(box_audio, 48000, 200, 2000, 10)[0] == pytest.approx(BOX_TONE_HZ, abs=10)
        assert pcm.dominant_hz(operator_audio, 48000, 200, 2000, 10)[0] == pytest.approx(BROWSER_TONE_HZ, abs=10)
    finally:
        page.close()


def test_browser_hangup_ends_the_call_and_tells_the_box(server, chromium):
    page = open_page(chromium, server)
    try:
        r = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": TOKEN})
        assert r["status"] == 200, r
        session = server.service.calls[r["callId"]]
        page.evaluate("id => hangup(id)", r["callId"])
        assert server.hooks.wait_for(lambda h: ("ended", "none") in states(server), 40), states(server)
        assert session.machine.ended_by in ("browser", "failure")
        assert session.closed.is_set() or server.run(session.closed.wait(), timeout_s=30) is True
        assert server.service.health(BOX)["in_call"] is False
        # The box can be called again at once.
        r2 = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": TOKEN})
        assert r2["status"] == 200, r2
        server.run(server.service.hangup_box(BOX))  # the citizen hangs up at the box
        assert server.service.calls[r2["callId"]].machine.ended_by == "box"
    finally:
        page.close()


def test_bench_call_prints_the_figures(repo_root):
    """`callbox bench call --json` end to end, cut short (2 calls, 1 s buffer)."""
    import subprocess
    import sys

    exe = pathlib.Path(sys.executable).with_name("callbox")
    proc = subprocess.run([str(exe), "bench", "call", "--json", "--calls", "2", "--hold-s", "0.5", "--pre-s", "1",
                           "--snapshots", "1", "--width", "320", "--height", "240", "--fps", "10"],
                          capture_output=True, text=True, timeout=180, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["calls"] == 2
    assert 0 < figures["setup_ms"]["p50"] <= figures["setup_ms"]["p95"] < 30000
    assert figures["ring_buffer_mb"] > 0 and figures["ring_buffer_s"] >= 1.0
    assert 0 < figures["snapshot_ms"] < 10000
    assert isinstance(figures["cpu_per_call_pct"], float) and isinstance(figures["meets_targets"], bool)
