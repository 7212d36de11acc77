"""Generate tests/vectors/wire.json, the golden vectors of the box <-> gateway
wire protocol, from the codec (firmware/wire.py).

    .venv/bin/python tests/vectors/make_wire_vectors.py          # rewrite wire.json
    .venv/bin/python tests/vectors/make_wire_vectors.py --check  # exit 1 if it differs

Deterministic: no randomness, no clock. Each vector is written from a spec
(the message dict, or the fault injected and the reason expected) and the
generator checks that the codec agrees before writing, so a vector never
records a codec bug as truth. tests/wire/test_vectors.py checks that the
committed file equals this script's output (a layout change shows up as a
diff to review); the decode tests read only the JSON file.

The keys here are public test keys, derived from a label: never provision
them on a real box.
"""

import hashlib
import json
import pathlib
import struct
import sys

from callbox_firmware import wire

OUT = pathlib.Path(__file__).with_name("wire.json")

# Kanpur junctions of the first deployment; box id = 101 + index.
JUNCTIONS = [
    "Ghantaghar Square", "Gaushala Second Square", "Bagiya Crossing", "IIT Gate Tiraha", "Rocket Tiraha",
    "Bekarganj Square", "Baghi Chowk Tiraha", "Gopal Tiraha", "Fire Service (Fazalganj) Tiraha", "Bhatia Tiraha",
    "Lenin Park Square", "Sangeet Talkies Tiraha", "Chandrika Devi Mandir Square", "Bansmandi Square",
]
BOX = {name: 101 + i for i, name in enumerate(JUNCTIONS)}
# A box id with every byte non-zero and the top bit set (COBS and sign checks).
BOX_MAX = 0xFFFFFFFF
# 2026-09-10 around 10:40 IST, as seconds since 1970 (UTC).
T0 = 1789015200

BYTES_FIELDS = ("args", "data")


def test_key(box_id):
    """The public test key of a box (32 bytes)."""
    return hashlib.sha256(b"callbox golden-vector test key, box %d" % box_id).digest()


def _crc(signed):
    return signed + struct.pack(">I", wire.crc32(signed))


def raw_body(key_bytes, mtype, box_id, counter, payload, addr=0, version=wire.VERSION, flags=None, length=None, tag=None):
    """A body with any header field forced (for rejection vectors); tag and
    CRC are computed unless given, so the frame fails only where intended."""
    if flags is None:
        flags = wire.FLAG_DOWN if mtype in (wire.MSG_ACK, wire.MSG_CALL_STATE, wire.MSG_COMMAND, wire.MSG_POLL) else 0
    if length is None:
        length = len(payload)
    signed = struct.pack(">BBBBIIB", version, mtype, flags, addr, box_id, counter, length) + payload
    if tag is None:
        tag = wire.BoxKey(key_bytes).tag(signed)
    return _crc(signed + tag)


def on_wire(body):
    return b"\x00" + wire.cobs_encode(body) + b"\x00"


def jsonable(msg):
    out = {}
    for k in msg:
        v = msg[k]
        out[k] = v.hex() if isinstance(v, (bytes, bytearray)) else v
    return out


# ------------------------------------------------------------- valid frames
#
# (name, note, box id, counter, addr, message). Messages list every field,
# as decode_frame returns them, so "meaning" is the spec itself.


def _alarm(event, kind, time_s, time_ms, time_synced=True, restore=False):
    return {"type": "ALARM", "event": event, "kind": kind, "time_synced": time_synced, "restore": restore, "time_s": time_s, "time_ms": time_ms}


def _heartbeat(**kw):
    msg = {"type": "HEARTBEAT", "uptime_s": 0, "power": "mains", "battery_mv": 13200, "tamper": False, "link": "rs485", "rssi_dbm": 0,
           "fw": "1.0.0", "outbox": 0, "boot_reason": "none", "faults": [], "time_s": 0}
    msg.update(kw)
    return msg


def _ack(acked_type, acked_counter, event, status):
    return {"type": "ACK", "acked_type": acked_type, "acked_counter": acked_counter, "event": event, "status": status}


def _call(state, event, prompt):
    return {"type": "CALL_STATE", "state": state, "event": event, "prompt": prompt}


def _command(request, op, args=b""):
    return {"type": "COMMAND", "request": request, "op": op, "args": args}


def _result(request, op, status, data=b""):
    return {"type": "RESULT", "request": request, "op": op, "status": status, "data": data}


SELFTEST_REPORT = b'{"spk":1,"mic":1,"cam":1,"led":1,"btn_e":1,"btn_p":1,"tone_db":-18,"flash_kb":1480}'
MAX_ARGS = bytes((i * 37 + 11) % 255 + 1 for i in range(wire.MAX_PAYLOAD - 3))  # no 0x00: one COBS block

