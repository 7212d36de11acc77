"""Speaker and mic self-test by tone loopback (as Zenitel and 2N help points
do): listen to the street for a moment, play a tone through the box speaker,
measure the tone on the box mic with a Goertzel filter.

`analyse()` is the pure verdict; `run()` is the shell that plays and
listens through a BoxMedia (blocking, run it in a worker thread).

Verdicts:
    mic "fail"      the mic delivers digital silence (below DEAD_MIC_DBFS):
                    unplugged, broken preamp. The speaker is then "unknown".
    speaker "fail"  the mic hears the street but not the tone: speaker dead,
                    disconnected, or covered.
    both "pass"     the tone came back at least MIN_LEVEL_DBFS and at least
                    MIN_RISE_DB above what the mic heard at that frequency
                    before the tone (so a loud street does not pass a dead
                    speaker by itself).
"""

import array
import datetime
import threading
import time

from . import pcm
from .config import SAMPLE_RATE

TONE_HZ = 1000.0
TONE_MS = 600
TONE_DBFS = -12.0
AMBIENT_MS = 300
# Skip this much of the tone's start on the mic: speaker + mic buffering.
LATENCY_MARGIN_S = 0.15
MIN_LEVEL_DBFS = -45.0
MIN_RISE_DB = 10.0
DEAD_MIC_DBFS = -90.0


def analyse(ambient, during, rate=SAMPLE_RATE, tone_hz=TONE_HZ):
    """ambient, during: array('h') from the mic before and during the tone."""
    if len(during) < rate // 50 or len(ambient) < rate // 50:
        return {"passed": False, "items": {"speaker": "unknown", "mic": "fail"},
                "reason": "the mic delivered too little audio (%d and %d samples)" % (len(ambient), len(during))}
    level = pcm.goertzel_dbfs(during, rate, tone_hz)
    before = pcm.goertzel_dbfs(ambient, rate, tone_hz)
    mic_rms = max(pcm.rms_dbfs(ambient), pcm.rms_dbfs(during))
    out = {"tone_hz": tone_hz, "level_dbfs": round(level, 1), "ambient_dbfs": round(before, 1),
           "mic_rms_dbfs": round(mic_rms, 1)}
    if mic_rms < DEAD_MIC_DBFS:
        out.update(passed=False, items={"speaker": "unknown", "mic": "fail"},
                   reason="mic is silent (%.0f dBFS): check the mic cable and preamp" % mic_rms)
    elif level >= MIN_LEVEL_DBFS and level - before >= MIN_RISE_DB:
        out.update(passed=True, items={"speaker": "pass", "mic": "pass"})
    else:
        out.update(passed=False, items={"speaker": "fail", "mic": "pass"},
                   reason="tone not heard back (%.0f dBFS, %.0f dB above the street): check the speaker" % (level, level - before))
    return out


def run(box, tone_hz=TONE_HZ, prompt_pcm=None, timeout_s=30.0):
    """Blocking: play (optionally a prompt, then) the tone on box's speaker
    and judge what its mic heard. Returns the result dict with "time"."""
    chunks = []
    box.add_audio_listener(chunks.append, box.clock() + 3600)  # live only
    try:
        if prompt_pcm:
            done = threading.Event()
            box.mixer.play("testing", prompt_pcm, lambda ok: done.set())
            done.wait(timeout_s)
            time.sleep(0.2)  # the prompt's echo dies away
        t_amb = box.clock()
        time.sleep(AMBIENT_MS / 1000.0)
        t_tone = box.clock()
        played = threading.Event()
        box.mixer.play("selftest-tone", pcm.tone(tone_hz, SAMPLE_RATE * TONE_MS // 1000, SAMPLE_RATE, TONE_DBFS).tobytes(),
                       lambda ok: played.set())
        played.wait(timeout_s)
        t_end = box.clock()
        time.sleep(LATENCY_MARGIN_S)
    finally:
        box.remove_audio_listener(chunks.append)
    ambient = array.array("h")
    during = array.array("h")
    for c in list(chunks):
        if t_amb <= c.t < t_tone:
            ambient.frombytes(c.pcm)
        elif t_tone + LATENCY_MARGIN_S <= c.t <= t_end + LATENCY_MARGIN_S / 2:
            during.frombytes(c.pcm)
    result = analyse(ambient, during, SAMPLE_RATE, tone_hz)
    result["time"] = datetime.datetime.fromtimestamp(t_tone, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return result
