"""An RS-485 bus emulator with the faults of a real street cable.

Several transceivers (the gateway's master port and the boxes' UARTs) are
joined as one half-duplex pair. Each drop on the bus is an *endpoint* with
a position along the cable; an endpoint is a TCP port (pyserial
``socket://127.0.0.1:PORT``, or hw_sim's UART URL) or a pseudo-terminal
(``/dev/pts/N``). Whatever one endpoint writes is heard by every other
endpoint it is still connected to, never by itself (DE and /RE are tied on
a MAX485: a talker does not hear its own bytes).

What the emulator does to the bytes (all configurable, all counted):

- **Wire time.** A write occupies the bus for ``len * 10 / baud`` seconds
  (8N1); a talker's second write queues behind its first, as in a UART FIFO.
  Listeners get a transmission when its last character is through (a UART
  receiver has the last byte no sooner), so poll cycles and ACK latencies
  measured through the bus are what the wire allows.
- **Collisions.** Two talkers whose characters overlap in time garble each
  other: a listener reachable from both receives the bitwise OR of the
  overlapping characters (two drivers that disagree leave about 0 V on the
  pair, which a fail-safe-biased receiver reads as a mark, a 1 bit). A
  collision that is noticed only after the first transmission was delivered
  (the second talker's write reached the emulator late) garbles only the
  second one and is counted in ``late_collisions``.
- **Bit errors** at ``ber`` per bit (10 bits a character): a data bit error
  flips that bit; a start- or stop-bit error is a framing error and the
  character arrives as 0xFF (the receiver resynchronises on the next falling
  edge). The same noise reaches every listener (it is on the pair).
  Error positions are drawn with a geometric skip, so a clean bus costs no
  random numbers per byte. Seeded (``seed``) for repeatable runs.
- **Turnaround 0x00.** With ``turnaround_zero`` (a probability, 0..1) a
  talker that starts after the bus was idle emits a stray 0x00 first: the
  glitch a transceiver without fail-safe biasing makes when DE switches.
  The codec ignores empty pieces; this checks that it does.
- **A cut cable.** ``cut(after=k)`` cuts the pair between position k and
  k+1: endpoints on different sides no longer hear each other. ``unplug(name)``
  takes one drop off the bus (a box unplugged); ``repair()`` undoes both.

``BusCore`` is the pure part (no I/O, time passed in); ``Rs485Bus`` is the
thread that owns the sockets, the ptys and the timer, so it paces characters
with sub-millisecond resolution whatever the test's event loop is doing.
"""

import collections
import heapq
import logging
import math
import os
import random
import selectors
import socket
import threading
import time

log = logging.getLogger(__name__)

BITS_PER_CHAR = 10  # 8N1: start, 8 data, stop
# Segments kept for collision checks: a transmission longer than this is
# not one frame (the longest frame is 220 bytes, 19 ms at 115200 baud).
HISTORY_S = 2.0
# A talker idle this many character times has released DE; its next write
# starts a new turnaround (and may bring a stray 0x00).
IDLE_CHARS = 2
_READ_CHUNK = 4096
# Bytes queued for one endpoint that does not read (a stuck box): above this
# the oldest are dropped and counted, so a dead reader cannot grow memory.
MAX_PENDING_BYTES = 256 * 1024
FRAMING_ERROR_BYTE = 0xFF


class BusError(Exception):
    """A bus emulator misuse: unknown endpoint, port in use."""


class Segment:
    """One talker's burst on the wire: characters back to back from `start`."""

    __slots__ = ("talker", "start", "end", "data", "char_s", "delivered")

    def __init__(self, talker, start, data, char_s):
        self.talker = talker
        self.start = start
        self.char_s = char_s
        self.data = data
        self.end = start + len(data) * char_s
        self.delivered = False

    def overlaps(self, other):
        return self.start < other.end and other.start < self.end


