"""Boxes simulated in Python with the real wire codec, for tests and the
benchmark: what the gateway sees from them is byte for byte what a box sends.

- SimBox: a box's side of the protocol (counters, event ids, the downlink
  replay window), no I/O.
- SimBus: an RS-485 bus with SimBoxes on it, served as a TCP socket the
  gateway opens with pyserial's socket:// URL. It paces every byte at the baud
  rate (a 9-byte short POLL takes 0.78 ms at 115200 before a box can answer), and a
  box answers after `turnaround_ms`, so poll cycles measured through it are
  what the wire would allow. Runs in its own thread with time.sleep pacing
  (the event loop's timer resolution is too coarse for 87 us characters).
"""

import socket
import threading
import time

from callbox_firmware import wire

DEFAULT_KEY = bytes(range(32))


def key_for_box(box_id, seed=b"callbox-sim"):
    """A deterministic per-box test key (never used outside tests/bench)."""
    import hashlib

    return hashlib.sha256(seed + box_id.to_bytes(4, "big")).digest()


class SimBox:
    def __init__(self, box_id, key=None, addr=0, counter=0, event=0, time_s=1_790_000_000):
        self.box_id = box_id
        self.secret = key if key is not None else key_for_box(box_id)
        self.key = wire.BoxKey(self.secret)
        self.addr = addr
        self.counter = counter
        self.event = event
        self.time_s = time_s  # press time put in ALARMs
        self.clock_synced = True  # HEARTBEAT reports the wall clock (else 0: never set)
        self.window = wire.ReplayWindow()
        self.received = []  # downlink frames, decoded
        self.pending = []  # uplink frames waiting for a poll (RS-485)
        self.acked = {}  # event -> status

    def frame(self, msg):
        self.counter += 1
        return wire.encode_message(self.key, msg, self.box_id, self.counter, self.addr)

    def alarm(self, kind="panic", event=None, restore=False):
        if event is None:
            self.event += 1
            event = self.event
        return self.frame({"type": "ALARM", "event": event, "kind": kind, "time_s": self.time_s, "time_ms": 0, "restore": restore})

    def heartbeat(self, **over):
        hb = {"type": "HEARTBEAT", "uptime_s": 100, "power": "mains", "battery_mv": 12800, "tamper": False, "link": "rs485" if self.addr else "lte",
              "rssi_dbm": -70, "fw": "1.0.0", "outbox": 0, "boot_reason": "power_on", "faults": [], "time_s": int(time.time()) if self.clock_synced else 0}
        hb.update(over)
        return self.frame(hb)

    def idle(self):
        return self.frame({"type": "IDLE"})

    def decode_down(self, piece):
        """Verify a downlink piece as the box would; returns the Frame or
        raises wire.WireError."""
        f = wire.decode_frame(piece, lambda b: self.key if b == self.box_id else None, expect_down=True)
        if f.box_id is None:
            return f  # a short POLL: no counter, no tag (protocol.md 5.6)
        self.window.accept(f.counter, f.box_id)
        self.received.append(f)
        if f.mtype == wire.MSG_ACK and f.msg["acked_type"] == "ALARM":
            self.acked[f.msg["event"]] = f.msg["status"]
        return f


class SimBus:
    """An RS-485 bus as a TCP server (connect the gateway to socket://127.0.0.1:port)."""

    def __init__(self, boxes, baud=115200, turnaround_ms=1.0, garbage_before_reply=b""):
        self.boxes = {b.addr: b for b in boxes}
        self.char_s = 10.0 / baud
        self.turnaround_s = turnaround_ms / 1000.0
        self.garbage = garbage_before_reply
        self.lock = threading.Lock()
        self.polls = 0
        self.silent = set()  # addresses that do not answer (box unplugged)
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(1)
        self.port = self._srv.getsockname()[1]
        self.url = "socket://127.0.0.1:%d" % self.port
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def queue(self, addr, frame):
        with self.lock:
            self.boxes[addr].pending.append(frame)

    def close(self):
        self._stop = True
        try:
            self._srv.close()
        except OSError:
            pass

    def _serve(self):
        self._srv.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)
            try:
                self._run(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _run(self, conn):
        reader = wire.FrameReader()
        bus_free = time.monotonic()
        while not self._stop:
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            # The bytes take their wire time on the bus.
            bus_free = max(bus_free, time.monotonic()) + len(data) * self.char_s
            for piece in reader.feed(data):
                reply = self._hear(piece)
                if reply is None:
                    continue
                _sleep_until(bus_free + self.turnaround_s)
                out = self.garbage + reply
                # The first byte at once (the gateway sees the reply start,
                # as on a UART), the rest when the last byte is through.
                bus_free = time.monotonic() + len(out) * self.char_s
                conn.sendall(out[:1])
                _sleep_until(bus_free)
                conn.sendall(out[1:])

    def _hear(self, piece):
        """Every box hears every frame; only the addressed one answers a POLL."""
        try:
            body = wire.cobs_decode(piece)
            short = len(body) == 6 and body[0] == wire.SHORT_MARK
            addr = body[2] if short else wire.peek_header(body)[3]
        except (wire.WireError, Exception):
            return None
        with self.lock:
            box = self.boxes.get(addr)
            if box is None or addr in self.silent:
                return None
            try:
                f = box.decode_down(piece)
            except wire.WireError:
                return None
            if f.mtype != wire.MSG_POLL:
                return None
            self.polls += 1
            if box.pending:
                return box.pending.pop(0)
            return wire.encode_short(wire.MSG_IDLE, addr, f.counter) if f.box_id is None else box.idle()


def _sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
