"""Rig controller firmware: the board shell around rigctl.RigCore.

On a Raspberry Pi Pico (rp2) or an ESP32 it drives the pins in PINS; on the
MicroPython unix port (no machine.Pin) it simulates them and writes every
output change with its microsecond time to the file named by the
RIGCTL_TRACE environment variable, so the protocol and the timing can be
tested without a board. Commands come on stdin (USB CDC on a board) and
replies go to stdout, one line each.

Deploy:  mpremote connect PORT fs cp rigctl.py main.py :  (then reset)
"""

import sys
import time

from rigctl import RigCore, MAX_LINE

# GPIO numbers per channel. Pico: GP2..GP9 button lines (to the NPN bases
# through 1 k), GP10..GP13 power (relay drivers), GP26..GP28 light inputs.
PINS = {
    "rp2": {"lines": (2, 3, 4, 5, 6, 7, 8, 9), "powers": (10, 11, 12, 13), "lights": (26, 27, 28)},
    "esp32": {"lines": (25, 26, 27, 14, 12, 13, 15, 4), "powers": (16, 17, 18, 19), "lights": (34, 35, 36)},
}
# Spin for the last part of a wait: sleep_us alone can wake a scheduler tick
# late; a trace edge must land within tens of microseconds.
_SPIN_US = 2000


class BoardIO:
    def __init__(self, pins):
        from machine import Pin

        # Outputs start inactive (button open) and powered (boxes on).
        self._lines = [Pin(n, Pin.OUT, value=0) for n in pins["lines"]]
        self._powers = [Pin(n, Pin.OUT, value=1) for n in pins["powers"]]
        self._lights = [Pin(n, Pin.IN) for n in pins["lights"]]

    def line(self, ch, active):
        self._lines[ch].value(1 if active else 0)

    def power(self, ch, on):
        self._powers[ch].value(1 if on else 0)

    def light(self, ch):
        return self._lights[ch].value()

    ticks_us = staticmethod(time.ticks_us)
    ticks_add = staticmethod(time.ticks_add)

    def wait_until_us(self, t):
        while True:
            left = time.ticks_diff(t, time.ticks_us())
            if left <= 0:
                return
            if left > _SPIN_US:
                time.sleep_us(left - _SPIN_US)


class SimIO(BoardIO):
    """Unix port: outputs are recorded; a light follows its box's power."""

    def __init__(self, pins, trace_path=None):
        self.n_lines = len(pins["lines"])
        self.levels = [0] * self.n_lines
        self.powered = [1] * len(pins["powers"])
        self._log = open(trace_path, "w") if trace_path else None

    def _rec(self, what, ch, v):
        if self._log is not None:
            self._log.write("%d %s %d %d\n" % (time.ticks_us(), what, ch, v))
            self._log.flush()

    def line(self, ch, active):
        self.levels[ch] = 1 if active else 0
        self._rec("line", ch, self.levels[ch])

    def power(self, ch, on):
        self.powered[ch] = 1 if on else 0
        self._rec("power", ch, self.powered[ch])

    def light(self, ch):
        return self.powered[ch % len(self.powered)]


def make_io():
    try:
        from machine import Pin  # noqa: F401
    except ImportError:
        import os

        return SimIO(PINS["rp2"], os.getenv("RIGCTL_TRACE"))
    return BoardIO(PINS.get(sys.platform, PINS["rp2"]))


def serve(io, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    pins = PINS.get(sys.platform, PINS["rp2"])
    core = RigCore(io, len(pins["lines"]), len(pins["powers"]), len(pins["lights"]))
    while True:
        line = stdin.readline()
        if not line:
            return  # the host closed the port (unix port: end of input)
        line = line.strip()
        if not line:
            continue
        if len(line) > MAX_LINE:
            reply = "ERR range line longer than %d bytes" % MAX_LINE
        else:
            reply = core.handle(line)
        stdout.write(reply + "\n")
        if hasattr(stdout, "flush"):
            stdout.flush()


serve(make_io())