class BusCore:
    """The cable: who hears whom, when, and what arrives. Pure: no clock, no
    sockets. `transmit` schedules, `due(now)` says what to deliver."""

    def __init__(self, baud=115200, ber=0.0, turnaround_zero=0.0, seed=1):
        self.baud = baud
        self.char_s = BITS_PER_CHAR / float(baud)
        self.rng = random.Random(seed)
        self.turnaround_zero = 0.0
        self.positions = {}  # endpoint name -> position along the cable
        self.unplugged = set()
        self.cuts = set()  # cut between position k and k+1
        self._busy_until = {}  # talker -> end of its last segment
        self._segments = collections.deque()  # recent, by start time
        self._pending = []  # heap of (end, seq, segment) not yet delivered
        self._seq = 0
        self._bits_to_error = None
        self.ber = 0.0
        self.set_ber(ber)
        self.set_turnaround_zero(turnaround_zero)
        self.stats = collections.Counter()

    # ------------------------------------------------------------ topology

    def attach(self, name, position=None):
        if position is None:
            position = max(self.positions.values(), default=-1) + 1
        self.positions[name] = position
        return position

    def detach(self, name):
        self.positions.pop(name, None)
        self._busy_until.pop(name, None)

    def cut(self, after):
        """Cut the pair between position `after` and `after + 1`."""
        self.cuts.add(after)

    def unplug(self, name):
        if name not in self.positions:
            raise BusError("no endpoint %r on the bus; endpoints: %s" % (name, ", ".join(sorted(self.positions))))
        self.unplugged.add(name)

    def plug(self, name):
        self.unplugged.discard(name)

    def repair(self):
        self.cuts.clear()
        self.unplugged.clear()

    def connected(self, a, b):
        """True if endpoints a and b hear each other."""
        if a in self.unplugged or b in self.unplugged:
            return False
        pa, pb = self.positions.get(a), self.positions.get(b)
        if pa is None or pb is None:
            return False
        lo, hi = min(pa, pb), max(pa, pb)
        return not any(lo <= c < hi for c in self.cuts)

    # ------------------------------------------------------------ faults

    def set_ber(self, ber):
        if not 0.0 <= ber < 1.0:
            raise BusError("bit error rate %r must be in 0..1 (1e-4 is a noisy street cable)" % (ber,))
        self.ber = ber
        self._bits_to_error = self._draw_gap()

    def set_turnaround_zero(self, p):
        if p is True:
            p = 1.0
        if not 0.0 <= float(p) <= 1.0:
            raise BusError("turnaround_zero %r must be a probability 0..1" % (p,))
        self.turnaround_zero = float(p)

    def _draw_gap(self):
        """Bits until the next bit error (geometric), None on a clean bus."""
        if self.ber <= 0.0:
            return None
        u = self.rng.random()
        return int(math.log(1.0 - u) / math.log(1.0 - self.ber))

    def _add_noise(self, data):
        if self._bits_to_error is None:
            return data
        nbits = len(data) * BITS_PER_CHAR
        pos = self._bits_to_error
        if pos >= nbits:
            self._bits_to_error = pos - nbits
            return data
        out = bytearray(data)
        while pos < nbits:
            char, bit = divmod(pos, BITS_PER_CHAR)
            if bit == 0 or bit == BITS_PER_CHAR - 1:
                out[char] = FRAMING_ERROR_BYTE
                self.stats["framing_errors"] += 1
            else:
                out[char] ^= 1 << (bit - 1)
            self.stats["bit_errors"] += 1
            pos += 1 + self._draw_gap()
        self._bits_to_error = pos - nbits
        return bytes(out)

    # ------------------------------------------------------------ timeline

    def transmit(self, talker, data, now):
        """`talker` wrote `data` at `now`. Returns the Segment scheduled."""
        if not data:
            return None
        if talker not in self.positions:
            self.attach(talker)
        busy = self._busy_until.get(talker, 0.0)
        start = max(now, busy)
        data = bytes(data)
        if start - busy > IDLE_CHARS * self.char_s and self.turnaround_zero and self.rng.random() < self.turnaround_zero:
            data = b"\x00" + data
            self.stats["turnaround_zeros"] += 1
        data = self._add_noise(data)
        seg = Segment(talker, start, data, self.char_s)
        self._busy_until[talker] = seg.end
        self.stats["bytes"] += len(data)
        for other in self._segments:
            if other.talker != talker and other.overlaps(seg):
                self.stats["collisions"] += 1
                if other.delivered:
                    self.stats["late_collisions"] += 1
        self._segments.append(seg)
        while self._segments and self._segments[0].end < now - HISTORY_S:
            self._segments.popleft()
        self._seq += 1
        heapq.heappush(self._pending, (seg.end, self._seq, seg))
        return seg

    def next_due(self):
        return self._pending[0][0] if self._pending else None

    def due(self, now):
        """[(listener, bytes, segment)] for every segment whose last character
        is through by `now`, as each listener hears it."""
        out = []
        while self._pending and self._pending[0][0] <= now:
            _, _, seg = heapq.heappop(self._pending)
            seg.delivered = True
            for listener in list(self.positions):
                if listener == seg.talker or not self.connected(seg.talker, listener):
                    continue
                out.append((listener, self._as_heard(seg, listener), seg))
        return out

    def _as_heard(self, seg, listener):
        """The segment's bytes at `listener`, OR-ed with every other talker's
        characters that overlapped them and that this listener also hears."""
        others = [o for o in self._segments if o is not seg and o.talker != seg.talker and o.overlaps(seg)
                  and self.connected(o.talker, listener)]
        if not others:
            return seg.data
        out = bytearray(seg.data)
        cs = seg.char_s
        for o in others:
            # Characters i of seg and j of o overlap when their intervals do.
            for i in range(len(out)):
                s_i = seg.start + i * cs
                e_i = s_i + cs
                j0 = max(0, int((s_i - o.start) / cs))
                for j in (j0, j0 + 1):
                    if 0 <= j < len(o.data):
                        s_j = o.start + j * cs
                        if s_j < e_i and s_i < s_j + cs:
                            out[i] |= o.data[j]
        return bytes(out)


