"""Box <-> gateway wire codec: one file for the ESP32 box (MicroPython) and the
junction gateway (CPython).

This module is the single source of truth for the bytes on the RS-485 bus and
on the LTE TCP stream; docs/protocol.md describes the same layout for a third
implementation, and tests/vectors/wire.json holds the golden vectors that both
interpreters must agree with.

It is written in the subset both interpreters run: no f-strings with `=`, no
dataclasses, no `hmac` module (the MicroPython unix port has none), no keyword
arguments to builtins that MicroPython lacks. It has no I/O and no clock: the
transports own buffers and timing, the application owns state.

It stays loaded on the box for good, so it is written to be small in RAM
(docs/firmware.md, "Memory"): on MicroPython every function, every string
longer than 10 characters and every table is a heap object for as long as
the module is loaded. Hence one table-driven path for all payloads
(_LAYOUTS) instead of a branch per type, and error details built from short
pieces around one shared format (_RANGE_FMT). One trap: MicroPython grows
a module's name table only when it is full, so with 71 to 73 module-level
names (measured) its 73 slots are (nearly) full and every lookup of a
builtin from this module scans them: the codec ran 2-3 times slower on the
MicroPython unix port, a risk for the box's 5 ms RS-485 turnaround. It has
more than 73 names (a table of 97 slots); keep it that way.

Frame body (before COBS), all integers big-endian::

    off  size  field
    0    1     version          (1)
    1    1     type             (MSG_* below)
    2    1     flags            bit0 DOWN: gateway -> box; other bits 0
    3    1     bus address      1..247 on RS-485, 0 on LTE
    4    4     box id
    8    4     counter          per sender and direction, never repeats
    12   1     payload length N (0.._MAX_PAYLOAD)
    13   N     payload
    13+N 8     tag              HMAC-SHA256(box key, bytes 0..13+N)[:8]
    21+N 4     CRC-32           IEEE (zlib) over bytes 0..21+N

On the wire: 0x00, COBS(body), 0x00. A receiver splits the stream at 0x00,
ignores empty pieces (the stray 0x00 an RS-485 transceiver emits at
turnaround), and drops any piece longer than MAX_ENCODED (garbage, or two
frames whose delimiter was lost) until the next 0x00.
"""

import struct
import binascii
import hashlib

try:
    from micropython import const

    _CPYTHON = False
except ImportError:  # CPython
    _CPYTHON = True

    def const(x):
        return x


# Code under `if _CPYTHON:` is for the gateway and tools only (reprs, a
# helper no box code calls). On MicroPython a def that never runs costs no
# RAM once the module has loaded: its bytecode is dropped with the module's
# top-level code. Its string literals do load, though (one constant table
# for the whole module): keep them to 10 characters or fewer.


VERSION = const(1)

# Message types.
MSG_ALARM = const(0x01)
MSG_ACK = const(0x02)
MSG_HEARTBEAT = const(0x03)
MSG_CALL_STATE = const(0x04)
MSG_COMMAND = const(0x05)
MSG_RESULT = const(0x06)
MSG_POLL = const(0x07)
MSG_IDLE = const(0x08)

FLAG_DOWN = const(0x01)
SHORT_MARK = const(0x81)  # first byte of a short POLL/IDLE (see encode_short)
_SHORT_BODY = const(6)

_HEADER = const(13)
_TAG = const(8)
_CRC = const(4)
OVERHEAD = const(25)  # header + tag + CRC
# 192 payload bytes keep the whole body (217 bytes) inside one COBS block of
# 254, so COBS adds exactly one byte; the largest message we send (a RESULT
# with a self-test report) needs under 100.
MAX_PAYLOAD = const(192)
MAX_BODY = const(217)  # OVERHEAD + MAX_PAYLOAD
# A receiver never buffers more than this between two delimiters: COBS adds
# one byte to a body of at most 254 bytes.
MAX_ENCODED = const(218)

_U32 = const(0xFFFFFFFF)

# Bus addresses: 0 = not on a bus (LTE), 1..247 boxes (as Modbus).
ADDR_NONE = const(0)
ADDR_MAX = const(247)

# Replay window: a receiver accepts a counter above the highest seen, or one
# of the _WINDOW below it that it has not seen yet (RFC 4303 style). 24 bits
# keep the bitmap a small int on a 32-bit MicroPython port.
WINDOW = const(24)
_WINDOW_MASK = const(0xFFFFFF)