VALID = [
    ("alarm_emergency_ghantaghar", "Emergency pressed at Ghantaghar Square, sent on the RS-485 bus (address 1)",
     BOX["Ghantaghar Square"], 4711, 1, _alarm(0x00650001, "emergency", T0, 250)),
    ("alarm_panic_bagiya_crossing_lte", "Panic at Bagiya Crossing over LTE (address 0)",
     BOX["Bagiya Crossing"], 90210, 0, _alarm(0x00670013, "panic", T0 + 61, 7)),
    ("alarm_panic_clock_unsynced", "Panic pressed before the box had wall-clock time: time_s is uptime",
     BOX["IIT Gate Tiraha"], 3, 4, _alarm(0x00680001, "panic", 42, 980, time_synced=False)),
    ("alarm_tamper_rocket_tiraha", "Door of the Rocket Tiraha box opened",
     BOX["Rocket Tiraha"], 1200, 5, _alarm(0x00690007, "tamper", T0 + 3600, 0)),
    ("alarm_tamper_restore", "Door closed again: the same kind with the restore flag",
     BOX["Rocket Tiraha"], 1201, 5, _alarm(0x00690008, "tamper", T0 + 3720, 500, restore=True)),
    ("alarm_power_mains_lost", "Mains lost at Bekarganj Square, box on battery",
     BOX["Bekarganj Square"], 77, 6, _alarm(0x006A0002, "power", T0 + 7200, 1)),
    ("alarm_battery_low", "Battery below threshold at Baghi Chowk Tiraha",
     BOX["Baghi Chowk Tiraha"], 65536, 7, _alarm(0x006B0003, "battery", T0 + 86400, 999)),
    ("alarm_button_fault", "Panic button stuck at Gopal Tiraha",
     BOX["Gopal Tiraha"], 255, 8, _alarm(0x006C0004, "button_fault", T0 + 1, 100)),
    ("alarm_unknown_kind_from_newer_box", "A kind code this codec has no name for decodes as its integer",
     BOX["Bhatia Tiraha"], 10, 10, _alarm(0x006E0001, 9, T0, 0)),
    ("ack_alarm_stored", "Gateway stored the Ghantaghar alarm",
     BOX["Ghantaghar Square"], 18, 1, _ack("ALARM", 4711, 0x00650001, "stored")),
    ("ack_alarm_duplicate", "A retried alarm the gateway already had",
     BOX["Bagiya Crossing"], 19, 0, _ack("ALARM", 90211, 0x00670013, "duplicate")),
    ("ack_heartbeat_refused", "Gateway refused a frame (store full)",
     BOX["Lenin Park Square"], 20, 11, _ack("HEARTBEAT", 5000, 0, "refused")),
    ("heartbeat_rs485_mains", "Healthy box on the bus, clock synced",
     BOX["Ghantaghar Square"], 4712, 1, _heartbeat(uptime_s=86400, power="mains", battery_mv=13450, link="rs485", rssi_dbm=-128,
                                                  fw="1.4.2", outbox=0, boot_reason="power_on", time_s=T0 + 5)),
    ("heartbeat_lte_battery_faults", "On battery over LTE after a watchdog reset, tamper open, two faults",
     BOX["Sangeet Talkies Tiraha"], 31337, 0, _heartbeat(uptime_s=314, power="battery", battery_mv=11620, tamper=True, link="lte",
                                                        rssi_dbm=-97, fw="1.4.2", outbox=3, boot_reason="watchdog",
                                                        faults=["panic_stuck", "clock_unsynced"], time_s=0)),
    ("heartbeat_unknown_fault_bit", "A fault bit with no name is kept as its integer, not dropped",
     BOX["Chandrika Devi Mandir Square"], 8, 13, _heartbeat(uptime_s=1, power="unknown", battery_mv=0, link="none", rssi_dbm=127,
                                                           fw="0.0.1", outbox=65535, boot_reason="brownout",
                                                           faults=["flash", 64, 128], time_s=T0)),
    ("heartbeat_max_ids", "Largest box id and counter: every header byte 0xFF",
     BOX_MAX, 0xFFFFFFFF, wire.ADDR_MAX, _heartbeat(uptime_s=0xFFFFFFFF, power="mains", battery_mv=65535, link="rs485", rssi_dbm=-1,
                                                   fw="255.255.255", outbox=1, boot_reason="panic",
                                                   faults=["emergency_stuck", "panic_stuck", "tamper_stuck", "flash", "clock_unsynced", "link_backup"],
                                                   time_s=0xFFFFFFFF)),
    ("heartbeat_counter_zero", "First frame of a freshly provisioned box: counter 0, all-zero fields",
     BOX["Bansmandi Square"], 0, 14, _heartbeat(power="mains", battery_mv=0, link="rs485", fw="1.0.0", boot_reason="none")),
    ("call_state_ringing", "Operator's console is ringing for the Ghantaghar alarm",
     BOX["Ghantaghar Square"], 21, 1, _call("ringing", 0x00650001, "connecting")),
    ("call_state_connected", "Video call connected",
     BOX["Ghantaghar Square"], 22, 1, _call("connected", 0x00650001, "none")),
    ("call_state_dispatched", "Operator dispatched a vehicle: 'help is on the way'",
     BOX["Bagiya Crossing"], 23, 0, _call("dispatched", 0x00670013, "help_on_way")),
    ("call_state_ended", "Call ended, box back to idle light",
     BOX["Ghantaghar Square"], 24, 1, _call("ended", 0x00650001, "none")),
    ("call_state_received", "Alarm received (before the operator answers)",
     BOX["Gopal Tiraha"], 25, 8, _call("idle", 0x006C0004, "received")),
    ("command_selftest", "Technician asks for a speaker/mic loopback self-test",
     BOX["Lenin Park Square"], 26, 11, _command(1, "selftest")),
    ("command_reboot", "Remote reboot",
     BOX["IIT Gate Tiraha"], 27, 4, _command(2, "reboot")),
    ("command_config_set", "Set the heartbeat period to 60 s",
     BOX["Rocket Tiraha"], 28, 5, _command(3, "config_set", b"hb_s=60")),
    ("command_time_sync", "Time sync; the codec carries args as opaque bytes (here 4-byte seconds, 2-byte ms)",
     BOX["Bekarganj Square"], 29, 6, _command(0xFFFF, "time_sync", struct.pack(">IH", T0 + 10, 500))),
    ("command_config_get", "Read one configuration key",
     BOX["Baghi Chowk Tiraha"], 30, 7, _command(4, "config_get", b"hb_s")),
    ("command_max_payload", "Largest frame: a COMMAND with a 189-byte argument (MAX_PAYLOAD bytes of payload)",
     BOX["Bhatia Tiraha"], 31, 10, _command(5, "config_set", MAX_ARGS)),
    ("result_selftest_ok", "Self-test report from Lenin Park Square",
     BOX["Lenin Park Square"], 5001, 11, _result(1, "selftest", "ok", SELFTEST_REPORT)),
    ("result_selftest_fail", "Self-test failed: the mic did not hear the tone",
     BOX["Sangeet Talkies Tiraha"], 31338, 0, _result(7, "selftest", "fail", b'{"mic":0,"tone_db":-71}')),
    ("result_unsupported", "Operation this firmware does not have",
     BOX["IIT Gate Tiraha"], 4, 4, _result(8, 6, "unsupported")),
    ("result_bad_args", "config_set with a key the box does not know",
     BOX["Rocket Tiraha"], 1202, 5, _result(3, "config_set", "bad_args", b"unknown key: hb")),
    ("poll_address_7", "Gateway polls the box at bus address 7",
     BOX["Baghi Chowk Tiraha"], 32, 7, {"type": "POLL"}),
    ("idle_address_7", "The polled box has nothing to send",
     BOX["Baghi Chowk Tiraha"], 65537, 7, {"type": "IDLE"}),
]


