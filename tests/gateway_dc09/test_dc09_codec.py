"""The pure DC-09 codec: CRC, frames field by field, encryption, replies,
event codes. pysiaalarm's own parser and encryption serve as an independent
implementation to check against."""

import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysiaalarm import SIAAccount
from pysiaalarm.data.adm_mapping import ADM_MAPPING
from pysiaalarm.event import SIAEvent

from callbox_gateway import dc09
from callbox_gateway.errors import ConfigError, GatewayError

WHEN = datetime.datetime(2026, 11, 28, 19, 20, 5, tzinfo=datetime.timezone.utc)
KEY_ASCII = "0123456789ABCDEF"  # pysiaalarm takes the characters as the key bytes
KEYS = {
    128: dc09.Dc09Key.parse("000102030405060708090A0B0C0D0E0F", "hex"),
    192: dc09.Dc09Key.parse("000102030405060708090A0B0C0D0E0F1011121314151617", "hex"),
    256: dc09.Dc09Key.parse("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "hex"),
}


def fixed_padding(count):
    return "x" * count


# ---------------------------------------------------------------- CRC


def test_crc_check_value():
    # The CRC-16/ARC catalogue check value.
    assert dc09.crc16_arc(b"123456789") == 0xBB3D


def test_crc_and_length_of_a_published_frame():
    # A frame from a third-party DC-09 codec's tests (receiver 1, line 232,
    # X/Y extended data): its CRC 7358 and length 0056 must come out the same.
    body = b'"SIA-DCS"0002R1L232#78919[#78919|Nri1/BA012][X012W34.1][Y045N12.2]_14:12:04,09-25-2026'
    assert "%04X" % dc09.crc16_arc(body) == "7358"
    assert "%04X" % len(body) == "0056"
    fields = dc09.split_frame(b"\n73580056" + body + b"\r")
    assert (fields["receiver"], fields["line"], fields["account"], fields["seq"]) == ("1", "232", "78919", 2)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
def test_crc_agrees_with_pysiaalarm(text):
    assert "%04X" % dc09.crc16_arc(text.encode("ascii")) == SIAEvent._crc_calc(text)


# ---------------------------------------------------------------- frames


def test_sia_dcs_frame_field_by_field():
    data = dc09.sia_dcs_data("0042", "PA", 2, 1)
    assert data == "#0042|Nri1/PA002"
    frame = dc09.build_frame("SIA-DCS", 7, "1", "2", "0042", data, WHEN, ("H19:20:01,11-28-2026",))
    assert frame[:1] == b"\n" and frame[-1:] == b"\r"
    body = frame[9:-1]
    assert body == b'"SIA-DCS"0007R1L2#0042[#0042|Nri1/PA002][H19:20:01,11-28-2026]_19:20:05,11-28-2026'
    assert frame[1:5] == b"%04X" % dc09.crc16_arc(body)
    # Length: '0' and three hex digits, counting from the first '"' to before CR.
    assert frame[5:6] == b"0" and int(frame[6:9], 16) == len(body)
    fields = dc09.split_frame(frame)
    assert fields["token"] == "SIA-DCS" and not fields["encrypted"]
    assert fields["seq"] == 7 and fields["receiver"] == "1" and fields["line"] == "2" and fields["account"] == "0042"


def test_adm_cid_frame_field_by_field():
    data = dc09.contact_id_data("0042", 3, 137, 1, 0)
    assert data == "#0042|3137 01 000"
    frame = dc09.build_frame("ADM-CID", 9999, "A1", "F", "0042", data, WHEN)
    assert frame[9:-1] == b'"ADM-CID"9999RA1LF#0042[#0042|3137 01 000]_19:20:05,11-28-2026'


def test_null_frame_always_has_r_field():
    frame = dc09.build_frame("NULL", 1, "0", "0", "0000", "", WHEN)
    assert frame[9:-1] == b'"NULL"0001R0L0#0000[]_19:20:05,11-28-2026'


def test_golden_frames_in_docs():
    # The examples in docs/dc09.md, byte for byte.
    when = datetime.datetime(2026, 11, 28, 19, 20, 50, tzinfo=datetime.timezone.utc)
    h = ("H19:20:01,11-28-2026",)
    assert dc09.build_frame("SIA-DCS", 7, "1", "2", "0042", "#0042|Nri1/PA002", when, h) == (
        b'\n3DB30052"SIA-DCS"0007R1L2#0042[#0042|Nri1/PA002][H19:20:01,11-28-2026]_19:20:50,11-28-2026\r'
    )
    assert dc09.build_frame("ADM-CID", 7, "1", "2", "0042", "#0042|1120 01 002", when, h) == (
        b'\nE6BF0053"ADM-CID"0007R1L2#0042[#0042|1120 01 002][H19:20:01,11-28-2026]_19:20:50,11-28-2026\r'
    )
    assert dc09.build_frame("NULL", 1, "0", "0", "0000", "", when) == b'\n02050029"NULL"0001R0L0#0000[]_19:20:50,11-28-2026\r'


def test_sequence_wraps_to_0001():
    assert dc09.next_sequence(1) == 2
    assert dc09.next_sequence(9999) == 1


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"token": "SIA-XYZ"}, "token"),
        ({"seq": 0}, "range"),
        ({"seq": 10000}, "range"),
        ({"receiver": "1234567"}, "range"),
        ({"line": "G"}, "range"),
        ({"account": "12"}, "range"),
        ({"account": "12345678901234567"}, "range"),
        ({"account": "ZZZZ"}, "range"),
        ({"data": "#0042|NPA]001"}, "range"),
        ({"data": "x" * 5000}, "range"),
    ],
)
def test_bad_frame_fields_are_refused_with_a_reason(kwargs, reason):
    args = {"token": "SIA-DCS", "seq": 1, "receiver": "0", "line": "0", "account": "0042", "data": "#0042|NPA001"}
    args.update(kwargs)
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.build_frame(args["token"], args["seq"], args["receiver"], args["line"], args["account"], args["data"], WHEN)
    assert info.value.reason == reason
    assert isinstance(info.value, GatewayError)