TYPE_NAMES = {
    MSG_ALARM: "ALARM",
    MSG_ACK: "ACK",
    MSG_HEARTBEAT: "HEARTBEAT",
    MSG_CALL_STATE: "CALL_STATE",
    MSG_COMMAND: "COMMAND",
    MSG_RESULT: "RESULT",
    MSG_POLL: "POLL",
    MSG_IDLE: "IDLE",
}
TYPE_CODES = {name: code for code, name in TYPE_NAMES.items()}

# Which way each type travels: bit t set = type t goes gateway -> box (DOWN
# flag set): ACK, CALL_STATE, COMMAND, POLL. A bit mask, not a tuple, so it
# costs no RAM.
_DOWN_TYPES = const(0b10110100)



def _codes(**codes):
    # An enumeration table (code -> name) from name=code keywords. A keyword
    # is an interned name (qstr, ~15 B); a string literal longer than 10
    # characters would be a heap string (~60 B) for as long as wire is
    # loaded. Used only while the module loads (deleted below).
    return {codes[n]: n for n in codes}


# Enumerations carried in payloads, as code -> name tables.
ALARM_KINDS = _codes(emergency=1, panic=2, tamper=3, power=4, battery=5, button_fault=6)
ALARM_FLAG_TIME_SYNCED = const(0x01)  # press time is wall-clock, not uptime
ALARM_FLAG_RESTORE = const(0x02)  # trouble cleared (tamper closed, mains back...)
ACK_STATUS = _codes(stored=0, duplicate=1, refused=2)
POWER_STATES = _codes(mains=0, battery=1, unknown=2)
LINKS = _codes(none=0, rs485=1, lte=2)
BOOT_REASONS = _codes(none=0, power_on=1, hard_reset=2, watchdog=3, soft_reset=4, brownout=5, deep_sleep=6, panic=7)
CALL_STATES = _codes(idle=0, ringing=1, connected=2, ended=3, dispatched=4)
PROMPTS = _codes(none=0, connecting=1, help_on_way=2, testing=3, received=4)
COMMAND_OPS = _codes(selftest=1, reboot=2, config_set=3, time_sync=4, config_get=5)
RESULT_STATUS = _codes(ok=0, fail=1, unsupported=2, bad_args=3)
# HEARTBEAT fault bits.
FAULT_BITS = _codes(emergency_stuck=0x01, panic_stuck=0x02, tamper_stuck=0x04, flash=0x08, clock_unsynced=0x10, link_backup=0x20)
# Field and reason names longer than 10 characters, as keywords for the
# same reason: a string literal below with the same text then loads as this
# interned name rather than as a heap string.
dict(acked_counter=0, boot_reason=0, time_synced=0, unknown_box=0)
del _codes

# Rejection reasons (WireError.reason), in the order a receiver checks them.
E_EMPTY = "empty"  # nothing between two delimiters: ignored, not counted
E_OVERSIZE = "oversize"  # more than MAX_ENCODED bytes without a delimiter
E_COBS = "cobs"  # COBS code byte points past the end of the piece
E_SHORT = "short"  # body shorter than OVERHEAD
E_CRC = "crc"  # line noise
E_VERSION = "version"  # unknown protocol version
E_LENGTH = "length"  # payload length field disagrees with body size
E_TYPE = "type"  # unknown type, or a type sent in the wrong direction
E_UNKNOWN_BOX = "unknown_box"  # no key for this box id
E_AUTH = "auth"  # tag does not verify with the box's key
E_PAYLOAD = "payload"  # payload does not fit the type's layout
E_REPLAY = "replay"  # counter seen before or below the window
E_RANGE = "range"  # encoder: a field out of range

# Every "value outside its range" detail, the encoder's and the decoder's,
# uses this one format: one string on the box's heap instead of one per check.
_RANGE_FMT = "%s %r not in %d..%d"