# Short POLL/IDLE (RS-485 only): (name, note, type, bus address, poll sequence, known box).
SHORT_VALID = [
    ("short_poll_address_7", "Short POLL of the Baghi Chowk box (9 bytes on the wire)", "POLL", 7, 0x5C, BOX["Baghi Chowk Tiraha"]),
    ("short_idle_address_7", "Its short IDLE, echoing the poll sequence", "IDLE", 7, 0x5C, BOX["Baghi Chowk Tiraha"]),
    ("short_poll_seq_0_address_1", "Sequence 0: a zero byte inside the body (COBS must stuff it)", "POLL", 1, 0, BOX["Ghantaghar Square"]),
    ("short_idle_address_247", "The highest bus address, sequence 255", "IDLE", wire.ADDR_MAX, 255, BOX_MAX),
]


def _short_body(mtype, addr, seq, crc=None):
    head = bytes([wire.SHORT_MARK, mtype, addr, seq])
    if crc is None:
        crc = wire.crc32(head) & 0xFFFF
    return head + struct.pack(">H", crc)


def valid_vectors():
    out = []
    for name, note, tname, addr, seq, box_id in SHORT_VALID:
        mtype = wire.TYPE_CODES[tname]
        frame_bytes = wire.encode_short(mtype, addr, seq)
        assert frame_bytes == on_wire(_short_body(mtype, addr, seq)), name
        down = mtype == wire.MSG_POLL
        msg = {"type": tname, "short": True, "seq": seq}
        key = test_key(box_id)
        f = wire.decode_frame(frame_bytes[1:-1], {box_id: wire.BoxKey(key)}.get, down)
        assert f.msg == msg and f.box_id is None and f.addr == addr, (name, f)
        out.append({
            "name": name, "note": note, "key": key.hex(), "known_box_id": box_id, "expect_down": down,
            "wire": frame_bytes.hex(),
            "frame": {"version": wire.VERSION, "type": tname, "flags": wire.FLAG_DOWN if down else 0, "addr": addr,
                      "box_id": None, "counter": seq, "payload_len": 0},
            "message": msg,
        })
    for name, note, box_id, counter, addr, msg in VALID:
        key = test_key(box_id)
        mtype = wire.TYPE_CODES[msg["type"]]
        frame_bytes = wire.encode_message(wire.BoxKey(key), msg, box_id, counter, addr)
        down = mtype in (wire.MSG_ACK, wire.MSG_CALL_STATE, wire.MSG_COMMAND, wire.MSG_POLL)
        expect_down = True if down else False
        # The codec must agree with the spec before the vector is written.
        f = wire.decode_frame(frame_bytes[1:-1], {box_id: wire.BoxKey(key)}.get, expect_down)
        assert f.msg == msg, (name, f.msg, msg)
        out.append({
            "name": name,
            "note": note,
            "key": key.hex(),
            "known_box_id": box_id,
            "expect_down": expect_down,
            "wire": frame_bytes.hex(),
            "frame": {"version": wire.VERSION, "type": msg["type"], "flags": wire.FLAG_DOWN if down else 0, "addr": addr,
                      "box_id": box_id, "counter": counter, "payload_len": len(wire.pack_payload(msg))},
            "message": jsonable(msg),
        })
    return out


