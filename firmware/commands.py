"""The gateway's COMMANDs (protocol.md 5.5), executed by the box.

Loaded by app.App.on_frame for one COMMAND and dropped after it: commands
are rare, and a 64 KiB heap cannot keep their code resident. The two ops
with more code run from their own module, which App.on_frame loads once
this one has left RAM, so the two never share the heap: handle() returns
"config" for config_set (config.command) and "selftest" for selftest
(selftest.command).

Before acting on a COMMAND the box persists the gateway's replay window and
the request number (replay.py), so after a reboot no old COMMAND is
accepted again (protocol.md 3.3) and a retransmitted request (same number,
new counter) is answered with the same RESULT without running it twice (a
second reboot, a second config write).

    op           args                                 RESULT data
    time_sync    u32 seconds, optional u16 ms         -
    reboot       -                                    - (RESULT first, reset 500 ms later)
    selftest     -                                    item=pass|fail[:detail] lines (selftest.py)
    config_get   - or one key name                    key=value lines (never the key)
    config_set   key=value lines (or a JSON object)   - ; bad_args names the refused key (config.py)
"""

import sys
import time
import struct

from micropython import const  # runs only on the box

import log

_RESET_DELAY_MS = const(500)  # let the reboot RESULT go out first


def handle(app, m):
    """Run COMMAND m; returns None, or the name of the module whose
    command(app, m) runs it once this module has left RAM."""
    req = m["request"]
    fresh = req != app.last_request
    app.last_request = req
    import replay

    try:
        replay.save(app)
    except OSError as e:
        log.error("could not persist the replay window: %r (an old COMMAND could be replayed after a reboot)" % (e,))
    sys.modules.pop("replay", None)
    if not fresh:
        log.info("command %s request %d was already executed: same result again" % (m["op"], req))
        if app.last_result is not None:
            app.results.append(app.last_result)
            app.pending.set()
        else:  # executed before a reboot: its result was not kept
            app.result(m, "ok")
        return None
    op = m["op"]
    log.info("command %s (request %d)" % (op, req))
    if op == "time_sync":
        _time_sync(app, m, m["args"])
    elif op == "reboot":
        app.reset_at = time.ticks_add(time.ticks_ms(), _RESET_DELAY_MS)
        app.result(m, "ok")
    elif op == "config_get":
        _config_get(app, m, bytes(m["args"]).decode())
    elif op == "config_set":
        return "config"
    elif op == "selftest":
        return "selftest"
    else:
        app.result(m, "unsupported")
    return None


def _time_sync(app, m, args):
    if len(args) < 4:
        return app.result(m, "bad_args", b"time_sync needs u32 seconds")
    secs = struct.unpack(">I", args[:4])[0]
    ms = struct.unpack(">H", args[4:6])[0] if len(args) >= 6 else 0
    app.clock_base = (secs * 1000 + ms, time.ticks_ms())  # heartbeats drop clock_unsynced
    app.result(m, "ok")


def _config_get(app, m, only):
    out = []
    for k in app.cfg:
        if k != "key" and (not only or k == only):  # (App drops the key from cfg anyway)
            out.append("%s=%s" % (k, app.cfg[k]))
    if only and not out:
        return app.result(m, "bad_args", ("unknown key: %s" % only).encode()[:180])
    data = "\n".join(out).encode()
    app.result(m, "ok", data[:188])
