"""The box application: inputs, outbox, sender, beacon, links, watchdog.

App is the `host` of firmware/link.py: links call next_up_frame, idle_frame,
on_frame, decode and log, and wait on `pending`. The pure cores (debounce,
outbox, sender, feedback) hold the logic; this file is the asyncio shell that
samples pins, keeps time, and moves frames.

Order on a press (the citizen sees it at once, the alarm survives a power
cut): debounced press -> beacon "sending" on the light pin -> alarm appended
to the outbox on flash -> `pending` set -> sent on the next poll (RS-485) or
at once (LTE) -> retried with backoff until the gateway's ACK -> outbox
entry marked done -> beacon "received". An alarm still unacknowledged after
cfg["sms_after_s"] also goes out once as an SMS when the box has a modem.

Memory (docs/firmware.md): this module holds only what the running box
needs. Boot-time code is in startup.py and bringup.py (imported for boot
and dropped: config, the parts, replay window, links, the tasks); COMMANDs in commands.py
(config_set in config.py, the self-test in selftest.py), loaded per COMMAND
and dropped; the LTE modules and sms.py only on a box configured for LTE.
"""

import gc
import sys
import time
import struct
import asyncio
import binascii

from micropython import const  # app.py runs only on MicroPython

import wire
import log
import hw
import debounce

FW_VERSION = "1.0.0"
_BEACON_MS = const(50)  # light and buzzer pattern resolution
_WDT_MS = const(8000)  # machine.WDT timeout
_FEED_MS = const(1000)  # the watchdog is fed this often
_STALL_MS = const(3000)  # the pin task silent this long = unhealthy: stop feeding
_HEAP_LOG_MS = const(10000)  # heap figures in the log this often
_MAX_RESULTS = const(4)  # queued COMMAND results
_KIND_TAMPER = const(3)
_KIND_FAULT = const(6)
# The inputs, in the order of their wire alarm kinds (1, 2, 3).
BUTTONS = ("emergency", "panic", "tamper")