# ---------------------------------------------------------- rejected frames


def _valid_body(name):
    for n, _note, box_id, counter, addr, msg in VALID:
        if n == name:
            key = test_key(box_id)
            return box_id, key, wire.encode_body(wire.BoxKey(key), wire.TYPE_CODES[msg["type"]], box_id, counter, wire.pack_payload(msg), addr)
    raise KeyError(name)


def _fix_crc(body):
    return _crc(body[:-4])


def _alarm_payload(**kw):
    return wire.pack_payload(_alarm(**kw))


GHANTA = BOX["Ghantaghar Square"]
GHANTA_ALARM = dict(event=0x00650002, kind="panic", time_s=T0 + 900, time_ms=400)


def invalid_specs():
    """(name, note, reason, known box, expect_down, wire bytes, box id the error names)."""
    specs = []
    box, key, alarm = _valid_body("alarm_emergency_ghantaghar")

    def add(name, note, reason, wire_bytes, error_box_id, known=box, known_key=key, expect_down=False):
        specs.append((name, note, reason, known, known_key, expect_down, wire_bytes, error_box_id))

    # Framing.
    add("empty_between_delimiters", "Two delimiters with nothing between (RS-485 turnaround)", wire.E_EMPTY, b"\x00\x00", None)
    piece = wire.cobs_encode(alarm)
    add("cobs_truncated_tail", "The last 3 bytes of the frame were lost: the COBS block runs past the end",
        wire.E_COBS, b"\x00" + piece[:-3] + b"\x00", None)
    last = 0
    while last + piece[last] < len(piece):
        last += piece[last]
    one_past = bytearray(piece)
    one_past[last] += 1
    add("cobs_last_block_one_past_end", "Noise raised the last COBS code byte by one: the block ends one byte past the piece",
        wire.E_COBS, b"\x00" + bytes(one_past) + b"\x00", None)
    add("cobs_noise_burst", "Line noise between frames: code byte 0x41 with 2 bytes after it",
        wire.E_COBS, b"\x00\x41\x42\x43\x00", None)
    add("short_half_frame", "Only the first 20 bytes of a body arrived (checked before the CRC)",
        wire.E_SHORT, on_wire(alarm[:20]), None)
    add("short_one_byte", "A single stray byte between delimiters", wire.E_SHORT, b"\x00\x01\x00", None)
    add("short_overhead_minus_one", "24 bytes: one less than header + tag + CRC",
        wire.E_SHORT, on_wire(raw_body(key, wire.MSG_POLL, box, 1, b"", addr=1)[:-1]), None)
    _b, _k, biggest = _valid_body("command_max_payload")
    add("oversize_delimiter_lost", "The delimiter between the largest frame and an alarm was lost: 261 bytes without 0x00",
        wire.E_OVERSIZE, b"\x00" + wire.cobs_encode(biggest) + wire.cobs_encode(alarm) + b"\x00", None)
    add("oversize_noise_run", "219 non-zero bytes (MAX_ENCODED + 1) of noise",
        wire.E_OVERSIZE, b"\x00" + bytes((i * 7) % 255 + 1 for i in range(wire.MAX_ENCODED + 1)) + b"\x00", None)
    # Short POLL/IDLE (no tag, 16-bit check).
    poll7 = _short_body(wire.MSG_POLL, 7, 0x5C)
    add("short_frame_check_wrong", "Short POLL whose 16-bit check does not match", wire.E_CRC,
        on_wire(poll7[:4] + bytes([poll7[4] ^ 0x01, poll7[5]])), None, expect_down=True)
    add("short_frame_type_alarm", "Short-frame marker with type ALARM (only POLL and IDLE are short)", wire.E_TYPE,
        on_wire(_short_body(wire.MSG_ALARM, 7, 1)), None, expect_down=False)
    add("short_poll_heard_by_gateway", "A gateway hears a short POLL (another master on the bus?)", wire.E_TYPE,
        on_wire(poll7), None, expect_down=False)
    add("short_idle_heard_by_box", "A box hears another box's short IDLE", wire.E_TYPE,
        on_wire(_short_body(wire.MSG_IDLE, 7, 0x5C)), None, expect_down=True)
    add("short_poll_address_0", "Short POLL for bus address 0 (short frames are RS-485 only: 1..247)", wire.E_PAYLOAD,
        on_wire(_short_body(wire.MSG_POLL, 0, 3)), None, expect_down=True)
    add("short_poll_address_248", "Short POLL for bus address 248", wire.E_PAYLOAD,
        on_wire(_short_body(wire.MSG_POLL, 248, 3)), None, expect_down=True)
    add("short_marker_7_bytes", "The short-frame marker on a 7-byte body is not a short frame", wire.E_SHORT,
        on_wire(poll7 + b"\x01"), None, expect_down=True)
    # Integrity.
    bad = bytearray(alarm)
    bad[17] ^= 0x10
    add("crc_bit_flip_in_payload", "Line noise flipped one payload bit; CRC not recomputed", wire.E_CRC, on_wire(bytes(bad)), None)
    bad = bytearray(alarm)
    bad[-1] ^= 0x01
    add("crc_bit_flip_in_crc", "The CRC itself was hit", wire.E_CRC, on_wire(bytes(bad)), None)
    _b2, _k2, heartbeat = _valid_body("heartbeat_rs485_mains")
    add("crc_delimiter_lost_two_frames", "Delimiter between two short frames lost: one piece, CRC fails",
        wire.E_CRC, b"\x00" + wire.cobs_encode(alarm) + wire.cobs_encode(heartbeat) + b"\x00", None)
    # Header.
    add("version_2", "A frame from a future protocol version (CRC and tag valid)", wire.E_VERSION,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4713, _alarm_payload(**GHANTA_ALARM), addr=1, version=2)), box)
    add("version_0", "Version 0 (CRC and tag valid)", wire.E_VERSION,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4714, _alarm_payload(**GHANTA_ALARM), addr=1, version=0)), box)
    add("length_field_too_big", "Length field 13 for a 12-byte payload", wire.E_LENGTH,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4715, _alarm_payload(**GHANTA_ALARM), addr=1, length=13)), box)
    add("length_field_zero", "Length field 0 for a 12-byte payload", wire.E_LENGTH,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4716, _alarm_payload(**GHANTA_ALARM), addr=1, length=0)), box)
    add("type_unknown_0x09", "Type 0x09 does not exist", wire.E_TYPE,
        on_wire(raw_body(key, 0x09, box, 4717, b"", addr=1, flags=0)), box)
    add("type_zero", "Type 0x00 does not exist", wire.E_TYPE,
        on_wire(raw_body(key, 0x00, box, 4718, b"", addr=1, flags=0)), box)
    add("type_reserved_flag_bit", "Flags 0x02: a reserved bit set", wire.E_TYPE,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4719, _alarm_payload(**GHANTA_ALARM), addr=1, flags=0x02)), box)
    add("type_alarm_marked_down", "An ALARM with the DOWN flag (box types never travel down)", wire.E_TYPE,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4720, _alarm_payload(**GHANTA_ALARM), addr=1, flags=wire.FLAG_DOWN)), box)
    add("type_ack_marked_up", "An ACK without the DOWN flag: a box pretending to be the gateway", wire.E_TYPE,
        on_wire(raw_body(key, wire.MSG_ACK, box, 4721, wire.pack_payload(_ack("ALARM", 1, 1, "stored")), addr=1, flags=0)), box)
    add("type_alarm_heard_by_a_box", "A box on the bus hears an ALARM: the box accepts only gateway->box types",
        wire.E_TYPE, on_wire(alarm), box, expect_down=True)
    _b3, _k3, command = _valid_body("command_reboot")
    add("type_command_heard_by_gateway", "A gateway hears a COMMAND (gateway->box type) on the bus",
        wire.E_TYPE, on_wire(command), _b3, known=_b3, known_key=_k3, expect_down=False)
    # Who sent it.
    stranger = 999
    add("unknown_box_999", "Box 999 is not provisioned on this gateway", wire.E_UNKNOWN_BOX,
        on_wire(raw_body(test_key(stranger), wire.MSG_ALARM, stranger, 1, _alarm_payload(**GHANTA_ALARM), addr=1)), stranger)
    _b4, _k4, poll_other = _valid_body("poll_address_7")
    add("unknown_box_poll_for_another_box", "Ghantaghar's box hears the gateway poll the Baghi Chowk box",
        wire.E_UNKNOWN_BOX, on_wire(poll_other), _b4, expect_down=True)
    add("auth_wrong_key", "Signed with another box's key (CRC valid)", wire.E_AUTH,
        on_wire(raw_body(test_key(stranger), wire.MSG_ALARM, box, 4722, _alarm_payload(**GHANTA_ALARM), addr=1)), box)
    add("auth_forged_tag_zero", "Tag replaced by zeros, CRC recomputed", wire.E_AUTH,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4723, _alarm_payload(**GHANTA_ALARM), addr=1, tag=bytes(8))), box)
    bad = bytearray(alarm)
    bad[-12 + 7] ^= 0x80  # last tag byte
    add("auth_forged_tag_last_bit", "Last bit of the tag flipped, CRC recomputed (constant-time compare sees it)",
        wire.E_AUTH, on_wire(_fix_crc(bytes(bad))), box)
    bad = bytearray(alarm)
    bad[13 + 4] = 2  # kind emergency -> panic
    add("auth_payload_changed", "Kind changed from emergency to panic, CRC recomputed, tag kept", wire.E_AUTH,
        on_wire(_fix_crc(bytes(bad))), box)
    bad = bytearray(alarm)
    bad[11] ^= 0x01  # counter + 1
    add("auth_counter_changed", "Counter bumped to dodge replay protection, CRC recomputed", wire.E_AUTH,
        on_wire(_fix_crc(bytes(bad))), box)
    # Payload.
    add("payload_alarm_11_bytes", "ALARM payload one byte short (tag and CRC valid)", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4724, _alarm_payload(**GHANTA_ALARM)[:11], addr=1)), box)
    add("payload_alarm_13_bytes", "ALARM payload one byte long", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4725, _alarm_payload(**GHANTA_ALARM) + b"\x01", addr=1)), box)
    add("payload_poll_with_bytes", "POLL carries no payload", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_POLL, box, 4726, b"\x07", addr=1)), box, expect_down=True)
    add("payload_command_2_bytes", "COMMAND shorter than request id + op", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_COMMAND, box, 4727, b"\x00\x01", addr=1)), box, expect_down=True)
    add("payload_result_3_bytes", "RESULT shorter than request id + op + status", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_RESULT, box, 4728, b"\x00\x01\x01", addr=1)), box)
    p = bytearray(_alarm_payload(**GHANTA_ALARM))
    p[10:12] = struct.pack(">H", 1000)
    add("payload_alarm_time_ms_1000", "Press time milliseconds 1000 (0..999)", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4729, bytes(p), addr=1)), box)
    p = bytearray(_alarm_payload(**GHANTA_ALARM))
    p[5] = 0x04
    add("payload_alarm_reserved_flag", "ALARM flag 0x04 is reserved", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_ALARM, box, 4730, bytes(p), addr=1)), box)
    p = bytearray(wire.pack_payload(_heartbeat()))
    p[7] = 2
    add("payload_heartbeat_tamper_2", "HEARTBEAT tamper byte 2 (0 or 1)", wire.E_PAYLOAD,
        on_wire(raw_body(key, wire.MSG_HEARTBEAT, box, 4731, bytes(p), addr=1)), box)
    return specs


