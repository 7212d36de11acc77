"""SIA DC-09 codec: frames the gateway sends to an alarm receiving centre (ARC)
and the replies it gets back. Pure: no I/O, no clock (times are passed in),
no randomness unless a padding source is passed in.

A frame on the wire (ANSI/SIA DC-09)::

    LF  CRC  0LLL  "id"  seq  Rrcvr  Lline  #acct  [data]  [xdata]...  _HH:MM:SS,MM-DD-YYYY  CR
        4 hex 4 hex token 4 dec 1-6 hex 1-6 hex 3-16 hex

- CRC: CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0, no final xor;
  "123456789" -> BB3D) over the text from the first `"` up to, not
  including, the CR. The length field counts the same span, as `0` and three
  upper-case hex digits (so a frame body is at most 0xFFF characters).
- id token: `SIA-DCS` (SIA DC-03 data), `ADM-CID` (Ademco Contact ID data),
  `NULL` (link supervision, empty data). `*` before the token marks an
  encrypted frame.
- seq: 0001..9999 per receiver, wrapping 9999 -> 0001; a retransmission of
  the same message keeps its number.
- R is always sent (some receivers reject frames without it), L too.
- data: `[#acct|Nri<area>/<code><zone>]` for SIA-DCS,
  `[#acct|Q EEE GG ZZZ]` (without the spaces between Q and EEE) for ADM-CID,
  `[]` for NULL.
- Encrypted (`*`): the `[` opening the data stays in clear; everything after it
  (data, closing `]`, extended data, timestamp) is prefixed by random padding
  and `|`, encrypted with AES-CBC under a zero IV and hex-encoded in upper case.
  The padding fills the plaintext to a multiple of 16 bytes and never contains
  `|`, `[` or `]`, so the first `|` ends it.

Replies: `"ACK"`, `"NAK"`, `"DUH"` (and `"RSP"`), in the same framing.
An ACK echoes seq, receiver, line and account; for an encrypted message it is
encrypted too. A NAK carries seq 0000 and the receiver's own time, so the
sender can correct its clock (receivers refuse timestamps outside about
-40 s / +20 s of theirs). Receivers pad their encrypted ACK in two ways: the
standard random padding ending in `|`, or (pysiaalarm) ASCII `0`s with no `|`
before the `]`: parse_reply accepts both.

Ways a reply gets corrupted, and what parse_reply does: bytes before the LF
(line noise, a stray CR) are skipped by find_reply; a CRC or length mismatch,
an unknown token, non-hex or wrongly sized ciphertext, or a plaintext with
no `]` (wrong key) raise Dc09FormatError; a reply longer than MAX_REPLY_BYTES
without a CR is dropped by find_reply so the buffer cannot grow without bound.
"""

import datetime
import re
import secrets

from .errors import ConfigError, GatewayError

LF = 0x0A
CR = 0x0D

TOKEN_SIA = "SIA-DCS"
TOKEN_CID = "ADM-CID"
TOKEN_NULL = "NULL"
TOKENS = (TOKEN_SIA, TOKEN_CID, TOKEN_NULL)
REPLY_TOKENS = ("ACK", "NAK", "DUH", "RSP")

# The length field is `0` plus three hex digits.
MAX_BODY_CHARS = 0xFFF
# A reply is an ACK/NAK/DUH header, at most a few extended-data blocks and a
# timestamp, encrypted at most doubling it: 1 KiB is generous. Anything longer
# without a CR is garbage and is dropped rather than buffered.
MAX_REPLY_BYTES = 1024
SEQ_MIN = 1
SEQ_MAX = 9999
AES_KEY_BYTES = (16, 24, 32)
_AES_BLOCK = 16
_ZERO_IV = bytes(16)
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"
# Printable ASCII minus the three characters the padding must not contain.
_PAD_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "|[]")