# Payload layouts, in type-code order (ALARM = 1 ... IDLE = 8): the struct
# format of the fixed part, how many of the fields a message must give, then
# the fields in wire order. A table just before a field's name makes it an
# enumeration: sent as its code, decoded to its name in that table (an
# unknown code decodes as the integer, so a newer peer is still understood).
# The fields past the required ones may be left out of a message to encode:
# they go out as 0 (the code of "stored" and "none"), no faults, no bytes. A
# last field with no format character left (COMMAND args, RESULT data) is the
# free bytes to the end of the payload. Special cases, by name: "flags"
# (ALARM) carries time_synced and restore; "tamper" is a bool (0 or 1); "fw"
# is three bytes, "major.minor.patch"; "faults" is a list of FAULT_BITS names
# (bits with no name stay integers, never dropped: a fault reported by a
# newer box must still reach the operator).
_NO_PAYLOAD = (">", 0)
_LAYOUTS = (
    (">IBBIH", 4, "event", ALARM_KINDS, "kind", "flags", "time_s", "time_ms"),
    (">BIIB", 2, TYPE_NAMES, "acked_type", "acked_counter", "event", ACK_STATUS, "status"),
    (">IBHBBbBBBHBBI", 8, "uptime_s", POWER_STATES, "power", "battery_mv", "tamper", LINKS, "link", "rssi_dbm", "fw",
     "outbox", BOOT_REASONS, "boot_reason", "faults", "time_s"),
    (">BIB", 1, CALL_STATES, "state", "event", PROMPTS, "prompt"),
    (">HB", 2, "request", COMMAND_OPS, "op", "args"),
    (">HBB", 3, "request", COMMAND_OPS, "op", RESULT_STATUS, "status", "data"),
    _NO_PAYLOAD,  # POLL
    _NO_PAYLOAD,  # IDLE
)


class WireError(ValueError):
    """A frame was rejected. `reason` is one of the E_* codes; `box_id` is set
    once the header could be read."""

    def __init__(self, reason, detail="", box_id=None):
        self.reason = reason
        self.detail = detail
        self.box_id = box_id
        msg = reason if box_id is None else reason + " (box %d)" % box_id
        super().__init__(msg + ": " + detail if detail else msg)


def _code(table, value, what, lo=0, hi=255):
    """The wire value of a field: an integer checked against its range lo..hi
    or, for an enumeration (`table`, code -> name), also a name. Integer
    codes this codec does not know (from a newer peer) pass: they decode as
    integers too. MicroPython's struct.pack silently wraps out-of-range
    values (300 packs as 0x2c), so the encoder checks every field itself:
    the box and the gateway must refuse the same messages."""
    if isinstance(value, int) and not isinstance(value, bool):
        if lo <= value <= hi:
            return value
    elif table:
        for c in table:
            if table[c] == value:
                return c
        raise WireError(E_RANGE, "%s %r" % (what, value))
    raise WireError(E_RANGE, _RANGE_FMT % (what, value, lo, hi))


# ---------------------------------------------------------------- COBS


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: the result has no 0x00 byte."""
    out = bytearray()
    for chunk in bytes(data).split(b"\x00"):
        # A chunk longer than 254 bytes is split into 0xFF blocks.
        while len(chunk) >= 254:
            out.append(0xFF)
            out.extend(chunk[:254])
            chunk = chunk[254:]
        out.append(len(chunk) + 1)
        out.extend(chunk)
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; raises WireError(E_COBS) on a malformed piece."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise WireError(E_COBS, "zero byte")
        end = i + code
        if end > n:
            raise WireError(E_COBS, "past end")
        out.extend(data[i + 1 : end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- HMAC


# What BoxKey keeps of each HMAC pad, and how it starts a hash from it. On
# CPython a hash state can be copied: keep the state that has hashed the
# pad and copy it per message. MicroPython's cannot: keep the pad's bytes
# and hash them again per message. Both are builtins (no code of ours).
_START = getattr(type(hashlib.sha256()), "copy", hashlib.sha256)
_PAD = bytes if _START is hashlib.sha256 else hashlib.sha256


class BoxKey:
    """A per-box secret with its HMAC-SHA256 pads precomputed.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104), written over
    hashlib.sha256 because MicroPython has no hmac module. _inner and _outer
    hold the two pads (_PAD, _START above)."""

    def __init__(self, secret):
        secret = bytes(secret)
        if len(secret) < 16:
            raise WireError(E_RANGE, "key < 16 B")
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        # The key padded with zeros to the 64-byte block, XORed with each pad
        # (a loop, not a comprehension: no extra function in RAM).
        inner = bytearray(secret + bytes(64 - len(secret)))
        outer = bytearray(inner)
        for i in range(64):
            inner[i] ^= 0x36
            outer[i] ^= 0x5C
        self._inner = _PAD(inner)
        self._outer = _PAD(outer)

    def tag(self, msg, n=_TAG):
        """The first n bytes of HMAC-SHA256(key, msg): the frame tag."""
        inner = _START(self._inner)
        outer = _START(self._outer)
        inner.update(msg)
        outer.update(inner.digest())
        return outer.digest()[:n]

    if _CPYTHON:

        def mac(self, msg):
            """Full 32-byte HMAC-SHA256 of msg."""
            return self.tag(msg, 32)

        def __repr__(self):
            # Keys never appear in the gateway's logs or tracebacks (on the
            # box the default repr shows no key either).
            return "BoxKey(%s)" % "<secret>"


# IEEE CRC-32 (as zlib), an unsigned int on both interpreters.
crc32 = binascii.crc32


def equal_ct(a, b):
    """Constant-time comparison of two byte strings (timing does not reveal
    how many leading bytes of a forged tag were right)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


