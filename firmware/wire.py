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
except ImportError:  # CPython

    def const(x):
        return x


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

# Field ranges the encoder checks (MicroPython's struct.pack does not).
_U16 = const(0xFFFF)
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
TYPE_CODES = {}
for _c in TYPE_NAMES:
    TYPE_CODES[TYPE_NAMES[_c]] = _c

# Which way each type travels: True = gateway -> box (DOWN flag set).
_DOWN_TYPES = (MSG_ACK, MSG_CALL_STATE, MSG_COMMAND, MSG_POLL)

# Enumerations carried in payloads, as (code, name) tables.
ALARM_KINDS = {1: "emergency", 2: "panic", 3: "tamper", 4: "power", 5: "battery", 6: "button_fault"}
ALARM_FLAG_TIME_SYNCED = const(0x01)  # press time is wall-clock, not uptime
ALARM_FLAG_RESTORE = const(0x02)  # trouble cleared (tamper closed, mains back...)
ACK_STATUS = {0: "stored", 1: "duplicate", 2: "refused"}
POWER_STATES = {0: "mains", 1: "battery", 2: "unknown"}
LINKS = {0: "none", 1: "rs485", 2: "lte"}
BOOT_REASONS = {0: "none", 1: "power_on", 2: "hard_reset", 3: "watchdog", 4: "soft_reset", 5: "brownout", 6: "deep_sleep", 7: "panic"}
CALL_STATES = {0: "idle", 1: "ringing", 2: "connected", 3: "ended", 4: "dispatched"}
PROMPTS = {0: "none", 1: "connecting", 2: "help_on_way", 3: "testing", 4: "received"}
COMMAND_OPS = {1: "selftest", 2: "reboot", 3: "config_set", 4: "time_sync", 5: "config_get"}
RESULT_STATUS = {0: "ok", 1: "fail", 2: "unsupported", 3: "bad_args"}
# HEARTBEAT fault bits.
FAULT_BITS = {0x01: "emergency_stuck", 0x02: "panic_stuck", 0x04: "tamper_stuck", 0x08: "flash", 0x10: "clock_unsynced", 0x20: "link_backup"}

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


