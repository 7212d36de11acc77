"""The pure cores of the media package: tone maths, the pre-event ring, the
call state machine, configuration, the clip store and the self-test verdict.
No threads, no PyAV encoding, no clock: fast."""

import json

import pytest

from callbox_gateway.media import callstate, config, pcm, selftest
from callbox_gateway.media.errors import MediaConfigError, MediaError, MediaNotFound
from callbox_gateway.media.mixer import MAX_CALL_BACKLOG_MS, SpeakerMixer
from callbox_gateway.media.ring import AudioChunk, AudioRing, PacketRing, VideoPacket
from callbox_gateway.media.service import event_number, parse_press_time
from callbox_gateway.media.store import MediaStore

RATE = 48000


# ------------------------------------------------------------------ pcm


@pytest.mark.parametrize("hz,dbfs", [(440, -6.0), (1000, -12.0), (700, -30.0)])
def test_goertzel_reads_the_level_of_a_tone(hz, dbfs):
    t = pcm.tone(hz, RATE // 2, RATE, dbfs)
    assert pcm.goertzel_dbfs(t, RATE, hz) == pytest.approx(dbfs, abs=0.2)
    # 100 Hz away the Hann window keeps the bin far below the tone.
    assert pcm.goertzel_dbfs(t, RATE, hz + 100) < dbfs - 40


def test_goertzel_separates_two_tones_and_dominant_finds_the_louder():
    mixed = pcm.mix([pcm.tone(440, 9600, RATE, -6), pcm.tone(1000, 9600, RATE, -20)])
    assert pcm.goertzel_dbfs(mixed, RATE, 1000) == pytest.approx(-20, abs=0.5)
    hz, level = pcm.dominant_hz(mixed, RATE, 200, 2000, 10)
    assert hz == 440 and level == pytest.approx(-6, abs=0.5)


def test_mix_clips_instead_of_wrapping():
    loud = pcm.tone(500, 960, RATE, 0.0)
    out = pcm.mix([loud, loud])
    assert max(out) == 32767 and min(out) == -32768


def test_mix_refuses_chunks_of_different_length():
    with pytest.raises(ValueError, match="differ in length"):
        pcm.mix([pcm.silence(960), pcm.silence(480)])


def test_silence_reads_as_silence():
    assert pcm.rms_dbfs(pcm.silence(960)) == pcm.SILENCE_DBFS
    assert pcm.goertzel_dbfs(pcm.silence(960), RATE, 1000) == pcm.SILENCE_DBFS


# ------------------------------------------------------------------ ring


def feed(ring, seconds, fps=10, gop=10, t0=1000.0, size=100):
    for i in range(int(seconds * fps)):
        ring.push(VideoPacket(t0 + i / fps, bytes(size), i % gop == 0))


def test_ring_keeps_at_least_keep_s_starting_on_a_keyframe():
    ring = PacketRing(keep_s=3.0, max_bytes=10 ** 9)
    feed(ring, 20.0)
    newest = ring.newest_t()
    packets = ring.since(0)
    assert packets[0].key, "the buffer must start on a keyframe"
    span = newest - packets[0].t
    assert 3.0 <= span < 3.0 + 1.0 + 1e-9, "at least keep_s, at most one GOP more; got %.2f" % span
    assert ring.bytes == 100 * len(ring)


def test_ring_since_starts_at_the_keyframe_before_the_moment():
    ring = PacketRing(keep_s=5.0, max_bytes=10 ** 9)
    feed(ring, 10.0)
    got = ring.since(1007.55)
    assert got[0].key and got[0].t == pytest.approx(1007.0)
    assert got[-1].t == ring.newest_t()
    # Older than the buffer: everything there is, from its first keyframe.
    assert ring.since(0)[0].t == ring.oldest_t()


def test_ring_drops_packets_before_the_first_keyframe():
    ring = PacketRing(keep_s=5.0, max_bytes=10 ** 9)
    ring.push(VideoPacket(1.0, b"x", False))
    ring.push(VideoPacket(1.1, b"y", False))
    ring.push(VideoPacket(1.2, b"k", True))
    assert len(ring) == 1 and ring.dropped_before_key == 2


def test_ring_byte_cap_drops_whole_gops_and_counts():
    ring = PacketRing(keep_s=60.0, max_bytes=2500)
    feed(ring, 10.0, size=100)  # 100 packets of 100 B, GOP of 10 packets = 1 KB
    assert ring.bytes <= 2500
    assert ring.since(0)[0].key
    assert ring.dropped_over_cap > 0


def test_ring_refuses_time_going_backwards():
    ring = PacketRing(keep_s=5.0, max_bytes=10 ** 9)
    ring.push(VideoPacket(10.0, b"k", True))
    with pytest.raises(ValueError, match="backwards"):
        ring.push(VideoPacket(9.0, b"p", False))
    assert len(ring) == 1, "the bad packet must not be stored"


def test_ring_measures_the_longest_gop():
    ring = PacketRing(keep_s=30.0, max_bytes=10 ** 9)
    feed(ring, 12.0, fps=10, gop=40)
    assert ring.max_gop_s == pytest.approx(4.0)


def test_audio_ring_keeps_keep_s():
    ring = AudioRing(2.0)
    for i in range(500):
        ring.push(AudioChunk(i * 0.02, bytes(1920)))
    chunks = ring.since(0)
    assert chunks[-1].t - chunks[0].t == pytest.approx(2.0, abs=0.03)


# ------------------------------------------------------------------ call state


def test_call_goes_ringing_connected_ended():
    m = callstate.CallStateMachine("c1", 42, 7, now=100.0, connect_timeout_s=30.0)
    assert m.initial == [("ringing", "connecting")]
    assert m.on_connected(100.5) == [("connected", "none")]
    assert m.on_end(160.5, "console") == [("ended", "none")]
    assert m.duration_s(999) == pytest.approx(60.0)
    assert m.ended_by == "console"


def test_call_dispatched_tells_help_is_on_the_way():
    m = callstate.CallStateMachine("c1", 42, 7, 0.0, 30.0, announce=False)
    assert m.initial == [("ringing", "none")]
    m.on_connected(1.0)
    assert m.on_end(5.0, "console", "dispatched") == [("dispatched", "help_on_way")]


def test_call_events_after_the_end_send_nothing():
    m = callstate.CallStateMachine("c1", 42, 7, 0.0, 30.0)
    m.on_connected(1.0)
    m.on_end(2.0, "box")
    assert m.on_end(2.1, "browser") == []
    assert m.on_connected(2.2) == []
    assert m.ended_by == "box"


def test_call_not_connected_in_time_is_ended_by_timeout():
    m = callstate.CallStateMachine("c1", 42, 7, 0.0, connect_timeout_s=30.0)
    assert m.on_tick(29.9) == []
    assert m.on_tick(30.0) == [("ended", "none")]
    assert m.ended_by == "timeout" and m.duration_s(40) == 0.0


def test_call_rejects_unknown_enders_and_outcomes():
    m = callstate.CallStateMachine("c1", 42, 7, 0.0, 30.0)
    with pytest.raises(ValueError):
        m.on_end(1.0, "martians")
    with pytest.raises(ValueError):
        m.on_end(1.0, "console", "exploded")
    assert m.state == "ringing", "a refused event changes nothing"


# ------------------------------------------------------------------ config


def test_config_defaults_and_per_box_overrides():
    cfg = config.parse({"defaults": {"video": {"fps": 10}},
                        "boxes": [{"box_id": 42}, {"box_id": 7, "video": {"source": "rtsp", "url": "rtsp://10.0.0.7/s"}}]})
    assert cfg.box(42).video.source == "synthetic" and cfg.box(42).video.fps == 10
    assert cfg.box(7).video.source == "rtsp" and cfg.box(7).video.fps == 10
    assert cfg.pre_s == 10.0 and cfg.post_s == 20.0
    assert cfg.box(99) is None


@pytest.mark.parametrize("table,match", [
    ({"pre_seconds": 3}, "unknown key media.pre_seconds"),
    ({"boxes": [{"box_id": 1, "video": {"source": "webcam"}}]}, "source must be one of"),
    ({"boxes": [{"box_id": 1, "video": {"source": "rtsp"}}]}, "url is needed"),
    ({"boxes": [{"box_id": 1}, {"box_id": 1}]}, "listed twice"),
    ({"boxes": [{"video": {}}]}, "integer box_id"),
    ({"boxes": [{"box_id": 1, "video": {"width": 641}}]}, "even"),
    ({"post_s": 9999}, "post_s"),
    ({"max_calls": 0}, "max_calls"),
    ({"pre_s": "ten"}, "must be float"),
    ({"boxes": [{"box_id": 1, "audio": {"loopback_gain": 2.0}}]}, "loopback_gain"),
])
def test_config_errors_name_the_key(table, match):
    with pytest.raises(MediaConfigError, match=match):
        config.parse(table)


# ------------------------------------------------------------------ store


def _write(store, box_id, media_id, kind, data, now, event_id=None):
    part = store.part_path(box_id, media_id, kind)
    part.write_bytes(data)
    return store.commit(part, box_id, media_id, kind, now, event_id=event_id, duration_s=1.0)


def test_store_commits_hashes_and_survives_a_restart(tmp_path):
    s = MediaStore(tmp_path, max_age_s=3600, cap_bytes=10 ** 6)
    e = _write(s, 42, "0000002a-00000001", "clip", b"A" * 1000, now=100.0, event_id="0000002a-00000001")
    import hashlib
    assert e["sha256"] == hashlib.sha256(b"A" * 1000).hexdigest()
    assert s.path(e).read_bytes() == b"A" * 1000
    assert not list(tmp_path.rglob("*.part"))
    s2 = MediaStore(tmp_path, max_age_s=3600, cap_bytes=10 ** 6)
    assert s2.get("0000002a-00000001", "clip") == e


def test_store_removes_unfinished_and_unindexed_files_at_start(tmp_path):
    s = MediaStore(tmp_path, 3600, 10 ** 6)
    kept = _write(s, 42, "keep", "clip", b"K" * 10, 100.0)
    (tmp_path / "42" / "crash.mp4.part").write_bytes(b"half")
    (tmp_path / "42" / "orphan.mp4").write_bytes(b"never indexed")
    s2 = MediaStore(tmp_path, 3600, 10 ** 6)
    assert not (tmp_path / "42" / "crash.mp4.part").exists()
    assert not (tmp_path / "42" / "orphan.mp4").exists()
    assert s2.path(s2.get("keep", "clip")).read_bytes() == b"K" * 10, "the indexed clip must survive"
    assert kept["sha256"] == s2.get("keep", "clip")["sha256"]


def test_store_retention_by_age_then_by_cap(tmp_path):
    s = MediaStore(tmp_path, max_age_s=100, cap_bytes=2500)
    _write(s, 1, "old", "clip", b"o" * 1000, now=0.0)
    _write(s, 1, "mid", "clip", b"m" * 1000, now=50.0)
    _write(s, 1, "new", "snapshot", b"n" * 1000, now=120.0)  # "old" is now 120 s old: gone
    assert s.find("old", "clip") is None and s.find("mid", "clip") is not None
    _write(s, 1, "newer", "clip", b"x" * 1000, now=130.0)  # 3 KB > cap: the oldest ("mid") goes
    assert s.find("mid", "clip") is None
    assert [e["media_id"] for e in s.entries()] == ["new", "newer"]
    _write(s, 1, "newest", "clip", b"y" * 1000, now=131.0)  # again: "new" goes
    assert [e["media_id"] for e in s.entries()] == ["newer", "newest"]
    assert s.total_bytes() <= 2500
    assert not (tmp_path / "1" / "old.mp4").exists() and not (tmp_path / "1" / "mid.mp4").exists()
    assert s.deleted == 3


def test_store_never_deletes_the_file_just_written(tmp_path):
    s = MediaStore(tmp_path, max_age_s=100, cap_bytes=10)
    e = _write(s, 1, "big", "clip", b"b" * 1000, now=0.0)
    assert s.path(e).exists(), "a clip larger than the cap is still kept until the next one"


def test_store_keeps_a_damaged_index_aside_and_goes_on(tmp_path):
    s = MediaStore(tmp_path, 3600, 10 ** 6)
    _write(s, 1, "a", "clip", b"a", 1.0)
    (tmp_path / "index.json").write_text("{not json")
    s2 = MediaStore(tmp_path, 3600, 10 ** 6)
    assert (tmp_path / "index.json.damaged").read_text() == "{not json"
    assert s2.entries() == []
    _write(s2, 1, "b", "clip", b"b", 2.0)
    assert json.loads((tmp_path / "index.json").read_text())["items"][0]["media_id"] == "b"


def test_store_refuses_ids_that_are_not_file_names(tmp_path):
    s = MediaStore(tmp_path, 3600, 10 ** 6)
    for bad in ("../etc/passwd", "a/b", "", ".hidden"):
        with pytest.raises(MediaError):
            s.part_path(1, bad, "clip")
    with pytest.raises(MediaNotFound, match="no clip"):
        s.get("missing", "clip")


# ------------------------------------------------------------------ self-test verdict


def _ambient():
    return pcm.mix([pcm.tone(700, 9600, RATE, -18), pcm.tone(1500, 9600, RATE, -50)])


def test_selftest_passes_when_the_tone_comes_back():
    during = pcm.mix([pcm.tone(700, 19200, RATE, -18), pcm.tone(1000, 19200, RATE, -24)])
    r = selftest.analyse(_ambient(), during, RATE, 1000)
    assert r["passed"] and r["items"] == {"speaker": "pass", "mic": "pass"}
    assert r["level_dbfs"] == pytest.approx(-24, abs=1)


def test_selftest_fails_the_speaker_when_only_the_street_is_heard():
    r = selftest.analyse(_ambient(), pcm.tone(700, 19200, RATE, -18), RATE, 1000)
    assert not r["passed"] and r["items"]["speaker"] == "fail" and r["items"]["mic"] == "pass"
    assert "speaker" in r["reason"]


def test_selftest_loud_street_at_the_tone_frequency_does_not_pass():
    street = pcm.tone(1000, 19200, RATE, -20)
    r = selftest.analyse(street[:9600], street, RATE, 1000)
    assert not r["passed"] and r["items"]["speaker"] == "fail"


def test_selftest_fails_the_mic_on_digital_silence():
    r = selftest.analyse(pcm.silence(9600), pcm.silence(19200), RATE, 1000)
    assert r["items"] == {"speaker": "unknown", "mic": "fail"} and not r["passed"]


# ------------------------------------------------------------------ mixer and small parsers


def test_mixer_plays_queued_sounds_in_order_and_reports_done():
    m = SpeakerMixer()
    done = []
    m.play("a", b"\x01\x00" * 960 * 2, lambda ok: done.append(("a", ok)))
    m.play("b", b"\x02\x00" * 100, lambda ok: done.append(("b", ok)))
    chunks = [m.next_chunk() for _ in range(4)]
    assert chunks[0][:2] == b"\x01\x00" and chunks[2][:2] == b"\x02\x00"
    assert chunks[2][200:] == bytes(len(chunks[2]) - 200), "a short sound is padded with silence"
    assert chunks[3] == bytes(1920)
    assert done == [("a", True), ("b", True)] and m.played == ["a", "b"]


def test_mixer_call_audio_backlog_is_bounded():
    m = SpeakerMixer()
    for i in range(50):
        m.push_call_audio(bytes([i % 256, 0]) * 960)
    kept = MAX_CALL_BACKLOG_MS // 20
    assert m.call_dropped == 50 - kept
    assert m.next_chunk()[:1] == bytes([50 - kept]), "the oldest audio is dropped, the newest kept"


def test_press_time_forms():
    assert parse_press_time("2026-11-28T19:20:01.123Z") == pytest.approx(1795893601.123)
    assert parse_press_time(12.5) == 12.5
    assert parse_press_time(None) is None
    with pytest.raises(MediaError, match="ISO 8601"):
        parse_press_time("yesterday")
    assert event_number("0000002a-00000007") == 7
    assert event_number("0000002a-g17") == 0
