"""Bring the box up once hw.start() has run: App.run imports this module
for boot() and it drops itself once the tasks run, so its code leaves RAM
(docs/firmware.md, memory); main.py's part of the boot is in startup.py.

    boot(app)         the boot log line, then prepare(app), then the tasks
    prepare(app)      the parts App uses (inputs, outbox, sender, beacon,
                      links), frame counter, replay window (also for the
                      self-test from the REPL: selftest.cli)
    start_links(app)  one task per link, restarted if it crashes
"""

import sys
import time
import asyncio

import hw
import log


def boot(app):
    """After hw.start(): everything before App.run's main loop."""
    from app import FW_VERSION

    log.info("firmware %s, board %s, link %s, boot reason %s" % (FW_VERSION, app.board.get("name"), app.cfg["link"], app.boot_reason))
    prepare(app)
    now = time.ticks_ms()
    app.alive = now  # the watchdog counts from here
    asyncio.create_task(app.pins_task())
    start_links(app)
    if app.lte is not None:
        import sms

        asyncio.create_task(sms.fallback(app))
    app.show(now)
    sys.modules.pop("bringup", None)  # (App.run drops its name for it too)


def prepare(app):
    """The parts App uses (inputs, outbox, sender, beacon, links), the frame
    counter and the replay window, before any frame."""
    from app import BUTTONS
    from debounce import Debouncer
    from outbox import Outbox
    from sender import Sender
    from feedback import Beacon

    cfg = app.cfg
    now = time.ticks_ms()
    app.outbox = Outbox("outbox.log", cfg["event_start"], write=hw.flash_write)
    app.sender = Sender(cfg["heartbeat_s"] * 1000, now)
    app.beacon = Beacon(now)
    inputs = app.board["inputs"]
    for name in BUTTONS:
        if name in inputs:
            stuck = 0 if name == "tamper" else cfg["stuck_s"] * 1000  # the door may stay open
            app.inputs.append((name, inputs[name].get("active", 0), Debouncer(stuck_ms=stuck)))
    try:
        torn = app.outbox.load()
    except OSError as e:
        app.flash_fault(e)
        torn = 0
    alarms = app.outbox.pending
    if torn:
        log.warning("outbox: a torn record (power cut during a write) was found and cut off; %d alarms intact" % len(alarms))
    app.counter = app.outbox.counter_ceiling
    import replay

    replay.load(app)
    sys.modules.pop("replay", None)
    if alarms:
        log.info("outbox: %d unacknowledged alarms to deliver: %s" % (len(alarms), [a[0] for a in alarms]))
        app.pending.set()
    _make_links(app)


def _make_links(app):
    cfg = app.cfg
    if "rs485" in cfg["link"]:
        from link_rs485 import Rs485Link

        app.rs485 = Rs485Link(app, cfg["bus_addr"], app.board["uarts"].get("rs485", {}))
    if "lte" in cfg["link"]:
        try:
            from link_lte import LteLink
        except ImportError as e:
            log.error("no LTE link in this firmware (%r): deploy link_lte.py and at_modem.py" % (e,))
            return
        import sms

        app.lte = LteLink(
            app,
            sms.open_modem,
            cfg["gateway_host"],
            cfg["gateway_port"],
            apn=cfg["apn"] or "internet",
            sms_number=cfg["sms_number"] or None,
            box_id=app.box_id,
            answer_timeout_ms=cfg["lte_dead_s"] * 1000,
        )


def start_links(app):
    """One task per configured link (App.run_link restarts a crashed one)."""
    return [asyncio.create_task(app.run_link(link)) for link in (app.rs485, app.lte) if link is not None]
