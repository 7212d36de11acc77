"""The box's pure cores (debounce, outbox, sender, beacon) on CPython and on
the MicroPython unix port, fed the same vectors; hypothesis explores more
traces on CPython."""

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

import core_vectors
from core_vectors import core_runner, debounce

import outbox  # flat, from firmware/ (core_vectors put it on sys.path)

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def vectors():
    return core_vectors.make()


@pytest.fixture(scope="module")
def cpython_results(vectors, tmp_path_factory):
    d = tmp_path_factory.mktemp("cpy")
    return json.loads(json.dumps({
        "debounce": [core_runner.run_debounce(v) for v in vectors["debounce"]],
        "outbox": [core_runner.run_outbox(v, str(d)) for v in vectors["outbox"]],
        "sender": [core_runner.run_sender(v) for v in vectors["sender"]],
        "beacon": [core_runner.run_beacon(v) for v in vectors["beacon"]],
    }))


@pytest.fixture(scope="module")
def mpy_results(vectors, tmp_path_factory):
    from callbox_tools.mpy import run_micropython

    d = tmp_path_factory.mktemp("mpy")
    vec_path = d / "vectors.json"
    vec_path.write_text(json.dumps(vectors))
    env = dict(os.environ)
    proc = run_micropython(os.path.join(HERE, "core_runner.py"), vec_path, d, env=env, heapsize="4M")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # run_micropython puts firmware/ on MICROPYPATH; core_runner sits here.
    return json.loads(proc.stdout)


def test_debounce_promises_on_cpython(vectors, cpython_results):
    failures = []
    for vec, events in zip(vectors["debounce"], cpython_results["debounce"]):
        for f in core_vectors.check_debounce(vec, events):
            failures.append((vec["kind"], vec["segments"][:6], f))
    assert not failures, failures[:5]


def test_micropython_agrees_on_every_vector(cpython_results, mpy_results):
    for part in ("debounce", "outbox", "sender", "beacon"):
        for i, (a, b) in enumerate(zip(cpython_results[part], mpy_results[part])):
            assert a == b, "%s vector %d differs: CPython %r, MicroPython %r" % (part, i, a, b)
        assert len(cpython_results[part]) == len(mpy_results[part])


def test_debounce_promises_on_micropython(vectors, mpy_results):
    bad = [core_vectors.check_debounce(v, e) for v, e in zip(vectors["debounce"], mpy_results["debounce"])]
    assert not [b for b in bad if b]


def test_torn_outbox_keeps_every_whole_record(vectors, cpython_results):
    """Cut at every byte: what survives is exactly the records before the
    cut, the torn tail is reported, and the log is clean after the load."""
    rec = 19  # alarm record size: 3 header + 12 data + 4 CRC
    for vec, res in zip(vectors["outbox"], cpython_results["outbox"]):
        assert res["clean_after_load"], vec
        if vec["cut"] < 0 or vec.get("garbage"):
            continue
        cut = vec["cut"]
        full = res["size"]
        assert res["torn"] == (1 if 0 < cut < full and not _on_boundary(cut) else 0), (cut, res)
        # No event id handed out before the cut is ever reused.
        if cut >= rec:
            assert res["next_event"] >= 11


def _on_boundary(cut):
    # Record ends in the base sequence: A A C D A D A (sizes 19 19 11 11 19 11 19)
    ends = [19, 38, 49, 60, 79, 90, 109]
    return cut in ends or cut >= 109


def test_outbox_end_states(cpython_results, vectors):
    by_id = {v["id"]: (v, r) for v, r in zip(vectors["outbox"], cpython_results["outbox"])}
    full_run = [r for v, r in by_id.values() if v["cut"] >= 109 and not v.get("garbage")][0]
    # 10 and 11 were acknowledged; 12 and 13 are pending; next is 14.
    assert [a[0] for a in full_run["pending"]] == [12, 13]
    assert full_run["next_event"] == 14
    garbage = [r for v, r in by_id.values() if v.get("garbage") and v["cut"] == 200][0]
    assert garbage["torn"] == 1 and [a[0] for a in garbage["pending"]] == [12, 13]
    zeros = [r for v, r in by_id.values() if v.get("garbage") and v["cut"] == 57][0]
    assert zeros["torn"] == 1
    reload = [r for v, r in by_id.values() if "reload" in [o[0] for o in v["ops"]] and v.get("event_start") == 10][0]
    assert reload["results"][-1] == 0 and [a[0] for a in reload["pending"]] == [13, 14]
    churn = [r for v, r in by_id.values() if v.get("compact_bytes") == 300][0]
    assert churn["results"][-1] == 61  # ids 1..60 used and acked, never reused after compaction
    assert churn["size"] < 300 + 19
    fill = [r for v, r in by_id.values() if v.get("max_alarms") == 6][0]
    assert fill["results"] == [1, 2, 3, 4, 5, 6, 7, 1, 8] and fill["merged"] == 1
    ctr = [r for v, r in by_id.values() if v["ops"][0] == ["ctr", 1]][0]
    assert ctr["ceiling"] == 5000 + outbox.COUNTER_BLOCK  # 9000 was already covered: no write


