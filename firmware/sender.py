"""What the box sends next: pending alarms with capped exponential backoff,
then the periodic heartbeat. A pure core: the caller passes the time.

Alarms always go before heartbeats (under pressure heartbeats give way). An
alarm is due at once when new, then _RETRY_FIRST_MS after a transmission,
doubling up to _RETRY_MAX_MS, plus up to a quarter of jitter so a bus full of
boxes does not retry in step.
"""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:
    from time import ticks_diff as _diff, ticks_add as _add
except ImportError:

    def _diff(a, b):
        return a - b

    def _add(a, b):
        return a + b


_RETRY_FIRST_MS = const(1000)  # an ACK over RS-485 or LTE takes well under this
_RETRY_MAX_MS = const(30000)  # keep trying at least twice a minute, forever
_HB_RETRY_MS = const(10000)  # an unacknowledged heartbeat is resent this soon
# On RS-485 the gateway ACKs in the same slot, so the next POLL proves the
# alarm (or its ACK) was lost: resend at once, up to this many times in a
# row, then fall back to the backoff (a gateway that refuses the frame).
_SLOT_RETRIES = const(3)


def backoff_ms(tries, rand=0):
    """Delay before retry number `tries` (1 = after the first send)."""
    if tries < 1:
        return 0
    # doubling per try; 1 s << 5 = 32 s is past the cap, no need to go on
    d = min(_RETRY_FIRST_MS << min(tries - 1, 5), _RETRY_MAX_MS)
    return d + (rand % (d // 4 + 1))


class Sender:
    def __init__(self, hb_interval_ms, now_ms):
        self.hb_interval_ms = hb_interval_ms
        self._alarms = {}  # event -> (tries, due_ms)
        self.hb_due = now_ms  # first heartbeat at once (boot reason)

    def next(self, pending, now_ms):
        """('alarm', record) | ('hb', None) | None; pending is the outbox's
        list of alarm records, oldest first."""
        for a in pending:
            st = self._alarms.get(a[0])
            if st is None or _diff(now_ms, st[1]) >= 0:
                return ("alarm", a)
        if _diff(now_ms, self.hb_due) >= 0:
            return ("hb", None)
        return None

    def tries(self, event):
        return self._alarms.get(event, (0, 0))[0]

    def sent_alarm(self, event, now_ms, rand=0):
        tries = self.tries(event) + 1
        self._alarms[event] = (tries, _add(now_ms, backoff_ms(tries, rand)))
        return tries

    def slot_missed(self, event, now_ms):
        """RS-485: polled again and the alarm sent in the last slot got no
        ACK. Make it due now, unless it already failed _SLOT_RETRIES times."""
        st = self._alarms.get(event)
        if st is not None and st[0] < _SLOT_RETRIES:
            self._alarms[event] = (st[0], now_ms)

    def acked_alarm(self, event):
        return self._alarms.pop(event, None) is not None

    def sent_hb(self, now_ms):
        self.hb_due = _add(now_ms, min(self.hb_interval_ms, _HB_RETRY_MS))

    def got_hb_ack(self, now_ms, sent_ms):
        self.hb_due = _add(sent_ms, self.hb_interval_ms)

    def wake_in_ms(self, pending, now_ms, limit=1000):
        """How long the caller may sleep before something is due."""
        best = _diff(self.hb_due, now_ms)
        for a in pending:
            st = self._alarms.get(a[0])
            d = 0 if st is None else _diff(st[1], now_ms)
            if d < best:
                best = d
        return max(0, min(best, limit))
