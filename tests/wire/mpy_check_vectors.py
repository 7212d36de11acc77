# Runs on the real MicroPython unix port (tests/wire/test_wire_micropython.py
# starts it with firmware/ on MICROPYPATH, also under -X heapsize=64k):
#
#     micropython tests/wire/mpy_check_vectors.py tests/vectors/wire.json [MPY_DIR]
#
# Checks every golden vector with the same codec file the box runs: decode to
# the meaning or fail with the reason, re-encode byte for byte, the stream
# feeds (whole, byte by byte, split at every position, garbage before and
# after, stray 0x00s, all back to back), the replay sequences and the
# messages the encoder must refuse. Prints one summary line:
#
#     mpy_check_vectors valid=N invalid=N replay=N unencodable=N checks=N failures=N heap_free_min=BYTES
#
# and exits 1 on any failure. The file is read one line at a time (the
# generator writes one vector per line), so it fits a 64 KiB heap.
import sys
import gc
import json
import binascii

# Optional second argument: a folder holding wire.mpy (compiled by mpy-cross)
# to import instead of firmware/wire.py. On a small heap the source cannot be
# compiled on the target, as on the ESP32, where modules ship as .mpy.
if len(sys.argv) > 2:
    sys.path.insert(0, sys.argv[2])
import wire

MAX_REPORTED = 20

failures = 0
checks = 0
counts = {"valid": 0, "invalid": 0, "replay": 0, "unencodable": 0}
heap = {"free_min": 1 << 30}  # smallest free heap after a vector, bytes
bytes_fields = ("args", "data")


def fail(name, what):
    global failures
    failures += 1
    if failures <= MAX_REPORTED:
        print("FAIL %s: %s" % (name, what))


def check(ok, name, what):
    global checks
    checks += 1
    if not ok:
        fail(name, what)


def unhex(s):
    return binascii.unhexlify(s)


def key_lookup(v):
    box = v["known_box_id"]
    key = wire.BoxKey(unhex(v["key"]))

    def key_for(box_id):
        if box_id == box:
            return key
        return None

    return key_for


def message(v):
    msg = {}
    m = v["message"]
    for k in m:
        if k in bytes_fields:
            msg[k] = unhex(m[k])
        else:
            msg[k] = m[k]
    return msg


def header(f):
    return {"version": wire.VERSION, "type": f.type_name, "flags": f.flags, "addr": f.addr,
            "box_id": f.box_id, "counter": f.counter, "payload_len": len(f.payload)}


def outcome(piece, v, key_for):
    # ("ok", header, msg) or ("err", reason); any other exception is a failure.
    try:
        f = wire.decode_frame(piece, key_for, v["expect_down"])
    except wire.WireError as e:
        return ("err", e.reason)
    except Exception as e:
        return ("raised", repr(e))
    return ("ok", header(f), f.msg)


def expected(v):
    if "message" in v:
        return [("ok", v["frame"], message(v))]
    if v["reason"] == wire.E_EMPTY or v["reason"] == wire.E_OVERSIZE:
        return []
    return [("err", v["reason"])]


def expected_oversize(v):
    if v.get("reason") == wire.E_OVERSIZE:
        return 1
    return 0


def feed(chunks, v, key_for, reader=None):
    if reader is None:
        reader = wire.FrameReader()
    out = []
    for c in chunks:
        for p in reader.feed(c):
            out.append(outcome(p, v, key_for))
    return out, reader


def noise(n, seed, zeros):
    # A small LCG: deterministic, no hashing needed.
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b = (x >> 16) & 0xFF
        if not zeros and b == 0:
            b = 0x5A
        out[i] = b
    return bytes(out)


GARBAGE = (
    ("burst", b"\x13\x37\xfe"),
    ("stray_zeros", b"\x00\x00\x00"),
    ("burst_with_zeros", b"\x05\x00\xaa\xbb\x00\x7f"),
    ("long_run", noise(3 * wire.MAX_ENCODED, 7, False)),
    ("noise_with_zeros", noise(600, 11, True)),
)

# Back to back: one reader for the whole file, fed in 7-byte chunks that
# cross vector boundaries; expected outcomes queue up in order.
b2b_reader = wire.FrameReader()
b2b_tail = b""
b2b_queue = []  # (vector, key_for, expected outcome)
b2b_oversize = 0


def back_to_back(v, key_for, w):
    global b2b_tail, b2b_oversize
    for e in expected(v):
        b2b_queue.append((v, key_for, e))
    b2b_oversize += expected_oversize(v)
    data = b2b_tail + w
    n = len(data) - len(data) % 7
    i = 0
    while i < n:
        for p in b2b_reader.feed(data[i : i + 7]):
            if not b2b_queue:
                fail(v["name"], "back to back: a piece nobody expected")
                continue
            pv, pk, pe = b2b_queue.pop(0)
            check(outcome(p, pv, pk) == pe, pv["name"], "back to back: wrong outcome")
        i += 7
    b2b_tail = data[n:]


