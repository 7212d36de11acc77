"""Constants and helpers shared by the media tests (imported by conftest and
the test modules: pytest puts this folder on sys.path)."""

import array
import wave

from callbox_gateway.media import pcm

TOKEN = "test-token-3f9c"
BOX = 42
BROWSER_TONE_HZ = 440.0
BOX_TONE_HZ = 700.0  # SyntheticAcoustics' default mic tone

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def small_config(tmp_path, **over):
    cfg = {
        "media_dir": str(tmp_path / "media"),
        "cache_dir": str(tmp_path / "prompt-cache"),
        "pre_s": 2.0, "post_s": 2.0,
        "selftest_interval_s": 0.0,
        "defaults": {"video": {"width": 320, "height": 240, "fps": 10, "keyframe_interval_s": 1.0}},
        "boxes": [{"box_id": BOX}],
    }
    cfg.update(over)
    return cfg


def pcm_of(data):
    return array.array("h", data)


def write_tone_wav(path, hz, seconds=5.0, dbfs=-6.0):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tone(hz, int(48000 * seconds), 48000, dbfs).tobytes())
    return path
