"""Hypothesis properties of the wire codec (CPython; the same file runs on
the box, and tests/wire/test_wire_micropython.py runs the golden vectors
there)."""

import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callbox_firmware import wire

import _wire_vectors as V

# Loaded, shared machine: no per-example deadline; enough examples to cover
# every type many times without taking more than a few seconds.
PROPS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)


def enum(table):
    """A name from the table, or any code (unknown codes decode as integers)."""
    return st.one_of(st.sampled_from(sorted(table.values(), key=str)), U8)


def _faults():
    bits = [1 << i for i in range(8)]
    # Each bit given by name (where it has one) or as its integer value.
    return st.lists(st.sampled_from(bits), unique=True).flatmap(
        lambda bs: st.tuples(*[st.sampled_from([b, wire.FAULT_BITS.get(b, b)]) for b in bs]).map(list))


MESSAGES = {
    "ALARM": st.fixed_dictionaries({
        "type": st.just("ALARM"), "event": U32, "kind": enum(wire.ALARM_KINDS), "time_synced": st.booleans(),
        "restore": st.booleans(), "time_s": U32, "time_ms": st.integers(0, 999)}),
    "ACK": st.fixed_dictionaries({
        "type": st.just("ACK"), "acked_type": enum(wire.TYPE_NAMES), "acked_counter": U32, "event": U32, "status": enum(wire.ACK_STATUS)}),
    "HEARTBEAT": st.fixed_dictionaries({
        "type": st.just("HEARTBEAT"), "uptime_s": U32, "power": enum(wire.POWER_STATES), "battery_mv": U16, "tamper": st.booleans(),
        "link": enum(wire.LINKS), "rssi_dbm": st.integers(-128, 127),
        "fw": st.tuples(U8, U8, U8).map(lambda t: "%d.%d.%d" % t), "outbox": U16, "boot_reason": enum(wire.BOOT_REASONS),
        "faults": _faults(), "time_s": U32}),
    "CALL_STATE": st.fixed_dictionaries({
        "type": st.just("CALL_STATE"), "state": enum(wire.CALL_STATES), "event": U32, "prompt": enum(wire.PROMPTS)}),
    "COMMAND": st.fixed_dictionaries({
        "type": st.just("COMMAND"), "request": U16, "op": enum(wire.COMMAND_OPS), "args": st.binary(max_size=wire.MAX_PAYLOAD - 3)}),
    "RESULT": st.fixed_dictionaries({
        "type": st.just("RESULT"), "request": U16, "op": enum(wire.COMMAND_OPS), "status": enum(wire.RESULT_STATUS),
        "data": st.binary(max_size=wire.MAX_PAYLOAD - 4)}),
    "POLL": st.just({"type": "POLL"}),
    "IDLE": st.just({"type": "IDLE"}),
}
assert set(MESSAGES) == set(wire.TYPE_NAMES.values())

ANY_MESSAGE = st.one_of(*MESSAGES.values())
KEYS = st.binary(min_size=16, max_size=80)
HEADERS = st.tuples(U32, U32, st.integers(0, wire.ADDR_MAX))  # box id, counter, address

_TABLES = {"kind": wire.ALARM_KINDS, "acked_type": wire.TYPE_NAMES, "status": None, "power": wire.POWER_STATES,
           "link": wire.LINKS, "boot_reason": wire.BOOT_REASONS, "state": wire.CALL_STATES, "prompt": wire.PROMPTS,
           "op": wire.COMMAND_OPS}


def normalised(msg):
    """What decode must return for msg: known codes as names, faults in bit
    order with names where known."""
    out = dict(msg)
    for field, table in _TABLES.items():
        if field not in out:
            continue
        if field == "status":
            table = wire.ACK_STATUS if msg["type"] == "ACK" else wire.RESULT_STATUS
        v = out[field]
        if isinstance(v, int):
            out[field] = table.get(v, v)
    if "faults" in out:
        bits = sorted(wire._code(wire.FAULT_BITS, f, "fault") for f in out["faults"])
        out["faults"] = [wire.FAULT_BITS.get(b, b) for b in bits]
    return out


def _direction(msg):
    return wire.TYPE_CODES[msg["type"]] in (wire.MSG_ACK, wire.MSG_CALL_STATE, wire.MSG_COMMAND, wire.MSG_POLL)


