"""A minimal RS-485 gateway for the end-to-end tests, written with the CPython
wire codec: polls box addresses on a bus emulator, verifies every reply with
the box key, acknowledges alarms and heartbeats, deduplicates alarms by
event id, and can send CALL_STATE and COMMAND frames."""

import socket
import struct
import threading
import time

from callbox_firmware import wire

POLL_PERIOD_S = 0.05
REPLY_TIMEOUT_S = 0.5


class SharedCounter:
    """One gateway counter towards a box across links (protocol.md 3.3): a
    gateway reaching a box on RS-485 and LTE uses one sequence, or the box's
    replay window refuses the link that lags."""

    def __init__(self, start=1):
        self.value = start
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.value += 1
            return self.value


class Receiver:
    def __init__(self, bus_url, boxes, counter=None):
        """boxes: {box_id: (bus_addr, key bytes)}; counter: a SharedCounter
        when another receiver talks to the same boxes."""
        host, port = bus_url[len("socket://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.settimeout(0.05)
        self.boxes = {bid: (addr, wire.BoxKey(key)) for bid, (addr, key) in boxes.items()}
        self.windows = {bid: wire.ReplayWindow() for bid in boxes}
        self.shared = counter or SharedCounter()
        self.counter = self.shared.value
        self.sent = []  # (box_id, msg, bytes) of every frame written
        self.polling = True
        self.ack_alarms = True
        self.frames = []  # every verified frame from a box
        self.stored = {}  # (box_id, event) -> first ALARM msg (dedup by event id)
        self.transmissions = {}  # (box_id, event) -> count
        self.errors = []
        self.outgoing = []  # (box_id, msg) to send after the next poll
        self.cond = threading.Condition()
        self.reader = wire.FrameReader()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def key_for(self, box_id):
        b = self.boxes.get(box_id)
        return b[1] if b else None

    def send(self, box_id, msg):
        with self.cond:
            self.outgoing.append((box_id, msg))

    def send_raw(self, box_id, data):
        """Write captured bytes again after the next poll of box_id (replays)."""
        with self.cond:
            self.outgoing.append((box_id, bytes(data)))

    def _write(self, box_id, msg):
        if isinstance(msg, bytes):
            self.sock.sendall(msg)
            return
        addr = self.boxes[box_id][0]
        self.counter = self.shared.next()
        data = wire.encode_message(self.boxes[box_id][1], msg, box_id, self.counter, addr)
        if msg.get("type") != "POLL":
            self.sent.append((box_id, msg, data))
        self.sock.sendall(data)

    def _loop(self):
        while not self._stop.is_set():
            if not self.polling:
                time.sleep(POLL_PERIOD_S)
                continue
            for box_id in self.boxes:
                with self.cond:
                    out = [m for m in self.outgoing if m[0] == box_id]
                    self.outgoing = [m for m in self.outgoing if m[0] != box_id]
                for _, msg in out:
                    self._write(box_id, msg)
                self._write(box_id, {"type": "POLL"})
                self._await_reply(box_id)
            time.sleep(POLL_PERIOD_S)

    def _await_reply(self, box_id):
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            for piece in self.reader.feed(data):
                try:
                    f = wire.decode_frame(piece, self.key_for, False)
                    self.windows[f.box_id].accept(f.counter, f.box_id)
                except wire.WireError as e:
                    self.errors.append(e)
                    continue
                self._handle(f)
                if f.box_id == box_id:
                    return

    def _handle(self, f):
        with self.cond:
            self.frames.append((time.monotonic(), f))
            m = f.msg
            if m["type"] == "ALARM":
                k = (f.box_id, m["event"])
                self.transmissions[k] = self.transmissions.get(k, 0) + 1
                if self.ack_alarms:
                    status = "duplicate" if k in self.stored else "stored"
                    self.stored.setdefault(k, m)
                    self._write(f.box_id, {"type": "ACK", "acked_type": "ALARM", "acked_counter": f.counter, "event": m["event"], "status": status})
            elif m["type"] == "HEARTBEAT":
                self._write(f.box_id, {"type": "ACK", "acked_type": "HEARTBEAT", "acked_counter": f.counter, "event": 0, "status": "stored"})
            self.cond.notify_all()

    def wait(self, predicate, timeout=15.0, what="condition"):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError("receiver: no %s within %.0f s; frames: %s" % (what, timeout, [f.msg for _, f in self.frames[-8:]]))

    def msgs(self, mtype, box_id=None):
        with self.cond:
            return [f.msg for _, f in self.frames if f.msg["type"] == mtype and (box_id is None or f.box_id == box_id)]

    def raw_frames(self):
        with self.cond:
            return list(self.frames)


def time_sync_args(epoch_s):
    return struct.pack(">IH", epoch_s, 0)