class WireError(ValueError):
    """A frame was rejected. `reason` is one of the E_* codes; `box_id` is set
    once the header could be read."""

    def __init__(self, reason, detail="", box_id=None):
        self.reason = reason
        self.detail = detail
        self.box_id = box_id
        msg = reason
        if box_id is not None:
            msg = msg + " (box %d)" % box_id
        if detail:
            msg = msg + ": " + detail
        super().__init__(msg)


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
            raise WireError(E_COBS, "zero byte inside a frame")
        end = i + code
        if end > n:
            raise WireError(E_COBS, "block runs past the end")
        out.extend(data[i + 1 : end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- HMAC


class BoxKey:
    """A per-box secret with its HMAC-SHA256 pads precomputed.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104), written over
    hashlib.sha256 because MicroPython has no hmac module. On CPython the keyed
    hash states are copied instead of re-hashing the pads each time."""

    def __init__(self, secret):
        secret = bytes(secret)
        if len(secret) < 16:
            raise WireError(E_RANGE, "a box key must be at least 16 bytes")
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        padded = secret + bytes(64 - len(secret))
        self._ipad = bytes([b ^ 0x36 for b in padded])
        self._opad = bytes([b ^ 0x5C for b in padded])
        self._inner = None
        self._outer = None
        h = hashlib.sha256(self._ipad)
        if hasattr(h, "copy"):
            self._inner = h
            self._outer = hashlib.sha256(self._opad)

    def mac(self, msg):
        """Full 32-byte HMAC-SHA256 of msg."""
        if self._inner is not None:
            inner = self._inner.copy()
            inner.update(msg)
            outer = self._outer.copy()
            outer.update(inner.digest())
            return outer.digest()
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def tag(self, msg):
        return self.mac(msg)[:_TAG]

    def __repr__(self):
        # Keys never appear in logs or tracebacks.
        return "BoxKey(<secret>)"


def equal_ct(a, b):
    """Constant-time comparison of two byte strings (timing does not reveal
    how many leading bytes of a forged tag were right)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------- frames


class Frame:
    """A decoded, verified frame. `msg` is the decoded payload as a dict."""

    __slots__ = ("mtype", "flags", "addr", "box_id", "counter", "payload", "msg")

    def __init__(self, mtype, flags, addr, box_id, counter, payload, msg):
        self.mtype = mtype
        self.flags = flags
        self.addr = addr
        self.box_id = box_id
        self.counter = counter
        self.payload = payload
        self.msg = msg

    @property
    def down(self):
        return bool(self.flags & FLAG_DOWN)

    @property
    def type_name(self):
        return TYPE_NAMES[self.mtype]

    def __repr__(self):
        return "Frame(%s box=%r addr=%d ctr=%d %r)" % (TYPE_NAMES.get(self.mtype, "?"), self.box_id, self.addr, self.counter, self.msg)


def encode_body(key, mtype, box_id, counter, payload=b"", addr=ADDR_NONE):
    """Header, payload, tag and CRC: the body before COBS."""
    if mtype not in TYPE_NAMES:
        raise WireError(E_RANGE, "unknown message type %r" % (mtype,))
    if len(payload) > MAX_PAYLOAD:
        raise WireError(E_RANGE, "payload of %d bytes > %d" % (len(payload), MAX_PAYLOAD))
    _int(addr, 0, ADDR_MAX, "bus address")
    _int(box_id, 0, _U32, "box id")
    _int(counter, 0, _U32, "counter")
    flags = FLAG_DOWN if mtype in _DOWN_TYPES else 0
    head = struct.pack(">BBBBIIB", VERSION, mtype, flags, addr, box_id, counter, len(payload))
    signed = head + bytes(payload)
    signed = signed + key.tag(signed)
    return signed + struct.pack(">I", crc32(signed))


def encode_frame(key, mtype, box_id, counter, payload=b"", addr=ADDR_NONE):
    """The bytes to write to the wire: 0x00, COBS(body), 0x00."""
    return b"\x00" + cobs_encode(encode_body(key, mtype, box_id, counter, payload, addr)) + b"\x00"


def encode_message(key, msg, box_id, counter, addr=ADDR_NONE):
    """encode_frame from a message dict as decode_frame returns it."""
    mtype = TYPE_CODES.get(msg.get("type"))
    if mtype is None:
        raise WireError(E_RANGE, "unknown message type %r" % (msg.get("type"),))
    return encode_frame(key, mtype, box_id, counter, pack_payload(msg), addr)


def peek_header(body):
    """(version, type, flags, addr, box_id, counter, length) of a body whose
    CRC has been checked; used to find the key before verifying."""
    return struct.unpack(">BBBBIIB", body[:_HEADER])


def decode_body(body, key_for, expect_down=None):
    """Check and verify a body (COBS already removed); return a Frame.

    key_for(box_id) -> BoxKey or None. expect_down: True on a box (accept only
    gateway->box types), False on a gateway, None to accept both (tools).
    Raises WireError; checks run cheapest first so noise never costs a hash."""
    n = len(body)
    if n == _SHORT_BODY and body[0] == SHORT_MARK:
        return _decode_short(body, expect_down)
    if n < OVERHEAD:
        raise WireError(E_SHORT, "%d bytes < %d" % (n, OVERHEAD))
    if n > MAX_BODY:
        raise WireError(E_OVERSIZE, "%d bytes > %d" % (n, MAX_BODY))
    got_crc = struct.unpack(">I", body[n - _CRC :])[0]
    if crc32(body[: n - _CRC]) != got_crc:
        raise WireError(E_CRC, "checksum mismatch")
    version, mtype, flags, addr, box_id, counter, length = peek_header(body)
    if version != VERSION:
        raise WireError(E_VERSION, "version %d, expected %d" % (version, VERSION), box_id)
    if _HEADER + length + _TAG + _CRC != n:
        raise WireError(E_LENGTH, "length field %d disagrees with %d-byte body" % (length, n), box_id)
    if mtype not in TYPE_NAMES or flags & 0xFE:
        raise WireError(E_TYPE, "type 0x%02x flags 0x%02x" % (mtype, flags), box_id)
    down = bool(flags & FLAG_DOWN)
    if down != (mtype in _DOWN_TYPES) or (expect_down is not None and down != expect_down):
        raise WireError(E_TYPE, "%s in the wrong direction" % TYPE_NAMES[mtype], box_id)
    key = key_for(box_id)
    if key is None:
        raise WireError(E_UNKNOWN_BOX, "no key for this box; provision it or check the box id", box_id)
    end = _HEADER + length
    if not equal_ct(key.tag(body[:end]), body[end : end + _TAG]):
        raise WireError(E_AUTH, "tag does not verify: wrong key, or a forged frame", box_id)
    payload = bytes(body[_HEADER:end])
    msg = unpack_payload(mtype, payload, box_id)
    return Frame(mtype, flags, addr, box_id, counter, payload, msg)


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
        raise WireError(E_RANGE, "only POLL and IDLE have a short form")
    _int(addr, 1, ADDR_MAX, "short frame bus address")
    _int(seq, 0, 255, "poll sequence")
    head = bytes([SHORT_MARK, mtype, addr, seq])
    return b"\x00" + cobs_encode(head + struct.pack(">H", crc32(head) & 0xFFFF)) + b"\x00"


def _decode_short(body, expect_down):
    if (crc32(body[:4]) & 0xFFFF) != struct.unpack(">H", body[4:6])[0]:
        raise WireError(E_CRC, "short frame checksum mismatch")
    mtype = body[1]
    if mtype != MSG_POLL and mtype != MSG_IDLE:
        raise WireError(E_TYPE, "short frame of type 0x%02x" % mtype)
    down = mtype == MSG_POLL
    if expect_down is not None and down != expect_down:
        raise WireError(E_TYPE, "%s in the wrong direction" % TYPE_NAMES[mtype])
    addr = body[2]
    if not 1 <= addr <= ADDR_MAX:
        # A field invalid for the type (E_RANGE is the encoder's reason).
        raise WireError(E_PAYLOAD, "short %s for bus address %d, not 1..%d" % (TYPE_NAMES[mtype], addr, ADDR_MAX))
    return Frame(mtype, FLAG_DOWN if down else 0, addr, None, body[3], b"", {"type": TYPE_NAMES[mtype], "short": True, "seq": body[3]})


def decode_frame(piece, key_for, expect_down=None):
    """Decode one piece between delimiters (COBS-encoded) into a Frame."""
    if not piece:
        raise WireError(E_EMPTY)
    if len(piece) > MAX_ENCODED:
        raise WireError(E_OVERSIZE, "%d bytes > %d" % (len(piece), MAX_ENCODED))
    return decode_body(cobs_decode(piece), key_for, expect_down)


# ---------------------------------------------------------------- payloads
#
# Each type has a fixed layout (COMMAND and RESULT end in free bytes). The
# decoded form is a dict with "type" and the named fields; enumerations are
# names (see the tables above); unknown codes decode as integers so a newer
# box is still understood.


def _name(table, code):
    return table.get(code, code)


def _int(value, lo, hi, what):
    """An integer field checked against its wire range. MicroPython's
    struct.pack silently wraps out-of-range values (300 packs as 0x2c), so
    the encoder checks every field itself: the box and the gateway must
    refuse the same messages."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise WireError(E_RANGE, "%s %r not in %d..%d" % (what, value, lo, hi))
    return value


def _code(table, value, what):
    """The wire code of an enumeration given by name, or an integer code
    (codes this codec does not know, from a newer peer, decode as integers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value, 0, 255, what)
    for c in table:
        if table[c] == value:
            return c
    raise WireError(E_RANGE, "unknown %s %r" % (what, value))


def _faults_to_names(bits):
    # Bits this codec has no name for are kept as integers, never dropped:
    # a fault reported by a newer box must still reach the operator.
    out = []
    b = 1
    while b <= bits:
        if bits & b:
            out.append(FAULT_BITS.get(b, b))
        b <<= 1
    return out


def _faults_to_bits(names):
    bits = 0
    for n in names:
        b = _code(FAULT_BITS, n, "fault")
        if b == 0 or b & (b - 1):
            raise WireError(E_RANGE, "fault %r is not a single bit" % (n,))
        bits |= b
    return bits


def _pack_fw(fw):
    parts = str(fw).split(".")
    if len(parts) != 3:
        raise WireError(E_RANGE, "firmware version %r is not major.minor.patch" % (fw,))
    out = []
    for p in parts:
        if not p.isdigit():
            raise WireError(E_RANGE, "firmware version %r is not major.minor.patch" % (fw,))
        out.append(_int(int(p), 0, 255, "firmware version part"))
    return out


def _bytes(value, what):
    if isinstance(value, str):
        raise WireError(E_RANGE, "%s must be bytes, not text" % what)
    return bytes(value)


# CPython raises struct.error; MicroPython has no struct.error (naming it in
# an except clause would itself raise AttributeError) and raises ValueError.
_STRUCT_ERROR = getattr(struct, "error", ValueError)


def pack_payload(msg):
    """The payload bytes of a message dict (the form unpack_payload returns).
    Raises WireError(E_RANGE) for a missing or out-of-range field."""
    t = msg.get("type")
    try:
        if t == "ALARM":
            flags = 0
            if msg.get("time_synced", True):
                flags |= ALARM_FLAG_TIME_SYNCED
            if msg.get("restore", False):
                flags |= ALARM_FLAG_RESTORE
            return struct.pack(
                ">IBBIH",
                _int(msg["event"], 0, _U32, "event id"),
                _code(ALARM_KINDS, msg["kind"], "alarm kind"),
                flags,
                _int(msg["time_s"], 0, _U32, "press time_s"),
                _int(msg.get("time_ms", 0), 0, 999, "press time_ms"),
            )
        if t == "ACK":
            return struct.pack(
                ">BIIB",
                _code(TYPE_NAMES, msg["acked_type"], "acked type"),
                _int(msg["acked_counter"], 0, _U32, "acked counter"),
                _int(msg.get("event", 0), 0, _U32, "event id"),
                _code(ACK_STATUS, msg.get("status", "stored"), "ack status"),
            )
        if t == "HEARTBEAT":
            fw = _pack_fw(msg["fw"])
            return struct.pack(
                ">IBHBBbBBBHBBI",
                _int(msg["uptime_s"], 0, _U32, "uptime_s"),
                _code(POWER_STATES, msg["power"], "power state"),
                _int(msg["battery_mv"], 0, _U16, "battery_mv"),
                1 if msg["tamper"] else 0,
                _code(LINKS, msg["link"], "link"),
                _int(msg["rssi_dbm"], -128, 127, "rssi_dbm"),
                fw[0],
                fw[1],
                fw[2],
                _int(msg["outbox"], 0, _U16, "outbox depth"),
                _code(BOOT_REASONS, msg.get("boot_reason", "none"), "boot reason"),
                _faults_to_bits(msg.get("faults", ())),
                _int(msg.get("time_s", 0), 0, _U32, "time_s"),
            )
        if t == "CALL_STATE":
            return struct.pack(
                ">BIB",
                _code(CALL_STATES, msg["state"], "call state"),
                _int(msg.get("event", 0), 0, _U32, "event id"),
                _code(PROMPTS, msg.get("prompt", "none"), "prompt"),
            )
        if t == "COMMAND":
            head = struct.pack(">HB", _int(msg["request"], 0, _U16, "request id"), _code(COMMAND_OPS, msg["op"], "command"))
            return head + _bytes(msg.get("args", b""), "COMMAND args")
        if t == "RESULT":
            head = struct.pack(
                ">HBB",
                _int(msg["request"], 0, _U16, "request id"),
                _code(COMMAND_OPS, msg["op"], "command"),
                _code(RESULT_STATUS, msg["status"], "result status"),
            )
            return head + _bytes(msg.get("data", b""), "RESULT data")
        if t == "POLL" or t == "IDLE":
            return b""
    except KeyError as e:
        raise WireError(E_RANGE, "%s: missing field %s" % (t, e))
    except (OverflowError, TypeError, _STRUCT_ERROR) as e:
        raise WireError(E_RANGE, "%s: %r" % (t, e))
    raise WireError(E_RANGE, "unknown message type %r" % (t,))


_FIXED = {
    MSG_ALARM: struct.calcsize(">IBBIH"),  # 12
    MSG_ACK: struct.calcsize(">BIIB"),  # 10
    MSG_HEARTBEAT: struct.calcsize(">IBHBBbBBBHBBI"),  # 21
    MSG_CALL_STATE: struct.calcsize(">BIB"),  # 6
    MSG_POLL: 0,
    MSG_IDLE: 0,
}
_MIN = {MSG_COMMAND: 3, MSG_RESULT: 4}


def unpack_payload(mtype, p, box_id=None):
    n = len(p)
    if mtype in _FIXED:
        if n != _FIXED[mtype]:
            raise WireError(E_PAYLOAD, "%s payload is %d bytes, expected %d" % (TYPE_NAMES[mtype], n, _FIXED[mtype]), box_id)
    elif n < _MIN[mtype]:
        raise WireError(E_PAYLOAD, "%s payload is %d bytes, expected >= %d" % (TYPE_NAMES[mtype], n, _MIN[mtype]), box_id)
    if mtype == MSG_ALARM:
        event, kind, flags, time_s, time_ms = struct.unpack(">IBBIH", p)
        if time_ms > 999 or flags & 0xFC:
            raise WireError(E_PAYLOAD, "ALARM time_ms %d flags 0x%02x" % (time_ms, flags), box_id)
        return {
            "type": "ALARM",
            "event": event,
            "kind": _name(ALARM_KINDS, kind),
            "time_synced": bool(flags & ALARM_FLAG_TIME_SYNCED),
            "restore": bool(flags & ALARM_FLAG_RESTORE),
            "time_s": time_s,
            "time_ms": time_ms,
        }
    if mtype == MSG_ACK:
        acked, ctr, event, status = struct.unpack(">BIIB", p)
        return {"type": "ACK", "acked_type": _name(TYPE_NAMES, acked), "acked_counter": ctr, "event": event, "status": _name(ACK_STATUS, status)}
    if mtype == MSG_HEARTBEAT:
        f = struct.unpack(">IBHBBbBBBHBBI", p)
        if f[3] > 1:
            raise WireError(E_PAYLOAD, "HEARTBEAT tamper byte %d, expected 0 or 1" % f[3], box_id)
        return {
            "type": "HEARTBEAT",
            "uptime_s": f[0],
            "power": _name(POWER_STATES, f[1]),
            "battery_mv": f[2],
            "tamper": bool(f[3]),
            "link": _name(LINKS, f[4]),
            "rssi_dbm": f[5],
            "fw": "%d.%d.%d" % (f[6], f[7], f[8]),
            "outbox": f[9],
            "boot_reason": _name(BOOT_REASONS, f[10]),
            "faults": _faults_to_names(f[11]),
            "time_s": f[12],
        }
    if mtype == MSG_CALL_STATE:
        state, event, prompt = struct.unpack(">BIB", p)
        return {"type": "CALL_STATE", "state": _name(CALL_STATES, state), "event": event, "prompt": _name(PROMPTS, prompt)}
    if mtype == MSG_COMMAND:
        req, op = struct.unpack(">HB", p[:3])
        return {"type": "COMMAND", "request": req, "op": _name(COMMAND_OPS, op), "args": bytes(p[3:])}
    if mtype == MSG_RESULT:
        req, op, status = struct.unpack(">HBB", p[:4])
        return {"type": "RESULT", "request": req, "op": _name(COMMAND_OPS, op), "status": _name(RESULT_STATUS, status), "data": bytes(p[4:])}
    return {"type": TYPE_NAMES[mtype]}


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
        self._buf = bytearray(limit)
        self._view = memoryview(self._buf)
        self._len = 0  # bytes of the current piece held in _buf
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
            raise WireError(E_REPLAY, "counter %d, highest seen %d" % (counter, self.top), box_id)

    def accept(self, counter, box_id=None):
        """Check, then record the counter as seen. Call only after the frame
        authenticated (a forged counter must not move the window)."""
        self.check(counter, box_id)
        if counter > self.top:
            shift = counter - self.top
            if self.top < 0:
                # First counter from a new sender: nothing below was seen.
                self._seen = 0
            elif shift > WINDOW:
                self._seen = 0
            else:
                # Mask before shifting so the bitmap stays a small int on a
                # 32-bit port (no long-int allocation per frame).
                self._seen = ((self._seen & (_WINDOW_MASK >> shift)) << shift) | (1 << (shift - 1))
            self.top = counter
        else:
            self._seen |= 1 << (self.top - counter - 1)
