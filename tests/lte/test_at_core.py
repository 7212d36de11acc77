"""The AT parser/matcher core and the LTE link's pure policy, on CPython and
on the real MicroPython unix port, from the same vectors."""

import datetime
import json
import pathlib
import sys

import pytest
from hypothesis import given, settings, strategies as st

from callbox_firmware import at_modem, link_lte

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import at_vector_runner  # noqa: E402

VECTORS = json.loads((HERE / "at_vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_whole_bytewise_and_every_split(vec):
    n = len(bytes.fromhex(vec["input_hex"]))
    for cuts in at_vector_runner.splits(n):
        assert at_vector_runner.run(at_modem, vec, cuts) == vec["events"], "split at %r" % cuts[:10]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_vectors_back_to_back_random_splits(data):
    # Idle-only vectors (no command) concatenated give the concatenated
    # events, however the stream is cut.
    idle = [v for v in VECTORS if not v["command"] and not v.get("polls")]
    picks = data.draw(st.lists(st.sampled_from(idle), min_size=1, max_size=5))
    stream = b"".join(bytes.fromhex(v["input_hex"]) for v in picks)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12))))
    cuts = [c for c in cuts if 0 < c < len(stream)]
    want = []
    for v in picks:
        want.extend(json.loads(json.dumps(v["events"])))
    # Merge data pieces that became adjacent.
    merged = []
    for e in want:
        if merged and e[0] == "data" and merged[-1][0] == "data" and merged[-1][1] == e[1]:
            merged[-1][2] += e[2]
        else:
            merged.append(e)
    vec = {"command": None, "input_hex": stream.hex(), "events": merged}
    assert at_vector_runner.run(at_modem, vec, cuts) == merged


@pytest.mark.micropython
def test_vectors_on_micropython(run_mpy):
    proc = run_mpy(HERE / "mpy_at_vectors.py", HERE / "at_vectors.json", heapsize="256k")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "PASS %d" % len(VECTORS), proc.stdout


def test_begin_while_busy_is_refused_and_state_survives():
    core = at_modem.AtCore()
    core.begin("AT+CSQ", 0, 1000, prefix="+CSQ:")
    with pytest.raises(ValueError):
        core.begin("AT", 0, 1000)
    # The first command is still matched.
    ev = core.feed(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n")
    assert ev == [(at_modem.EV_DONE, "OK", ["+CSQ: 9,99"])]
    assert core.take() == ("OK", ["+CSQ: 9,99"])
    assert core.state == at_modem.S_IDLE


def test_garbage_is_counted_not_buffered():
    core = at_modem.AtCore()
    core.feed(b"x" * 5000)  # no LF at all: must not grow without bound
    assert len(core._buf) <= 256
    assert core.garbage == 1
    assert core.feed(b"\r\nRDY\r\n") == [(at_modem.EV_URC, "RDY")]


def test_hints_name_the_fix():
    assert "SIM" in at_modem.hint_for("+CME ERROR: 10")
    assert "coverage" in at_modem.hint_for("+CMS ERROR: 331")
    assert "UART" in at_modem.hint_for("TIMEOUT")
    err = at_modem.AtCommandError("box 42 modem", "AT+CPIN?", "+CME ERROR: 10", at_modem.hint_for("+CME ERROR: 10"))
    assert "box 42" in str(err) and "AT+CPIN?" in str(err) and "seated" in str(err)


# ---------------------------------------------------------------- pure policy

HAND = {
    # 1 s doubling, capped at 60 s
    "delays": [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000],
    # the largest jitter shortens by 255/1024 (just under 25 %)
    "delays_jitter": [751, 1502, 3004, 6008, 12016, 24032, 45059, 45059, 45059],
    # -113 + 2*rssi; TD-SCDMA 100..191: -116 + (rssi-100); 99/199 unknown
    "csq": [-113, -111, -83, -51, -128, -116, -25, -128],
    "reg": [1, 5, 3],
    "safe": "a?b?c",
    "keepalive": [False, False, True, False],
}


def _cpython_pure():
    ka = link_lte.Keepalive(1000)
    trace = [ka.dead(0)]
    ka.sent(100)
    ka.sent(500)
    trace += [ka.dead(1099), ka.dead(1100)]
    ka.answered(1200)
    trace += [ka.dead(5000)]
    return {
        "delays": [link_lte.next_delay_ms(i) for i in range(9)],
        "delays_jitter": [link_lte.next_delay_ms(i, 1000, 60000, 255) for i in range(9)],
        "csq": [at_modem.csq_to_dbm(r) for r in (0, 1, 15, 31, 99, 100, 191, 199)],
        "reg": [at_modem.parse_reg(x) for x in ("+CREG: 0,1", "+CEREG: 2,5", "+CREG: 3")],
        "safe": at_modem.sms_safe("a\x1ab\x1bc"),
        "keepalive": trace,
    }


def test_pure_policy_cpython():
    got = _cpython_pure()
    for k, v in HAND.items():
        assert got[k] == v, k


@pytest.mark.micropython
def test_pure_policy_on_micropython(run_mpy):
    proc = run_mpy(HERE / "mpy_pure.py", heapsize="256k")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for k, v in HAND.items():
        assert got[k] == v, k
    assert got["civil"] == [[1970, 1, 1, 0, 0, 0], [2000, 2, 29, 0, 0, 0], [2026, 11, 18, 11, 6, 40], [2099, 12, 31, 23, 59, 59]]
    assert got["sms"] == link_lte.format_alarm_sms(42, "Ghantaghar Square", "panic", 7, 1795000000)
    assert got["sms_long"] == link_lte.format_alarm_sms(42, "Hanuman Mandir / Trimurti Mandir Turn Square " * 4, "panic", 7, 1795000000)
    assert got["sms_unsynced"] == "CALLBOX EMERGENCY box 3 IIT Gate Tiraha uptime 93s ev 00000003-00000001 no data link"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4102444799))
def test_civil_from_unix_matches_datetime(t):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    assert link_lte.civil_from_unix(t) == (d.year, d.month, d.day, d.hour, d.minute, d.second)


def test_alarm_sms_text():
    text = link_lte.format_alarm_sms(42, "Ghantaghar Square", "panic", 7, 1795000000)
    # 1795000000 is 2026-11-18 11:06:40 UTC = 16:36:40 IST
    assert text == "CALLBOX PANIC box 42 Ghantaghar Square 18-11-2026 16:36:40 IST ev 0000002a-00000007 no data link"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_alarm_sms_always_fits_and_keeps_the_event_id(junction, box_id, event):
    text = link_lte.format_alarm_sms(box_id, junction, "emergency", event, 1795000000)
    assert len(text) <= 160
    assert all(c == "\n" or 32 <= ord(c) < 127 for c in text)  # no Ctrl-Z, no ESC
    assert text.endswith("ev %08x-%08x no data link" % (box_id, event))


def test_backoff_never_exceeds_cap_and_grows():
    prev = 0
    for tries in range(0, 100):
        d = link_lte.next_delay_ms(tries, 500, 30000)
        assert prev <= d <= 30000
        prev = d
    assert link_lte.next_delay_ms(-3) == link_lte.next_delay_ms(0)


def test_firmware_files_compile_for_the_esp32(mpy_cross, firmware_dir, tmp_path):
    import subprocess

    for name in ("at_modem.py", "link_lte.py"):
        out = tmp_path / name.replace(".py", ".mpy")
        proc = subprocess.run([mpy_cross, "-march=xtensawin", "-o", str(out), str(firmware_dir / name)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 1000
        assert out.read_bytes()[:1] == b"M"  # .mpy magic