# ---------------------------------------------------------------- frames


class Frame:
    """A decoded, verified frame. `msg` is the decoded payload as a dict;
    `type_name` is its type's name, `down` True for gateway -> box. Plain
    attributes, not properties: a frame lives for one message, a property
    is two more objects in RAM for good."""

    def __init__(self, mtype, flags, addr, box_id, counter, payload, msg):
        self.mtype = mtype
        self.flags = flags
        self.addr = addr
        self.box_id = box_id
        self.counter = counter
        self.payload = payload
        self.msg = msg
        self.type_name = msg["type"]
        self.down = flags == FLAG_DOWN  # decode_body lets no other flag bit through

    if _CPYTHON:

        def __repr__(self):
            # Frame('ALARM', box_id, addr, counter, {...}).
            return "Frame%r" % ((self.type_name, self.box_id, self.addr, self.counter, self.msg),)


def encode_body(key, mtype, box_id, counter, payload=b"", addr=ADDR_NONE):
    """Header, payload, tag and CRC: the body before COBS."""
    if mtype not in TYPE_NAMES:
        raise WireError(E_RANGE, "type %r" % (mtype,))
    _code(None, len(payload), "payload", 0, MAX_PAYLOAD)
    _code(None, addr, "address", 0, ADDR_MAX)
    _code(None, box_id, "box_id", 0, _U32)
    _code(None, counter, "counter", 0, _U32)
    head = struct.pack(">BBBBIIB", VERSION, mtype, (_DOWN_TYPES >> mtype) & FLAG_DOWN, addr, box_id, counter, len(payload))
    signed = head + bytes(payload)
    signed = signed + key.tag(signed)
    return signed + struct.pack(">I", crc32(signed))


def encode_frame(key, mtype, box_id, counter, payload=b"", addr=ADDR_NONE):
    """The bytes to write to the wire: 0x00, COBS(body), 0x00."""
    return b"\x00" + cobs_encode(encode_body(key, mtype, box_id, counter, payload, addr)) + b"\x00"


def encode_message(key, msg, box_id, counter, addr=ADDR_NONE):
    """encode_frame from a message dict as decode_frame returns it."""
    payload = pack_payload(msg)  # refuses an unknown type
    return encode_frame(key, TYPE_CODES[msg["type"]], box_id, counter, payload, addr)


if _CPYTHON:

    def peek_header(body):
        """(version, type, flags, addr, box_id, counter, length) of a body whose
        CRC has been checked; used to find the key before verifying."""
        return struct.unpack(">BBBBIIB", body[:_HEADER])


# ---------------------------------------------------------------- short frames
#
# On RS-485 the master polls every box many times a second; a full POLL and
# IDLE (28 bytes each on the wire) would make a 32-box cycle ~160 ms at
# 115200 baud. So POLL and IDLE also exist as 9-byte short frames:
#
#     off size field
#     0   1    0x81 (short-frame marker: version 1 | 0x80)
#     1   1    type (MSG_POLL or MSG_IDLE only)
#     2   1    bus address (1..247)
#     3   1    poll sequence (the master's, echoed by the box)
#     4   2    low 16 bits of the CRC-32 of bytes 0..3
#
# They carry no tag: a forged short POLL can only make a box send a frame
# that is itself authenticated, and a short IDLE proves nothing (box health
# is judged only from authenticated HEARTBEATs). Frame.box_id is None.


