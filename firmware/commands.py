"""The gateway's COMMANDs (protocol.md 5.5), executed by the box.

Loaded by app.App.on_frame for one COMMAND and dropped after it: commands
are rare, and a 64 KiB heap cannot keep their code resident.

Before acting on a COMMAND the box persists the gateway's replay window and
the request number (save_replay), so after a reboot no old COMMAND is
accepted again (protocol.md 3.3) and a retransmitted request (same number,
new counter) is answered with the same RESULT without running it twice (a
second reboot, a second config write).

    op           args                                 RESULT data
    time_sync    u32 seconds, optional u16 ms         -
    reboot       -                                    - (RESULT first, reset 500 ms later)
    selftest     -                                    item=pass|fail[:detail] lines (selftest.py)
    config_get   - or one key name                    key=value lines (never the key)
    config_set   key=value lines (or a JSON object)   - ; bad_args names the refused key
"""

import time
import struct

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


import log

_RESET_DELAY_MS = const(500)  # let the reboot RESULT go out first
# Keys the gateway may set; box_id, key, board, link and addresses need the
# technician (`callbox provision`).
SETTABLE = ("heartbeat_s", "backup_after_s", "stuck_s", "junction", "log_level", "sms_after_s", "lte_dead_s", "sms_number")


def handle(app, frame, m):
    req = m["request"]
    fresh = req != app.last_request
    app.last_request = req
    try:
        save_replay(app)
    except OSError as e:
        log.error("could not persist the replay window: %r (an old COMMAND could be replayed after a reboot)" % (e,))
    if not fresh:
        log.info("command %s request %d was already executed: same result again" % (m["op"], req))
        if app.last_result is not None:
            app.results.append(app.last_result)
            app.pending.set()
        else:  # executed before a reboot: its result was not kept
            app.result(m, "ok")
        return
    op = m["op"]
    log.info("command %s (request %d)" % (op, req))
    if op == "time_sync":
        return _time_sync(app, m, m["args"])
    if op == "reboot":
        app.reset_at = time.ticks_add(time.ticks_ms(), _RESET_DELAY_MS)
        return app.result(m, "ok")
    if op == "selftest":
        import asyncio

        asyncio.create_task(_selftest(app, m))
        return
    if op == "config_get":
        return _config_get(app, m, bytes(m["args"]).decode())
    if op == "config_set":
        return _config_set(app, m, bytes(m["args"]))
    return app.result(m, "unsupported")


def save_replay(app):
    """Persist the gateway's replay window and the last request (atomic:
    temporary file, then rename), before the COMMAND is acted on. app.py
    reads it back at boot."""
    import os
    import hw
    from app import REPLAY_PATH, REPLAY_FMT

    top, seen = app.replay.state()
    tmp = REPLAY_PATH + ".tmp"
    with open(tmp, "wb") as f:
        hw.flash_write(f, struct.pack(REPLAY_FMT, top, seen, app.last_request))
    os.rename(tmp, REPLAY_PATH)


def _time_sync(app, m, args):
    if len(args) < 4:
        return app.result(m, "bad_args", b"time_sync needs u32 seconds")
    secs = struct.unpack(">I", args[:4])[0]
    ms = struct.unpack(">H", args[4:6])[0] if len(args) >= 6 else 0
    app.clock_base = (secs * 1000 + ms, time.ticks_ms())
    app.set_fault("clock_unsynced", False)
    return app.result(m, "ok")


async def _selftest(app, m):
    import selftest

    lines = await selftest.run(app)
    failed = [l for l in lines if "=fail" in l]
    app.result(m, "fail" if failed else "ok", selftest.report(lines))


def _config_get(app, m, only):
    out = []
    for k in app.cfg:
        if k != "key" and (not only or k == only):
            out.append("%s=%s" % (k, app.cfg[k]))
    if only and not out:
        return app.result(m, "bad_args", ("unknown key: %s" % only).encode()[:180])
    data = "\n".join(out).encode()
    return app.result(m, "ok", data[:188])


def _parse_settings(args):
    if args[:1] == b"{":
        import json

        return json.loads(args)
    changes = {}
    for line in args.decode().split("\n"):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError("not key=value: " + line)
        k, v = line.split("=", 1)
        changes[k.strip()] = v.strip()
    return changes


def _config_set(app, m, args):
    import config

    try:
        try:
            changes = _parse_settings(args)
        except (ValueError, UnicodeError) as e:
            raise config.ConfigError("config_set: %s" % (e,))
        new = dict(app.cfg)
        for k in changes:
            if k not in SETTABLE:
                raise config.ConfigError("unknown or protected key: %s" % k)
            v = changes[k]
            if k in config._INT_RANGES and isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise config.ConfigError("%s = %r is not an integer" % (k, v))
            new[k] = v
        new = config.validate(new)
        config.save(new)
    except (config.ConfigError, OSError) as e:
        log.warning("config_set refused: %s" % (e,))
        return app.result(m, "bad_args", str(e).encode()[:180])
    app.cfg = new
    app.sender.hb_interval_ms = new["heartbeat_s"] * 1000
    for name, active, deb in app.inputs:
        if name != "tamper":
            deb.stuck_ms = new["stuck_s"] * 1000
    log.set_level(new["log_level"])
    if app.lte is not None:
        app.lte.sms_number = new["sms_number"] or None
        app.lte.keepalive.answer_timeout_ms = new["lte_dead_s"] * 1000
    return app.result(m, "ok")
