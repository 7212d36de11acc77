"""The RS-485 bus emulator: the pure timeline (BusCore, time passed in) and the
threaded shell over real TCP sockets, a real pty and pyserial."""

import os
import select
import socket
import time

import pytest

from callbox_firmware import wire
from callbox_rig.rs485_bus import BusCore, BusError, Rs485Bus

BAUD = 115200
CHAR = 10.0 / BAUD


def _core(**kw):
    c = BusCore(BAUD, **kw)
    for name in ("gw", "a", "b"):
        c.attach(name)
    return c


def test_bytes_arrive_after_their_wire_time_and_talker_does_not_hear_itself():
    c = _core()
    c.transmit("gw", b"0123456789", 1.0)
    assert c.due(1.0 + 9 * CHAR) == []  # the last character is not through yet
    got = c.due(1.0 + 10 * CHAR + 1e-9)
    assert sorted((l, d) for l, d, _ in got) == [("a", b"0123456789"), ("b", b"0123456789")]


def test_second_write_queues_behind_the_first_like_a_uart_fifo():
    c = _core()
    s1 = c.transmit("a", b"xxxx", 0.0)
    s2 = c.transmit("a", b"yy", 0.0)
    assert s2.start == pytest.approx(s1.end)
    assert s2.end == pytest.approx(6 * CHAR)
    assert c.stats["collisions"] == 0


def test_simultaneous_talkers_garble_each_other_for_every_listener():
    c = _core()
    c.transmit("a", b"\x01\x02\x04\x08", 0.0)
    c.transmit("b", b"\x10\x20\x40\x80", 0.0)  # same instant: characters aligned
    got = {(l, s.talker): d for l, d, s in c.due(1.0)}
    assert got[("gw", "a")] == bytes([0x11, 0x22, 0x44, 0x88])
    assert got[("gw", "b")] == bytes([0x11, 0x22, 0x44, 0x88])
    assert got[("b", "a")] == got[("gw", "a")]  # b hears a garbled by itself
    assert c.stats["collisions"] == 1


def test_half_character_offset_garbles_two_characters_each():
    c = _core()
    c.transmit("a", b"\x01\x01", 0.0)
    c.transmit("b", b"\x80", 1.5 * CHAR)  # overlaps a's second character only
    got = {s.talker: d for l, d, s in c.due(1.0) if l == "gw"}
    assert got["a"] == b"\x01\x81"
    assert got["b"] == b"\x81"


def test_a_frame_survives_a_talker_that_comes_after_it():
    c = _core()
    frame = wire.encode_short(wire.MSG_POLL, 3, 9)
    c.transmit("gw", frame, 0.0)
    c.transmit("a", b"\x55", 0.0 + len(frame) * CHAR + CHAR)
    got = [d for l, d, s in c.due(1.0) if l == "a" and s.talker == "gw"]
    assert got == [frame]


def test_bit_errors_come_at_the_configured_rate_and_framing_errors_read_ff():
    c = _core(ber=1e-3, seed=42)
    data = bytes(100_000)  # 1,000,000 bits
    c.transmit("a", data, 0.0)
    heard = [d for l, d, s in c.due(10.0) if l == "gw"][0]
    errors = c.stats["bit_errors"]
    assert 850 <= errors <= 1150  # 1000 expected; 5 sigma is +-160
    assert c.stats["framing_errors"] > 0
    assert 0 < heard.count(0xFF) <= c.stats["framing_errors"]
    changed = sum(1 for x in heard if x)
    assert 0 < changed <= errors


def test_clean_bus_changes_nothing_and_ber_is_checked():
    c = _core(ber=0.0)
    c.transmit("a", bytes(range(256)) * 10, 0.0)
    assert [d for l, d, s in c.due(10.0) if l == "gw"][0] == bytes(range(256)) * 10
    with pytest.raises(BusError, match="bit error rate"):
        c.set_ber(1.5)


def test_turnaround_zero_only_after_an_idle_bus():
    c = _core(turnaround_zero=1.0)
    c.transmit("a", b"\x05", 1.0)
    c.transmit("a", b"\x06", 1.0)  # queued behind: DE still on, no new glitch
    c.transmit("a", b"\x07", 2.0)  # after idle: a new turnaround
    got = [d for l, d, s in c.due(3.0) if l == "gw"]
    assert got == [b"\x00\x05", b"\x06", b"\x00\x07"]
    assert c.stats["turnaround_zeros"] == 2


