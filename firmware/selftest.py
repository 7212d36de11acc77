"""The box's self-test: one line per item, `item=pass` or `item=fail:detail`
(the RESULT data of protocol.md 5.5, and what `callbox selftest` parses).

    emergency, panic   the input reads, and not as pressed (a button held
                       during the test, or stuck closed, fails)
    tamper             the input reads (the door is open while a technician
                       works, so either level passes)
    light              the light output switched on and off, read back
    flash              a test file written, read back, compared, removed
    link               a heartbeat round trip to the gateway: sent on the
                       box's link, its ACK received in time

Two ways in, the same code:
* `cli()`: from the raw REPL with the firmware stopped (the technician's
  `callbox selftest`): reads the configuration, brings the box's own link up
  for the round trip, prints the lines; at most LINK_TIMEOUT_MS for the link,
  well inside the CLI's 60 s.
* `command(app, m)`: the COMMAND selftest of a running box (see
  commands.py); `await run(app)` gives the lines: the inputs are judged by
  their debouncers, the link round trip uses the running link.

Loaded only for a self-test and dropped after it (docs/firmware.md, memory).
"""

import os
import time
import asyncio

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


import hw
import log

LINK_TIMEOUT_MS = const(45000)  # from the REPL: an LTE modem registers and connects first
_LINK_CMD_TIMEOUT_MS = const(15000)  # a running box: the link is up, one poll or one TCP round trip
_SETTLE_MS = const(300)  # inputs settle after init (pull-ups; the simulator's pin levels arrive)
_POLL_MS = const(50)
_TEST_FILE = const("selftest.tmp")
_MAX_REPORT = const(188)  # RESULT data: MAX_PAYLOAD 192 - 4 header bytes
_DEFAULT_BOARD = const("devkit_rs485")


def check_inputs(board, app=None):
    lines = []
    for name in ("emergency", "panic", "tamper"):
        spec = board["inputs"].get(name)
        if spec is None:
            continue
        try:
            level = hw.input_level(name)
        except Exception as e:  # a pin that cannot be read: say why
            lines.append("%s=fail:cannot read pin %s: %r" % (name, spec.get("pin"), e))
            continue
        pressed = level == spec.get("active", 0)
        if app is not None:
            for n, active, deb in app.inputs:
                if n == name and deb.stuck:
                    lines.append("%s=fail:stuck closed (check the button and its cable)" % name)
                    break
            else:
                lines.append(name + "=pass")
            continue
        if pressed and name != "tamper":
            lines.append("%s=fail:reads pressed (held during the test, or stuck closed)" % name)
        else:
            if name == "tamper":
                log.info("selftest: tamper reads door %s" % ("open" if pressed else "closed"))
            lines.append(name + "=pass")
    return lines


def check_light(board):
    spec = board["outputs"].get("light")
    if spec is None:
        return "light=fail:no light output on this board"
    active = spec.get("active", 1)
    try:
        for on in (1, 0, 1, 0):
            hw.output("light", on)
            got = hw.output_level("light")
            want = active if on else 1 - active
            if got != want:
                return "light=fail:pin %s reads %s after switching it %s" % (spec.get("pin"), got, "on" if on else "off")
    except Exception as e:
        return "light=fail:%r" % (e,)
    return "light=pass"


def check_flash(app=None):
    data = bytearray(64)  # (filled in place: a list of 64 ints would take 512 bytes)
    t = time.ticks_ms()
    for i in range(64):
        data[i] = (i * 37 + t) & 0xFF
    try:
        with open(_TEST_FILE, "wb") as f:
            hw.flash_write(f, data)
        with open(_TEST_FILE, "rb") as f:
            back = f.read()
        os.remove(_TEST_FILE)
    except OSError as e:
        return "flash=fail:%r" % (e,)
    if back != data:
        return "flash=fail:read back %d bytes differ" % len(data)
    if app is not None and "flash" in app.faults:
        return "flash=fail:an outbox write failed since boot"
    return "flash=pass"


async def check_link(app, timeout_ms):
    if app.rs485 is None and app.lte is None:
        return "link=fail:no link configured (config.json link)"
    before = app.hb_acks
    start = time.ticks_ms()
    app.sender.hb_due = start  # a heartbeat now; the gateway ACKs it
    app.pending.set()
    while time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
        if app.hb_acks > before:
            log.info("selftest: heartbeat round trip to the gateway in %d ms" % time.ticks_diff(time.ticks_ms(), start))
            return "link=pass"
        hw.wdt_feed()  # armed by a firmware stopped at the REPL: the test is the main loop now
        await asyncio.sleep_ms(_POLL_MS)
    why = "no ACK from the gateway in %d s" % (timeout_ms // 1000)
    if app.lte is not None and not app.lte.up and app.lte.last_error:
        why += "; lte: " + app.lte.last_error
    elif app.rs485 is not None and not app.rs485.polls:
        why += "; never polled on RS-485 (check the bus address and cable)"
    return "link=fail:" + why


def report(lines):
    """The RESULT data: the lines joined by newlines, details cut so the
    whole fits a frame."""
    out = b""
    for line in lines:
        b = line.encode()
        room = _MAX_REPORT - len(out) - (1 if out else 0)
        if len(b) > room:
            b = b[: max(0, room)]
            if not b:
                break
        out = out + (b"\n" if out else b"") + b
    return out


async def run(app):
    """The COMMAND selftest of a running box: the lines."""
    lines = check_inputs(app.board, app)
    lines.append(check_light(app.board))
    lines.append(check_flash(app))
    lines.append(await check_link(app, _LINK_CMD_TIMEOUT_MS))
    return lines


def command(app, m):
    """The selftest COMMAND: commands.py hands it over and App.on_frame
    calls this once commands.py has left RAM (the two never share the
    heap). The checks run as a task; App.on_frame drops this module from
    sys.modules at once, and its code leaves RAM when the task ends."""
    asyncio.create_task(_command(app, m))


async def _command(app, m):
    try:
        lines = await run(app)
    except Exception as e:  # a MemoryError on a tight heap: the gateway hears of it
        # (and asyncio does not keep this task, and this module, with the error)
        lines = ["selftest=fail:%r" % (e,)]
    app.result(m, "fail" if [l for l in lines if "=fail" in l] else "ok", report(lines))


async def _cli(link_timeout_ms):
    import config

    cfg = None
    why = None
    try:
        cfg = config.load()
        board = config.load_board(cfg["board"], cfg["box_id"])
        log.set_box(cfg["box_id"])
    except config.ConfigError as e:
        why = str(e)
        cfg = None
        board = config.load_board(_DEFAULT_BOARD)
    hw.init(board)
    await hw.start()
    await asyncio.sleep_ms(_SETTLE_MS)
    for line in check_inputs(board):
        print(line)
    print(check_light(board))
    print(check_flash())
    if cfg is None:
        print("link=fail:not provisioned: %s" % why)
        return
    import app as app_mod
    import bringup

    app = app_mod.App(cfg, board)
    bringup.prepare(app)
    tasks = bringup.start_links(app)
    try:
        print(await check_link(app, link_timeout_ms))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.sleep_ms(_POLL_MS)  # let the links close their UARTs


def cli(link_timeout_ms=LINK_TIMEOUT_MS):
    """Run every item from the REPL (the firmware stopped) and print one
    line per item. A stopped firmware leaves its tasks in asyncio's queue:
    a fresh event loop drops them, before and after."""
    asyncio.new_event_loop()
    try:
        asyncio.run(_cli(link_timeout_ms))
    finally:
        asyncio.new_event_loop()
