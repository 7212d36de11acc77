"""The gateway's replay window and the last COMMAND request executed,
persisted across reboots (protocol.md 3.3, 5.5), so that no COMMAND seen
before a reboot is accepted again, and a retransmitted request is not
executed twice.

replay.dat, 12 bytes: top u32, seen bitmap u32 (wire.ReplayWindow.state()),
last request i32 (-1: none). save() runs before a COMMAND is acted on
(commands.py), load() at boot (bringup.py); loaded for that and dropped.
"""

import os
import struct
from micropython import const

import hw
import log
import wire

_PATH = const("replay.dat")
_FMT = const(">IIi")


def save(app):
    """Write the state atomically: temporary file, then rename."""
    top, seen = app.replay.state()
    tmp = _PATH + ".tmp"
    with open(tmp, "wb") as f:
        hw.flash_write(f, struct.pack(_FMT, top, seen, app.last_request))
    os.rename(tmp, _PATH)


def load(app):
    try:
        with open(_PATH, "rb") as f:
            data = f.read()
    except OSError:
        return
    if len(data) != struct.calcsize(_FMT):
        log.warning("%s has %d bytes, not %d: ignored" % (_PATH, len(data), struct.calcsize(_FMT)))
        return
    top, seen, app.last_request = struct.unpack(_FMT, data)
    app.replay = wire.ReplayWindow(top, seen)
