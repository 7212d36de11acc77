"""A minimal LTE gateway for the end-to-end tests, written with the CPython
wire codec: a TCP listener on 127.0.0.1 (the modem simulator connects to it
for the box), verifies every frame with the box key and a replay window,
acknowledges alarms and heartbeats, deduplicates alarms by event id, and can
send CALL_STATE and COMMAND frames on the box's current connection."""

import socket
import threading
import time

from callbox_firmware import wire


class LteReceiver:
    def __init__(self, box_id, key, counter=None):
        """counter: a receiver.SharedCounter when an RS-485 receiver talks to
        the same box (one gateway counter across links)."""
        self.box_id = box_id
        self.shared = counter
        self.key = wire.BoxKey(key)
        self.window = wire.ReplayWindow()
        self.counter = 1
        self.ack_alarms = True
        self.ack_heartbeats = True
        self.frames = []  # (monotonic s, Frame)
        self.stored = {}  # event -> first ALARM msg
        self.transmissions = {}  # event -> count
        self.errors = []
        self.connections = 0
        self.cond = threading.Condition()
        self._conn = None
        self._stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self):
        self._stop.set()
        self.listener.close()
        with self.cond:
            if self._conn is not None:
                self._conn.close()
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            with self.cond:
                self.connections += 1
                self._conn = conn
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        reader = wire.FrameReader()
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            for piece in reader.feed(data):
                try:
                    f = wire.decode_frame(piece, lambda b: self.key if b == self.box_id else None, False)
                    self.window.accept(f.counter, f.box_id)
                except wire.WireError as e:
                    self.errors.append(e)
                    continue
                self._handle(conn, f)

    def _write(self, conn, msg):
        self.counter = self.shared.next() if self.shared is not None else self.counter + 1
        try:
            conn.sendall(wire.encode_message(self.key, msg, self.box_id, self.counter))
        except OSError:
            pass

    def send(self, msg):
        """Send a frame to the box on its current connection."""
        with self.cond:
            if self._conn is None:
                raise AssertionError("no connection from the box yet")
            self._write(self._conn, msg)

    def _handle(self, conn, f):
        with self.cond:
            self.frames.append((time.monotonic(), f))
            m = f.msg
            if m["type"] == "ALARM":
                ev = m["event"]
                self.transmissions[ev] = self.transmissions.get(ev, 0) + 1
                if self.ack_alarms:
                    status = "duplicate" if ev in self.stored else "stored"
                    self.stored.setdefault(ev, m)
                    self._write(conn, {"type": "ACK", "acked_type": "ALARM", "acked_counter": f.counter, "event": ev, "status": status})
            elif m["type"] == "HEARTBEAT" and self.ack_heartbeats:
                self._write(conn, {"type": "ACK", "acked_type": "HEARTBEAT", "acked_counter": f.counter, "event": 0, "status": "stored"})
            self.cond.notify_all()

    def wait(self, predicate, timeout=30.0, what="condition"):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError("LTE receiver: no %s within %.0f s; frames: %s" % (what, timeout, [f.msg for _, f in self.frames[-8:]]))

    def msgs(self, mtype):
        with self.cond:
            return [f.msg for _, f in self.frames if f.msg["type"] == mtype]
