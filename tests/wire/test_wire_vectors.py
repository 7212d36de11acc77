"""Every golden vector decodes to its meaning or fails with its reason, and
every valid vector re-encodes byte for byte (CPython side)."""

import importlib.util

import pytest

from callbox_firmware import wire
from callbox_tools.mpy import REPO_ROOT

import _wire_vectors as V

GENERATOR = REPO_ROOT / "tests" / "vectors" / "make_wire_vectors.py"


def test_committed_vectors_equal_generator_output():
    # A change to the frame layout or a payload makes the generator write a
    # different file: the diff must be reviewed and committed with the change.
    spec = importlib.util.spec_from_file_location("make_wire_vectors", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert V.VECTORS_FILE.read_text() == gen.build(), "tests/vectors/wire.json is stale: run tests/vectors/make_wire_vectors.py"


def test_vectors_cover_every_type_reason_and_direction():
    types = {v["frame"]["type"] for v in V.valid()}
    assert types == set(wire.TYPE_NAMES.values())
    reasons = {v["reason"] for v in V.invalid()}
    every_reason = {getattr(wire, n) for n in dir(wire) if n.startswith("E_")}
    # E_RANGE is the encoder's; E_REPLAY is the replay sequences' job.
    assert reasons == every_reason - {wire.E_RANGE, wire.E_REPLAY}
    assert {v["expect_down"] for v in V.every()} == {True, False}
    assert len(set(V.names(V.every()))) == len(V.every()), "vector names must be unique"
    assert len(V.replay()) >= 5
    # The largest valid frame is exactly the reader's limit.
    assert max(len(V.piece(v)) for v in V.valid()) == wire.MAX_ENCODED
    limits = V.doc()["limits"]
    assert limits == {"max_payload": wire.MAX_PAYLOAD, "max_body": wire.MAX_BODY, "max_encoded": wire.MAX_ENCODED,
                      "overhead": wire.OVERHEAD, "window": wire.WINDOW}


@pytest.mark.parametrize("v", V.valid(), ids=V.names(V.valid()))
def test_valid_vector_decodes_to_its_meaning(v):
    f = wire.decode_frame(V.piece(v), V.key_for(v), v["expect_down"])
    assert V.header(f) == v["frame"]
    assert f.msg == V.message(v)
    assert f.down == v["expect_down"]
    # decode_body on the COBS-decoded piece gives the same frame.
    f2 = wire.decode_body(wire.cobs_decode(V.piece(v)), V.key_for(v), v["expect_down"])
    assert (f2.msg, f2.counter, f2.box_id) == (f.msg, f.counter, f.box_id)
    # A tool decoding without a direction (expect_down=None) agrees too.
    assert wire.decode_frame(V.piece(v), V.key_for(v)).msg == f.msg


@pytest.mark.parametrize("v", V.valid(), ids=V.names(V.valid()))
def test_valid_vector_reencodes_byte_identically(v):
    key = wire.BoxKey(bytes.fromhex(v["key"]))
    h = v["frame"]
    if v["message"].get("short"):
        assert wire.encode_short(wire.TYPE_CODES[h["type"]], h["addr"], v["message"]["seq"]) == V.wire_bytes(v)
        return
    assert wire.encode_message(key, V.message(v), h["box_id"], h["counter"], h["addr"]) == V.wire_bytes(v)
    payload = wire.pack_payload(V.message(v))
    assert len(payload) == h["payload_len"]
    assert wire.encode_frame(key, wire.TYPE_CODES[h["type"]], h["box_id"], h["counter"], payload, h["addr"]) == V.wire_bytes(v)


@pytest.mark.parametrize("v", V.invalid(), ids=V.names(V.invalid()))
def test_invalid_vector_fails_with_its_reason(v):
    with pytest.raises(wire.WireError) as exc:
        wire.decode_frame(V.piece(v), V.key_for(v), v["expect_down"])
    e = exc.value
    assert e.reason == v["reason"]
    assert e.box_id == v["error_box_id"]
    text = str(e)
    assert text.startswith(v["reason"])
    if v["error_box_id"] is not None:
        # The message names the box, so a log line says which box to visit.
        assert "box %d" % v["error_box_id"] in text
    # No key material in the message.
    assert v["key"] not in text and "BoxKey(<secret>)" == repr(wire.BoxKey(bytes.fromhex(v["key"])))


def test_unknown_box_and_auth_errors_suggest_a_fix():
    by_reason = {}
    for v in V.invalid():
        by_reason.setdefault(v["reason"], v)
    for reason, hint in ((wire.E_UNKNOWN_BOX, "provision"), (wire.E_AUTH, "wrong key")):
        v = by_reason[reason]
        with pytest.raises(wire.WireError) as exc:
            wire.decode_frame(V.piece(v), V.key_for(v), v["expect_down"])
        assert hint in str(exc.value)


def test_rejection_leaves_the_receiver_able_to_decode_the_next_frame():
    # Bad input loses nothing: after every rejection, the same key lookup
    # still decodes a good frame from the same box.
    good = V.valid()[0]
    for v in V.invalid():
        with pytest.raises(wire.WireError):
            wire.decode_frame(V.piece(v), V.key_for(v), v["expect_down"])
        assert wire.decode_frame(V.piece(good), V.key_for(good), good["expect_down"]).msg == V.message(good)


def test_alarm_fits_64_bytes_on_the_wire():
    alarms = [v for v in V.valid() if v["frame"]["type"] == "ALARM"]
    assert alarms and max(len(V.wire_bytes(v)) for v in alarms) <= 64
