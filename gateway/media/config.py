"""[media] configuration: what each box's camera, mic and speaker are, how
long clips are, how long they are kept.

The gateway passes its [media] table unchanged to `setup()`. Every key is
optional; unknown keys are an error (a typo must not silently fall back to a
default). docs/media.md lists every key.

    [media]
    media_dir = "/var/lib/callbox/media"   # clips, snapshots, call recordings, index.json
    pre_s = 10.0          post_s = 20.0     # clip window around the press
    retention_days = 30   disk_cap_mb = 2048
    selftest_interval_s = 86400             # 0 = only on demand
    [media.defaults.video]  source = "synthetic", width = 640, height = 480, fps = 15
    [[media.boxes]]
    box_id = 42
    video = {source = "rtsp", url = "rtsp://10.0.0.42/stream1"}
    audio = {source = "alsa", input = "hw:1,0", output = "hw:1,0"}
"""

import dataclasses
import pathlib

from .errors import MediaConfigError

# Sample format everywhere inside the gateway: 48 kHz mono signed 16-bit, in
# 20 ms frames. 48 kHz is WebRTC Opus's native rate, so nothing is resampled
# between the box mic and the operator's browser; 20 ms is Opus's frame.
SAMPLE_RATE = 48000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_BYTES = FRAME_SAMPLES * 2

VIDEO_SOURCES = ("synthetic", "file", "rtsp", "v4l2", "none")
AUDIO_SOURCES = ("synthetic", "file", "alsa", "none")

# A pre-event buffer larger than this is a camera sending far more than it
# should (a 640x480 H.264 stream at 1 Mbit/s needs 1.3 MB for 10 s): drop its
# oldest GOPs instead of letting one box eat the gateway's memory.
MAX_RING_BYTES = 64 * 1024 * 1024
# Clips longer than this are a configuration mistake (and a disk hazard).
MAX_CLIP_S = 300.0
# Each call costs about 30 % of one core (VP8 640x480 at 15 fps, brief §7).
MAX_CALLS_LIMIT = 16


@dataclasses.dataclass
class VideoConfig:
    source: str = "synthetic"
    url: str = ""  # rtsp:// URL, file path, or V4L2 device (/dev/video0)
    width: int = 640
    height: int = 480
    fps: int = 15
    # Keyframe interval of the gateway's own encoder (synthetic, V4L2, and
    # files that are not H.264). The pre-event buffer is cut on keyframes, so
    # this bounds how much extra pre-roll a clip gets and how long a snapshot
    # decode takes. For RTSP cameras set the camera's I-frame interval to at
    # most this; a longer one is logged as a warning.
    keyframe_interval_s: float = 1.0
    loop: bool = True  # file source: start again at the end
    bitrate_kbps: int = 800


@dataclasses.dataclass
class AudioConfig:
    source: str = "synthetic"
    input: str = ""  # ALSA device ("hw:1,0", "default") or file path
    output: str = ""  # ALSA device, or a WAV path to write what the speaker plays ("" = discard)
    # Synthetic acoustics: a steady tone stands in for the citizen's voice,
    # and a fraction of the speaker comes back into the mic (the loopback the
    # self-test listens for). loopback_gain 0 simulates a dead speaker,
    # mic_dead True a dead mic.
    mic_tone_hz: float = 700.0
    mic_level_dbfs: float = -18.0
    noise_dbfs: float = -60.0
    loopback_gain: float = 0.25
    mic_dead: bool = False


@dataclasses.dataclass
class BoxMediaConfig:
    box_id: int
    video: VideoConfig
    audio: AudioConfig


@dataclasses.dataclass
class MediaConfig:
    media_dir: str = "callbox-media"
    cache_dir: str = ""  # voice prompt WAVs; default <media_dir>/prompt-cache
    pre_s: float = 10.0
    post_s: float = 20.0
    # The snapshot shows the press moment; if no frame at or after it arrives
    # within this time, the newest frame before it is used.
    snapshot_wait_s: float = 1.0
    retention_days: float = 30.0
    disk_cap_mb: float = 2048.0
    selftest_interval_s: float = 86400.0
    selftest_tone_hz: float = 1000.0
    max_calls: int = 4
    # A call that does not reach "connected" in this time is ended (the
    # browser went away during ICE).
    connect_timeout_s: float = 30.0
    espeak: str = "espeak-ng"
    prompts: bool = True  # play voice prompts at call states
    defaults_video: VideoConfig = dataclasses.field(default_factory=VideoConfig)
    defaults_audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    boxes: dict = dataclasses.field(default_factory=dict)  # box_id -> BoxMediaConfig

    @property
    def media_path(self):
        return pathlib.Path(self.media_dir)

    @property
    def cache_path(self):
        return pathlib.Path(self.cache_dir) if self.cache_dir else self.media_path / "prompt-cache"

    def box(self, box_id):
        return self.boxes.get(int(box_id))