def test_pysiaalarm_parses_our_plain_frames():
    account = SIAAccount("0042", None, allowed_timeband=None)
    sia = dc09.build_frame("SIA-DCS", 3, "0", "0", "0042", dc09.sia_dcs_data("0042", "QA", 1, 1), WHEN)
    event = SIAEvent.from_line(sia.decode().strip(), {"0042": account})
    assert event.valid_message and event.code == "QA" and event.account == "0042" and event.message == "001"
    assert event.timestamp == WHEN
    cid = dc09.build_frame("ADM-CID", 4, "0", "0", "0042", dc09.contact_id_data("0042", 1, 120, 1, 2), WHEN)
    event = SIAEvent.from_line(cid.decode().strip(), {"0042": account})
    assert event.valid_message and event.code == "PA" and event.ri == "002" and event.partition == "01"


# ---------------------------------------------------------------- keys and encryption


def test_key_formats_are_explicit():
    assert dc09.Dc09Key.parse(KEY_ASCII, "ascii").bits == 128
    assert dc09.Dc09Key.parse(KEY_ASCII * 2, "hex").bits == 128  # 32 hex digits: 16 bytes
    assert dc09.Dc09Key.parse(KEY_ASCII * 2, "ascii").bits == 256  # same text, 32 characters as bytes
    with pytest.raises(ConfigError, match="key_format = 'ascii'"):
        dc09.Dc09Key.parse(KEY_ASCII, "hex")  # 16 hex digits: too short, and the hint says why
    with pytest.raises(ConfigError, match="not hex digits"):
        dc09.Dc09Key.parse("Z" * 32, "hex")
    with pytest.raises(ConfigError, match="16, 24 or 32 characters"):
        dc09.Dc09Key.parse("short", "ascii")
    with pytest.raises(ConfigError, match="'hex' or 'ascii'"):
        dc09.Dc09Key.parse(KEY_ASCII, "base64")