def invalid_vectors():
    out = []
    for name, note, reason, known, known_key, expect_down, wire_bytes, error_box_id in invalid_specs():
        assert wire_bytes[0] == 0 and wire_bytes[-1] == 0 and 0 not in wire_bytes[1:-1], name
        try:
            wire.decode_frame(wire_bytes[1:-1], {known: wire.BoxKey(known_key)}.get, expect_down)
        except wire.WireError as e:
            assert e.reason == reason, (name, e.reason, reason, str(e))
            assert e.box_id == error_box_id, (name, e.box_id, error_box_id)
        else:
            raise AssertionError("%s decoded but should fail with %s" % (name, reason))
        out.append({
            "name": name,
            "note": note,
            "key": known_key.hex(),
            "known_box_id": known,
            "expect_down": expect_down,
            "wire": wire_bytes.hex(),
            "reason": reason,
            "error_box_id": error_box_id,
        })
    return out


# ------------------------------------------------------------ replay window

REPLAY = [
    ("in_order_then_repeat", "A new sender counts up; a repeat is refused", -1,
     [(0, "accept"), (1, "accept"), (2, "accept"), (3, "accept"), (2, "replay"), (3, "replay")]),
    ("crossed_frames_within_window", "RS-485 and LTE copies cross: lower unseen counters accepted once", -1,
     [(10, "accept"), (8, "accept"), (9, "accept"), (8, "replay"), (10, "replay"), (7, "accept"), (11, "accept"), (7, "replay")]),
    ("window_edge", "Exactly WINDOW (24) below the top is in, 25 below is out", -1,
     [(100, "accept"), (76, "accept"), (75, "replay"), (76, "replay"), (99, "accept"), (99, "replay")]),
    ("jump_far_ahead", "A jump larger than the window forgets everything below it", -1,
     [(5, "accept"), (1000, "accept"), (5, "replay"), (999, "accept"), (976, "accept"), (975, "replay"), (6, "replay")]),
    ("shift_by_exactly_window", "Seen bits survive a shift of exactly WINDOW", -1,
     [(1, "accept"), (3, "accept"), (5, "accept"), (7, "accept"), (6, "accept"), (31, "accept"), (7, "replay"), (8, "accept"),
      (6, "replay"), (30, "accept"), (30, "replay")]),
    ("persisted_start_after_restart", "Gateway restarted with 500 persisted: nothing at or below 500 ever again", 500,
     [(500, "replay"), (499, "replay"), (501, "accept"), (499, "replay"), (490, "replay"), (503, "accept"), (502, "accept"),
      (502, "replay"), (480, "replay"), (530, "accept"), (506, "accept"), (505, "replay")]),
    ("persisted_start_zero", "Persisted 0: counter 0 refused, 1 accepted", 0,
     [(0, "replay"), (1, "accept"), (0, "replay"), (1, "replay"), (2, "accept")]),
    ("counter_top_of_range", "The last counter a key can use", 0xFFFFFFFE,
     [(0xFFFFFFFE, "replay"), (0xFFFFFFFF, "accept"), (0xFFFFFFFF, "replay"), (0, "replay"), (0xFFFFFFFD, "replay")]),
]