def _fill(cls, table, where, base=None):
    if not isinstance(table, dict):
        raise MediaConfigError("%s must be a table, got %r" % (where, table))
    obj = dataclasses.replace(base) if base is not None else cls()
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        if key not in names:
            raise MediaConfigError("unknown key %s.%s; valid: %s" % (where, key, ", ".join(sorted(names))))
        want = type(getattr(cls(), key)) if key != "box_id" else int
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise MediaConfigError("%s.%s must be %s, got %r" % (where, key, want.__name__, value))
        setattr(obj, key, value)
    return obj


def _check_video(v, where):
    if v.source not in VIDEO_SOURCES:
        raise MediaConfigError("%s.source must be one of %s, got %r" % (where, ", ".join(VIDEO_SOURCES), v.source))
    if v.source in ("file", "rtsp", "v4l2") and not v.url:
        raise MediaConfigError("%s.url is needed for source %r (a path, rtsp:// URL or /dev/videoN)" % (where, v.source))
    if not (16 <= v.width <= 3840 and 16 <= v.height <= 2160) or v.width % 2 or v.height % 2:
        raise MediaConfigError("%s: width x height must be even and between 16x16 and 3840x2160, got %dx%d" % (where, v.width, v.height))
    if not 1 <= v.fps <= 60:
        raise MediaConfigError("%s.fps must be 1..60, got %r" % (where, v.fps))
    if not 0.2 <= v.keyframe_interval_s <= 10.0:
        raise MediaConfigError("%s.keyframe_interval_s must be 0.2..10 s, got %r" % (where, v.keyframe_interval_s))


def _check_audio(a, where):
    if a.source not in AUDIO_SOURCES:
        raise MediaConfigError("%s.source must be one of %s, got %r" % (where, ", ".join(AUDIO_SOURCES), a.source))
    if a.source in ("file", "alsa") and not a.input:
        raise MediaConfigError("%s.input is needed for source %r" % (where, a.source))
    if not 0.0 <= a.loopback_gain <= 1.0:
        raise MediaConfigError("%s.loopback_gain must be 0..1, got %r" % (where, a.loopback_gain))


def parse(table=None):
    """Build a MediaConfig from the [media] table (a dict; None = defaults).
    Raises MediaConfigError naming the key and the expected form."""
    table = dict(table or {})
    cfg = MediaConfig()
    defaults = table.pop("defaults", {})
    boxes = table.pop("boxes", [])
    if not isinstance(defaults, dict):
        raise MediaConfigError("media.defaults must be a table with video and audio")
    for key in defaults:
        if key not in ("video", "audio"):
            raise MediaConfigError("unknown key media.defaults.%s; valid: video, audio" % key)
    cfg.defaults_video = _fill(VideoConfig, defaults.get("video", {}), "media.defaults.video")
    cfg.defaults_audio = _fill(AudioConfig, defaults.get("audio", {}), "media.defaults.audio")
    _check_video(cfg.defaults_video, "media.defaults.video")
    _check_audio(cfg.defaults_audio, "media.defaults.audio")
    simple = {f.name for f in dataclasses.fields(MediaConfig)} - {"defaults_video", "defaults_audio", "boxes"}
    for key in table:
        if key not in simple:
            raise MediaConfigError("unknown key media.%s; valid: %s, defaults, boxes" % (key, ", ".join(sorted(simple))))
    cfg = _fill(MediaConfig, table, "media", base=cfg)
    if not 0 <= cfg.pre_s <= MAX_CLIP_S or not 0 < cfg.post_s <= MAX_CLIP_S:
        raise MediaConfigError("media.pre_s must be 0..%d s and media.post_s 0..%d s" % (MAX_CLIP_S, MAX_CLIP_S))
    if not 1 <= cfg.max_calls <= MAX_CALLS_LIMIT:
        raise MediaConfigError("media.max_calls must be 1..%d (each call takes about a third of a core)" % MAX_CALLS_LIMIT)
    if cfg.retention_days <= 0 or cfg.disk_cap_mb <= 0:
        raise MediaConfigError("media.retention_days and media.disk_cap_mb must be positive")
    if isinstance(boxes, dict):  # {"42": {...}} form
        boxes = [dict(v, box_id=int(k)) for k, v in boxes.items()]
    if not isinstance(boxes, list):
        raise MediaConfigError("media.boxes must be a list of tables ([[media.boxes]] with box_id)")
    cfg.boxes = {}
    for i, entry in enumerate(boxes):
        where = "media.boxes[%d]" % i
        if not isinstance(entry, dict) or not isinstance(entry.get("box_id"), int):
            raise MediaConfigError("%s needs an integer box_id" % where)
        for key in entry:
            if key not in ("box_id", "video", "audio"):
                raise MediaConfigError("unknown key %s.%s; valid: box_id, video, audio" % (where, key))
        box_id = entry["box_id"]
        if box_id in cfg.boxes:
            raise MediaConfigError("%s: box %d is listed twice" % (where, box_id))
        video = _fill(VideoConfig, entry.get("video", {}), where + ".video", base=cfg.defaults_video)
        audio = _fill(AudioConfig, entry.get("audio", {}), where + ".audio", base=cfg.defaults_audio)
        _check_video(video, where + ".video")
        _check_audio(audio, where + ".audio")
        cfg.boxes[box_id] = BoxMediaConfig(box_id, video, audio)
    return cfg