def test_key_never_shown():
    key = dc09.Dc09Key.parse("S3cretKeyS3cret!", "ascii")
    assert "S3cret" not in repr(key)
    with pytest.raises(ConfigError) as info:
        dc09.Dc09Key.parse("S3cretKeyS3cret!!", "ascii")
    assert "S3cret" not in str(info.value)


@pytest.mark.parametrize("bits", [128, 192, 256])
@pytest.mark.parametrize("token", ["SIA-DCS", "ADM-CID", "NULL"])
def test_encrypted_frame_round_trip(bits, token):
    key = KEYS[bits]
    data = {"SIA-DCS": "#0042|Nri1/PA002", "ADM-CID": "#0042|1120 01 002", "NULL": ""}[token]
    frame = dc09.build_frame(token, 12, "1", "0", "0042", data, WHEN, key=key)
    fields = dc09.split_frame(frame)
    assert fields["encrypted"] and fields["token"] == token
    assert frame[9:10 + 1 + len(token) + 1] == b'"*' + token.encode() + b'"'
    hex_part = fields["rest"]
    assert hex_part == hex_part.upper() and len(hex_part) % 32 == 0  # hex of whole AES blocks
    assert b"_19:20:05" not in frame and (not data or data.encode() not in frame)  # nothing in clear
    assert dc09.decrypt_block(key, hex_part) == data + "]_19:20:05,11-28-2026"
    plain = key.decrypt(bytes.fromhex(hex_part)).decode("ascii")
    pad = plain[: plain.index("|")]
    assert 1 <= len(pad) <= 16 and not set(pad) & set("|[]")


def test_random_padding_never_contains_separators():
    for count in range(1, 17):
        pad = dc09.random_padding(count)
        assert len(pad) == count and not set(pad) & set("|[]")


def test_bad_padding_source_is_refused():
    with pytest.raises(dc09.Dc09FormatError):
        dc09.encrypt_block(KEYS[128], "]_19:20:05,11-28-2026", lambda n: "|" * n)


def test_pysiaalarm_decrypts_our_frames():
    key = dc09.Dc09Key.parse(KEY_ASCII, "ascii")
    account = SIAAccount("0042", KEY_ASCII, allowed_timeband=None)
    for token, data, code in (
        ("SIA-DCS", dc09.sia_dcs_data("0042", "TA", 0, 1), "TA"),
        ("ADM-CID", dc09.contact_id_data("0042", 1, 302, 1, 0), "YT"),
    ):
        frame = dc09.build_frame(token, 5, "0", "0", "0042", data, WHEN, key=key)
        event = SIAEvent.from_line(frame.decode().strip(), {"0042": account})
        assert event.valid_message and event.encrypted and event.code == code and event.timestamp == WHEN


def test_we_decrypt_a_block_encrypted_by_pysiaalarm():
    # pysiaalarm's own encryption pads with ASCII '0's and no '|' (zfill).
    account = SIAAccount("0042", KEY_ASCII)
    event = SIAEvent(sia_account=account, message_type="SIA-DCS", content=None)
    hex_text = event.encrypt_content("#0042|Nri1/PA002]_19:20:05,11-28-2026")
    key = dc09.Dc09Key.parse(KEY_ASCII, "ascii")
    # Its padding has no '|': the data starts at the first bracket, so only
    # the part from ']' on survives the strip; with '|' padding, all of it.
    assert dc09.decrypt_block(key, hex_text).endswith("]_19:20:05,11-28-2026")
    assert key.decrypt(bytes.fromhex(hex_text)).decode().lstrip("0") == "#0042|Nri1/PA002]_19:20:05,11-28-2026"


# ---------------------------------------------------------------- replies


def test_plain_ack_from_pysiaalarm():
    account = SIAAccount("0042", None, allowed_timeband=None)
    frame = dc09.build_frame("SIA-DCS", 31, "1", "2", "0042", "#0042|Nri1/PA002", WHEN)
    answer = SIAEvent.from_line(frame.decode().strip(), {"0042": account}).create_response()
    reply = dc09.parse_reply(answer)
    assert (reply.kind, reply.seq, reply.receiver, reply.line, reply.account, reply.encrypted) == ("ACK", 31, "1", "2", "0042", False)