def replay_sequences():
    out = []
    for name, note, start, steps in REPLAY:
        w = wire.ReplayWindow(start)
        for counter, expected in steps:
            try:
                w.accept(counter)
                got = "accept"
            except wire.WireError as e:
                assert e.reason == wire.E_REPLAY
                got = "replay"
            assert got == expected, (name, counter, got, expected)
        out.append({"name": name, "note": note, "start": start, "steps": [[c, e] for c, e in steps]})
    return out


# ------------------------------------------------- messages the encoder refuses
#
# MicroPython's struct.pack wraps out-of-range integers silently (300 packs as
# 0x2c), so the codec checks every field itself; these prove both
# interpreters refuse the same messages with E_RANGE.

_HB_OK = _heartbeat(uptime_s=60, battery_mv=13000, link="rs485", rssi_dbm=-70, fw="1.4.2", outbox=0, boot_reason="power_on", time_s=T0)
_ALARM_OK = _alarm(0x00650003, "panic", T0, 0)


def _with(msg, **kw):
    m = dict(msg)
    m.update(kw)
    return m


def _without(msg, field):
    m = dict(msg)
    del m[field]
    return m


UNENCODABLE = [
    ("alarm_time_ms_1000", _with(_ALARM_OK, time_ms=1000), 0, 1),
    ("alarm_event_negative", _with(_ALARM_OK, event=-1), 0, 1),
    ("alarm_event_33_bits", _with(_ALARM_OK, event=0x100000000), 0, 1),
    ("alarm_event_bool", _with(_ALARM_OK, event=True), 0, 1),
    ("alarm_kind_unknown_name", _with(_ALARM_OK, kind="fire"), 0, 1),
    ("alarm_kind_code_256", _with(_ALARM_OK, kind=256), 0, 1),
    ("alarm_time_s_33_bits", _with(_ALARM_OK, time_s=0x100000000), 0, 1),
    ("alarm_missing_event", _without(_ALARM_OK, "event"), 0, 1),
    ("heartbeat_battery_mv_65536", _with(_HB_OK, battery_mv=65536), 0, 1),
    ("heartbeat_rssi_minus_129", _with(_HB_OK, rssi_dbm=-129), 0, 1),
    ("heartbeat_rssi_128", _with(_HB_OK, rssi_dbm=128), 0, 1),
    ("heartbeat_fw_two_parts", _with(_HB_OK, fw="1.4"), 0, 1),
    ("heartbeat_fw_part_256", _with(_HB_OK, fw="1.256.0"), 0, 1),
    ("heartbeat_fw_not_a_number", _with(_HB_OK, fw="1.x.2"), 0, 1),
    ("heartbeat_outbox_negative", _with(_HB_OK, outbox=-1), 0, 1),
    ("heartbeat_fault_unknown_name", _with(_HB_OK, faults=["smoke"]), 0, 1),
    ("heartbeat_fault_two_bits_in_one", _with(_HB_OK, faults=[3]), 0, 1),
    ("heartbeat_power_unknown_name", _with(_HB_OK, power="solar"), 0, 1),
    ("ack_acked_type_unknown", _ack("SIREN", 1, 0, "stored"), 0, 1),
    ("ack_status_unknown", _ack("ALARM", 1, 0, "lost"), 0, 1),
    ("call_state_prompt_unknown", _call("ringing", 0, "sing"), 0, 1),
    ("command_request_65536", _command(65536, "reboot"), 0, 1),
    ("command_args_over_max_payload", _command(1, "config_set", bytes(wire.MAX_PAYLOAD - 2)), 0, 1),
    ("result_status_code_300", _result(1, "selftest", 300), 0, 1),
    ("type_unknown_name", {"type": "SIREN"}, 0, 1),
    ("header_addr_248", {"type": "POLL"}, wire.ADDR_MAX + 1, 1),
    ("header_counter_negative", {"type": "IDLE"}, 0, -1),
    ("header_counter_33_bits", {"type": "IDLE"}, 0, 0x100000000),
    ("header_counter_float", {"type": "IDLE"}, 0, 1.5),
    ("header_addr_negative", {"type": "IDLE"}, -1, 1),
]

