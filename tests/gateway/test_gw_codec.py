"""The gateway's fast COBS path (gateway/codec.py) gives exactly what the
shared codec gives: the same Frame for every valid golden vector, the same
error reason for every invalid one, and the same bytes (or the same error)
for random pieces, including 0xFF blocks and malformed codes."""

import json
import pathlib
import random

import pytest

from callbox_firmware import wire
from callbox_gateway import codec

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[1] / "vectors" / "wire.json").read_text())


def pieces(wire_hex):
    return wire.FrameReader().feed(bytes.fromhex(wire_hex))


def outcome(fn, *args):
    try:
        f = fn(*args)
    except wire.WireError as e:
        return ("error", e.reason, e.box_id)
    if isinstance(f, (bytes, bytearray)):
        return ("ok", bytes(f))
    return ("ok", f.mtype, f.flags, f.addr, f.box_id, f.counter, f.payload, f.msg)


def key_lookup(v):
    key = wire.BoxKey(bytes.fromhex(v["key"]))
    return lambda box_id: key if box_id == v["known_box_id"] else None


@pytest.mark.parametrize("v", VECTORS["valid"] + VECTORS["invalid"], ids=lambda v: v["name"])
def test_same_result_as_the_shared_codec_on_every_vector(v):
    got = [outcome(codec.decode_frame, p, key_lookup(v), v["expect_down"]) for p in pieces(v["wire"])]
    want = [outcome(wire.decode_frame, p, key_lookup(v), v["expect_down"]) for p in pieces(v["wire"])]
    assert got == want
    if v in VECTORS["valid"]:
        assert got and got[0][0] == "ok"


def test_same_bytes_or_error_on_random_pieces():
    rng = random.Random(4)
    for _ in range(20000):
        n = rng.randrange(0, 300)
        data = bytes(rng.choice((0, 1, 2, 0xFF, 0xFE, rng.randrange(256))) for _ in range(n))
        encoded = wire.cobs_encode(data)
        assert codec.cobs_decode(encoded) == data
        # Corrupt it: a changed byte, a cut tail, a zero inside.
        bad = bytearray(encoded)
        if bad:
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        for piece in (bytes(bad), encoded[: max(0, len(encoded) - rng.randrange(1, 4))]):
            assert outcome(codec.cobs_decode, piece) == outcome(wire.cobs_decode, piece)