_HEX_FIELD = re.compile(r"^[0-9A-F]{1,6}$")
_ACCOUNT = re.compile(r"^[0-9A-F]{3,16}$")
_SIA_CODE = re.compile(r"^[A-Z]{2}$")
_REPLY_HEADER = re.compile(
    r'^"(?P<star>\*?)(?P<token>ACK|NAK|DUH|RSP)"'
    r"(?P<seq>\d{4})"
    r"(?:R(?P<receiver>[0-9A-Fa-f]{1,6}))?"
    r"(?:L(?P<line>[0-9A-Fa-f]{1,6}))?"
    r"(?:#(?P<account>[0-9A-Fa-f]{3,16})|A0)?"
    r"\[(?P<rest>.*)$",
    re.S,
)
_PLAIN_TAIL = re.compile(r"^(?P<data>[^\[\]]*)\](?P<xdata>(?:\[[^\[\]]*\])*)(?:_(?P<ts>[0-9:,\-]+))?$")


class Dc09FormatError(GatewayError):
    """A DC-09 frame or reply cannot be built or parsed. `reason` is a short
    word for counters (crc, length, token, cipher, key, format, range)."""

    def __init__(self, reason, message, box_id=None):
        super().__init__(message, box_id)
        self.reason = reason


# ---------------------------------------------------------------- CRC, time


def crc16_arc(data):
    """CRC-16/ARC of `data` (bytes): poly 0xA001 reflected, init 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def format_timestamp(when):
    """`when` (aware datetime, any zone, or naive UTC) -> 'HH:MM:SS,MM-DD-YYYY' in UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    return when.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text):
    """'HH:MM:SS,MM-DD-YYYY' -> aware UTC datetime, or None if it does not parse."""
    try:
        when = datetime.datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc)


def next_sequence(seq):
    """The sequence number after `seq`: 0001..9999, then 0001 again."""
    return SEQ_MIN if seq >= SEQ_MAX else seq + 1


# ---------------------------------------------------------------- keys, AES