class _Endpoint:
    def __init__(self, name, kind):
        self.name = name
        self.kind = kind  # "tcp" | "pty"
        self.server = None  # listening socket (tcp)
        self.conn = None  # connected socket (tcp)
        self.master_fd = None  # pty master
        self.slave_fd = None  # kept open so the pty survives a reader's close
        self.path = None
        self.port = None
        self.url = None
        self.out = bytearray()  # bytes waiting for a slow reader

    def write_fd(self):
        if self.kind == "tcp":
            return self.conn.fileno() if self.conn else None
        return self.master_fd


class Rs485Bus:
    """The bus as a thread: endpoints on TCP ports or ptys.

        bus = Rs485Bus(baud=115200, ber=1e-4, turnaround_zero=0.5, seed=7).start()
        gw_url = bus.add_tcp("gateway", position=0)      # socket://127.0.0.1:P
        box_url = bus.add_tcp("box1")                    # next position
        tty = bus.add_pty("box2")                        # /dev/pts/N
        bus.cut(after=0); bus.unplug("box1"); bus.repair()
        bus.on_transmit.append(fn)   # fn(talker, end_time, bytes): a logic analyser
        bus.stop()

    Times are time.monotonic(). `stats` counts bytes, collisions, bit
    errors, framing errors, turnaround zeros, dropped bytes.
    """

    def __init__(self, baud=115200, ber=0.0, turnaround_zero=0.0, seed=1):
        self.core = BusCore(baud, ber, turnaround_zero, seed)
        self.endpoints = {}
        self.on_transmit = []  # callbacks (talker, end_time, bytes as sent)
        self._sel = selectors.DefaultSelector()
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = None
        self._stop = False

    # ------------------------------------------------------------ control

    @property
    def stats(self):
        return self.core.stats

    def start(self):
        self._thread = threading.Thread(target=self._run, name="rs485-bus", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop = True
        self._wake()
        if self._thread:
            self._thread.join(5)
        with self._lock:
            for ep in self.endpoints.values():
                for s in (ep.conn, ep.server):
                    if s is not None:
                        s.close()
                for fd in (ep.master_fd, ep.slave_fd):
                    if fd is not None:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._sel.close()

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def add_tcp(self, name, position=None, port=0):
        """A drop reached over TCP: one client at a time (a reconnect, after a
        box restart, replaces the old connection). Returns the socket:// URL."""
        with self._lock:
            if name in self.endpoints:
                raise BusError("endpoint %r already on the bus" % name)
            ep = _Endpoint(name, "tcp")
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                srv.bind(("127.0.0.1", port))
            except OSError as e:
                srv.close()
                raise BusError("bus endpoint %s cannot bind 127.0.0.1:%d (%s); use port 0 for a free port" % (name, port, e)) from None
            srv.listen(4)
            srv.setblocking(False)
            ep.server = srv
            ep.port = srv.getsockname()[1]
            ep.url = "socket://127.0.0.1:%d" % ep.port
            self.endpoints[name] = ep
            self.core.attach(name, position)
            self._sel.register(srv, selectors.EVENT_READ, ("accept", ep))
        self._wake()
        return ep.url

    def add_pty(self, name, position=None):
        """A drop reached through a pseudo-terminal in raw mode; returns the
        path of its slave side (what a box's UART or pyserial opens)."""
        import pty
        import tty

        with self._lock:
            if name in self.endpoints:
                raise BusError("endpoint %r already on the bus" % name)
            master, slave = pty.openpty()
            tty.setraw(slave)
            tty.setraw(master)
            os.set_blocking(master, False)
            ep = _Endpoint(name, "pty")
            ep.master_fd, ep.slave_fd = master, slave
            ep.path = os.ttyname(slave)
            ep.url = ep.path
            self.endpoints[name] = ep
            self.core.attach(name, position)
            self._sel.register(master, selectors.EVENT_READ, ("read", ep))
        self._wake()
        return ep.path

    def position(self, name):
        return self.core.positions[name]

    def cut(self, after):
        with self._lock:
            self.core.cut(after)
        log.info("rs485 bus: cable cut after position %d", after)

    def unplug(self, name):
        with self._lock:
            self.core.unplug(name)
        log.info("rs485 bus: %s unplugged", name)

    def plug(self, name):
        with self._lock:
            self.core.plug(name)

    def repair(self):
        with self._lock:
            self.core.repair()

    def set_ber(self, ber):
        with self._lock:
            self.core.set_ber(ber)

    def set_turnaround_zero(self, p):
        with self._lock:
            self.core.set_turnaround_zero(p)

    def transmit(self, talker, data):
        """Inject bytes as if endpoint `talker` wrote them (a babbling box)."""
        with self._lock:
            seg = self.core.transmit(talker, data, time.monotonic())
            for cb in self.on_transmit:
                cb(talker, seg.end, seg.data)
        self._wake()

    # ------------------------------------------------------------ thread

    def _run(self):
        while not self._stop:
            with self._lock:
                nd = self.core.next_due()
            timeout = None if nd is None else max(0.0, nd - time.monotonic())
            events = self._sel.select(timeout if timeout is None or timeout < 0.5 else 0.5)
            for key, mask in events:
                kind, ep = key.data
                if kind == "wake":
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                elif kind == "accept":
                    self._accept(ep)
                else:  # "read", or "rw" while output waits for a slow reader
                    if mask & selectors.EVENT_WRITE:
                        with self._lock:
                            self._flush(ep)
                    if mask & selectors.EVENT_READ:
                        self._read(ep)
            self._deliver()

    def _accept(self, ep):
        try:
            conn, _ = ep.server.accept()
        except OSError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if ep.conn is not None:
                self._drop_conn(ep)
            ep.conn = conn
            ep.out.clear()
            self._sel.register(conn, selectors.EVENT_READ, ("read", ep))
        log.debug("rs485 bus: %s connected", ep.name)

    def _drop_conn(self, ep):
        try:
            self._sel.unregister(ep.conn)
        except (KeyError, ValueError):
            pass
        ep.conn.close()
        ep.conn = None
        ep.out.clear()

    def _read(self, ep):
        try:
            if ep.kind == "tcp":
                data = ep.conn.recv(_READ_CHUNK)
            else:
                data = os.read(ep.master_fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            with self._lock:
                if ep.kind == "tcp" and ep.conn is not None:
                    self._drop_conn(ep)
            return
        now = time.monotonic()
        with self._lock:
            if ep.name in self.core.unplugged:
                # An unplugged drop talks into nothing.
                self.core.stats["unplugged_bytes"] += len(data)
                return
            seg = self.core.transmit(ep.name, data, now)
            for cb in self.on_transmit:
                try:
                    cb(ep.name, seg.end, seg.data)
                except Exception:
                    log.exception("rs485 bus: on_transmit callback failed")

    def _deliver(self):
        now = time.monotonic()
        with self._lock:
            for listener, data, seg in self.core.due(now):
                ep = self.endpoints.get(listener)
                if ep is None:
                    continue  # a name that only talks (injected)
                self._send(ep, data)

    def _send(self, ep, data):
        fd = ep.write_fd()
        if fd is None:
            return  # nobody connected at this drop: the bytes pass by
        if len(ep.out) + len(data) > MAX_PENDING_BYTES:
            self.core.stats["dropped_bytes"] += len(data)
            return
        was_empty = not ep.out
        ep.out += data
        if was_empty:
            self._flush(ep)

    def _flush(self, ep):
        fd = ep.write_fd()
        if fd is None or not ep.out:
            return
        try:
            if ep.kind == "tcp":
                n = ep.conn.send(ep.out)
            else:
                n = os.write(fd, ep.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            if ep.kind == "tcp" and ep.conn is not None:
                self._drop_conn(ep)
            return
        del ep.out[:n]
        obj = ep.conn if ep.kind == "tcp" else ep.master_fd
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if ep.out else 0)
        try:
            self._sel.modify(obj, want, ("read", ep) if not ep.out else ("rw", ep))
        except (KeyError, ValueError):
            pass

