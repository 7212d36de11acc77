"""Rig controller: the protocol core (MicroPython on a Pico or an ESP32 at the
bench, and CPython for tests). No machine module here: the pins and the
clock come in as `io`, so the same code runs on the board, on the MicroPython
unix port and under pytest.

The controller sits beside the boxes under test:
- button LINES: an open-collector output (NPN or optocoupler) across each
  button; channel active = transistor on = the button line pulled to GND,
  exactly as the switch does (the box cannot tell the difference);
- POWER switches: a relay or MOSFET in each box's supply; active = powered;
- LIGHT inputs: a photo-transistor on the beacon (or the light pin through a
  divider); 1 = lit.

Protocol: one ASCII command per line over USB serial, one reply line each.

    HELLO                       OK rigctl <version> lines=<n> powers=<n> lights=<n>
    PRESS <line>                OK <t_us>              line active (button closed)
    RELEASE <line>              OK <t_us>
    TRACE <line> <l>,<ms> ...   OK <t_us> <steps>      levels held for exactly <ms>
                                                       each, then the last one stays;
                                                       the reply comes when it is done
    POWER <ch> ON|OFF           OK <t_us>
    LIGHT <ch>                  OK <0|1>
    SAMPLE <ch> <ms>            OK <on_ms> <edges>     the light sampled every ms
    ERR <reason> <text>         reason: syntax, channel, range

<t_us> is the controller's microsecond clock when the output changed (for
TRACE: when the first step began), so the host can time the box against it.
Limits keep a typo from tying the controller up: at most MAX_STEPS steps and
MAX_TRACE_MS in a trace, MAX_SAMPLE_MS of sampling, MAX_LINE bytes a line.
"""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


VERSION = const(1)
MAX_LINE = const(512)  # a 64-step trace is under 600 bytes only with 4-digit ms
MAX_STEPS = const(64)
MAX_TRACE_MS = const(10000)  # longer holds are PRESS ... RELEASE
MAX_STEP_MS = const(10000)
MAX_SAMPLE_MS = const(10000)


class CommandError(Exception):
    def __init__(self, reason, text):
        self.reason = reason
        self.text = text
        super().__init__(reason + " " + text)


def _int(word, what):
    try:
        return int(word)
    except ValueError:
        raise CommandError("syntax", "%s %r is not a number" % (what, word))


class RigCore:
    """io provides: line(ch, active), power(ch, on), light(ch) -> 0|1,
    ticks_us() -> int, ticks_add(t, us) (the port's wrapping arithmetic),
    wait_until_us(t) (sleeps or spins until t)."""

    def __init__(self, io, lines, powers, lights):
        self.io = io
        self.lines = lines
        self.powers = powers
        self.lights = lights

    def _channel(self, word, count, what):
        ch = _int(word, what)
        if not 0 <= ch < count:
            raise CommandError("channel", "%s %d does not exist (0..%d)" % (what, ch, count - 1))
        return ch

    def handle(self, text):
        """One command line in, one reply line out (without the newline)."""
        try:
            return "OK " + self._handle(text)
        except CommandError as e:
            return "ERR %s %s" % (e.reason, e.text)

    def _handle(self, text):
        if len(text) > MAX_LINE:
            raise CommandError("range", "line longer than %d bytes" % MAX_LINE)
        words = text.split()
        if not words:
            raise CommandError("syntax", "empty line; try HELLO")
        op = words[0].upper()
        args = words[1:]
        io = self.io
        if op == "HELLO":
            return "rigctl %d lines=%d powers=%d lights=%d" % (VERSION, self.lines, self.powers, self.lights)
        if op in ("PRESS", "RELEASE"):
            if len(args) != 1:
                raise CommandError("syntax", "%s <line>" % op)
            ch = self._channel(args[0], self.lines, "line")
            io.line(ch, op == "PRESS")
            return "%d" % io.ticks_us()
        if op == "TRACE":
            if len(args) < 2:
                raise CommandError("syntax", "TRACE <line> <level>,<ms> ...")
            ch = self._channel(args[0], self.lines, "line")
            steps = parse_steps(args[1:])
            return "%d %d" % (self.run_trace(ch, steps), len(steps))
        if op == "POWER":
            if len(args) != 2 or args[1].upper() not in ("ON", "OFF"):
                raise CommandError("syntax", "POWER <ch> ON|OFF")
            ch = self._channel(args[0], self.powers, "power channel")
            io.power(ch, args[1].upper() == "ON")
            return "%d" % io.ticks_us()
        if op == "LIGHT":
            if len(args) != 1:
                raise CommandError("syntax", "LIGHT <ch>")
            return "%d" % (1 if io.light(self._channel(args[0], self.lights, "light channel")) else 0)
        if op == "SAMPLE":
            if len(args) != 2:
                raise CommandError("syntax", "SAMPLE <ch> <ms>")
            ch = self._channel(args[0], self.lights, "light channel")
            ms = _int(args[1], "ms")
            if not 1 <= ms <= MAX_SAMPLE_MS:
                raise CommandError("range", "sample %d ms not in 1..%d" % (ms, MAX_SAMPLE_MS))
            on, edges = self.sample(ch, ms)
            return "%d %d" % (on, edges)
        raise CommandError("syntax", "unknown command %s; commands: HELLO PRESS RELEASE TRACE POWER LIGHT SAMPLE" % op)

    def run_trace(self, ch, steps):
        """Play the steps with each edge at its exact time from the start
        (errors do not accumulate: each deadline is start + sum of ms)."""
        io = self.io
        t0 = io.ticks_us()
        t = t0
        for level, ms in steps:
            io.line(ch, level)
            t = io.ticks_add(t, ms * 1000)
            io.wait_until_us(t)
        return t0

    def sample(self, ch, ms):
        io = self.io
        t = io.ticks_us()
        on = 0
        edges = 0
        last = None
        for _ in range(ms):
            v = 1 if io.light(ch) else 0
            on += v
            if last is not None and v != last:
                edges += 1
            last = v
            t = io.ticks_add(t, 1000)
            io.wait_until_us(t)
        return on, edges


def parse_steps(words):
    """'1,20' '0,5' ... -> [(1, 20), (0, 5)], checked against the limits."""
    if len(words) > MAX_STEPS:
        raise CommandError("range", "%d steps > %d" % (len(words), MAX_STEPS))
    steps = []
    total = 0
    for w in words:
        parts = w.split(",")
        if len(parts) != 2:
            raise CommandError("syntax", "step %r is not <level>,<ms>" % w)
        level = _int(parts[0], "level")
        ms = _int(parts[1], "ms")
        if level not in (0, 1):
            raise CommandError("range", "level %d is not 0 or 1" % level)
        if not 1 <= ms <= MAX_STEP_MS:
            raise CommandError("range", "step of %d ms not in 1..%d" % (ms, MAX_STEP_MS))
        total += ms
        steps.append((level, ms))
    if total > MAX_TRACE_MS:
        raise CommandError("range", "trace of %d ms > %d; hold longer with PRESS and RELEASE" % (total, MAX_TRACE_MS))
    return steps