def encode_short(mtype, addr, seq):
    """A short POLL (master) or IDLE (box) for RS-485: 0x00 COBS(body) 0x00."""
    if mtype != MSG_POLL and mtype != MSG_IDLE:
        raise WireError(E_RANGE, _RANGE_FMT % ("short type", mtype, MSG_POLL, MSG_IDLE))
    _code(None, addr, "address", 1, ADDR_MAX)
    _code(None, seq, "seq")
    head = bytes([SHORT_MARK, mtype, addr, seq])
    return b"\x00" + cobs_encode(head + struct.pack(">H", crc32(head) & 0xFFFF)) + b"\x00"


def decode_body(body, key_for, expect_down=None):
    """Check and verify a body (COBS already removed); return a Frame.

    key_for(box_id) -> BoxKey or None. expect_down: True on a box (accept only
    gateway->box types), False on a gateway, None to accept both (tools).
    Raises WireError; checks run cheapest first so noise never costs a hash."""
    n = len(body)
    if n == _SHORT_BODY and body[0] == SHORT_MARK:
        # A short POLL or IDLE (see above): no box id, no key, no tag.
        if crc32(body[:4]) & 0xFFFF != body[4] << 8 | body[5]:
            raise WireError(E_CRC, "short form")
        mark, mtype, addr, counter = body[:4]
        if mtype != MSG_POLL and mtype != MSG_IDLE:
            raise WireError(E_TYPE, _RANGE_FMT % ("short type", mtype, MSG_POLL, MSG_IDLE))
        flags = (_DOWN_TYPES >> mtype) & FLAG_DOWN
        box_id = None
    else:
        if not OVERHEAD <= n <= MAX_BODY:
            raise WireError(E_SHORT if n < OVERHEAD else E_OVERSIZE, _RANGE_FMT % ("bytes", n, OVERHEAD, MAX_BODY))
        if crc32(body[: n - _CRC]) != struct.unpack(">I", body[n - _CRC :])[0]:
            raise WireError(E_CRC)
        version, mtype, flags, addr, box_id, counter, length = struct.unpack(">BBBBIIB", body[:_HEADER])
        if version != VERSION:
            raise WireError(E_VERSION, _RANGE_FMT % ("version", version, VERSION, VERSION), box_id)
        if length != n - OVERHEAD:
            raise WireError(E_LENGTH, _RANGE_FMT % ("length", length, n - OVERHEAD, n - OVERHEAD), box_id)
        if mtype not in TYPE_NAMES or flags & 0xFE:
            raise WireError(E_TYPE, "%s %r" % ("type/flags", (mtype, flags)), box_id)
    down = flags & FLAG_DOWN
    if down != (_DOWN_TYPES >> mtype) & 1 or (expect_down is not None and down != expect_down):
        raise WireError(E_TYPE, TYPE_NAMES[mtype] + " wrong way", box_id)
    if box_id is None:  # short
        if not 1 <= addr <= ADDR_MAX:
            # A field invalid for the type (E_RANGE is the encoder's reason).
            raise WireError(E_PAYLOAD, _RANGE_FMT % ("address", addr, 1, ADDR_MAX))
        return Frame(mtype, flags, addr, None, counter, b"", {"type": TYPE_NAMES[mtype], "short": True, "seq": counter})
    key = key_for(box_id)
    if key is None:
        raise WireError(E_UNKNOWN_BOX, "provision?", box_id)
    end = _HEADER + length
    if not equal_ct(key.tag(body[:end]), body[end : end + _TAG]):
        raise WireError(E_AUTH, "wrong key?", box_id)
    payload = bytes(body[_HEADER:end])
    return Frame(mtype, flags, addr, box_id, counter, payload, unpack_payload(mtype, payload, box_id))


def decode_frame(piece, key_for, expect_down=None):
    """Decode one piece between delimiters (COBS-encoded) into a Frame."""
    if not piece:
        raise WireError(E_EMPTY)
    if len(piece) > MAX_ENCODED:
        raise WireError(E_OVERSIZE, _RANGE_FMT % ("bytes", len(piece), 1, MAX_ENCODED))
    return decode_body(cobs_decode(piece), key_for, expect_down)


# ---------------------------------------------------------------- payloads
#
# Both directions walk the type's _LAYOUTS entry. The decoded form is a dict
# with "type" and the named fields.


