"""Replay sequences from the golden file, and messages the encoder must refuse."""

import pytest

from callbox_firmware import wire

import _wire_vectors as V


@pytest.mark.parametrize("seq", V.replay(), ids=V.names(V.replay()))
def test_replay_sequence(seq):
    w = wire.ReplayWindow(seq["start"])
    for i, (counter, expected) in enumerate(seq["steps"]):
        # check() never changes state; accept() agrees with it.
        try:
            w.check(counter)
            checked = "accept"
        except wire.WireError as e:
            assert e.reason == wire.E_REPLAY
            checked = "replay"
        try:
            w.accept(counter, box_id=101)
            got = "accept"
        except wire.WireError as e:
            assert e.reason == wire.E_REPLAY and e.box_id == 101 and "box 101" in str(e)
            got = "replay"
        assert (checked, got) == (expected, expected), "step %d: counter %d" % (i, counter)


def test_rejected_counter_does_not_move_the_window():
    w = wire.ReplayWindow()
    w.accept(50)
    with pytest.raises(wire.WireError):
        w.accept(50)
    assert w.top == 50
    w.accept(49)  # still unseen and in the window


def _message(u):
    msg = dict(u["message"])
    for f in V.doc()["bytes_fields"]:
        if f in msg:
            msg[f] = bytes.fromhex(msg[f])
    return msg


@pytest.mark.parametrize("u", V.doc()["unencodable"], ids=V.names(V.doc()["unencodable"]))
def test_encoder_refuses(u):
    with pytest.raises(wire.WireError) as exc:
        if "short" in u:
            wire.encode_short(u["short"]["type"], u["short"]["addr"], u["short"]["seq"])
        else:
            wire.encode_message(wire.BoxKey(bytes.fromhex(u["key"])), _message(u), u["box_id"], u["counter"], u["addr"])
    assert exc.value.reason == u["reason"] == wire.E_RANGE


def test_encoder_refuses_text_where_bytes_belong():
    key = wire.BoxKey(bytes(32))
    with pytest.raises(wire.WireError) as exc:
        wire.encode_message(key, {"type": "COMMAND", "request": 1, "op": "config_set", "args": "hb_s=60"}, 1, 1)
    assert exc.value.reason == wire.E_RANGE and "bytes" in str(exc.value)


def test_short_key_refused():
    with pytest.raises(wire.WireError) as exc:
        wire.BoxKey(b"0123456789abcde")
    assert exc.value.reason == wire.E_RANGE


def test_hmac_matches_the_standard_library():
    # The hand-written HMAC (no hmac module on MicroPython) against RFC 2104
    # as CPython implements it, for short, 64-byte and long keys.
    import hashlib
    import hmac

    for key in (bytes(range(16)), bytes(range(32)), bytes(range(64)), bytes(range(100))):
        for msg in (b"", b"abc", bytes(range(256)) * 3):
            assert wire.BoxKey(key).mac(msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_equal_ct():
    assert wire.equal_ct(b"abcdefgh", b"abcdefgh")
    assert not wire.equal_ct(b"abcdefgh", b"abcdefgi")
    assert not wire.equal_ct(b"abcdefgh", b"abcdefg")
