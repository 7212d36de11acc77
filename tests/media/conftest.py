"""Fixtures for the media tests: small synthetic boxes (320x240, 10 fps, to
spare the shared CPU), a media server in a background thread with recording
hooks, and a headless Chromium with fake media devices."""

import pathlib
import shutil

import pytest

from callbox_gateway.media.standalone import ServerThread
from media_helpers import BROWSER_TONE_HZ, CHROMIUM, CHROMIUM_ARGS, TOKEN, small_config, write_tone_wav


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