# CPython raises struct.error; MicroPython has no struct.error (naming it in
# an except clause would itself raise AttributeError) and raises ValueError.
_STRUCT_ERROR = getattr(struct, "error", ValueError)


def pack_payload(msg):
    """The payload bytes of a message dict (the form unpack_payload returns).
    Raises WireError(E_RANGE) for a missing or out-of-range field."""
    t = msg.get("type")
    try:
        mtype = TYPE_CODES.get(t)
        if mtype is None:
            raise WireError(E_RANGE, "type %r" % (t,))
        lay = _LAYOUTS[mtype - 1]
        fmt = lay[0]
        vals = []
        table = None
        k = 0  # fields so far
        for f in lay[2:]:
            if type(f) is dict:  # the next field's enumeration
                table = f
                continue
            k += 1
            if f == "flags":  # not in the message: time_synced and restore
                synced = ALARM_FLAG_TIME_SYNCED if msg.get("time_synced", True) else 0
                vals.append(synced | (ALARM_FLAG_RESTORE if msg.get("restore", False) else 0))
                continue
            # A missing required field is a KeyError (E_RANGE below).
            v = msg[f] if k <= lay[1] else msg.get(f, 0)
            if len(vals) + 1 == len(fmt):  # no format character left: the free bytes to the end
                if isinstance(v, str):
                    raise WireError(E_RANGE, f + " not bytes")
                return struct.pack(fmt, *vals) + bytes(v)
            c = fmt[len(vals) + 1]  # the field's format character
            if f == "tamper":
                vals.append(1 if v else 0)
            elif f == "fw":
                parts = str(v).split(".")
                for p in parts:
                    if len(parts) != 3 or not p.isdigit():
                        raise WireError(E_RANGE, "%s %r" % ("fw x.y.z", v))
                    vals.append(_code(None, int(p), f))
            elif f == "faults":
                bits = 0
                for name in msg.get(f, ()):
                    b = _code(FAULT_BITS, name, "fault")
                    if b == 0 or b & (b - 1):
                        raise WireError(E_RANGE, "fault %r" % (name,))
                    bits |= b
                vals.append(bits)
            else:
                # The range of the format character (b signed, B H I not);
                # an enumeration's code is a B.
                lo = -128 if c == "b" else 0
                vals.append(_code(table, v, f, lo, 999 if f == "time_ms" else lo + (1 << 8 * struct.calcsize(c)) - 1))
                table = None
        return struct.pack(fmt, *vals)
    except WireError:
        raise
    except KeyError as e:
        raise WireError(E_RANGE, "%s, no %s" % (t, e))
    except (OverflowError, TypeError, _STRUCT_ERROR) as e:  # a value of the wrong kind
        raise WireError(E_RANGE, "%s %r" % (t, e))


def unpack_payload(mtype, p, box_id=None):
    """The message dict of a payload; raises WireError(E_PAYLOAD) for one
    that does not fit the type's layout."""
    name = TYPE_NAMES[mtype]  # KeyError for an unknown type
    lay = _LAYOUTS[mtype - 1]
    fmt = lay[0]
    size = struct.calcsize(fmt)
    n = len(p)
    rest = mtype == MSG_COMMAND or mtype == MSG_RESULT  # end in free bytes
    if n != size and (n < size or not rest):
        raise WireError(E_PAYLOAD, _RANGE_FMT % (name + " bytes", n, size, MAX_PAYLOAD if rest else size), box_id)
    vals = struct.unpack(fmt, p[:size])
    msg = {"type": name}
    j = 0
    table = None
    for f in lay[2:]:
        if type(f) is dict:  # the next field's enumeration
            table = f
            continue
        if j == len(vals):  # COMMAND args, RESULT data
            msg[f] = bytes(p[size:])
            break
        v = vals[j]
        j += 1
        if table is not None:
            v = table.get(v, v)
            table = None
        elif f == "flags":
            if v > 3:
                raise WireError(E_PAYLOAD, _RANGE_FMT % (f, v, 0, 3), box_id)
            msg["time_synced"] = bool(v & ALARM_FLAG_TIME_SYNCED)
            f = "restore"
            v = bool(v & ALARM_FLAG_RESTORE)
        elif f == "tamper":
            if v > 1:
                raise WireError(E_PAYLOAD, _RANGE_FMT % (f, v, 0, 1), box_id)
            v = bool(v)
        elif f == "time_ms":
            if v > 999:
                raise WireError(E_PAYLOAD, _RANGE_FMT % (f, v, 0, 999), box_id)
        elif f == "fw":
            v = "%d.%d.%d" % vals[j - 1 : j + 2]
            j += 2
        elif f == "faults":
            bits = v
            v = []
            b = 1
            while b <= bits:
                if bits & b:
                    v.append(FAULT_BITS.get(b, b))
                b <<= 1
        msg[f] = v
    return msg