def check_frame_vector(v):
    global checks
    name = v["name"]
    key_for = key_lookup(v)
    w = unhex(v["wire"])
    check(w[0] == 0 and w[-1] == 0, name, "wire must start and end with 0x00")
    piece = w[1:-1]
    want = expected(v)
    # Decode.
    got = outcome(piece, v, key_for)
    if "message" in v:
        check(got == want[0], name, "decode: %r" % (got,))
        h = v["frame"]
        try:
            if v["message"].get("short"):
                again = wire.encode_short(wire.TYPE_CODES[h["type"]], h["addr"], v["message"]["seq"])
            else:
                again = wire.encode_message(wire.BoxKey(unhex(v["key"])), message(v), h["box_id"], h["counter"], h["addr"])
            check(again == w, name, "re-encode differs")
        except Exception as e:
            fail(name, "re-encode raised %r" % (e,))
    else:
        try:
            wire.decode_frame(piece, key_for, v["expect_down"])
            fail(name, "decoded, expected %s" % v["reason"])
        except wire.WireError as e:
            check(e.reason == v["reason"], name, "reason %s, expected %s" % (e.reason, v["reason"]))
            check(e.box_id == v["error_box_id"], name, "error box %r" % (e.box_id,))
        except Exception as e:
            fail(name, "raised %r" % (e,))
    # Whole.
    out, r = feed([w], v, key_for)
    check(out == want and r.oversize == expected_oversize(v) and r.pending() == 0, name, "whole")
    # Byte by byte.
    out, r = feed((w[i : i + 1] for i in range(len(w))), v, key_for)
    check(out == want and r.oversize == expected_oversize(v), name, "byte by byte")
    # Split at every position.
    for i in range(len(w) + 1):
        out, r = feed([w[:i], w[i:]], v, key_for)
        if not (out == want and r.oversize == expected_oversize(v)):
            fail(name, "split at %d" % i)
        checks += 1
    # Garbage before (cut off by the frame's leading 0x00) and after.
    for gname, g in GARBAGE:
        before, gr = feed([g + b"\x00"], v, key_for)
        for o in before:
            check(o[0] == "err", name, "garbage %s decoded" % gname)
        out, r = feed([g, w, b"\x41\x42\x43"], v, key_for)
        check(out == before + want and r.oversize == gr.oversize + expected_oversize(v) and r.pending() == 3, name, "garbage %s" % gname)
        out, r = feed([g + w + b"\x41\x42\x43\x00"], v, key_for)
        check(out == before + want + [("err", wire.E_COBS)], name, "garbage %s with trailing piece" % gname)
    # Stray zeros around and right after the leading delimiter.
    out, r = feed([b"\x00" * 5 + w + b"\x00" * 7, b"\x00", w[:1] + b"\x00" + w[1:]], v, key_for)
    check(out == want + want and r.oversize == 2 * expected_oversize(v), name, "stray zeros")
    back_to_back(v, key_for, w)


def check_replay(seq):
    name = seq["name"]
    win = wire.ReplayWindow(seq["start"])
    for counter, want in seq["steps"]:
        try:
            win.accept(counter)
            got = "accept"
        except wire.WireError as e:
            got = "replay" if e.reason == wire.E_REPLAY else e.reason
        except Exception as e:
            got = repr(e)
        check(got == want, name, "counter %d: %s, expected %s" % (counter, got, want))


def check_unencodable(u):
    name = u["name"]
    try:
        if "short" in u:
            sh = u["short"]
            wire.encode_short(sh["type"], sh["addr"], sh["seq"])
        else:
            wire.encode_message(wire.BoxKey(unhex(u["key"])), message(u), u["box_id"], u["counter"], u["addr"])
        fail(name, "encoded, expected %s" % u["reason"])
    except wire.WireError as e:
        check(e.reason == u["reason"], name, "reason %s" % e.reason)
    except Exception as e:
        fail(name, "raised %r" % (e,))


def main(path):
    global bytes_fields
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('"') and line.endswith("["):
                section = json.loads(line[:-1].rstrip().rstrip(":"))
                continue
            if line.startswith("]"):
                section = None
                continue
            if line.startswith('"'):
                item = json.loads("{" + line.rstrip(",") + "}")
                if "bytes_fields" in item:
                    bytes_fields = tuple(item["bytes_fields"])
                continue
            if not line.startswith("{") or section is None:
                continue
            item = json.loads(line.rstrip(","))
            counts[section] += 1
            if section == "valid" or section == "invalid":
                check_frame_vector(item)
            elif section == "replay":
                check_replay(item)
            elif section == "unencodable":
                check_unencodable(item)
            item = None
            gc.collect()
            free = gc.mem_free()
            if free < heap["free_min"]:
                heap["free_min"] = free
    # Flush the back-to-back stream: everything expected must have come out.
    for p in b2b_reader.feed(b2b_tail):
        pv, pk, pe = b2b_queue.pop(0)
        check(outcome(p, pv, pk) == pe, pv["name"], "back to back: wrong outcome")
    check(not b2b_queue, "back_to_back", "%d expected pieces never came out" % len(b2b_queue))
    check(b2b_reader.oversize == b2b_oversize, "back_to_back", "oversize %d, expected %d" % (b2b_reader.oversize, b2b_oversize))


main(sys.argv[1])
print("mpy_check_vectors valid=%d invalid=%d replay=%d unencodable=%d checks=%d failures=%d heap_free_min=%d" % (
    counts["valid"], counts["invalid"], counts["replay"], counts["unencodable"], checks, failures, heap["free_min"]))
sys.exit(1 if failures else 0)
