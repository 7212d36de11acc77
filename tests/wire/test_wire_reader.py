"""Every golden vector through FrameReader: whole, byte by byte, split at
every position, with garbage before and after, with stray 0x00s, and all
back to back; and the reader's bounds and counters."""

import hashlib

import pytest

from callbox_firmware import wire

import _wire_vectors as V

EVERY = V.every()
IDS = V.names(EVERY)


def _noise(n, seed, zeros=False):
    """Deterministic noise; without zeros it is one run with no delimiter."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out.extend(hashlib.sha256(b"%s %d" % (seed, i)).digest())
        i += 1
    out = out[:n]
    if not zeros:
        out = bytearray(b or 0x5A for b in out)
    return bytes(out)


# Garbage that can sit in front of a frame on a real line: a short burst,
# stray delimiters, a burst with delimiters, a run longer than MAX_ENCODED.
GARBAGE_BEFORE = {
    "burst": b"\x13\x37\xfe",
    "stray_zeros": b"\x00\x00\x00",
    "burst_with_zeros": b"\x05\x00\xaa\xbb\x00\x7f",
    "long_run": _noise(3 * wire.MAX_ENCODED, b"long"),
    "noise_with_zeros": _noise(600, b"mixed", zeros=True),
}


def _garbage_outcomes(g, v):
    # Garbage in front of a frame is cut off by the frame's own leading 0x00.
    out, r = V.feed_all([g + b"\x00"], v)
    assert all(o[0] == "err" for o in out), "garbage must never decode"
    return out, r.oversize


@pytest.mark.parametrize("v", EVERY, ids=IDS)
def test_whole(v):
    out, r = V.feed_all([V.wire_bytes(v)], v)
    assert out == V.expected_outcomes(v)
    assert r.oversize == V.expected_oversize(v)
    assert r.pending() == 0


@pytest.mark.parametrize("v", EVERY, ids=IDS)
def test_byte_by_byte(v):
    w = V.wire_bytes(v)
    out, r = V.feed_all([w[i : i + 1] for i in range(len(w))], v)
    assert out == V.expected_outcomes(v)
    assert r.oversize == V.expected_oversize(v)


@pytest.mark.parametrize("v", EVERY, ids=IDS)
def test_split_at_every_position(v):
    w = V.wire_bytes(v)
    want = V.expected_outcomes(v)
    for i in range(len(w) + 1):
        out, r = V.feed_all([w[:i], w[i:]], v)
        assert out == want, "split at %d" % i
        assert r.oversize == V.expected_oversize(v)


@pytest.mark.parametrize("v", EVERY, ids=IDS)
@pytest.mark.parametrize("g", list(GARBAGE_BEFORE), ids=list(GARBAGE_BEFORE))
def test_garbage_before_and_after(v, g):
    garbage = GARBAGE_BEFORE[g]
    before, before_oversize = _garbage_outcomes(garbage, v)
    w = V.wire_bytes(v)
    # Trailing garbage without a delimiter stays pending and hides nothing.
    out, r = V.feed_all([garbage, w, b"\x41\x42\x43"], v)
    assert out == before + V.expected_outcomes(v)
    assert r.oversize == before_oversize + V.expected_oversize(v)
    assert r.pending() == 3
    # Trailing garbage with its own delimiter is one more rejected piece.
    out, r = V.feed_all([garbage + w + b"\x41\x42\x43\x00"], v)
    assert out == before + V.expected_outcomes(v) + [("err", wire.E_COBS)]


@pytest.mark.parametrize("v", EVERY, ids=IDS)
def test_stray_zeros_everywhere_around(v):
    w = V.wire_bytes(v)
    out, r = V.feed_all([b"\x00" * 5 + w + b"\x00" * 7, b"\x00", w[:1] + b"\x00" + w[1:]], v)
    # The second copy has an extra delimiter right after its leading one.
    want = V.expected_outcomes(v)
    assert out == want + want
    assert r.oversize == 2 * V.expected_oversize(v)


def test_all_vectors_back_to_back():
    stream = b"".join(V.wire_bytes(v) for v in EVERY)
    for chunking in (len(stream), 1, 7, 64, 219):
        reader = wire.FrameReader()
        pieces = []
        for i in range(0, len(stream), chunking):
            pieces.extend(reader.feed(stream[i : i + chunking]))
        want_pieces = [V.piece(v) for v in EVERY if v.get("reason") not in (wire.E_EMPTY, wire.E_OVERSIZE)]
        assert pieces == want_pieces, "chunking %d" % chunking
        assert reader.oversize == sum(V.expected_oversize(v) for v in EVERY)
    # Each piece decodes as its own vector says.
    reader = wire.FrameReader()
    got = []
    it = iter(reader.feed(stream))
    for v in EVERY:
        for _ in V.expected_outcomes(v):
            got.append(V.outcome(next(it), v))
    assert got == [o for v in EVERY for o in V.expected_outcomes(v)]


def test_valid_frames_back_to_back_without_shared_delimiter_loss():
    # Frames written one after another share nothing: 00 A 00 00 B 00.
    vs = V.valid()
    out = []
    reader = wire.FrameReader()
    stream = b"".join(V.wire_bytes(v) for v in vs)
    pieces = reader.feed(stream)
    assert len(pieces) == len(vs)
    for p, v in zip(pieces, vs):
        out.append(V.outcome(p, v))
    assert out == [V.expected_outcomes(v)[0] for v in vs]


def test_buffer_is_bounded_and_drops_are_counted():
    reader = wire.FrameReader()
    noise = _noise(100_000, b"flood")
    sizes = [1, 3, 17, 218, 219, 500, 4096]
    i = k = 0
    while i < len(noise):
        n = sizes[k % len(sizes)]
        assert reader.feed(noise[i : i + n]) == []
        assert reader.pending() <= wire.MAX_ENCODED
        i += n
        k += 1
    assert reader.oversize == 1  # one run, however long
    assert reader.dropped_bytes == len(noise)
    # The first delimiter ends the hunt: the next frame is found.
    v = V.valid()[0]
    out, _ = V.feed_all([V.wire_bytes(v)], v, reader)
    assert out == V.expected_outcomes(v)
    assert reader.oversize == 1 and reader.dropped_bytes == len(noise)


def test_every_byte_is_accounted_for():
    # delimiters + bytes in pieces + pending + dropped == bytes fed
    reader = wire.FrameReader()
    stream = b"".join(V.wire_bytes(v) for v in EVERY) + _noise(1000, b"x", zeros=True) + _noise(700, b"y")
    in_pieces = 0
    for i in range(0, len(stream), 13):
        in_pieces += sum(len(p) for p in reader.feed(stream[i : i + 13]))
    assert stream.count(0) + in_pieces + reader.pending() + reader.dropped_bytes == len(stream)
    # One oversize count per run of non-zero bytes longer than the limit.
    runs = [r for r in stream.split(b"\x00") if len(r) > wire.MAX_ENCODED]
    assert reader.oversize == len(runs) >= 2
    # Every byte of those runs is dropped (the last one is still being hunted).
    assert reader.dropped_bytes == sum(len(r) for r in runs)


def test_piece_of_exactly_the_limit_is_kept_one_more_is_dropped():
    reader = wire.FrameReader()
    run = _noise(wire.MAX_ENCODED, b"edge")
    assert reader.feed(b"\x00" + run + b"\x00") == [run]
    assert reader.oversize == 0 and reader.dropped_bytes == 0
    assert reader.feed(b"\x00" + run + b"\x01\x00") == []
    assert reader.oversize == 1 and reader.dropped_bytes == wire.MAX_ENCODED + 1


def test_reader_accepts_bytearray():
    v = V.valid()[0]
    out, _ = V.feed_all([bytearray(V.wire_bytes(v))], v)
    assert out == V.expected_outcomes(v)
