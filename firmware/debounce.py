"""Debounced contact input: a pure core fed (level, now_ms) samples.

Why not one sample every 50 ms (brief section 3): a single sample turns one
glitch into a press and can miss a short press. This core is a time-based
confirmation (ESPHome `delayed_on` style): a change of the logical level is
reported only when every sample for PRESS_CONFIRM_MS (release:
RELEASE_CONFIRM_MS) agreed with it. One disagreeing sample restarts the
confirmation.

With the shell sampling every SAMPLE_MS (5 ms):
- an isolated spike shorter than PRESS_CONFIRM_MS (20 ms; we promise 15 ms,
  with one sample period of margin) never confirms;
- 50 Hz chatter (period 20 ms) never stays on for 20 ms, so it never
  confirms, whatever its duty cycle below 100 %;
- a press that bounces for its first 10 ms and then stays closed confirms
  PRESS_CONFIRM_MS after the last bounce: by 10 + 20 + 5 = 35 ms < 50 ms;
- a clean press confirms between 20 and 25 ms after contact (<= 30 ms).
- a press held longer than stuck_ms is reported once as EV_STUCK (a fault,
  not more alarms); its release afterwards as EV_UNSTUCK instead of
  EV_RELEASE. stuck_ms = 0 disables it (the tamper door may stay open).

The core knows only logical levels (1 = contact active); the electrical
polarity (pull-up, normally-closed tamper switch) is applied by the shell
from the board file. No I/O, no clock of its own, no allocation per sample.
"""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


SAMPLE_MS = const(5)  # the shell's sampling period
PRESS_CONFIRM_MS = const(20)  # must stay active this long to be a press
RELEASE_CONFIRM_MS = const(30)  # must stay inactive this long to be a release
STUCK_MS = const(120000)  # held this long = stuck contact (a fault)

EV_NONE = const(0)
EV_PRESS = const(1)
EV_RELEASE = const(2)
EV_STUCK = const(3)
EV_UNSTUCK = const(4)

EVENT_NAMES = ("none", "press", "release", "stuck", "unstuck")


try:
    from time import ticks_diff as _diff  # ms ticks wrap on MicroPython
except ImportError:  # CPython: plain integers

    def _diff(a, b):
        return a - b


class Debouncer:
    def __init__(self, press_ms=PRESS_CONFIRM_MS, release_ms=RELEASE_CONFIRM_MS, stuck_ms=STUCK_MS, initial=0):
        self.press_ms = press_ms
        self.release_ms = release_ms
        self.stuck_ms = stuck_ms
        self.state = initial  # confirmed logical level
        self.stuck = False
        # When the other level (levels are 0 or 1: the only candidate) was
        # first seen without a break; None while samples agree with state.
        self._since = None
        self._pressed_at = None

    def update(self, level, now_ms):
        """Feed one sample; return one EV_* code."""
        level = 1 if level else 0
        if level == self.state:
            self._since = None
            if level and self.stuck_ms and not self.stuck and _diff(now_ms, self._pressed_at) >= self.stuck_ms:
                self.stuck = True
                return EV_STUCK
            return EV_NONE
        if self._since is None:
            self._since = now_ms
        need = self.press_ms if level else self.release_ms
        if _diff(now_ms, self._since) < need:
            return EV_NONE
        self.state = level
        self._since = None
        if level:
            self._pressed_at = now_ms
            return EV_PRESS
        if self.stuck:
            self.stuck = False
            return EV_UNSTUCK
        return EV_RELEASE
