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

import hw
import log
import wire

PATH = "replay.dat"
FMT = ">IIi"


def save(app):
    """Write the state atomically: temporary file, then rename."""
    top, seen = app.replay.state()
    tmp = PATH + ".tmp"
    with open(tmp, "wb") as f:
        hw.flash_write(f, struct.pack(FMT, top, seen, app.last_request))
    os.rename(tmp, PATH)


def load(app):
    try:
        with open(PATH, "rb") as f:
            data = f.read()
    except OSError:
        return
    if len(data) != struct.calcsize(FMT):
        log.warning("%s has %d bytes, not %d: ignored" % (PATH, len(data), struct.calcsize(FMT)))
        return
    top, seen, app.last_request = struct.unpack(FMT, data)
    app.replay = wire.ReplayWindow(top, seen)
