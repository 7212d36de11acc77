"""Serial ports on the technician's laptop: which ones are likely boxes, which
one to use, and what an OSError from opening one means for the technician.

Pure parts (ranking, choosing, classifying) take plain data so tests feed them
without hardware; `list_ports()` and `probe_open()` are the thin I/O shell.
"""

import errno
import os

from .errors import EXIT_NO_PORT, EXIT_PERMISSION, EXIT_PORT_BUSY, CommandError

# USB vendor ids of the USB-serial bridges found on ESP32 boards, with the
# name a technician sees printed on the chip. Ports with these ids are listed
# first and are the only ones auto-detection picks.
BOX_VIDS = {
    0x303A: "Espressif (native USB)",
    0x10C4: "Silicon Labs CP210x",
    0x1A86: "WCH CH340/CH9102",
    0x0403: "FTDI",
}

# Environment variable that names the port when --port is not given (so a
# bench script can set it once).
PORT_ENV = "CALLBOX_PORT"


class PortInfo:
    """What we know about one serial port (a plain copy of pyserial's
    ListPortInfo, so the pure functions below never touch pyserial)."""

    def __init__(self, device, vid=None, pid=None, description="", manufacturer="", serial_number=""):
        self.device = device
        self.vid = vid
        self.pid = pid
        self.description = description or ""
        self.manufacturer = manufacturer or ""
        self.serial_number = serial_number or ""

    @property
    def likely_box(self):
        return self.vid in BOX_VIDS

    @property
    def usb_id(self):
        if self.vid is None or self.pid is None:
            return "-"
        return "%04X:%04X" % (self.vid, self.pid)

    def __repr__(self):
        return "PortInfo(%r, %s, %r)" % (self.device, self.usb_id, self.description)


def rank(ports):
    """Likely boxes first (known bridge VIDs), then other USB ports, then the
    rest; by device name within each group."""

    def key(p):
        group = 0 if p.likely_box else (1 if p.vid is not None else 2)
        return (group, p.device)

    return sorted(ports, key=key)


def list_ports():
    """The laptop's serial ports, ranked (pyserial's list_ports)."""
    from serial.tools import list_ports as lp

    out = []
    for p in lp.comports():
        out.append(PortInfo(p.device, p.vid, p.pid, p.description, p.manufacturer, p.serial_number))
    return rank(out)


def format_table(ports):
    lines = ["%-16s %-10s %-4s %s" % ("PORT", "VID:PID", "BOX?", "DESCRIPTION")]
    for p in ports:
        desc = p.description
        if p.vid in BOX_VIDS and BOX_VIDS[p.vid] not in desc:
            desc = "%s [%s]" % (desc, BOX_VIDS[p.vid])
        lines.append("%-16s %-10s %-4s %s" % (p.device, p.usb_id, "yes" if p.likely_box else "", desc))
    return "\n".join(lines)


def choose_port(requested, ports):
    """The port to use: the one asked for (--port or $CALLBOX_PORT), else the
    only likely box. Raises CommandError(EXIT_NO_PORT) with the list when
    there is none or more than one."""
    if requested:
        return requested
    boxes = [p for p in ports if p.likely_box]
    if len(boxes) == 1:
        return boxes[0].device
    if not boxes:
        hint = "plug the box in with a data USB cable (some cables only charge), then run `callbox ports`"
        if ports:
            raise CommandError(
                "no ESP32 board found among the serial ports:\n%s\n%s; or name the port with --port"
                % (format_table(ports), hint),
                EXIT_NO_PORT,
            )
        raise CommandError("no serial port found; " + hint, EXIT_NO_PORT)
    raise CommandError(
        "%d boards are connected; say which one with --port PORT (or set %s):\n%s"
        % (len(boxes), PORT_ENV, format_table(boxes)),
        EXIT_NO_PORT,
    )


def resolve_port(requested):
    """choose_port over the real port list; $CALLBOX_PORT counts as asked."""
    requested = requested or os.environ.get(PORT_ENV)
    if requested:
        return requested
    return choose_port(None, list_ports())


_BUSY_ERRNOS = (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)


def classify_open_error(port, exc):
    """A CommandError a technician can act on, for an error raised while
    opening `port` (pyserial's SerialException carries the errno)."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or code == errno.ENODEV or code == errno.ENXIO or "No such file" in text:
        return CommandError(
            "%s: no such serial port; check the cable and run `callbox ports` to see what is connected" % port,
            EXIT_NO_PORT,
        )
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        user = os.environ.get("USER", "$USER")
        return CommandError(
            "%s: permission denied; add yourself to the dialout group "
            "(`sudo usermod -aG dialout %s`, then log out and in again)" % (port, user),
            EXIT_PERMISSION,
        )
    if code in _BUSY_ERRNOS or "exclusively lock" in text or "busy" in text.lower():
        return CommandError(
            "%s: port busy; another program has it open (a serial monitor, mpremote, "
            "another callbox, ModemManager?): close it and retry" % port,
            EXIT_PORT_BUSY,
        )
    return CommandError("%s: cannot open the serial port: %s" % (port, text), EXIT_NO_PORT)


def probe_open(port):
    """Open and close `port` exclusively, without touching DTR/RTS (which
    reset an ESP32 dev board), to turn "cannot open" into a clear error
    before a library hides the errno."""
    import serial

    s = serial.Serial()
    s.port = port
    s.dtr = False
    s.rts = False
    s.exclusive = True
    try:
        s.open()
    except (OSError, serial.SerialException) as e:
        raise classify_open_error(port, e) from None
    s.close()
