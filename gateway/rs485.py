"""RS-485 bus master: one gateway, up to 247 boxes on a half-duplex pair.

The bus is collision-free because only the master starts a conversation. A
poll cycle visits each configured address in turn; one address's slot is:

    master: [downlink frames for the box, at most max_downlink_per_slot] POLL(addr)
    box:    its pending uplink frame (ALARM, HEARTBEAT, RESULT) or IDLE, within
            the reply timeout
    master: (if the reply needs one) ACK, right after the frame was committed

Reply timeout (BusTiming, sized from the baud rate): the POLL's own wire time
(write() returns before the UART has sent it), plus the box's turnaround
budget (rs485.turnaround_ms), plus two character times; once the first byte
has come, the whole largest frame (MAX_ENCODED + 2 delimiters) plus margin.
Garbage and the transceiver's stray 0x00 at turnaround are handled by the
codec's FrameReader (empty pieces are ignored, oversize runs hunted); a reply
that does not decode, or that comes from another address, is counted and the
slot ends. Input left over from a slot is discarded before the next POLL so a
late reply is never credited to the next box.

`BusTiming` and `PollSchedule` are pure (no I/O, no clock); `BusMaster` is
the asyncio shell over a pyserial port (serial_for_url: /dev/ttyUSB0, a pty,
socket://host:port, loop://).
"""

import asyncio
import collections
import logging
import time

from callbox_firmware import wire

from .errors import LinkError
from .observe import kv
from .registry import on_bus

log = logging.getLogger(__name__)

# Frame sizes on the wire: 25 bytes of header, tag and CRC, COBS adds one,
# two 0x00 delimiters.
EMPTY_FRAME_BYTES = wire.OVERHEAD + 1 + 2  # full POLL, IDLE: 28
# The short POLL and IDLE the bus uses (protocol.md 5.6): 6 bytes, COBS adds
# one, two delimiters.
SHORT_FRAME_BYTES = 9
_SHORT_PIECE = 7  # a short frame between delimiters (COBS of 6 bytes)
ALARM_FRAME_BYTES = EMPTY_FRAME_BYTES + 12  # 40
ACK_FRAME_BYTES = EMPTY_FRAME_BYTES + 10  # 38
MAX_FRAME_BYTES = wire.MAX_ENCODED + 2
_READ_CHUNK = 4096
# Pieces judged in one slot: noise pieces before the reply are skipped, but a
# babbling line cannot hold the slot forever.
_MAX_PIECES_PER_SLOT = 4
# A slot waits this long at most for its frame's commit (a stalled disk must
# not stop the bus; the box retries its unACKed alarm).
_COMMIT_WAIT_S = 10.0
# A box that answered a poll this recently is on the bus. Many cycles (about
# 100 ms each for 32 boxes), far below the box's own backup_after_s (30 s)
# before it moves its traffic to LTE.
ANSWERING_S = 2.0


class BusTiming:
    """Times on a UART at `baud`, 8N1 (10 bits a character)."""

    def __init__(self, baud=115200, turnaround_ms=5.0):
        self.baud = baud
        self.char_s = 10.0 / baud
        self.turnaround_s = turnaround_ms / 1000.0

    def wire_s(self, nbytes):
        return nbytes * self.char_s

    def first_byte_timeout_s(self, sent_bytes):
        """From write() returning to the first reply byte at the latest."""
        return self.wire_s(sent_bytes) + self.turnaround_s + 2 * self.char_s

    def frame_timeout_s(self):
        """From the first reply byte to the end of the largest frame."""
        return self.wire_s(MAX_FRAME_BYTES) + self.turnaround_s

    def idle_slot_s(self):
        """An idle box's slot: short POLL out, turnaround, short IDLE back."""
        return self.wire_s(2 * SHORT_FRAME_BYTES) + self.turnaround_s

    def cycle_s(self, n_boxes, gap_s=0.0):
        """The idle poll cycle for n boxes (gap_s: the master's own time
        between slots)."""
        return n_boxes * (self.idle_slot_s() + gap_s)

    def worst_press_to_ack_s(self, n_boxes, gap_s=0.0, commit_s=0.0):
        """A press just after its box's slot ended: wait a whole cycle, then
        the POLL, the turnaround, the ALARM, the commit and the ACK."""
        return (self.cycle_s(n_boxes, gap_s) + self.wire_s(SHORT_FRAME_BYTES + ALARM_FRAME_BYTES + ACK_FRAME_BYTES)
                + self.turnaround_s + commit_s)


