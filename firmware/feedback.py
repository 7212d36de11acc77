"""Citizen feedback: the beacon light and the buzzer. A pure core.

States (plain strings, the names the virtual box reports; strings this short
are interned, so naming them costs no RAM):
    idle       nothing happening (light off)
    sending    a press is stored and being sent (light blinks 2 Hz, one beep)
    received   the control room has the alarm (light steady, two beeps)
    connected  the operator's call is connected (light steady, no buzzer)
    fault      the box cannot take alarms properly: unprovisioned, a stuck
               button, flash trouble (light blinks briefly every 2 s); only
               shown when nothing more important is

Driven by: press (debounced), ACK for the alarm, CALL_STATE frames, faults
and time. `output(now_ms)` gives the light and buzzer levels for that moment,
so the shell just copies them to the pins.
"""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:
    from time import ticks_diff as _diff
except ImportError:

    def _diff(a, b):
        return a - b


_RECEIVED_HOLD_MS = const(60000)  # "received" stays this long without a call
_ENDED_HOLD_MS = const(10000)  # after a call ends, "received" for this long
_BEEP_MS = const(120)


class Beacon:
    def __init__(self, now_ms):
        self.state = "idle"
        self.since = now_ms
        self.event = None
        self.fault = False
        self._hold = _RECEIVED_HOLD_MS

    def _go(self, state, now_ms, hold=_RECEIVED_HOLD_MS):
        # Enter state, restarting its light and buzzer pattern.
        self.state = state
        self.since = now_ms
        self._hold = hold

    def shown(self):
        if self.state == "idle" and self.fault:
            return "fault"
        return self.state

    def press(self, event, now_ms):
        if self.state != "connected":
            self.event = event
            self._go("sending", now_ms)

    def ack(self, event, now_ms):
        if self.state == "sending" and event == self.event:
            self._go("received", now_ms)

    def call(self, call_state, event, now_ms):
        if call_state == "connected":
            if self.state != "connected":
                self._go("connected", now_ms)
        elif call_state in ("ringing", "dispatched"):
            if self.state != "connected":
                self._go("received", now_ms)
        elif call_state in ("ended", "idle"):
            if self.state in ("connected", "received"):
                self._go("received", now_ms, _ENDED_HOLD_MS)

    def set_fault(self, fault):
        self.fault = bool(fault)

    def tick(self, now_ms):
        """Time-outs; returns True when the shown state changed."""
        if self.state == "received" and _diff(now_ms, self.since) >= self._hold:
            self._go("idle", now_ms)
            return True
        return False

    def output(self, now_ms):
        """(light, buzzer) levels, logical (1 = on)."""
        t = _diff(now_ms, self.since)
        s = self.shown()
        if s == "sending":
            return (1 if (t // 250) % 2 == 0 else 0, 1 if t < _BEEP_MS else 0)
        if s == "received":
            return (1, 1 if (t < _BEEP_MS or 2 * _BEEP_MS <= t < 3 * _BEEP_MS) else 0)
        if s == "connected":
            return (1, 0)
        if s == "fault":
            return (1 if t % 2000 < 100 else 0, 0)
        return (0, 0)
