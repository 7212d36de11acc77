"""The box's durable alarm outbox: an append-only log on flash.

Every alarm is appended here before its first transmission and stays until
the gateway acknowledges it. A power cut can interrupt an append at any byte:
each record carries its own CRC, so a torn tail is detected on the next boot,
counted, and cut off by a compaction; the records before it are intact.

Record layout (all integers big-endian)::

    off  size  field
    0    1     magic 0xA5
    1    1     type: 'A' alarm, 'D' done, 'C' counter ceiling, 'N' next event
    2    1     data length L
    3    L     data
    3+L  4     CRC-32 (IEEE) over bytes 1..3+L

    'A' data = event u32, kind u8, flags u8, time_s u32, time_ms u16
               (the wire ALARM payload layout)
    'D' data = event u32 (acknowledged: no longer pending)
    'C' data = ceiling u32: up-frame counters below it may have been used
    'N' data = next event id u32 (written by compaction)

Wear: the frame counter is reserved in blocks of COUNTER_BLOCK, so one small
record covers thousands of frames; compaction rewrites the live records to
a temporary file and renames it over the log (atomic on littlefs and POSIX),
only when the log passes COMPACT_BYTES. A leftover temporary file means the
power went during a compaction: the old log is still whole and wins.

Bounded: at most MAX_ALARMS pending. When full, a new alarm of a kind already
pending is merged into it (the control room already has that call); a new
kind is still admitted up to _HARD_LIMIT (past it add() raises MemoryError).
Heartbeats never come here.

No clock; the file I/O is plain open/os on both interpreters; `write` can be
injected (the virtual box uses it to simulate a slow flash for power-cut
tests).
"""

import os
import struct
import binascii

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_MAGIC = const(0xA5)  # private constants are folded by mpy-cross: no global, no name in RAM
R_ALARM = const(0x41)
_R_DONE = const(0x44)
_R_COUNTER = const(0x43)
_R_NEXT = const(0x4E)
_HEAD = const(3)
_CRC = const(4)
MAX_ALARMS = const(64)  # pending alarms before merging by kind
_HARD_LIMIT = const(80)  # never more, whatever happens (RAM and flash bound)
COMPACT_BYTES = const(4096)  # log size that triggers a compaction
COUNTER_BLOCK = const(4096)  # frame counters reserved per 'C' record
_ALARM_FMT = const(">IBBIH")


def encode_record(rtype, data):
    rec = struct.pack(">BBB", _MAGIC, rtype, len(data)) + data
    return rec + struct.pack(">I", binascii.crc32(rec[1:]))


def parse_log(buf):
    """Split a log into (records, good_bytes, torn). records is a list of
    (type, data); parsing stops at the first bad record: torn is True when
    bytes remain after the last good one."""
    recs = []
    i = 0
    n = len(buf)
    while i < n:
        if n - i < _HEAD + _CRC or buf[i] != _MAGIC:
            return recs, i, True
        end = i + _HEAD + buf[i + 2]
        if end + _CRC > n or binascii.crc32(buf[i + 1 : end]) != struct.unpack(">I", buf[end : end + _CRC])[0]:
            return recs, i, True
        recs.append((buf[i + 1], bytes(buf[i + _HEAD : end])))
        i = end + _CRC
    return recs, i, False


class Outbox:
    def __init__(self, path="outbox.log", event_start=1, write=None, max_alarms=MAX_ALARMS, compact_bytes=COMPACT_BYTES):
        self.path = path
        self.event_start = event_start
        self.max_alarms = max_alarms
        self.compact_bytes = compact_bytes
        self._write = write  # None: a plain f.write
        self.pending = []  # (event, kind, flags, time_s, time_ms), oldest first
        self.next_event = event_start
        self.counter_ceiling = 0
        self.size = 0
        self.torn = 0  # torn records found at load
        self.merged = 0  # alarms merged into a pending one of the same kind

    def load(self):
        """Read the log; cut a torn tail off. Returns the number of torn
        records found (0 or 1)."""
        try:
            os.remove(self.path + ".tmp")  # a compaction cut short: the log wins
        except OSError:
            pass
        try:
            with open(self.path, "rb") as f:
                buf = f.read()
        except OSError:
            buf = bytes()  # no log yet
        recs, good, torn = parse_log(buf)
        self.pending = []
        top = self.event_start - 1
        for rtype, data in recs:
            if rtype == R_ALARM and len(data) == 12:
                a = struct.unpack(_ALARM_FMT, data)
                self.pending.append(a)
                top = max(top, a[0])
            elif len(data) == 4:
                v = struct.unpack(">I", data)[0]
                if rtype == _R_DONE:
                    self._drop(v)
                elif rtype == _R_COUNTER:
                    self.counter_ceiling = max(self.counter_ceiling, v)
                elif rtype == _R_NEXT:
                    top = max(top, v - 1)
        self.next_event = top + 1
        self.size = good
        self.torn = 1 if torn else 0
        if torn:
            self.compact()
        return self.torn

    def _drop(self, event):
        for a in self.pending:
            if a[0] == event:
                self.pending.remove(a)
                return True
        return False

    def _put(self, path, mode, data):
        # The one place that writes the flash (append or compaction).
        with open(path, mode) as f:
            if self._write:
                self._write(f, data)
            else:
                f.write(data)

    def _append(self, rtype, data):
        rec = encode_record(rtype, data)
        self._put(self.path, "ab", rec)
        self.size += len(rec)

    def add(self, kind, flags, time_s, time_ms=0):
        """Persist a new alarm; return its event id. Returns the id of a
        pending alarm of the same kind and flags when full (merged)."""
        if len(self.pending) >= self.max_alarms:
            for a in self.pending:
                if a[1] == kind and a[2] == flags:
                    self.merged += 1
                    return a[0]
            if len(self.pending) >= _HARD_LIMIT:
                # The RAM set aside for alarms is used up (no class of its
                # own: that would cost RAM too)
                raise MemoryError("outbox full")
        a = (self.next_event, kind, flags, time_s, time_ms)
        self._append(R_ALARM, struct.pack(_ALARM_FMT, *a))
        self.next_event += 1
        self.pending.append(a)
        return a[0]

    def add_ram(self, kind, flags, time_s, time_ms=0):
        """Keep an alarm that could not be written (flash fault): it is sent
        like the others but would not survive a reset."""
        a = (self.next_event, kind, flags, time_s, time_ms)
        self.next_event += 1
        self.pending.append(a)
        return a[0]

    def done(self, event):
        """The gateway has the alarm: forget it. False if not pending."""
        if not self._drop(event):
            return False
        self._append(_R_DONE, struct.pack(">I", event))
        if self.size > self.compact_bytes:
            self.compact()
        return True

    def reserve_counter(self, counter):
        """Make sure counter is below the persisted ceiling (call before
        using it in a frame)."""
        if counter >= self.counter_ceiling:
            self.counter_ceiling = counter + COUNTER_BLOCK
            self._append(_R_COUNTER, struct.pack(">I", self.counter_ceiling))

    def compact(self):
        buf = bytearray(encode_record(_R_NEXT, struct.pack(">I", self.next_event)))
        if self.counter_ceiling:
            buf += encode_record(_R_COUNTER, struct.pack(">I", self.counter_ceiling))
        for a in self.pending:
            buf += encode_record(R_ALARM, struct.pack(_ALARM_FMT, *a))
        tmp = self.path + ".tmp"
        self._put(tmp, "wb", buf)
        os.rename(tmp, self.path)
        self.size = len(buf)