class App:
    def __init__(self, cfg, board):
        self.cfg = cfg
        self.board = board
        self.box_id = cfg["box_id"]
        # The key's hex leaves cfg: RAM keeps one copy of the secret, and
        # config_get cannot return it.
        self.key = wire.BoxKey(binascii.unhexlify(cfg.pop("key")))
        self.pending = asyncio.Event()
        now = time.ticks_ms()
        self.boot_ms = now
        self.boot_reason = hw.reset_cause()  # "none" once a heartbeat carried it
        # The parts, built by bringup.prepare from cfg and the board:
        self.outbox = None  # outbox.Outbox: the alarms on flash
        self.sender = None  # sender.Sender: what to send next, and when
        self.beacon = None  # feedback.Beacon: the light and the buzzer
        self.inputs = []  # (name, active level, debounce.Debouncer) per button
        self.rs485 = None  # link_rs485.Rs485Link, if configured
        self.lte = None  # link_lte.LteLink, if configured
        # Frames and COMMANDs:
        self.counter = 0  # the last frame counter used
        self.replay = wire.ReplayWindow()  # the gateway's counters seen
        self.last_request = -1  # the last COMMAND request executed
        self.last_result = None  # and its RESULT payload (RAM only)
        self.results = []  # RESULT payloads to send (result())
        self.reset_at = None  # ticks of a reset the gateway asked for
        self.clock_base = None  # (wall ms, ticks ms) from time sync
        self.slot_alarm = None  # event sent in the last RS-485 slot, until the next POLL
        self.hb_acks = 0  # heartbeats acknowledged since boot (self-test link round trip)
        self.hb_sent = (None, now)  # (counter, ticks) of the last heartbeat
        # State:
        self.shown = None  # the light state last reported
        self.faults = []  # the box's own: "<button>_stuck", "flash" (the light shows them)
        self.alive = now  # when the pin task last ran (watchdog)

    # ------------------------------------------------------------ host API

    def log(self, level, msg):
        if isinstance(level, str):  # the LTE modules name their levels
            level = log.NAMES.index(level) if level in log.NAMES else log.INFO
        log.log(level, msg)

    def decode(self, piece):
        f = wire.decode_frame(piece, self._key_for, True)
        if f.box_id is not None:  # a short POLL has no counter (protocol.md 5.6)
            try:
                self.replay.accept(f.counter, self.box_id)
            except wire.WireError:
                if f.mtype == wire.MSG_COMMAND:
                    log.warning("refused a replayed COMMAND (counter %d, gateway's highest %d)" % (f.counter, self.replay.top))
                raise
        return f

    def _key_for(self, box_id):
        return self.key if box_id == self.box_id else None

    def next_up_frame(self, link):
        rs485 = self.rs485
        if link is not rs485 and rs485 is not None and rs485.polled_within(self.cfg["backup_after_s"] * 1000):
            return None  # LTE is the backup path: it waits while RS-485 is polled
        now = time.ticks_ms()
        if link is rs485 and self.slot_alarm is not None:
            self.sender.slot_missed(self.slot_alarm, now)
            self.slot_alarm = None
        item = self.sender.next(self.outbox.pending, now)
        frame = None
        if item is not None and item[0] == "alarm":
            a = item[1]
            # Jitter from the microsecond clock: boxes on one bus never share it.
            tries = self.sender.sent_alarm(a[0], now, time.ticks_us())
            log.info("sending alarm %d (%s) on %s, try %d" % (a[0], wire.ALARM_KINDS.get(a[1], a[1]), link.name, tries))
            frame = self._frame(wire.MSG_ALARM, struct.pack(">IBBIH", *a), link)
            if link is rs485:
                self.slot_alarm = a[0]
        elif self.results:
            frame = self._frame(wire.MSG_RESULT, self.results.pop(0), link)
        elif item is not None:
            self.sender.sent_hb(now)
            frame = self._frame(wire.MSG_HEARTBEAT, wire.pack_payload(self.heartbeat(link)), link)
            self.hb_sent = (self.counter, now)
        # The LTE link asks once per wake-up (link.py): more to send now?
        if frame is not None and (self.results or self.sender.next(self.outbox.pending, now)):
            self.pending.set()
        return frame

    def idle_frame(self, link):
        return self._frame(wire.MSG_IDLE, b"", link)

    def _frame(self, mtype, payload, link):
        self.counter += 1
        try:
            self.outbox.reserve_counter(self.counter)
        except OSError as e:
            self.flash_fault(e)
        addr = self.cfg["bus_addr"] if link is self.rs485 else wire.ADDR_NONE
        return wire.encode_frame(self.key, mtype, self.box_id, self.counter, payload, addr)

    def on_frame(self, f, link):
        m = f.msg
        now = time.ticks_ms()
        if m["type"] == "ACK":
            if m["acked_type"] == "ALARM":
                ev = m["event"]
                self.sender.acked_alarm(ev)
                try:
                    done = self.outbox.done(ev)
                except OSError as e:
                    self.flash_fault(e)
                    done = self.outbox._drop(ev)
                if done:  # "refused" (an error: check the box's provisioning) ends the alarm too
                    log.log(log.ERROR if m["status"] == "refused" else log.INFO, "alarm %d acknowledged by the gateway (%s) via %s" % (ev, m["status"], link.name))
                self.beacon.ack(ev, now)
                self.show(now)
            elif m["acked_type"] == "HEARTBEAT":
                if m["acked_counter"] == self.hb_sent[0]:
                    self.sender.got_hb_ack(now, self.hb_sent[1])
                    self.boot_reason = "none"  # the gateway has it
                    self.hb_acks += 1
        elif m["type"] == "CALL_STATE":
            log.info("call %s, event %d, prompt %s" % (m["state"], m["event"], m["prompt"]))
            self.beacon.call(m["state"], m["event"], now)
            self.show(now)
        elif m["type"] == "COMMAND":
            # Rare: the handlers live in commands.py, loaded for this command
            # and dropped after it (a 64 KiB heap cannot keep them resident).
            # config_set and selftest, with more code, run from their own
            # module, loaded only once commands.py has left RAM. A collection
            # before each load: a module's code is allocated in pieces of a few
            # hundred bytes, which fit only in the heap's larger free runs.
            gc.collect()
            import commands

            try:
                then = commands.handle(self, m)
            finally:
                sys.modules.pop("commands", None)
            del commands  # (this name alone would keep it in RAM)
            if then is not None:
                gc.collect()
                try:
                    __import__(then).command(self, m)
                finally:
                    sys.modules.pop(then, None)

    def result(self, m, status, data=b""):
        """Queue the RESULT of COMMAND m (also kept for a retransmission)."""
        payload = wire.pack_payload({"type": "RESULT", "request": m["request"], "op": m["op"], "status": status, "data": data})
        self.last_result = payload
        if len(self.results) >= _MAX_RESULTS:
            self.results.pop(0)
        self.results.append(payload)
        self.pending.set()

    # ------------------------------------------------------------ state

    def wall(self):
        """(seconds, ms, synced): wall clock after a time sync, else uptime."""
        now = time.ticks_ms()
        if self.clock_base is None:
            t = time.ticks_diff(now, self.boot_ms)
            return (t // 1000, t % 1000, False)
        t = self.clock_base[0] + time.ticks_diff(now, self.clock_base[1])
        return (t // 1000, t % 1000, True)

    def set_fault(self, name, on):
        if on and name not in self.faults:
            self.faults.append(name)
        elif not on and name in self.faults:
            self.faults.remove(name)
        self.beacon.set_fault(self.faults)

    def flash_fault(self, e):
        if "flash" not in self.faults:
            log.error("flash failed: %r; alarms in RAM" % (e,))
        self.set_fault("flash", True)

    def heartbeat(self, link):
        power, mv = hw.power()
        tamper = False
        for name, active, deb in self.inputs:
            if name == "tamper":
                tamper = bool(deb.state)
        secs, ms, synced = self.wall()
        # Two more faults for the gateway only (not on the light): no time
        # sync yet, and traffic on LTE while the box has RS-485.
        faults = list(self.faults)
        if not synced:
            faults.append("clock_unsynced")
        if link is self.lte and self.rs485 is not None:
            faults.append("link_backup")
        return {
            "type": "HEARTBEAT",
            "uptime_s": time.ticks_diff(time.ticks_ms(), self.boot_ms) // 1000,
            "power": power,
            "battery_mv": mv,
            "tamper": tamper,
            "link": link.name,
            "rssi_dbm": max(-128, min(127, link.rssi_dbm)),
            "fw": FW_VERSION,
            "outbox": len(self.outbox.pending),
            "boot_reason": self.boot_reason,
            "faults": faults,
            "time_s": secs if synced else 0,
        }

    def raise_alarm(self, kind, restore=False):
        secs, ms, synced = self.wall()
        flags = (wire.ALARM_FLAG_TIME_SYNCED if synced else 0) | (wire.ALARM_FLAG_RESTORE if restore else 0)
        try:
            ev = self.outbox.add(kind, flags, secs, ms)
        except OSError as e:
            self.flash_fault(e)
            ev = self.outbox.add_ram(kind, flags, secs, ms)
        log.info("alarm %d stored: %s%s" % (ev, wire.ALARM_KINDS.get(kind, kind), " restore" if restore else ""))
        self.pending.set()
        return ev

    def show(self, now):
        light, buzzer = self.beacon.output(now)
        hw.output("light", light)
        hw.output("buzzer", buzzer)
        s = self.beacon.shown()
        if s != self.shown:
            self.shown = s
            hw.light_state(s)
            log.info("light %s" % s)

    def _on_input(self, name, ev, now):
        if name == "tamper":  # door opened (press), closed (release); no stuck timer
            self.raise_alarm(_KIND_TAMPER, ev == debounce.EV_RELEASE)
        elif ev == debounce.EV_PRESS:
            self.beacon.press(None, now)
            self.show(now)
            lit_ms = time.ticks_diff(time.ticks_ms(), now)
            self.beacon.event = self.raise_alarm(BUTTONS.index(name) + 1)
            log.info("%s pressed: light sending %d ms after the debounced press" % (name, lit_ms))
        elif ev != debounce.EV_RELEASE:  # stuck closed, or released after that
            stuck = ev == debounce.EV_STUCK
            if stuck:
                log.warning("%s button stuck closed: a fault, presses ignored until released" % name)
            else:
                log.info("%s released: fault cleared" % name)
            self.set_fault(name + "_stuck", stuck)
            self.raise_alarm(_KIND_FAULT, not stuck)
            self.show(now)

    # ------------------------------------------------------------ tasks

    async def pins_task(self):
        """Sample the inputs every SAMPLE_MS (5 ms); every _BEACON_MS drive
        the light and buzzer and note the heap's peak."""
        beacon_at = heap_at = time.ticks_ms()
        peak = 0
        while True:
            now = time.ticks_ms()
            for name, active, deb in self.inputs:
                ev = deb.update(1 if hw.input_level(name) == active else 0, now)
                if ev:
                    self._on_input(name, ev, now)
            if time.ticks_diff(now, beacon_at) >= _BEACON_MS:
                beacon_at = now
                self.beacon.tick(now)
                self.show(now)
                peak = max(peak, gc.mem_alloc())
                if time.ticks_diff(now, heap_at) >= _HEAP_LOG_MS:
                    heap_at = now
                    gc.collect()
                    log.info("heap: live %d B, peak %d B, free %d B" % (gc.mem_alloc(), peak, gc.mem_free()))
            self.alive = now
            await asyncio.sleep_ms(debounce.SAMPLE_MS)

    async def run_link(self, link):
        """Run a link for good: a crashed one is logged and restarted."""
        failures = 0
        while True:
            try:
                await link.run()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                try:
                    log.log(log.ERROR if failures == 1 else log.DEBUG, "%s link crashed: %r; restarting" % (link.name, e))
                    if failures == 1:
                        sys.print_exception(e)
                except MemoryError:
                    pass  # a full heap must not end the link for good: it restarts below
                await asyncio.sleep_ms(min(1000 * failures, 30000))

    async def run(self):
        """Boot (bringup.py starts the pin task and the links), then the
        main loop: the links' state, `pending` when something is due, a
        reboot the gateway asked for, and the watchdog, fed only while the
        pin task keeps running."""
        await hw.start()
        import bringup

        bringup.boot(self)
        del bringup  # its code leaves RAM (bringup.boot dropped the module)
        gc.collect()  # now, before the links' first UART loads asyncio's stream module
        hw.wdt_start(_WDT_MS)
        fed = time.ticks_ms()
        warned = False
        while True:
            now = time.ticks_ms()
            if self.rs485 is not None:
                self.rs485.up = self.rs485.polled_within(self.cfg["backup_after_s"] * 1000)
            if self.results or self.sender.next(self.outbox.pending, now):
                self.pending.set()  # something is due: wake the LTE link
            if self.reset_at is not None and time.ticks_diff(now, self.reset_at) >= 0:
                log.warning("rebooting on the gateway's command")
                hw.reset()
            if time.ticks_diff(now, self.alive) <= _STALL_MS:
                if time.ticks_diff(now, fed) >= _FEED_MS:
                    fed = now
                    hw.wdt_feed()
                warned = False
            elif not warned:
                log.error("pin task stalled: wdt not fed")
                warned = True
            await asyncio.sleep_ms(max(20, self.sender.wake_in_ms(self.outbox.pending, now, 500)))
