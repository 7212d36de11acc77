"""Fixtures for the media tests: small synthetic boxes (320x240, 10 fps, to
spare the shared CPU), a media server in a background thread with recording
hooks, and a headless Chromium with fake media devices."""

import array
import pathlib
import shutil
import wave

import pytest

from callbox_gateway.media import pcm
from callbox_gateway.media.standalone import ServerThread

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


@pytest.fixture
def server(tmp_path):
    srv = ServerThread(small_config(tmp_path), token=TOKEN).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (scripts/setup does it)")
    from playwright.sync_api import sync_playwright

    wav = write_tone_wav(tmp_path_factory.mktemp("fake-mic") / "tone440.wav", BROWSER_TONE_HZ)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS + ["--use-file-for-fake-audio-capture=%s" % wav])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def espeak():
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is missing: apt-get install -y espeak-ng (scripts/setup does it)")
    return exe