def test_encrypted_ack_both_padding_forms():
    key = dc09.Dc09Key.parse(KEY_ASCII, "ascii")
    # pysiaalarm's form: '0' padding, no '|', and its [K...] extended data.
    account = SIAAccount("0042", KEY_ASCII, allowed_timeband=None)
    frame = dc09.build_frame("SIA-DCS", 8, "0", "0", "0042", "#0042|Nri1/PA002", WHEN, ("H19:20:01,11-28-2026",), key)
    answer = SIAEvent.from_line(frame.decode().strip(), {"0042": account}).create_response()
    reply = dc09.parse_reply(answer, key)
    assert reply.kind == "ACK" and reply.seq == 8 and reply.encrypted and reply.timestamp is not None
    assert KEY_ASCII not in repr(reply)  # pysiaalarm echoes the key as [K...]: never shown
    # The standard form: random padding ending in '|'.
    standard = dc09.build_reply("ACK", 8, "0", "0", "0042", WHEN, key)
    reply = dc09.parse_reply(standard, key)
    assert reply.kind == "ACK" and reply.seq == 8 and reply.encrypted and reply.timestamp == WHEN


def test_nak_carries_the_receiver_time():
    # pysiaalarm's NAK: seq 0000, 'A0' in place of the account, its time in clear.
    account = SIAAccount("0042", None)  # default timeband -40/+20 s
    old = WHEN - datetime.timedelta(days=400)
    frame = dc09.build_frame("SIA-DCS", 2, "0", "0", "0042", "#0042|Nri1/PA002", old)
    answer = SIAEvent.from_line(frame.decode().strip(), {"0042": account}).create_response()
    reply = dc09.parse_reply(answer)
    assert reply.kind == "NAK" and reply.seq == 0
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((reply.timestamp - now).total_seconds()) < 120


def test_duh_from_pysiaalarm_for_an_unknown_code():
    account = SIAAccount("0042", None, allowed_timeband=None)
    frame = dc09.build_frame("SIA-DCS", 6, "0", "0", "0042", "#0042|Nri1/AQ001", WHEN)
    answer = SIAEvent.from_line(frame.decode().strip(), {"0042": account}).create_response()
    assert dc09.parse_reply(answer).kind == "DUH"


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda f: f[:1] + b"0000" + f[5:], "crc"),
        (lambda f: f[:5] + b"0001" + f[9:], "length"),
        (lambda f: f[:-2] + b"\r", "length"),
    ],
)
def test_corrupt_replies_are_refused(mangle, reason):
    good = dc09.build_reply("ACK", 8, "0", "0", "0042", WHEN)
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.parse_reply(mangle(good))
    assert info.value.reason == reason


def test_reply_with_unknown_token_is_refused():
    body = b'"OOPS"0008R0L0#0042[]'
    frame = b"\n%04X%04X" % (dc09.crc16_arc(body), len(body)) + body + b"\r"
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.parse_reply(frame)
    assert info.value.reason == "token"


def test_encrypted_reply_with_wrong_key_or_no_key():
    reply = dc09.build_reply("ACK", 8, "0", "0", "0042", WHEN, KEYS[128])
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.parse_reply(reply, KEYS[256])
    assert info.value.reason in ("key", "format")
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.parse_reply(reply, None)
    assert info.value.reason == "key"


def test_encrypted_reply_with_bad_ciphertext():
    for junk in ("XYZ", "ABCD"):
        body = ('"*ACK"0008R0L0#0042[' + junk).encode()
        frame = b"\n%04X%04X" % (dc09.crc16_arc(body), len(body)) + body + b"\r"
        with pytest.raises(dc09.Dc09FormatError) as info:
            dc09.parse_reply(frame, KEYS[128])
        assert info.value.reason == "cipher"


# ---------------------------------------------------------------- finding replies in a stream