class PollSchedule:
    """Which address comes next, and the downlink frames waiting for each."""

    def __init__(self, addresses=(), max_downlink_per_slot=2):
        self.addresses = list(addresses)
        self.max_downlink = max_downlink_per_slot
        self.queues = collections.defaultdict(collections.deque)
        self._i = 0
        self.no_reply = collections.Counter()

    def set_addresses(self, addresses):
        self.addresses = sorted(set(addresses))
        self._i = 0

    def next_address(self):
        """The next address, and True when this starts a new cycle."""
        if not self.addresses:
            return None, False
        if self._i >= len(self.addresses):
            self._i = 0
        a = self.addresses[self._i]
        self._i += 1
        return a, self._i == 1

    def queue(self, addr, item):
        self.queues[addr].append(item)

    def take(self, addr):
        q = self.queues.get(addr)
        out = []
        while q and len(out) < self.max_downlink:
            out.append(q.popleft())
        return out


def _no_key(box_id):
    return None


def _fileno(ser):
    if hasattr(ser, "fileno"):
        try:
            return ser.fileno()
        except Exception:
            pass
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        return sock.fileno()
    raise LinkError("RS-485 port %s offers no file descriptor; use a serial device, a pty or socket://" % getattr(ser, "portstr", "?"))


class BusMaster:
    def __init__(self, cfg, registry, ingest, pipeline, metrics, rlog):
        self.cfg = cfg
        self.registry = registry
        self.ingest = ingest
        self.pipeline = pipeline
        self.metrics = metrics
        self.rlog = rlog
        self.timing = BusTiming(cfg.baud, cfg.turnaround_ms)
        self.schedule = PollSchedule(cfg.addresses or registry.rs485_addresses(), cfg.max_downlink_per_slot)
        self.ser = None
        self.reader = wire.FrameReader()
        self._pieces = collections.deque()
        self._got = None  # asyncio.Event: a piece arrived
        self._first_byte_at = None
        self._task = None
        self.cycles = 0
        self.last_cycle_s = None
        self.cycle_times = collections.deque(maxlen=100)
        self._seq = 0  # short POLL sequence, echoed in the box's short IDLE
        self.last_reply = {}  # addr -> monotonic time of its last good reply

    def answering(self, addr, within_s=None):
        """True if the box at addr answered a poll within `within_s`
        (default ANSWERING_S): downlinks to an "rs485+lte" box go on the bus
        then, else over its LTE connection."""
        t = self.last_reply.get(addr)
        return t is not None and time.monotonic() - t < (ANSWERING_S if within_s is None else within_s)

    def refresh_addresses(self):
        if not self.cfg.addresses:
            self.schedule.set_addresses(self.registry.rs485_addresses())

    def queue(self, box_id, msg):
        box = self.registry.get(box_id)
        if box is None or not on_bus(box.link):
            return False
        self.schedule.queue(box.bus_addr, (box_id, msg))
        return True

    def open(self):
        import serial

        try:
            self.ser = serial.serial_for_url(self.cfg.url, baudrate=self.cfg.baud, timeout=0)
        except (serial.SerialException, ValueError, OSError) as e:
            raise LinkError("RS-485 port %s cannot be opened (%s); check rs485.url, the cable, and that no other program holds it" % (self.cfg.url, e)) from None
        sock = getattr(self.ser, "_socket", None)
        if sock is not None:
            # socket:// (a bus over TCP): without TCP_NODELAY, Nagle holds the
            # POLL back until the previous ACK is acknowledged (40 ms).
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_readable(self):
        try:
            # timeout=0: whatever is there, at most a chunk (socket:// reports
            # in_waiting as 0/1, so ask for a chunk, not in_waiting).
            data = self.ser.read(_READ_CHUNK)
        except Exception as e:
            self.rlog.warning("rs485_read", "rs485_read_failed", url=self.cfg.url, error=e)
            return
        if not data:
            return
        if self._first_byte_at is None:
            self._first_byte_at = time.monotonic()
        pieces = self.reader.feed(data)
        if self.reader.oversize:
            self.metrics.inc("frames_rejected", self.reader.oversize, reason=wire.E_OVERSIZE, link="rs485")
            self.reader.oversize = 0
        if pieces:
            self._pieces.extend(pieces)
            self._got.set()

    async def start(self):
        if self.ser is None:
            self.open()
        loop = asyncio.get_running_loop()
        self._got = asyncio.Event()
        loop.add_reader(_fileno(self.ser), self._on_readable)
        self._task = asyncio.ensure_future(self.run())
        log.info(kv("rs485_started", url=self.cfg.url, baud=self.cfg.baud, addresses=len(self.schedule.addresses)))

    async def stop(self):
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
        if self.ser is not None:
            try:
                asyncio.get_running_loop().remove_reader(_fileno(self.ser))
            except Exception:
                pass
            self.ser.close()

    def _write(self, data):
        self.ser.write(data)

    async def _wait_piece(self, sent_bytes):
        """The first piece of the reply, or None on timeout."""
        t0 = time.monotonic()
        first_deadline = t0 + self.timing.first_byte_timeout_s(sent_bytes)
        while not self._pieces:
            self._got.clear()
            now = time.monotonic()
            if self._first_byte_at is None:
                deadline = first_deadline
            else:
                deadline = max(first_deadline, self._first_byte_at + self.timing.frame_timeout_s())
            if now >= deadline:
                return None
            try:
                await asyncio.wait_for(self._got.wait(), deadline - now)
            except asyncio.TimeoutError:
                pass
        return self._pieces.popleft()

    async def run(self):
        cycle_start = time.monotonic()
        while True:
            addr, new_cycle = self.schedule.next_address()
            if addr is None:
                await asyncio.sleep(0.5)
                self.refresh_addresses()
                continue
            if new_cycle:
                now = time.monotonic()
                if self.cycles:
                    self.last_cycle_s = now - cycle_start
                    self.cycle_times.append(self.last_cycle_s)
                    self.metrics.set("rs485_cycle_seconds", round(self.last_cycle_s, 6))
                self.cycles += 1
                cycle_start = now
            try:
                await self.slot(addr)
            except asyncio.CancelledError:
                raise
            except LinkError:
                raise
            except Exception as e:
                self.rlog.warning("rs485_slot", "rs485_slot_failed", addr=addr, error=repr(e))
                await asyncio.sleep(0.1)

    async def slot(self, addr):
        """One address's slot: downlinks, POLL, reply, ACK."""
        box = self.registry.by_addr(addr)
        if box is None:
            return
        # Forget whatever is left from the last slot (a late reply, noise).
        self._pieces.clear()
        self.reader = wire.FrameReader()
        self._first_byte_at = None
        out = bytearray()
        for box_id, msg in self.schedule.take(addr):
            try:
                out += self.ingest.encode_down(box_id, msg, addr)
            except wire.WireError:
                continue
        self._seq = (self._seq + 1) & 0xFF
        out += wire.encode_short(wire.MSG_POLL, addr, self._seq)
        self._write(bytes(out))
        self.metrics.inc("rs485_polls")
        sent = len(out)
        for _ in range(_MAX_PIECES_PER_SLOT):
            piece = await self._wait_piece(sent)
            if piece is None:
                self.schedule.no_reply[addr] += 1
                self.metrics.inc("rs485_no_reply", addr=addr)
                return
            if len(piece) == _SHORT_PIECE:
                # A short IDLE: the box is on the bus and has nothing to send.
                # It proves nothing (no tag), so supervision ignores it.
                try:
                    f = wire.decode_frame(piece, _no_key, expect_down=False)
                except wire.WireError as e:
                    self.ingest.reject(e, "rs485")
                    continue
                if f.addr == addr and f.counter == self._seq:
                    self.metrics.inc("rs485_idle")
                    self.last_reply[addr] = time.monotonic()
                    return
                self.ingest.reject(wire.WireError(wire.E_TYPE, "short IDLE from %d seq %d to a poll of %d seq %d" % (f.addr, f.counter, addr, self._seq)), "rs485")
                continue
            done = asyncio.get_running_loop().create_future()

            def reply(outcome, ok, done=done):
                if outcome.frame.addr != addr:
                    # A late reply from another box: its ACK waits for that
                    # box's own slot, so the bus stays collision-free.
                    if ok and outcome.ack is not None:
                        self.schedule.queue(outcome.frame.addr, (outcome.frame.box_id, outcome.ack))
                    return
                if not done.done():
                    done.set_result((outcome, ok))

            try:
                out = self.pipeline.submit(piece, "rs485", reply, bus_addr=addr)
            except wire.WireError:
                # Counted by the ingest. Noise before the reply: keep
                # listening within the same deadline for the real frame.
                continue
            self.last_reply[addr] = time.monotonic()
            if out.frame.addr != addr:
                # Judged and kept (reply() queues its ACK); keep listening for
                # the polled box within the same deadline.
                self.metrics.inc("rs485_late_replies", addr=out.frame.addr)
                continue
            if out.ack is None:
                return  # IDLE: nothing to wait for; the commit runs behind us
            try:
                outcome, ok = await asyncio.wait_for(done, _COMMIT_WAIT_S)
            except asyncio.TimeoutError:
                self.rlog.warning("rs485_commit", "rs485_commit_timeout", addr=addr, box=box.box_id, hint="the database is stalled; no ACK sent")
                return
            if ok and outcome.ack is not None:
                self._write(self.ingest.encode_down(box.box_id, outcome.ack, addr))
                self.metrics.inc("acks_sent", link="rs485")
            return
