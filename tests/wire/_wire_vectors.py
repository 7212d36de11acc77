"""Read tests/vectors/wire.json (never the generator) and turn a vector into
what the codec takes: the key lookup, the piece between delimiters, the
message dict with bytes fields as bytes."""

import json

from callbox_firmware import wire
from callbox_tools.mpy import REPO_ROOT

VECTORS_FILE = REPO_ROOT / "tests" / "vectors" / "wire.json"

_doc = None


def doc():
    global _doc
    if _doc is None:
        _doc = json.loads(VECTORS_FILE.read_text())
    return _doc


def valid():
    return doc()["valid"]


def invalid():
    return doc()["invalid"]


def every():
    return valid() + invalid()


def replay():
    return doc()["replay"]


def names(vectors):
    return [v["name"] for v in vectors]


def wire_bytes(v):
    return bytes.fromhex(v["wire"])


def piece(v):
    """The bytes between the leading and trailing 0x00 delimiters."""
    w = wire_bytes(v)
    assert w[0] == 0 and w[-1] == 0, v["name"]
    return w[1:-1]


def key_for(v):
    known = {v["known_box_id"]: wire.BoxKey(bytes.fromhex(v["key"]))}
    return known.get


def message(v):
    """The vector's meaning as decode_frame returns it (bytes fields as bytes)."""
    msg = dict(v["message"])
    for f in doc()["bytes_fields"]:
        if f in msg:
            msg[f] = bytes.fromhex(msg[f])
    return msg


def header(frame):
    return {"version": wire.VERSION, "type": frame.type_name, "flags": frame.flags, "addr": frame.addr,
            "box_id": frame.box_id, "counter": frame.counter, "payload_len": len(frame.payload)}


def outcome(p, v):
    """Decode one piece with a vector's key: ("ok", header, msg) or ("err", reason)."""
    try:
        f = wire.decode_frame(p, key_for(v), v["expect_down"])
    except wire.WireError as e:
        return ("err", e.reason)
    return ("ok", header(f), f.msg)


def expected_outcomes(v):
    """What a stream reader plus decode_frame must produce for this vector fed
    alone: one frame, one rejection, or nothing (empty pieces are ignored,
    oversize runs are dropped inside the reader and counted there)."""
    if "message" in v:
        return [("ok", v["frame"], message(v))]
    if v["reason"] in (wire.E_EMPTY, wire.E_OVERSIZE):
        return []
    return [("err", v["reason"])]


def expected_oversize(v):
    return 1 if v.get("reason") == wire.E_OVERSIZE else 0


def feed_all(chunks, v, reader=None):
    """Feed chunks into a FrameReader; return (outcomes, reader)."""
    reader = reader or wire.FrameReader()
    out = []
    for c in chunks:
        for p in reader.feed(c):
            out.append(outcome(p, v))
    return out, reader