# ---------------------------------------------------------------- streams


class FrameReader:
    """Splits a byte stream into COBS pieces at 0x00 delimiters.

    The transport feeds whatever it read; `feed` returns the complete,
    non-empty pieces (still COBS-encoded; pass each to decode_frame). The
    buffer is allocated once, `limit` (MAX_ENCODED) bytes, and never grows: a
    longer run without a delimiter is dropped up to the next 0x00 (hunting)
    and counted in `oversize` (runs) and `dropped_bytes`. Feeding allocates
    only the pieces it returns, so a UART read loop does not fragment a small
    heap."""

    def __init__(self, limit=MAX_ENCODED):
        self.limit = limit
        self._view = memoryview(bytearray(limit))
        self._len = 0  # bytes of the current piece held in _view
        self._hunting = False  # dropping an oversize run up to the next 0x00
        self.dropped_bytes = 0
        self.oversize = 0

    def feed(self, data):
        pieces = []
        start = 0
        n = len(data)
        src = None
        while start < n:
            z = data.find(b"\x00", start)
            end = n if z < 0 else z
            run = end - start
            if self._hunting:
                self.dropped_bytes += run
            elif self._len + run > self.limit:
                self.dropped_bytes += self._len + run
                self._len = 0
                self._hunting = True
                self.oversize += 1
            elif run:
                if src is None:
                    src = memoryview(data)
                self._view[self._len : self._len + run] = src[start:end]
                self._len += run
            if z < 0:
                break
            # A delimiter: close the piece.
            if self._hunting:
                self._hunting = False
            elif self._len:
                pieces.append(bytes(self._view[: self._len]))
                self._len = 0
            start = z + 1
        return pieces

    def pending(self):
        """Bytes held waiting for a delimiter."""
        return self._len


# ---------------------------------------------------------------- replay


class ReplayWindow:
    """Anti-replay state for one sender and direction.

    Accepts a counter above the highest seen (`top`), or one of the WINDOW
    counters below it not seen before (frames may cross when a box switches
    between RS-485 and LTE). `start` is the persisted highest counter (-1 for
    a sender never heard from): the bitmap of what was seen below it is lost
    on a restart, so `start` and every counter below it stay rejected for
    good, even after higher counters move the window on."""

    def __init__(self, start=-1, seen=None):
        self.top = start
        # bit i set = counter top - 1 - i seen. After a restart nothing below
        # the persisted counter may be accepted again: all bits start set,
        # unless the caller persisted the bitmap too (`seen`, from state()).
        if seen is None:
            seen = _WINDOW_MASK if start >= 0 else 0
        self._seen = seen & _WINDOW_MASK

    def state(self):
        """(top, seen bitmap): what to persist to restore this window exactly."""
        return self.top, self._seen

    def check(self, counter, box_id=None):
        """Raise WireError(E_REPLAY) if counter would be rejected."""
        if counter > self.top:
            return
        back = self.top - counter
        if back == 0 or back > WINDOW or (self._seen >> (back - 1)) & 1:
            raise WireError(E_REPLAY, "%d, top %d" % (counter, self.top), box_id)

    def accept(self, counter, box_id=None):
        """Check, then record the counter as seen. Call only after the frame
        authenticated (a forged counter must not move the window)."""
        self.check(counter, box_id)
        if counter > self.top:
            shift = counter - self.top
            if self.top < 0 or shift > WINDOW:
                # A new sender, or a jump past the window: nothing below seen.
                self._seen = 0
            else:
                # Mask before shifting so the bitmap stays a small int on a
                # 32-bit port (no long-int allocation per frame).
                self._seen = ((self._seen & (_WINDOW_MASK >> shift)) << shift) | (1 << (shift - 1))
            self.top = counter
        else:
            self._seen |= 1 << (self.top - counter - 1)
