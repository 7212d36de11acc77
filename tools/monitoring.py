"""`callbox monitor`'s core: split the box's console output into lines and
stamp each with the laptop's wall clock (the box only knows its uptime).

LineStamper is pure (bytes and a time in, text lines out); the command is the
thin loop that reads the port."""

import time

# A line longer than this is cut and printed in pieces: a box that prints
# binary garbage (wrong baud rate) must not make the monitor hold memory.
MAX_LINE_CHARS = 1024


def stamp(t):
    """Local wall-clock time with milliseconds, e.g. 19:20:01.123."""
    lt = time.localtime(t)
    return "%02d:%02d:%02d.%03d" % (lt.tm_hour, lt.tm_min, lt.tm_sec, int((t % 1) * 1000))


class LineStamper:
    def __init__(self):
        self._buf = bytearray()
        self._started = None  # arrival time of the line's first byte

    def feed(self, data, now):
        """Bytes from the port at time `now` -> list of "HH:MM:SS.mmm  text"
        for every complete line (\\n ends a line; \\r is dropped)."""
        out = []
        for b in data:
            if self._started is None:
                self._started = now
            if b == 0x0A:
                out.append(self._emit())
            elif b != 0x0D:
                self._buf.append(b)
                if len(self._buf) >= MAX_LINE_CHARS:
                    out.append(self._emit())
        return out

    def flush(self, now):
        """The partial line at the end (a prompt such as '>>> '), if any."""
        if self._buf:
            return [self._emit()]
        return []

    def _emit(self):
        text = self._buf.decode("utf-8", "replace")
        line = "%s  %s" % (stamp(self._started), text)
        self._buf = bytearray()
        self._started = None
        return line