# encode_short refusals: (name, type, address, sequence).
SHORT_UNENCODABLE = [
    ("short_alarm", wire.MSG_ALARM, 7, 1),
    ("short_address_0", wire.MSG_POLL, 0, 1),
    ("short_address_248", wire.MSG_POLL, 248, 1),
    ("short_seq_256", wire.MSG_IDLE, 7, 256),
    ("short_seq_negative", wire.MSG_IDLE, 7, -1),
]


def unencodable():
    key = test_key(BOX["Ghantaghar Square"])
    out = []
    for name, msg, addr, counter in UNENCODABLE:
        try:
            wire.encode_message(wire.BoxKey(key), msg, BOX["Ghantaghar Square"], counter, addr)
        except wire.WireError as e:
            assert e.reason == wire.E_RANGE, (name, e.reason)
        else:
            raise AssertionError("%s was encoded but must be refused" % name)
        out.append({"name": name, "key": key.hex(), "box_id": BOX["Ghantaghar Square"], "addr": addr, "counter": counter,
                    "message": jsonable(msg), "reason": wire.E_RANGE})
    for name, mtype, addr, seq in SHORT_UNENCODABLE:
        try:
            wire.encode_short(mtype, addr, seq)
        except wire.WireError as e:
            assert e.reason == wire.E_RANGE, (name, e.reason)
        else:
            raise AssertionError("%s was encoded but must be refused" % name)
        out.append({"name": name, "short": {"type": mtype, "addr": addr, "seq": seq}, "reason": wire.E_RANGE})
    return out