def _decode_all(stream_chunks, key_for, expect_down):
    """Feed chunks, decode every piece. Returns (frames, reasons, reader); any
    exception other than WireError propagates and fails the test."""
    reader = wire.FrameReader()
    frames, reasons = [], []
    for c in stream_chunks:
        for p in reader.feed(c):
            try:
                frames.append(wire.decode_frame(p, key_for, expect_down))
            except wire.WireError as e:
                reasons.append(e.reason)
    return frames, reasons, reader


def _chunks(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in cuts + [len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


# ------------------------------------------------------------- round trip


@PROPS
@given(msg=ANY_MESSAGE, key=KEYS, head=HEADERS)
def test_round_trip_every_type_over_its_whole_range(msg, key, head):
    box_id, counter, addr = head
    k = wire.BoxKey(key)
    frame = wire.encode_message(k, msg, box_id, counter, addr)
    piece = frame[1:-1]
    assert frame[0] == 0 and frame[-1] == 0 and 0 not in piece
    assert len(piece) <= wire.MAX_ENCODED
    down = _direction(msg)
    f = wire.decode_frame(piece, {box_id: k}.get, down)
    assert (f.box_id, f.counter, f.addr, f.down) == (box_id, counter, addr, down)
    assert f.msg == normalised(msg)
    # The decoded form re-encodes to the same bytes.
    assert wire.encode_message(k, f.msg, box_id, counter, addr) == frame


@PROPS
@given(key=KEYS, head=HEADERS, mtype=st.sampled_from(sorted(wire.TYPE_NAMES)), payload=st.binary(max_size=wire.MAX_PAYLOAD))
def test_any_authenticated_payload_decodes_canonically_or_fails_as_payload(key, head, mtype, payload):
    # A peer holding the key can send any payload bytes: decode either
    # rejects them as E_PAYLOAD or returns a message that re-encodes to
    # exactly the same frame (no two wire forms of one meaning).
    box_id, counter, addr = head
    k = wire.BoxKey(key)
    frame = wire.encode_frame(k, mtype, box_id, counter, payload, addr)
    try:
        f = wire.decode_frame(frame[1:-1], {box_id: k}.get)
    except wire.WireError as e:
        assert e.reason == wire.E_PAYLOAD and e.box_id == box_id
        return
    assert f.payload == payload
    assert wire.encode_message(k, f.msg, box_id, counter, addr) == frame


# ----------------------------------------------------------- garbage input

GOOD = V.valid()


@PROPS
@given(garbage=st.binary(max_size=700), cuts=st.lists(st.integers(0, 2000), max_size=12), which=st.sampled_from(GOOD),
       after=st.binary(max_size=40))
def test_garbage_in_any_fragmentation_never_hides_the_frame_that_follows(garbage, cuts, which, after):
    good = V.wire_bytes(which)
    stream = garbage + good + after
    frames, reasons, reader = _decode_all(_chunks(stream, cuts), V.key_for(which), which["expect_down"])
    want = V.message(which)
    if want.get("short"):
        # Short POLL/IDLE carry only a 16-bit check: noise may (2^-16 odds)
        # pass for one, so only require the real one to come through.
        assert want in [f.msg for f in frames]
        assert [f for f in frames if f.box_id is not None] == []
    else:
        # Only the real frame is authenticated, exactly once, with its meaning.
        assert [f.msg for f in frames if f.box_id is not None] == [want]
    assert reader.pending() <= wire.MAX_ENCODED
    assert set(reasons) <= {getattr(wire, n) for n in dir(wire) if n.startswith("E_")}


@PROPS
@given(data=st.binary(max_size=1200), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_any_bytes_raise_only_wire_errors(data, cuts):
    key = wire.BoxKey(bytes(range(32)))

    def any_box(box_id):  # a receiver that knows every box: reaches the tag check
        return key

    # Nothing authenticates; an unauthenticated short POLL/IDLE (16-bit
    # check) is the only thing noise could ever pass for.
    for expect in (None, True, False):
        frames, reasons, reader = _decode_all(_chunks(data, cuts), any_box, expect)
        assert [f for f in frames if f.box_id is not None] == []
        assert reader.pending() <= wire.MAX_ENCODED
    for fn in (wire.decode_frame, wire.decode_body):
        try:
            f = fn(data, any_box)
        except wire.WireError:
            pass
        else:
            assert f.box_id is None and len(data) <= wire.MAX_ENCODED, "random bytes authenticated"


@PROPS
@given(head=st.binary(min_size=13, max_size=13), payload=st.binary(max_size=60), tag=st.binary(min_size=8, max_size=8))
def test_crc_valid_forgeries_raise_only_wire_errors_and_never_verify(head, payload, tag):
    # Noise cannot get past the CRC; a forger can. Any header, any payload,
    # any tag, with a correct CRC: rejected with a named reason.
    signed = head + payload + tag
    body = signed + struct.pack(">I", wire.crc32(signed))
    key = wire.BoxKey(bytes(range(32)))
    try:
        wire.decode_body(body, lambda box_id: key)
    except wire.WireError as e:
        assert e.reason in (wire.E_VERSION, wire.E_LENGTH, wire.E_TYPE, wire.E_AUTH, wire.E_OVERSIZE)
    else:
        raise AssertionError("a frame with a random tag verified")


# ----------------------------------------------------------------- bit flips


def _assert_every_bit_flip_rejected(frame, key_for, expect_down):
    for i in range(len(frame)):
        for bit in range(8):
            bad = bytearray(frame)
            bad[i] ^= 1 << bit
            frames, reasons, _ = _decode_all([bytes(bad)], key_for, expect_down)
            assert frames == [], "flip of byte %d bit %d was accepted" % (i, bit)


def test_every_single_bit_flip_of_every_valid_vector_is_rejected():
    for v in GOOD:
        _assert_every_bit_flip_rejected(V.wire_bytes(v), V.key_for(v), v["expect_down"])


@SLOW
@given(msg=ANY_MESSAGE, key=KEYS, head=HEADERS)
def test_every_single_bit_flip_is_rejected(msg, key, head):
    box_id, counter, addr = head
    k = wire.BoxKey(key)
    frame = wire.encode_message(k, msg, box_id, counter, addr)
    _assert_every_bit_flip_rejected(frame, {box_id: k}.get, _direction(msg))
    # And a flip inside the body, checked directly, names the CRC (line noise
    # never costs a hash).
    body = wire.cobs_decode(frame[1:-1])
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 0x01
        try:
            wire.decode_body(bytes(bad), {box_id: k}.get)
        except wire.WireError as e:
            assert e.reason == wire.E_CRC
        else:
            raise AssertionError("body flip at %d accepted" % i)


# -------------------------------------------------------------------- replay


class _Model:
    """Replay rules spelled out the slow way: a set of everything seen."""

    def __init__(self, start):
        self.start = start
        self.seen = set()
        self.top = start

    def accept(self, c):
        ok = c > self.start and c not in self.seen and (c > self.top or self.top - c <= wire.WINDOW)
        if ok:
            self.seen.add(c)
            self.top = max(self.top, c)
        return ok


@PROPS
@given(start=st.one_of(st.just(-1), st.integers(0, 1000)),
       steps=st.lists(st.one_of(st.integers(-wire.WINDOW - 2, 3), st.integers(-wire.WINDOW - 2, wire.WINDOW + 2), st.integers(-2000, 2000)), min_size=1, max_size=120))
@example(start=-1, steps=[5, wire.WINDOW, -wire.WINDOW])  # shift of exactly WINDOW keeps the old top
@example(start=100, steps=[wire.WINDOW, -wire.WINDOW, -wire.WINDOW - 1])  # persisted start stays refused
def test_replay_window_matches_the_model(start, steps):
    # Each step is an offset from the highest counter seen so far, mostly
    # around the window's edges (top - WINDOW - 2 .. top + WINDOW + 2), sometimes far.
    w = wire.ReplayWindow(start)
    m = _Model(start)
    for d in steps:
        c = max(0, m.top + d)
        want = m.accept(c)
        try:
            w.accept(c)
            got = True
        except wire.WireError as e:
            assert e.reason == wire.E_REPLAY
            got = False
        assert got == want, "counter %d after %r (start %d)" % (c, sorted(m.seen)[-30:], start)
        # Anything accepted is refused the second time.
        if got:
            try:
                w.accept(c)
            except wire.WireError as e:
                assert e.reason == wire.E_REPLAY
            else:
                raise AssertionError("counter %d accepted twice" % c)


@PROPS
@given(start=st.integers(0, 10**6), steps=st.lists(st.integers(1, 60), min_size=1, max_size=40))
def test_replay_state_round_trips(start, steps):
    # A window restored from state() behaves exactly like the original.
    a = wire.ReplayWindow(start)
    c = start
    for d in steps:
        c += d
        a.accept(c)
    b = wire.ReplayWindow(*a.state())
    for probe in range(c - wire.WINDOW - 3, c + 3):
        ra = rb = True
        try:
            a.check(probe)
        except wire.WireError:
            ra = False
        try:
            b.check(probe)
        except wire.WireError:
            rb = False
        assert ra == rb, probe