def _all_replies(chunks):
    buffer = bytearray()
    found = []
    for chunk in chunks:
        buffer += chunk
        while True:
            used, frame = dc09.find_reply(buffer)
            del buffer[:used]
            if frame is not None:
                found.append(frame)
            elif not used or not buffer:
                break
    return found


def test_find_reply_whole_bytewise_split_garbage_and_back_to_back():
    a = dc09.build_reply("ACK", 1, "0", "0", "0042", WHEN)
    b = dc09.build_reply("NAK", 0, "0", "0", None, WHEN)
    stream = b"\x00\rgarbage" + a + b"noise" + a + b
    assert _all_replies([stream]) == [a, a, b]
    assert _all_replies([bytes([x]) for x in stream]) == [a, a, b]
    rng = random.Random(4)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 4))
        parts = [stream[i:j] for i, j in zip([0] + cuts, cuts + [len(stream)])]
        assert _all_replies(parts) == [a, a, b]


def test_find_reply_drops_an_oversize_reply():
    a = dc09.build_reply("ACK", 1, "0", "0", "0042", WHEN)
    flood = b"\n" + b"A" * (dc09.MAX_REPLY_BYTES + 10)
    buffer = bytearray(flood)
    used, frame = dc09.find_reply(buffer)
    assert frame is None and used == len(flood)  # the buffer does not grow without bound
    # A complete but oversize reply is skipped; the good one after it survives.
    long_reply = b"\n" + b"B" * dc09.MAX_REPLY_BYTES + b"\r"
    assert _all_replies([long_reply + a]) == [a]


# ---------------------------------------------------------------- event codes


@pytest.mark.parametrize(
    "kind, restore, sia, cid, qualifier",
    [
        ("panic", False, "PA", 120, 1),
        ("panic", True, "PH", 120, 3),
        ("emergency", False, "QA", 101, 1),
        ("tamper", False, "TA", 137, 1),
        ("tamper", True, "TR", 137, 3),
        ("power", False, "AT", 301, 1),
        ("power", True, "AR", 301, 3),
        ("battery", False, "YT", 302, 1),
        ("battery", True, "YR", 302, 3),
        ("offline", False, "YC", 350, 1),
        ("offline", True, "YK", 350, 3),
        ("periodic_test", False, "RP", 602, 1),
        ("manual_test", False, "RX", 601, 1),
        ("button_fault", False, "UT", 380, 1),
    ],
)
def test_event_code_mapping(kind, restore, sia, cid, qualifier):
    assert dc09.event_code(kind, restore) == (sia, cid, qualifier)


def test_contact_id_codes_agree_with_pysiaalarm_table():
    # pysiaalarm's independent Contact ID -> SIA table gives the same SIA code
    # for every kind but button_fault (380 'sensor trouble': pysiaalarm says YX,
    # we send UT in SIA-DCS so the ARC sees the zone; docs/dc09.md).
    for kind, (new, restored, cid, _zone) in dc09.EVENT_CODES.items():
        if kind == "button_fault":
            continue
        assert ADM_MAPPING["%03d" % cid]["1"] == new, kind
        assert ADM_MAPPING["%03d" % cid]["3"] == restored, kind


def test_unknown_kind_is_unmapped():
    with pytest.raises(dc09.Dc09FormatError) as info:
        dc09.event_code("fire", False)
    assert info.value.reason == "unmapped" and "fire" in str(info.value)


def test_occurrence_time_block():
    assert dc09.occurrence_xdata({"press_time": "2026-11-28T19:20:01.123Z"}) == "H19:20:01,11-28-2026"
    assert dc09.occurrence_xdata({"press_time": "2026-11-29T00:50:01+05:30"}) == "H19:20:01,11-28-2026"
    assert dc09.occurrence_xdata({"press_time": "yesterday"}) is None
    assert dc09.occurrence_xdata({}) is None


def test_input_zones():
    assert dc09.input_zone({"kind": "emergency"}) == 1
    assert dc09.input_zone({"kind": "panic"}) == 2
    assert dc09.input_zone({"kind": "tamper"}) == 0
    assert dc09.input_zone({"kind": "button_fault", "button": "panic"}) == 2