SECTIONS = ("valid", "invalid", "replay", "unencodable")


def build():
    """The text of wire.json."""
    doc = {
        "format": "callbox wire golden vectors",
        "generator": "tests/vectors/make_wire_vectors.py",
        "codec": "firmware/wire.py",
        "protocol_version": wire.VERSION,
        "limits": {"max_payload": wire.MAX_PAYLOAD, "max_body": wire.MAX_BODY, "max_encoded": wire.MAX_ENCODED,
                   "overhead": wire.OVERHEAD, "window": wire.WINDOW},
        "bytes_fields": list(BYTES_FIELDS),
        "keys_are_public_test_keys": True,
        "valid": valid_vectors(),
        "invalid": invalid_vectors(),
        "replay": replay_sequences(),
        "unencodable": unencodable(),
    }
    # One vector per line: readable diffs, and a small-heap reader can take
    # the file a line at a time.
    lines = ["{"]
    keys = [k for k in doc if k not in SECTIONS]
    for k in keys:
        lines.append(" %s: %s," % (json.dumps(k), json.dumps(doc[k], sort_keys=True)))
    for k in SECTIONS:
        lines.append(" %s: [" % json.dumps(k))
        items = doc[k]
        for i, item in enumerate(items):
            lines.append("  " + json.dumps(item, sort_keys=True) + ("," if i + 1 < len(items) else ""))
        lines.append(" ]" + ("," if k != SECTIONS[-1] else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv):
    text = build()
    json.loads(text)  # the file must be plain JSON
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("%s is out of date: run %s" % (OUT, pathlib.Path(__file__).name), file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    doc = json.loads(text)
    print("wrote %s: %d valid, %d invalid, %d replay sequences, %d unencodable" % (
        OUT, len(doc["valid"]), len(doc["invalid"]), len(doc["replay"]), len(doc["unencodable"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
