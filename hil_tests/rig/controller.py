"""The rig controller, seen from the tests: one interface, two implementations.

    ctl.press(box, "panic")                 close the button's contact
    ctl.release(box, "panic")
    ctl.trace(box, "panic", [(1, 5), (0, 3), (1, 400), (0, 1)])   levels with ms, exact timing
    ctl.power(box, False) / ctl.power(box, True)                   cut / restore the box's supply
    ctl.light(box) -> 0|1                   the light output now
    ctl.light_state(box, window_ms=1000) -> "idle" | "sending" | "received" | "fault"

- `SerialRigController` speaks the rig controller firmware's line protocol
  (hil_tests/rig_controller/rigctl.py) over a USB serial port: a Pico or an
  ESP32 on the bench with open-collector outputs on the boxes' button lines,
  a relay or MOSFET on each box's supply, and a photo-transistor (or the
  light pin itself, through a divider) on each light input. Which channel is
  which comes from the environment file ([[boxes]] lines = {...}).
- `VirtualRigController` does the same to virtual boxes (callbox_rig.virtual_box):
  the contact goes through the box's simulated pin, power is SIGKILL and a
  restart, the light is the box's light output.
"""

import time


class ControllerError(RuntimeError):
    """The rig controller refused or did not answer; the message says which
    command, the controller's reason and a hint."""


class _Base:
    def light_state(self, box, window_ms=1000):
        """Classify the light pattern over a window, as a person would: off =
        idle, steady = received (or connected), blinking 2 Hz = sending,
        brief flashes = fault."""
        on_ms, edges = self.sample_light(box, window_ms)
        if on_ms == 0:
            return "idle"
        if on_ms >= window_ms * 0.95:
            return "received"
        if edges >= 3 and on_ms >= window_ms * 0.25:
            return "sending"
        return "fault"


class VirtualRigController(_Base):
    kind = "virtual"

    def __init__(self, rig):
        self.rig = rig

    def press(self, box, button):
        box.vbox.press(button)

    def release(self, box, button):
        box.vbox.release(button)

    def trace(self, box, button, steps):
        box.vbox.play_trace(button, steps)

    def power(self, box, on):
        if on:
            box.vbox.restart("power_on")
        else:
            box.vbox.kill()

    def light(self, box):
        return int(box.vbox.outputs.get("light", 0))

    def sample_light(self, box, window_ms):
        on_ms, edges, last = 0, 0, None
        end = time.monotonic() + window_ms / 1000.0
        step = 0.005
        while time.monotonic() < end:
            lv = self.light(box)
            if lv:
                on_ms += step * 1000
            if last is not None and lv != last:
                edges += 1
            last = lv
            time.sleep(step)
        return int(on_ms), edges


class SerialRigController(_Base):
    """The bench's rig controller on a serial port (pyserial URL or device)."""

    kind = "real"

    def __init__(self, port, channels, baud=115200, timeout_s=5.0):
        """channels: {box_id: {"emergency": line, "panic": line, "power": ch, "light": ch}}"""
        import serial

        try:
            self.ser = serial.serial_for_url(port, baudrate=baud, timeout=timeout_s)
        except (serial.SerialException, ValueError, OSError) as e:
            raise ControllerError("rig controller port %s cannot be opened (%s); check controller_port in the "
                                  "environment file and that no other program (mpremote, a terminal) holds it" % (port, e)) from None
        self.port = port
        self.channels = channels
        self.timeout_s = timeout_s
        self.hello = self.command("HELLO", timeout_s=timeout_s)

    def close(self):
        self.ser.close()

    def command(self, line, timeout_s=None):
        """Send one command line; return the words after OK, or raise."""
        self.ser.reset_input_buffer()
        self.ser.write((line + "\n").encode("ascii"))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        buf = b""
        while time.monotonic() < deadline:
            buf += self.ser.read(1)
            if buf.endswith(b"\n"):
                text = buf.decode("ascii", "replace").strip()
                buf = b""
                if text.startswith("OK"):
                    return text.split()[1:]
                if text.startswith("ERR"):
                    raise ControllerError("rig controller %s: %r answered %s" % (self.port, line, text))
                # anything else (a banner, a REPL prompt) is skipped
        raise ControllerError("rig controller %s: no answer to %r within %.1f s; is rigctl's main.py running "
                              "(not the REPL)?" % (self.port, line, timeout_s or self.timeout_s))

    def _ch(self, box, what):
        try:
            return self.channels[box.box_id][what]
        except KeyError:
            raise ControllerError("box %d has no rig channel for %r; add it to lines = {...} in the environment file"
                                  % (box.box_id, what)) from None

    def press(self, box, button):
        self.command("PRESS %d" % self._ch(box, button))

    def release(self, box, button):
        self.command("RELEASE %d" % self._ch(box, button))

    def trace(self, box, button, steps):
        """Returns the controller's microsecond clock when the trace began."""
        total_ms = sum(ms for _, ms in steps)
        words = self.command("TRACE %d %s" % (self._ch(box, button), " ".join("%d,%d" % (l, ms) for l, ms in steps)),
                             timeout_s=self.timeout_s + total_ms / 1000.0)
        return int(words[0])

    def power(self, box, on):
        self.command("POWER %d %s" % (self._ch(box, "power"), "ON" if on else "OFF"))

    def light(self, box):
        return int(self.command("LIGHT %d" % self._ch(box, "light"))[0])

    def sample_light(self, box, window_ms):
        words = self.command("SAMPLE %d %d" % (self._ch(box, "light"), window_ms), timeout_s=self.timeout_s + window_ms / 1000.0)
        return int(words[0]), int(words[1])