def test_cut_cable_and_unplugged_drop():
    c = BusCore(BAUD)
    for n in ("gw", "a", "b", "c"):
        c.attach(n)  # positions 0..3
    c.cut(after=1)  # between a and b
    c.transmit("gw", b"p", 0.0)
    c.transmit("b", b"q", 0.0)
    got = sorted((s.talker, l) for l, d, s in c.due(1.0))
    assert got == [("b", "c"), ("gw", "a")]
    c.repair()
    c.unplug("a")
    c.transmit("gw", b"r", 2.0)
    assert sorted(l for l, d, s in c.due(3.0)) == ["b", "c"]
    with pytest.raises(BusError, match="no endpoint 'zz'"):
        c.unplug("zz")


def _recv_until(sock, n, timeout=10.0):
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.2)
        if r:
            chunk = sock.recv(4096)
            if not chunk:
                break
            out += chunk
    return out


def _read_fd_until(fd, n, timeout=10.0):
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            out += os.read(fd, 4096)
    return out


def test_threaded_bus_joins_tcp_and_pty_endpoints_at_wire_speed():
    import serial

    bus = Rs485Bus(baud=BAUD, turnaround_zero=1.0).start()
    try:
        gw_url = bus.add_tcp("gateway", position=0)
        box_url = bus.add_tcp("box1")
        tty = bus.add_pty("box2")
        gw = serial.serial_for_url(gw_url, timeout=0)
        box1 = socket.create_connection(("127.0.0.1", int(box_url.rsplit(":", 1)[1])))
        box2 = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        import tty as ttymod

        ttymod.setraw(box2)
        time.sleep(0.2)  # the bus thread accepts both connections
        key = wire.BoxKey(bytes(32))
        frame = wire.encode_frame(key, wire.MSG_ACK, 7, 1, wire.pack_payload({"type": "ACK", "acked_type": "ALARM", "acked_counter": 1}), 3)
        t0 = time.monotonic()
        gw.write(frame)
        got1 = _recv_until(box1, len(frame) + 1)
        t1 = time.monotonic()
        got2 = _read_fd_until(box2, len(frame) + 1)
        # The stray turnaround 0x00 comes first; the codec ignores it.
        assert got1 == b"\x00" + frame and got2 == b"\x00" + frame
        assert t1 - t0 >= len(frame) * CHAR * 0.9
        pieces = wire.FrameReader().feed(got1)
        f = wire.decode_frame(pieces[0], lambda b: key, expect_down=True)
        assert f.msg["type"] == "ACK" and f.box_id == 7
        # A reply from the pty box reaches the gateway and the other box.
        os.write(box2, b"\x00reply\x00")
        assert _recv_until(box1, 8).endswith(b"reply\x00")
        deadline = time.monotonic() + 10
        got = b""
        while b"reply" not in got and time.monotonic() < deadline:
            got += gw.read(100)
            time.sleep(0.01)
        assert b"reply" in got
        # Unplug box1: it hears nothing, and what it says goes nowhere.
        bus.unplug("box1")
        box1.sendall(b"\x00babble\x00")
        gw.write(b"\x00after\x00")
        assert _read_fd_until(box2, 8).endswith(b"after\x00")
        assert _recv_until(box1, 1, timeout=0.5) == b""
        assert bus.stats["unplugged_bytes"] == 8
        gw.close()
        box1.close()
        os.close(box2)
    finally:
        bus.stop()


def test_a_reconnecting_box_replaces_its_old_connection():
    bus = Rs485Bus(baud=BAUD).start()
    try:
        gw_url = bus.add_tcp("gateway", position=0)
        box_url = bus.add_tcp("box1")
        port = int(box_url.rsplit(":", 1)[1])
        gw = socket.create_connection(("127.0.0.1", int(gw_url.rsplit(":", 1)[1])))
        old = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.2)
        new = socket.create_connection(("127.0.0.1", port))  # the box restarted
        time.sleep(0.2)
        gw.sendall(b"hello")
        assert _recv_until(new, 5) == b"hello"
        assert _recv_until(old, 1, timeout=1.0) == b""  # closed by the bus
        for s in (gw, old, new):
            s.close()
        with pytest.raises(BusError, match="already on the bus"):
            bus.add_tcp("box1")
    finally:
        bus.stop()