def test_sender_and_beacon(cpython_results):
    s = cpython_results["sender"]
    assert s[0]["steps"][:2] == [["hb"], None]
    assert s[0]["steps"][3] is None and s[0]["steps"][4] == ["hb"]
    steps = s[1]["steps"]
    assert steps[0] == ["alarm", 1, 1] and steps[1] == ["alarm", 2, 1]
    assert steps[2] == ["hb"]  # heartbeats only when no alarm is due
    assert steps[3] is None and steps[4] == ["alarm", 1, 2]
    rs = s[3]["steps"]
    assert rs[0] == ["alarm", 9, 1] and rs[1] == ["hb"]  # sent; not due again on its own
    assert rs[3] == ["alarm", 9, 2] and rs[5] == ["alarm", 9, 3]  # resent at each missed slot
    assert rs[7] is None  # the third miss falls back to the backoff
    assert rs[9] is None and rs[10][1] > 0
    backoff = s[0]["backoff"]
    assert backoff[1] == 1000 and backoff[-1] == 30000
    assert all(a <= b for a, b in zip(backoff, backoff[1:]))
    assert all(b <= j <= b * 1.25 + 1 for b, j in zip(backoff, s[0]["backoff_j"]))
    b = cpython_results["beacon"][0]
    names = [x[0] for x in b]
    assert names[1] == "sending" and b[1][1][0] == 1  # light on at once
    assert names[4] == "sending"  # an ACK for another event changes nothing
    assert names[5] == "received" and names[8] == "connected"
    assert names[9] == "connected"  # a press during a call keeps the call
    assert names[10] == "received" and names[12] == "idle"
    assert names[14] == "fault" and names[15] == "sending" and names[17] == "sending"
    b2 = [x[0] for x in cpython_results["beacon"][1]]
    assert b2[2] == "received" and b2[3] == "idle" and b2[4] == "fault"


# ------------------------------------------------------------ hypothesis

def _run(segments, phase=0, stuck_ms=debounce.STUCK_MS):
    return core_runner.run_debounce({"segments": segments, "phase": phase, "stuck_ms": stuck_ms})


spikes = st.lists(st.tuples(st.integers(1, 15), st.integers(20, 300)), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(spikes, st.integers(0, 4))
def test_no_false_press_from_spikes(spk, phase):
    segs = [[0, 50]]
    for on, off in spk:
        segs += [[1, on], [0, off]]
    assert not [e for e in _run(segs, phase) if e[0] == "press"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 15), st.integers(5, 150), st.integers(0, 19), st.integers(0, 4))
def test_no_false_press_from_50hz_chatter(on_ms, cycles, shift, phase):
    segs = [[0, 50 + shift]] + [[1, on_ms], [0, 20 - on_ms]] * cycles
    assert not [e for e in _run(segs, phase) if e[0] == "press"]


bounce = st.lists(st.integers(1, 4), min_size=0, max_size=10)


@settings(max_examples=300, deadline=None)
@given(bounce, st.integers(50, 2000), st.integers(0, 4))
def test_no_missed_press_and_bounded_delay(bounces, hold_ms, phase):
    segs = [[0, 100]]
    level, used = 1, 0
    for d in bounces:
        if used + d > 10:
            break
        segs.append([level, d])
        used += d
        level ^= 1
    segs += [[1, hold_ms], [0, 200]]
    ev = _run(segs, phase)
    presses = [t for k, t in ev if k == "press"]
    assert len(presses) == 1
    assert presses[0] - 100 <= (30 if not used else 40)
    assert [k for k, t in ev].count("release") == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(2000, 20000), st.integers(500, 1900))
def test_stuck_button_is_one_fault(held_ms, stuck_ms):
    ev = [k for k, t in _run([[0, 100], [1, held_ms], [0, 200]], 0, stuck_ms)]
    assert ev == ["press", "stuck", "unstuck"]


ops = st.lists(st.one_of(st.tuples(st.just("add"), st.integers(1, 6), st.integers(0, 3)), st.tuples(st.just("done"), st.integers(1, 40)), st.tuples(st.just("reload"))), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(0, 2000), st.integers(0, 3))
def test_outbox_model_and_power_cut(tmp_path_factory, seq, cut_at, extra):
    """Against a model: what is pending after any sequence and any power cut
    is the model's state at the last whole record; ids never repeat."""
    d = tmp_path_factory.mktemp("ob")
    path = str(d / "outbox.log")
    ob = outbox.Outbox(path, 1, compact_bytes=400)
    ob.load()
    model = []
    issued = []
    snapshots = [(0, [])]  # (file size, pending) after each durable write
    for op in seq:
        if op[0] == "add":
            ev = ob.add(op[1], op[2], 1000)
            assert ev not in issued
            issued.append(ev)
            model.append(ev)
        elif op[0] == "done":
            if ob.done(op[1]):
                model.remove(op[1])
            else:
                assert op[1] not in model
        else:
            ob = outbox.Outbox(path, 1, compact_bytes=400)
            ob.load()
        assert [a[0] for a in ob.pending] == model
        snapshots.append((ob.size, list(model)))
    # Power cut inside the last write: keep part of the file.
    data = open(path, "rb").read() if os.path.exists(path) else b""
    last_size, last_model = snapshots[-1]
    prev_size, prev_model = snapshots[-2] if len(snapshots) > 1 else (0, [])
    if prev_size < last_size:
        cut = prev_size + cut_at % (last_size - prev_size)
        open(path, "wb").write(data[:cut])
        ob2 = outbox.Outbox(path, 1)
        ob2.load()
        assert [a[0] for a in ob2.pending] == prev_model
        assert ob2.torn == (1 if cut > prev_size else 0)
        if issued:
            assert ob2.next_event >= max(issued[:-1] or [0]) + 1
