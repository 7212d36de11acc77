"""Vectors for the box's pure cores, shared by the CPython tests (with
hypothesis on top) and the MicroPython run of core_runner.py, plus the
property checks both interpreters' results must pass."""

import random
import sys

from callbox_tools.mpy import FIRMWARE_DIR

HERE = __file__.rsplit("/", 1)[0]
for p in (str(FIRMWARE_DIR), HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import core_runner  # noqa: E402  (flat, as on the box)
import debounce  # noqa: E402

PRE_MS = 100  # idle time before each trace's contact


def spike_trace(rng):
    segs = [[0, PRE_MS]]
    for _ in range(rng.randint(1, 12)):
        segs.append([1, rng.randint(1, 15)])
        segs.append([0, rng.randint(20, 200)])
    return segs


def chatter_trace(rng, on_ms=None):
    on = on_ms or rng.randint(1, 15)
    segs = [[0, PRE_MS]]
    for _ in range(rng.randint(10, 100)):
        segs += [[1, on], [0, 20 - on]]
    return segs


def bouncy_press(rng, bounce_ms=10, hold_ms=None):
    segs = [[0, PRE_MS]]
    left = bounce_ms
    level = 1
    while left > 0:
        d = min(left, rng.randint(1, 4))
        segs.append([level, d])
        left -= d
        level ^= 1
    segs.append([1, hold_ms or rng.randint(50, 400)])
    segs.append([0, 300])
    return segs


def clean_press(rng):
    return [[0, PRE_MS], [1, rng.randint(50, 400)], [0, 300]]


def make(seed=1234):
    rng = random.Random(seed)
    deb = []
    for i in range(40):
        deb.append({"kind": "spike", "segments": spike_trace(rng), "phase": rng.randint(0, 4)})
    for i in range(15):
        deb.append({"kind": "chatter", "segments": chatter_trace(rng, on_ms=i + 1), "phase": rng.randint(0, 4)})
    for i in range(40):
        deb.append({"kind": "bouncy", "segments": bouncy_press(rng), "phase": rng.randint(0, 4)})
    for i in range(20):
        deb.append({"kind": "clean", "segments": clean_press(rng), "phase": rng.randint(0, 4)})
    deb.append({"kind": "stuck", "segments": [[0, PRE_MS], [1, 3000], [0, 300]], "phase": 0, "stuck_ms": 1000})
    deb.append({"kind": "held", "segments": [[0, PRE_MS], [1, 3000], [0, 300]], "phase": 2, "stuck_ms": 0})

    ob = []
    base = [["add", 1, 1, 1000], ["add", 2, 1, 1001], ["ctr", 5], ["done", 10], ["add", 3, 3, 1002], ["done", 11], ["add", 1, 0, 1003]]
    # Cut the log at every byte: the records before the cut survive, intact.
    for cut in range(0, 7 * 19 + 8):
        ob.append({"id": len(ob), "ops": base, "cut": cut, "event_start": 10})
    ob.append({"id": len(ob), "ops": base, "cut": 200, "garbage": [0xA5, 0x41, 12, 1, 2, 3], "event_start": 10})
    ob.append({"id": len(ob), "ops": base, "cut": 57, "garbage": [0] * 30, "event_start": 10})
    ob.append({"id": len(ob), "ops": base + [["reload"], ["add", 2, 0, 1004], ["done", 12], ["reload"]], "cut": -1, "event_start": 10})
    # Compaction: many add/done pairs keep the file small; ids never reused.
    churn = []
    for i in range(60):
        churn += [["add", 1 + i % 3, 1, 2000 + i], ["done", 1 + i]]
    ob.append({"id": len(ob), "ops": churn + [["reload"], ["add", 2, 1, 9999]], "cut": -1, "compact_bytes": 300})
    # Full: alarms of a kind already pending merge; a new kind is admitted.
    fill = [["add", 1, 1, 3000 + i] for i in range(6)] + [["add", 2, 1, 4000], ["add", 1, 1, 4001], ["add", 3, 1, 4002]]
    ob.append({"id": len(ob), "ops": fill, "cut": -1, "max_alarms": 6})
    # Counter ceiling: reserved in blocks, survives reloads and compaction.
    ob.append({"id": len(ob), "ops": [["ctr", 1], ["ctr", 2], ["ctr", 5000], ["reload"], ["ctr", 9000]], "cut": -1})

    snd = [
        {"hb_ms": 60000, "pending": [], "steps": [["next", 0], ["next", 1], ["hback", 50, 0], ["next", 59999], ["next", 60000], ["wake", 60001]]},
        {"hb_ms": 60000, "pending": [[1, 1, 1, 0, 0], [2, 2, 1, 0, 0]], "steps": [["next", 0], ["next", 0], ["next", 0], ["next", 999], ["next", 1000], ["wake", 1000], ["ack", 1001, 1], ["next", 1001], ["next", 3100], ["next", 6000], ["ack", 6001, 2], ["next", 6002]]},
        {"hb_ms": 5000, "pending": [[7, 1, 1, 0, 0]], "steps": [["next", 0]] + [["next", 1000 * 2 ** i] for i in range(8)] + [["wake", 300000]]},
        # RS-485: a missed slot makes the alarm due at the next POLL, three
        # times in a row; then the backoff takes over again.
        {"hb_ms": 60000, "pending": [[9, 2, 1, 0, 0]], "steps": [["next", 0], ["next", 50], ["slot", 100, 9], ["next", 100], ["slot", 200, 9], ["next", 200],
                                                                  ["slot", 300, 9], ["next", 300], ["slot", 400, 9], ["next", 400], ["wake", 400]]},
    ]
    bea = [
        [["tick", 0], ["press", 10, 1], ["tick", 20], ["tick", 300], ["ack", 400, 2], ["ack", 410, 1], ["tick", 420], ["call", 500, "ringing", 1], ["call", 600, "connected", 1], ["press", 700, 3], ["call", 800, "ended", 1], ["tick", 10799], ["tick", 10800], ["fault", 10900, True], ["tick", 11000], ["press", 11100, 4], ["fault", 11200, False], ["tick", 11300]],
        [["press", 0, 1], ["ack", 100, 1], ["tick", 60099], ["tick", 60100], ["fault", 60200, True], ["tick", 62100]],
    ]
    return {"debounce": deb, "outbox": ob, "sender": snd, "beacon": bea}


def check_debounce(vec, events):
    """The issue's promises for one trace; returns a list of failures."""
    kinds = [e[0] for e in events]
    presses = [e[1] for e in events if e[0] == "press"]
    bad = []
    k = vec["kind"]
    if k in ("spike", "chatter") and presses:
        bad.append("false press at %s" % presses)
    if k in ("bouncy", "clean"):
        if len(presses) != 1:
            bad.append("%d presses, expected 1" % len(presses))
        else:
            delay = presses[0] - PRE_MS
            limit = 30 if k == "clean" else 40
            if not 0 <= delay <= limit:
                bad.append("press reported %d ms after contact (> %d)" % (delay, limit))
        if kinds.count("release") != 1:
            bad.append("releases: %s" % kinds)
    if k == "stuck" and kinds != ["press", "stuck", "unstuck"]:
        bad.append("stuck button gave %s" % kinds)
    if k == "held" and kinds != ["press", "release"]:
        bad.append("held button gave %s" % kinds)
    return bad