class Dc09Key:
    """An AES key for one receiver. The configuration says how the key string
    is written, because receivers disagree: `hex` (32/48/64 hex digits, most
    ARC software) or `ascii` (16/24/32 characters whose ASCII bytes are the
    key, as pysiaalarm and Home Assistant use). The key never appears in repr
    or in error messages."""

    __slots__ = ("_key",)

    def __init__(self, key_bytes):
        if len(key_bytes) not in AES_KEY_BYTES:
            raise ConfigError("DC-09 key must be 16, 24 or 32 bytes (AES-128/192/256), got %d bytes" % len(key_bytes))
        self._key = bytes(key_bytes)

    @classmethod
    def parse(cls, text, key_format, where="DC-09 key"):
        """Build a key from configuration text; `where` names the setting in errors."""
        text = text.strip()
        if key_format == "hex":
            if len(text) not in (32, 48, 64):
                raise ConfigError(
                    "%s: key_format 'hex' needs 32, 48 or 64 hex digits (AES-128/192/256), got %d characters;"
                    " if the receiver takes the key's characters as bytes, set key_format = 'ascii'" % (where, len(text))
                )
            try:
                return cls(bytes.fromhex(text))
            except ValueError:
                raise ConfigError("%s: key_format 'hex' but the key is not hex digits" % where) from None
        if key_format == "ascii":
            if not text.isascii() or not text.isprintable():
                raise ConfigError("%s: key_format 'ascii' needs printable ASCII characters" % where)
            if len(text) not in AES_KEY_BYTES:
                raise ConfigError(
                    "%s: key_format 'ascii' needs 16, 24 or 32 characters, got %d;"
                    " if the receiver hex-decodes the key, set key_format = 'hex'" % (where, len(text))
                )
            return cls(text.encode("ascii"))
        raise ConfigError("%s: key_format must be 'hex' or 'ascii', not %r" % (where, key_format))

    @property
    def bits(self):
        return len(self._key) * 8

    def encrypt(self, plaintext):
        """AES-CBC, zero IV, no padding (the caller pads to 16 bytes)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(_ZERO_IV)).encryptor()
        return encryptor.update(plaintext) + encryptor.finalize()

    def decrypt(self, ciphertext):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(_ZERO_IV)).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()

    def __repr__(self):
        return "Dc09Key(AES-%d, hidden)" % self.bits


def random_padding(count):
    """`count` random printable characters, none of them `|`, `[` or `]`."""
    return "".join(secrets.choice(_PAD_ALPHABET) for _ in range(count))


def encrypt_block(key, text, padding=random_padding):
    """Pad `text` (the part after the data's `[`), put `|` between padding and
    text, encrypt, return upper-case hex. At least one padding character, at
    most 16."""
    count = -(len(text) + 1) % _AES_BLOCK or _AES_BLOCK
    pad = padding(count)
    if len(pad) != count or any(c in "|[]" for c in pad):
        raise Dc09FormatError("range", "DC-09 padding must be %d characters without '|', '[' or ']'" % count)
    plain = (pad + "|" + text).encode("ascii")
    return key.encrypt(plain).hex().upper()


def decrypt_block(key, hex_text):
    """Decrypt the hex after an encrypted frame's `[` and strip the padding.

    Accepts both padding forms receivers use: random characters ending in
    `|` (standard), or characters with no `|` before the data (pysiaalarm pads
    with `0`s): then the text starts at the first `[` or `]`."""
    try:
        cipher = bytes.fromhex(hex_text)
    except ValueError:
        raise Dc09FormatError("cipher", "DC-09 encrypted block is not hex") from None
    if not cipher or len(cipher) % _AES_BLOCK:
        raise Dc09FormatError("cipher", "DC-09 encrypted block is %d bytes, not a multiple of 16" % len(cipher))
    plain = key.decrypt(cipher).decode("latin-1")
    bar = plain.find("|")
    bracket = min([i for i in (plain.find("["), plain.find("]")) if i >= 0], default=-1)
    if bracket < 0:
        raise Dc09FormatError("key", "DC-09 encrypted block does not decrypt to DC-09 data: wrong key or key_format?")
    if 0 <= bar < bracket:
        return plain[bar + 1 :]
    return plain[bracket:]


# ---------------------------------------------------------------- frames


def _check_hex_field(name, value):
    value = value.upper()
    if not _HEX_FIELD.match(value):
        raise Dc09FormatError("range", "DC-09 %s field must be 1-6 hex digits, not %r" % (name, value))
    return value


def check_account(account):
    """Upper-case `account` and check it is 3-16 hex digits (DC-09 account)."""
    account = str(account).upper()
    if not _ACCOUNT.match(account):
        raise Dc09FormatError("range", "DC-09 account must be 3-16 hex digits (0-9, A-F), not %r" % account)
    return account


def _check_block_text(name, text):
    if not text.isascii() or any(c in "[]\r\n" for c in text):
        raise Dc09FormatError("range", "DC-09 %s must be ASCII without '[', ']' or line breaks: %r" % (name, text))


def build_frame(token, seq, receiver, line, account, data, when, xdata=(), key=None, padding=random_padding):
    """One DC-09 frame as bytes, LF to CR.

    token: SIA-DCS, ADM-CID or NULL. seq: 1..9999. receiver, line: hex
    strings for the R and L fields. account: 3-16 hex digits. data: the text
    between `[` and `]` ('' for NULL). when: the transmission time (datetime).
    xdata: extended-data blocks without brackets, e.g. ('H19:20:01,11-28-2026',).
    key: a Dc09Key to encrypt, or None."""
    if token not in TOKENS:
        raise Dc09FormatError("token", "DC-09 token must be one of %s, not %r" % (", ".join(TOKENS), token))
    if not SEQ_MIN <= seq <= SEQ_MAX:
        raise Dc09FormatError("range", "DC-09 sequence number must be %d..%d, not %d" % (SEQ_MIN, SEQ_MAX, seq))
    receiver = _check_hex_field("receiver (R)", receiver)
    line = _check_hex_field("line (L)", line)
    account = check_account(account)
    _check_block_text("data", data)
    for block in xdata:
        _check_block_text("extended data", block)
    tail = data + "]" + "".join("[" + block + "]" for block in xdata) + "_" + format_timestamp(when)
    head = '"%s%s"%04d' % ("*" if key is not None else "", token, seq) + "R" + receiver + "L" + line + "#" + account + "["
    body = head + (encrypt_block(key, tail, padding) if key is not None else tail)
    if len(body) > MAX_BODY_CHARS:
        raise Dc09FormatError("range", "DC-09 frame body is %d characters, more than %d" % (len(body), MAX_BODY_CHARS))
    raw = body.encode("ascii")
    return b"\n" + ("%04X0%03X" % (crc16_arc(raw), len(raw))).encode("ascii") + raw + b"\r"


def sia_dcs_data(account, code, zone, area=None):
    """The data of a SIA-DCS frame: '#acct|Nri<area>/<code><zone:03>'."""
    if not _SIA_CODE.match(code):
        raise Dc09FormatError("range", "SIA event code must be two capital letters, not %r" % code)
    if not 0 <= zone <= 9999:
        raise Dc09FormatError("range", "SIA zone must be 0..9999, not %d" % zone)
    area_part = "" if area is None else "ri%d/" % area
    return "#%s|N%s%s%03d" % (check_account(account), area_part, code, zone)


def contact_id_data(account, qualifier, event_code, group, zone):
    """The data of an ADM-CID frame: '#acct|QEEE GG ZZZ' (Contact ID)."""
    if qualifier not in (1, 3, 6):
        raise Dc09FormatError("range", "Contact ID qualifier must be 1 (new), 3 (restore) or 6 (status), not %r" % qualifier)
    if not 0 <= event_code <= 999 or not 0 <= group <= 99 or not 0 <= zone <= 999:
        raise Dc09FormatError("range", "Contact ID event 0..999, group 0..99, zone 0..999; got %r, %r, %r" % (event_code, group, zone))
    return "#%s|%d%03d %02d %03d" % (check_account(account), qualifier, event_code, group, zone)


def split_frame(frame):
    """Split a frame (bytes, LF..CR) into its fields, for tests and logs.
    Returns a dict: crc, length, token, encrypted, seq, receiver, line,
    account, rest (text after the data's `[`). Checks CRC and length."""
    text = _check_envelope(frame)
    match = re.match(
        r'^"(\*?)(SIA-DCS|ADM-CID|NULL)"(\d{4})R([0-9A-F]{1,6})L([0-9A-F]{1,6})#([0-9A-F]{3,16})\[(.*)$', text, re.S
    )
    if not match:
        raise Dc09FormatError("format", "not a DC-09 event frame: %r" % text[:40])
    return {
        "crc": frame[1:5].decode(),
        "length": frame[5:9].decode(),
        "encrypted": match.group(1) == "*",
        "token": match.group(2),
        "seq": int(match.group(3)),
        "receiver": match.group(4),
        "line": match.group(5),
        "account": match.group(6),
        "rest": match.group(7),
    }


def _check_envelope(frame):
    """LF CRC 0LLL body CR -> body text, after checking CRC and length."""
    if len(frame) < 11 or frame[0] != LF or frame[-1] != CR:
        raise Dc09FormatError("format", "DC-09 frame must run from LF to CR")
    try:
        head = frame[1:9].decode("ascii")
        crc_sent = int(head[:4], 16)
        length_sent = int(head[4:], 16)
    except ValueError:
        raise Dc09FormatError("format", "DC-09 frame CRC or length is not hex") from None
    body = bytes(frame[9:-1])
    if length_sent != len(body):
        raise Dc09FormatError("length", "DC-09 length field says %d, body has %d" % (length_sent, len(body)))
    if crc_sent != crc16_arc(body):
        raise Dc09FormatError("crc", "DC-09 CRC mismatch (sent %04X, computed %04X)" % (crc_sent, crc16_arc(body)))
    try:
        return body.decode("ascii")
    except UnicodeDecodeError:
        raise Dc09FormatError("format", "DC-09 frame is not ASCII") from None


# ---------------------------------------------------------------- replies


class Reply:
    """A receiver's answer. kind: ACK, NAK, DUH or RSP. seq: int (0 in a NAK).
    timestamp: aware UTC datetime or None. xdata: tuple of blocks."""

    __slots__ = ("kind", "seq", "receiver", "line", "account", "encrypted", "timestamp", "xdata")

    def __init__(self, kind, seq, receiver, line, account, encrypted, timestamp, xdata):
        self.kind = kind
        self.seq = seq
        self.receiver = receiver
        self.line = line
        self.account = account
        self.encrypted = encrypted
        self.timestamp = timestamp
        self.xdata = xdata

    def __repr__(self):
        # Extended data is left out: pysiaalarm echoes the key in a [K...] block.
        return "Reply(%s seq=%04d R%s L%s #%s%s%s)" % (
            self.kind,
            self.seq,
            self.receiver,
            self.line,
            self.account,
            " encrypted" if self.encrypted else "",
            " time=" + format_timestamp(self.timestamp) if self.timestamp else "",
        )


def find_reply(buffer):
    """Find the next reply in a receive buffer (bytes or bytearray).

    Returns (used, frame): `used` bytes of the buffer are consumed; `frame` is
    LF..CR bytes, or None when no complete reply is there yet. Bytes before an
    LF are skipped; a reply longer than MAX_REPLY_BYTES without a CR is
    dropped (frame None, used > 0): the caller counts it as garbage."""
    start = buffer.find(b"\n")
    if start < 0:
        return len(buffer), None
    end = buffer.find(b"\r", start)
    if end < 0:
        if len(buffer) - start > MAX_REPLY_BYTES:
            return len(buffer), None
        return start, None
    if end - start + 1 > MAX_REPLY_BYTES:
        return end + 1, None
    return end + 1, bytes(buffer[start : end + 1])


def parse_reply(frame, key=None):
    """Parse one reply frame (LF..CR bytes). `key` decrypts an encrypted reply.
    Raises Dc09FormatError if the reply is corrupt or cannot be decrypted."""
    text = _check_envelope(frame)
    match = _REPLY_HEADER.match(text)
    if not match:
        raise Dc09FormatError("token", "DC-09 reply is not ACK, NAK, DUH or RSP: %r" % text[:16])
    encrypted = match.group("star") == "*"
    rest = match.group("rest")
    if encrypted:
        if key is None:
            raise Dc09FormatError("key", "DC-09 reply is encrypted but no key is configured for this receiver")
        rest = decrypt_block(key, rest)
        # pysiaalarm leaves the response qualifier and data empty: the
        # plaintext starts at the closing ']'; the standard puts data first.
    tail = _PLAIN_TAIL.match(rest.rstrip("\x00"))
    if not tail:
        raise Dc09FormatError("format", "DC-09 reply data is not '...]' [xdata] _timestamp")
    timestamp = parse_timestamp(tail.group("ts")) if tail.group("ts") else None
    xdata = tuple(re.findall(r"\[([^\[\]]*)\]", tail.group("xdata")))
    return Reply(
        match.group("token"),
        int(match.group("seq")),
        (match.group("receiver") or "").upper(),
        (match.group("line") or "").upper(),
        (match.group("account") or "").upper(),
        encrypted,
        timestamp,
        xdata,
    )


def build_reply(kind, seq, receiver, line, account, when=None, key=None, padding=random_padding):
    """A receiver's reply, as the standard writes it. The gateway never sends
    replies; tests and the benchmark's fake receivers use this."""
    if kind not in REPLY_TOKENS:
        raise Dc09FormatError("token", "reply must be one of %s" % ", ".join(REPLY_TOKENS))
    tail = "]" + ("_" + format_timestamp(when) if when is not None else "")
    acct = "A0" if account is None else "#" + check_account(account)
    head = '"%s%s"%04d' % ("*" if key is not None else "", kind, seq) + "R" + receiver + "L" + line + acct + "["
    body = (head + (encrypt_block(key, tail, padding) if key is not None else tail)).encode("ascii")
    return b"\n" + ("%04X0%03X" % (crc16_arc(body), len(body))).encode("ascii") + body + b"\r"


# ---------------------------------------------------------------- event codes

# kind -> (SIA code new, SIA code restore, Contact ID event, input zone)
# docs/dc09.md explains each choice. Input zones (per-box accounts): 1 the
# Emergency button, 2 the Panic button, 0 the box itself.
ZONE_BOX = 0
ZONE_EMERGENCY = 1
ZONE_PANIC = 2
EVENT_CODES = {
    "panic": ("PA", "PH", 120, ZONE_PANIC),
    "emergency": ("QA", "QH", 101, ZONE_EMERGENCY),
    "tamper": ("TA", "TR", 137, ZONE_BOX),
    "power": ("AT", "AR", 301, ZONE_BOX),
    "battery": ("YT", "YR", 302, ZONE_BOX),
    "offline": ("YC", "YK", 350, ZONE_BOX),
    "button_fault": ("UT", "UJ", 380, ZONE_BOX),
    "periodic_test": ("RP", "RP", 602, ZONE_BOX),
    "manual_test": ("RX", "RX", 601, ZONE_BOX),
}
CID_NEW = 1
CID_RESTORE = 3
BUTTON_ZONES = {"emergency": ZONE_EMERGENCY, "panic": ZONE_PANIC}


def event_code(kind, restore):
    """(SIA code, Contact ID event, Contact ID qualifier) for an event kind.
    Raises Dc09FormatError('unmapped') for a kind DC-09 has no code for here."""
    try:
        new, restored, cid, _zone = EVENT_CODES[kind]
    except KeyError:
        raise Dc09FormatError("unmapped", "no DC-09 event code for kind %r (known: %s)" % (kind, ", ".join(sorted(EVENT_CODES)))) from None
    return (restored if restore else new), cid, (CID_RESTORE if restore else CID_NEW)


def input_zone(event):
    """The zone of the input an event is about, for per-box accounts."""
    kind = event.get("kind")
    if kind == "button_fault":
        return BUTTON_ZONES.get(event.get("button"), ZONE_BOX)
    entry = EVENT_CODES.get(kind)
    return entry[3] if entry else ZONE_BOX


def event_data(token, event, account, zone, area=1):
    """The data field for one gateway event (docs/console-api.md) as SIA-DCS
    or ADM-CID. area is the SIA 'ri' / Contact ID group (1..99)."""
    code, cid, qualifier = event_code(event.get("kind"), bool(event.get("restore")))
    if token == TOKEN_SIA:
        return sia_dcs_data(account, code, zone, area)
    if token == TOKEN_CID:
        return contact_id_data(account, qualifier, cid, area, zone)
    raise Dc09FormatError("token", "events go as SIA-DCS or ADM-CID, not %r" % token)


def occurrence_xdata(event):
    """The DC-09 'H' extended-data block (time of occurrence) from the event's
    press_time, or None if the event has none that parses. The frame's own
    timestamp is the transmission time; this keeps the press time when a
    store-and-forward delivery is late."""
    text = event.get("press_time")
    if not text:
        return None
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return "H" + format_timestamp(when)
