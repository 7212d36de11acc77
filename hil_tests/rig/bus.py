"""A minimal RS-485 bus emulator: a TCP hub on 127.0.0.1.

Every connected transceiver (a virtual box's UART, the gateway through
pyserial's `socket://` URL, a test's sniffer) hears every byte the others
send, as on a real half-duplex pair; a sender does not hear itself (its
receiver is disabled while DE is on). It runs in one background thread so it
serves synchronous tests, asyncio tests and the `callbox sim` process alike.

Later issues add noise, collisions and cable cuts: override `deliver()` (what
each listener receives of a chunk) or call `cut()` / `mend()`.
"""

import logging
import selectors
import socket
import threading

log = logging.getLogger(__name__)

READ_CHUNK = 4096


class Rs485Bus:
    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self._port = port
        self._sel = selectors.DefaultSelector()
        self._clients = []
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._listener = None
        self._wake_r = self._wake_w = None
        self.bytes_carried = 0
        self.is_cut = False

    @property
    def port(self):
        return self._listener.getsockname()[1]

    @property
    def url(self):
        """The pyserial URL for a transceiver on this bus."""
        return "socket://%s:%d" % (self.host, self.port)

    def start(self):
        self._listener = socket.create_server((self.host, self._port))
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="rs485-bus", daemon=True)
        self._thread.start()
        log.info("RS-485 bus on %s", self.url)
        return self

    def stop(self):
        self._stop.set()
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in list(self._clients):
            s.close()
        self._clients = []
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._sel.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def clients(self):
        return len(self._clients)

    def cut(self):
        """Cable cut: nothing reaches anyone until mend()."""
        self.is_cut = True

    def mend(self):
        self.is_cut = False

    def deliver(self, sender, listener, data):
        """The bytes `listener` receives of a chunk `sender` transmitted.
        Override for noise; return b"" to drop."""
        if self.is_cut:
            return b""
        return data

    def _loop(self):
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.5):
                if key.data == "accept":
                    try:
                        conn, _ = self._listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._sel.register(conn, selectors.EVENT_READ, "client")
                    self._clients.append(conn)
                elif key.data == "wake":
                    key.fileobj.recv(16)
                else:
                    self._read(key.fileobj)

    def _drop(self, conn):
        try:
            self._sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        if conn in self._clients:
            self._clients.remove(conn)
        conn.close()

    def _read(self, conn):
        try:
            data = conn.recv(READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        self.bytes_carried += len(data)
        for other in list(self._clients):
            if other is conn:
                continue
            out = self.deliver(conn, other, data)
            if not out:
                continue
            try:
                other.sendall(out)
            except OSError:
                self._drop(other)
