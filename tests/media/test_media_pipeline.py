"""The media pipeline with real parts: PyAV encoding and muxing, capture
threads, espeak-ng, the aiohttp routes over real TCP. Synthetic boxes are
small (320x240, 10 fps) and clips short (2 s + 2 s) to spare the CPU."""

import array
import fractions
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request

import av
import pytest

from callbox_gateway.media import config as media_config, pcm, prompts
from callbox_gateway.media.errors import PromptError
from callbox_gateway.media.mux import decode_audio, probe
from callbox_gateway.media.pipeline import BoxMedia
from callbox_gateway.media.sources import SyntheticCamera, read_stamp
from callbox_gateway.media.standalone import ServerThread

from media_helpers import BOX, BOX_TONE_HZ, TOKEN, small_config

STAMP_MOD = 1 << 40


def http(server, method, path, body=None, token=TOKEN, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(server.url + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_buffered(box, seconds, timeout_s=30.0):
    """Wait until the box's pre-event buffer spans `seconds`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if box.health()["ring_s"] >= seconds:
            return
        box.wait_packet_after(box.clock() + 0.5, 1.0)
    raise AssertionError("box %d buffered only %.1f s in %.0f s: %s" % (box.box_id, box.health()["ring_s"], timeout_s, box.health()))


def test_alarm_snapshot_is_the_press_moment_and_clip_has_both_streams(tmp_path):
    srv = ServerThread(small_config(tmp_path), token=TOKEN).start()
    try:
        box = srv.service.boxes[BOX]
        wait_buffered(box, 2.5)
        press = time.time() - 0.3  # the press happened just before the alarm arrived
        event_id = "0000002a-00000001"
        meta = srv.run(srv.service.on_alarm(BOX, event_id, press), timeout_s=60)
        assert meta["snapshot_url"] == "/api/v1/media/%s/snapshot.jpg" % event_id
        clip = meta["clip"]
        assert clip["id"] == event_id and clip["url"] == "/api/v1/media/%s/clip.mp4" % event_id

        # The snapshot shows the press moment: the first frame at or after it
        # (the test pattern carries its capture time in the top row).
        status, headers, jpeg = http(srv, "GET", meta["snapshot_url"])
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        snap = tmp_path / "snap.jpg"
        snap.write_bytes(jpeg)
        with av.open(str(snap)) as c:
            frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (320, 240)
        late_ms = (read_stamp(frame) - int(press * 1000)) % STAMP_MOD
        assert 0 <= late_ms <= 100 + 5, "snapshot frame %d ms after the press; one frame is 100 ms" % late_ms

        # The clip: both streams present and decodable, pre_s + post_s long
        # (plus at most one keyframe interval of pre-roll), hash as announced.
        status, headers, mp4 = http(srv, "GET", clip["url"])
        assert status == 200
        assert hashlib.sha256(mp4).hexdigest() == clip["sha256"] == headers["X-Content-SHA256"]
        path = tmp_path / "clip.mp4"
        path.write_bytes(mp4)
        info = probe(path)
        kinds = [s["type"] for s in info["streams"]]
        assert kinds == ["video", "audio"], info
        video, audio = info["streams"]
        assert 4.0 <= clip["duration_s"] <= 4.0 + 1.0 + 0.3, clip
        assert video["count"] >= 10 * 4.0 - 2, "frames in a %.1f s clip at 10 fps: %d" % (clip["duration_s"], video["count"])
        assert audio["count"] / 48000 == pytest.approx(clip["duration_s"], abs=0.5)
        hz, level = pcm.dominant_hz(array.array("h", decode_audio(path, 1, start_s=1.0))[:48000], 48000, 300, 1500, 10)
        assert hz == pytest.approx(BOX_TONE_HZ, abs=10), "the clip's audio is the box mic (%s Hz at %.0f dBFS)" % (hz, level)

        # The hook heard about the snapshot first, then the clip.
        assert [m[1]["clip"] is not None for m in srv.hooks.media if m[0] == event_id] == [False, True]
        # The same alarm again (the box retried): same metadata, no new capture.
        t0 = time.monotonic()
        assert srv.run(srv.service.on_alarm(BOX, event_id, press)) == meta
        assert time.monotonic() - t0 < 2.0
    finally:
        srv.stop()

    # After a restart the clip and snapshot are still served, same hash.
    srv2 = ServerThread(small_config(tmp_path), token=TOKEN).start()
    try:
        status, _, mp4_again = http(srv2, "GET", clip["url"])
        assert status == 200 and hashlib.sha256(mp4_again).hexdigest() == clip["sha256"]
        assert srv2.run(srv2.service.on_alarm(BOX, event_id, press)) == meta
    finally:
        srv2.stop()


def test_routes_refuse_without_token_and_explain_bad_requests(server):
    for method, path in [("GET", "/api/v1/media/0000002a-00000001/snapshot.jpg"),
                         ("GET", "/api/v1/media/0000002a-00000001/clip.mp4"),
                         ("POST", "/api/v1/calls"), ("GET", "/api/v1/calls/call-x"), ("DELETE", "/api/v1/calls/call-x")]:
        for token in (None, "wrong-token"):
            status, _, body = http(server, method, path, body={} if method == "POST" else None, token=token)
            assert status == 401, (method, path, token)
            assert "console token" in json.loads(body)["error"]
    status, _, body = http(server, "GET", "/api/v1/media/0000002a-000000ff/clip.mp4")
    assert status == 404 and "0000002a-000000ff" in json.loads(body)["error"]
    status, _, body = http(server, "POST", "/api/v1/calls", raw=b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    status, _, body = http(server, "POST", "/api/v1/calls", body={"box_id": "42", "sdp": "v=0", "type": "offer"})
    assert status == 400 and "box_id" in json.loads(body)["error"]
    status, _, body = http(server, "POST", "/api/v1/calls", body={"box_id": 99, "sdp": "v=0", "type": "offer"})
    assert status == 404 and "box 99" in json.loads(body)["error"]
    status, _, body = http(server, "POST", "/api/v1/calls", body={"box_id": BOX, "sdp": "garbage", "type": "offer"})
    assert status == 400 and "box 42" in json.loads(body)["error"]
    status, _, body = http(server, "POST", "/api/v1/calls", body={"box_id": BOX, "sdp": "v=0", "type": "answer"})
    assert status == 400
    status, _, body = http(server, "POST", "/api/v1/calls", body={"box_id": BOX, "sdp": "x" * 70000, "type": "offer"})
    assert status == 400 and "too large" in json.loads(body)["error"]
    status, _, body = http(server, "GET", "/api/v1/calls/call-nope")
    assert status == 404
    # None of that left a call behind or stopped the box.
    assert not server.service.calls
    assert server.service.health(BOX)["camera"] == "ok"


def test_selftest_passes_and_detects_dead_speaker_and_dead_mic(tmp_path, espeak):
    cfg = small_config(tmp_path, boxes=[
        {"box_id": BOX, "video": {"source": "none"}},
        {"box_id": 43, "video": {"source": "none"}, "audio": {"loopback_gain": 0.0}},
        {"box_id": 44, "video": {"source": "none"}, "audio": {"mic_dead": True}},
    ])
    srv = ServerThread(cfg, token=TOKEN).start()
    try:
        ok = srv.run(srv.service.selftest(BOX, with_prompt=True))
        assert ok["passed"] and ok["items"] == {"speaker": "pass", "mic": "pass"}, ok
        assert ok["level_dbfs"] > -45 and ok["level_dbfs"] - ok["ambient_dbfs"] > 10
        assert "testing" in srv.service.boxes[BOX].mixer.played, "the 'box is being tested' prompt was played"
        assert (BOX, "idle", 0, "testing") in [c[1:] for c in srv.hooks.call_states]
        dead_speaker = srv.run(srv.service.selftest(43, with_prompt=False))
        assert not dead_speaker["passed"] and dead_speaker["items"] == {"speaker": "fail", "mic": "pass"}, dead_speaker
        dead_mic = srv.run(srv.service.selftest(44, with_prompt=False))
        assert not dead_mic["passed"] and dead_mic["items"]["mic"] == "fail", dead_mic
        assert [b for b, _ in srv.hooks.selftests] == [BOX, 43, 44]
        assert srv.service.health(43)["selftest"] == dead_speaker
    finally:
        srv.stop()


def test_prompts_are_generated_once_cached_and_fall_back_to_a_chime(tmp_path, espeak):
    lib = prompts.PromptLibrary(tmp_path / "cache", espeak)
    for name in prompts.PROMPTS:
        data = lib.generate(name)
        # Hindi + gap + English: each sentence takes well over half a second.
        assert len(data) / 96000 > 1.5, name
        assert pcm.rms_dbfs(array.array("h", data)) > -40, name
    wavs = sorted(p.name for p in (tmp_path / "cache").glob("*.wav"))
    assert len(wavs) == 6 and sum(w.startswith("hi-") for w in wavs) == 3
    # A second library without espeak-ng still has them: the cache is enough.
    cached = prompts.PromptLibrary(tmp_path / "cache", "/nonexistent/espeak-ng")
    assert cached.generate("help_on_way") == lib.generate("help_on_way")
    # No cache, no espeak-ng: a clear error, and get() plays the chime.
    missing = prompts.PromptLibrary(tmp_path / "empty", "/nonexistent/espeak-ng")
    with pytest.raises(PromptError, match="apt-get install espeak-ng"):
        missing.generate("connecting")
    assert missing.get("connecting") == prompts.chime()


def test_prompt_reaches_the_speaker(tmp_path, espeak):
    out = tmp_path / "speaker.wav"
    cfg = media_config.parse(small_config(tmp_path, boxes=[
        {"box_id": BOX, "video": {"source": "none"}, "audio": {"output": str(out)}}]))
    box = BoxMedia(cfg.box(BOX), keep_s=2.0)
    box.start()
    try:
        data = prompts.PromptLibrary(tmp_path / "cache", espeak).generate("help_on_way")
        done = threading.Event()
        box.mixer.play("help_on_way", data, lambda ok: done.set())
        assert done.wait(30), "the prompt did not finish playing"
    finally:
        box.stop()
    import wave

    with wave.open(str(out)) as w:
        played = array.array("h", w.readframes(w.getnframes()))
    loud = [i for i in range(0, len(played) - 960, 960) if pcm.rms_dbfs(played[i:i + 960]) > -45]
    assert loud, "nothing audible reached the speaker"
    assert (loud[-1] - loud[0]) / 48000 > 0.8 * 3.0, "about the prompt's length of speech on the speaker"


def _make_h264_file(path, seconds=3.0, fps=10):
    """An MP4 of the synthetic pattern (length-prefixed H.264 with avcC
    extradata, as cameras and NVRs store it)."""
    cfg = media_config.VideoConfig(width=320, height=240, fps=fps, keyframe_interval_s=1.0)
    t = [1000.0]
    cam = SyntheticCamera(cfg, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    cam.open()
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        vs.options = {"preset": "ultrafast", "x264-params": "keyint=10:scenecut=0:bframes=0"}
        for i in range(int(seconds * fps)):
            for _t, _d, _k, frame in cam.read():
                frame.pts = i
                frame.time_base = fractions.Fraction(1, fps)
                for p in vs.encode(frame):
                    out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    # The same packets as the gateway should buffer them: repackaged to
    # Annex B (start codes, SPS/PPS on keyframes), not re-encoded.
    from av.bitstream import BitStreamFilterContext

    with av.open(str(path)) as c:
        bsf = BitStreamFilterContext("h264_mp4toannexb", c.streams.video[0])
        return {bytes(q) for p in c.demux(video=0) if p.size for q in bsf.filter(p)}


def test_file_camera_passes_h264_through_and_snapshots_decode(tmp_path):
    path = tmp_path / "camera.mp4"
    file_packets = _make_h264_file(path)
    cfg = small_config(tmp_path, boxes=[{"box_id": BOX, "video": {"source": "file", "url": str(path)},
                                         "audio": {"source": "none"}}])
    srv = ServerThread(cfg, token=TOKEN).start()
    try:
        box = srv.service.boxes[BOX]
        wait_buffered(box, 2.0)
        buffered = {p.data for p in box.packets_since(0)}
        assert buffered and buffered <= file_packets, "packets must be the file's own, not re-encoded"
        meta = srv.run(srv.service.on_alarm(BOX, "0000002a-00000002", time.time()), timeout_s=60)
        status, _, jpeg = http(srv, "GET", meta["snapshot_url"])
        snap = tmp_path / "s.jpg"
        snap.write_bytes(jpeg)
        with av.open(str(snap)) as c:
            frame = next(c.decode(video=0))
        # The synthetic pattern in the file stamped 1000.0 s + k * 0.1 s.
        assert (read_stamp(frame) - 1000000) % 100 == 0 and 0 <= read_stamp(frame) - 1000000 < 3000
        clip_path = tmp_path / "c.mp4"
        clip_path.write_bytes(http(srv, "GET", meta["clip"]["url"])[2])
        info = probe(clip_path)
        assert [s["type"] for s in info["streams"]] == ["video"] and info["streams"][0]["count"] >= 30
    finally:
        srv.stop()


def test_unreachable_rtsp_camera_is_reported_and_alarms_still_answer(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    cfg = small_config(tmp_path, boxes=[{"box_id": 7, "video": {"source": "rtsp", "url": "rtsp://127.0.0.1:%d/cam" % port},
                                         "audio": {"source": "none"}}], snapshot_wait_s=0.5)
    srv = ServerThread(cfg, token=TOKEN).start()
    try:
        box = srv.service.boxes[7]
        deadline = time.monotonic() + 20
        while box.status["camera"] != "offline" and time.monotonic() < deadline:
            time.sleep(0.1)
        health = srv.service.health(7)
        assert health["camera"] == "offline", health
        assert "box 7" in health["errors"]["camera"] and "rtsp" in health["errors"]["camera"]
        t0 = time.monotonic()
        meta = srv.run(srv.service.on_alarm(7, "00000007-00000001", time.time()), timeout_s=60)
        assert meta == {"snapshot_url": None, "clip": None}
        assert time.monotonic() - t0 < 5.0, "no camera: the alarm must not wait for a clip that cannot come"
        status, _, body = http(srv, "GET", "/api/v1/media/00000007-00000001/snapshot.jpg")
        assert status == 404
    finally:
        srv.stop()


def test_file_mic_is_heard_and_a_missing_alsa_device_is_reported(tmp_path):
    from media_helpers import write_tone_wav

    wav = write_tone_wav(tmp_path / "street.wav", 550.0, seconds=1.0, dbfs=-10)
    cfg = media_config.parse(small_config(tmp_path, boxes=[
        {"box_id": BOX, "video": {"source": "none"}, "audio": {"source": "file", "input": str(wav)}},
        {"box_id": 9, "video": {"source": "none"}, "audio": {"source": "alsa", "input": "hw:97,0"}}]))
    file_box = BoxMedia(cfg.box(BOX), keep_s=2.0)
    alsa_box = BoxMedia(cfg.box(9), keep_s=2.0)
    got = []
    ready = threading.Event()

    def listen(chunk):
        got.append(chunk)
        if len(got) >= 75:  # 1.5 s: the 1 s file has looped
            ready.set()

    file_box.add_audio_listener(listen, 0)
    file_box.start()
    alsa_box.start()
    try:
        assert ready.wait(30), "the file mic delivered %d chunks" % len(got)
        samples = array.array("h", b"".join(c.pcm for c in got[-50:]))
        assert pcm.dominant_hz(samples, 48000, 300, 1500, 10)[0] == pytest.approx(550, abs=10)
        deadline = time.monotonic() + 20
        while alsa_box.status["audio"] != "offline" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alsa_box.status["audio"] == "offline"
        assert "box 9" in alsa_box.errors["audio"] and "ALSA" in alsa_box.errors["audio"]
    finally:
        file_box.stop()
        alsa_box.stop()


def test_gateway_without_cameras_leaves_no_media_folder(tmp_path):
    import asyncio

    from callbox_gateway.media.errors import MediaNotFound
    from callbox_gateway.media.service import MediaService

    service = MediaService(media_config.parse({"media_dir": str(tmp_path / "m")}), hooks={})

    async def go():
        await service.start()
        try:
            with pytest.raises(MediaNotFound, match="media.boxes"):
                await service.on_alarm(5, "00000005-00000001", time.time())
            with pytest.raises(MediaNotFound):
                service.media_file("00000005-00000001", "clip")
        finally:
            await service.stop()

    asyncio.run(go())
    assert not (tmp_path / "m").exists()
