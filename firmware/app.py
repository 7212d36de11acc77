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

Memory (docs/firmware.md): rarely used code is imported when needed and
dropped again: config.py at boot (main.py, before this module), commands.py
per COMMAND, selftest.py per self-test, the LTE modules and sms.py only on a
box configured for LTE.
"""

import gc
import sys
import time
import struct
import asyncio
import binascii

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


import wire
import log
import hw
from debounce import Debouncer, SAMPLE_MS, EV_PRESS, EV_RELEASE, EV_STUCK, EV_UNSTUCK
from outbox import Outbox
from sender import Sender
import feedback

FW_VERSION = "1.0.0"
_BEACON_MS = const(50)  # light and buzzer pattern resolution
_WDT_MS = const(8000)  # machine.WDT timeout
_FEED_MS = const(1000)  # the main loop's period
_STALL_MS = const(3000)  # a task silent this long = unhealthy: stop feeding
_MAX_RESULTS = const(4)  # queued command results
_HEAP_LOG_MS = const(10000)  # heap figures in the log this often
_KIND_EMERGENCY = const(1)
_KIND_PANIC = const(2)
_KIND_TAMPER = const(3)
_KIND_FAULT = const(6)
BUTTONS = ("emergency", "panic", "tamper")
# The gateway's replay window and the last request executed, persisted when
# a COMMAND is accepted (commands.save_replay; protocol.md 3.3, 5.5): top u32, seen bitmap u32,
# last request i32 (-1: none).
REPLAY_PATH = "replay.dat"
REPLAY_FMT = ">IIi"


def _kind(name):
    return _KIND_EMERGENCY if name == "emergency" else (_KIND_PANIC if name == "panic" else _KIND_TAMPER)


def drop_module(name):
    """Forget a lazily imported module so its bytecode can be collected."""
    try:
        del sys.modules[name]
    except KeyError:
        pass


class App:
    def __init__(self, cfg, board):
        self.cfg = cfg
        self.board = board
        self.box_id = cfg["box_id"]
        self.bus_addr = cfg["bus_addr"]
        self.key = wire.BoxKey(binascii.unhexlify(cfg["key"]))
        self.pending = asyncio.Event()
        now = time.ticks_ms()
        self.boot_ms = now
        self.boot_reason = hw.reset_cause()
        self.boot_reported = False
        self.outbox = Outbox("outbox.log", cfg["event_start"], write=hw.flash_write)
        self.counter = 0
        self.replay = wire.ReplayWindow()
        self.last_request = -1  # the last COMMAND request executed
        self.last_result = None  # and its RESULT payload (RAM only)
        self.sender = Sender(cfg["heartbeat_s"] * 1000, now)
        self.beacon = feedback.Beacon(now)
        self.shown = None
        self.faults = []
        self.inputs = []
        for name in BUTTONS:
            if name in board["inputs"]:
                stuck = 0 if name == "tamper" else cfg["stuck_s"] * 1000
                active = board["inputs"][name].get("active", 0)
                self.inputs.append((name, active, Debouncer(stuck_ms=stuck)))
        self.clock_base = None  # (wall seconds, ticks ms) from time sync
        self.results = []
        self.links = []
        self.rs485 = None
        self._slot_alarm = None  # event sent in the last RS-485 slot, until the next POLL
        self.lte = None
        self.hb_acks = 0  # heartbeats acknowledged since boot (self-test link round trip)
        self._hb_sent = (None, now)  # (counter, ticks) of the last heartbeat
        self._alive = {"inputs": now, "beacon": now}
        self.reset_at = None
        self._rand = 0
        self.born = {}  # event -> ticks when the box first had it (SMS fallback)
        self.sms_sent = []  # events already sent by SMS
        self.heap_peak = 0
        self._heap_logged = now

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

    def _active_link(self):
        if self.rs485 is not None and (self.lte is None or self.rs485.polled_within(self.cfg["backup_after_s"] * 1000)):
            return self.rs485
        return self.lte

    def _due(self, now):
        return self.sender.next(self.outbox.pending, now) is not None or self.results

    def next_up_frame(self, link):
        if link is not self._active_link() and link is not self.rs485:
            return None
        now = time.ticks_ms()
        if link is self.rs485:
            if self._slot_alarm is not None:
                self.sender.slot_missed(self._slot_alarm, now)
                self._slot_alarm = None
        item = self.sender.next(self.outbox.pending, now)
        frame = None
        if item is not None and item[0] == "alarm":
            a = item[1]
            self._rand = (self._rand * 1103515245 + 12345) & 0x7FFFFFFF
            tries = self.sender.sent_alarm(a[0], now, self._rand >> 8)
            log.info("sending alarm %d (%s) on %s, try %d" % (a[0], wire.ALARM_KINDS.get(a[1], a[1]), link.name, tries))
            frame = self._frame(wire.MSG_ALARM, struct.pack(">IBBIH", a[0], a[1], a[2], a[3], a[4]), link)
            if link is self.rs485:
                self._slot_alarm = a[0]
        elif self.results:
            frame = self._frame(wire.MSG_RESULT, self.results.pop(0), link)
        elif item is not None:
            self.sender.sent_hb(now)
            frame = self._frame(wire.MSG_HEARTBEAT, wire.pack_payload(self.heartbeat(link)), link)
            self._hb_sent = (self.counter, now)
        # The LTE link asks once per wake-up (link.py): more to send now?
        if frame is not None and self._due(now):
            self.pending.set()
        return frame

    def idle_frame(self, link):
        return self._frame(wire.MSG_IDLE, b"", link)

    def _frame(self, mtype, payload, link):
        self.counter += 1
        try:
            self.outbox.reserve_counter(self.counter)
        except OSError as e:
            self._flash_fault(e)
        addr = self.bus_addr if link is self.rs485 else wire.ADDR_NONE
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
                    self._flash_fault(e)
                    done = self.outbox._drop(ev)
                if done:
                    log.info("alarm %d acknowledged by the gateway (%s) via %s" % (ev, m["status"], link.name))
                    if m["status"] == "refused":
                        log.error("the gateway refused alarm %d: check the box's provisioning" % ev)
                self.born.pop(ev, None)
                if ev in self.sms_sent:
                    self.sms_sent.remove(ev)
                self.beacon.ack(ev, now)
                self._show(now)
            elif m["acked_type"] == "HEARTBEAT":
                if m["acked_counter"] == self._hb_sent[0]:
                    self.sender.got_hb_ack(now, self._hb_sent[1])
                    self.boot_reported = True
                    self.hb_acks += 1
        elif m["type"] == "CALL_STATE":
            log.info("call %s for event %d (prompt %s)" % (m["state"], m["event"], m["prompt"]))
            self.beacon.call(m["state"], m["event"], now)
            self._show(now)
        elif m["type"] == "COMMAND":
            # Rare: the handlers live in commands.py, loaded for this command
            # and dropped after it (a 64 KiB heap cannot keep them resident).
            import commands

            try:
                commands.handle(self, f, m)
            finally:
                drop_module("commands")

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
        self.beacon.set_fault([f for f in self.faults if f not in ("clock_unsynced", "link_backup")])

    def _flash_fault(self, e):
        if "flash" not in self.faults:
            log.error("flash write failed: %r; alarms are kept in RAM only" % (e,))
        self.set_fault("flash", True)

    def heartbeat(self, link):
        power, mv = hw.power()
        tamper = False
        for name, active, deb in self.inputs:
            if name == "tamper":
                tamper = bool(deb.state)
        secs, ms, synced = self.wall()
        faults = list(self.faults)
        if link is self.lte and self.rs485 is not None and "link_backup" not in faults:
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
            "boot_reason": "none" if self.boot_reported else self.boot_reason,
            "faults": faults,
            "time_s": secs if synced else 0,
        }

    def raise_alarm(self, kind, restore=False):
        secs, ms, synced = self.wall()
        flags = (wire.ALARM_FLAG_TIME_SYNCED if synced else 0) | (wire.ALARM_FLAG_RESTORE if restore else 0)
        try:
            ev = self.outbox.add(kind, flags, secs, ms)
        except OSError as e:
            self._flash_fault(e)
            ev = self.outbox.add_ram(kind, flags, secs, ms)
        if ev not in self.born:
            self.born[ev] = time.ticks_ms()
        log.info("alarm %d stored: %s%s" % (ev, wire.ALARM_KINDS.get(kind, kind), " restore" if restore else ""))
        self.pending.set()
        return ev

    def _show(self, now):
        light, buzzer = self.beacon.output(now)
        hw.output("light", light)
        hw.output("buzzer", buzzer)
        s = self.beacon.shown()
        if s != self.shown:
            self.shown = s
            hw.light_state(s)
            log.info("light %s" % s)

    def _on_input(self, name, ev, now):
        if ev == EV_PRESS:
            if name == "tamper":
                self.raise_alarm(_KIND_TAMPER)
                return
            self.beacon.press(None, now)
            self._show(now)
            lit_ms = time.ticks_diff(time.ticks_ms(), now)
            self.beacon.event = self.raise_alarm(_kind(name))
            log.info("%s pressed: light sending %d ms after the debounced press" % (name, lit_ms))
        elif ev == EV_RELEASE:
            if name == "tamper":
                self.raise_alarm(_KIND_TAMPER, True)
        elif ev == EV_STUCK:
            log.warning("%s button stuck closed: reported as a fault, presses ignored until released" % name)
            self.set_fault(name + "_stuck", True)
            self.raise_alarm(_KIND_FAULT)
            self._show(now)
        elif ev == EV_UNSTUCK:
            log.info("%s button released: fault cleared" % name)
            self.set_fault(name + "_stuck", False)
            self.raise_alarm(_KIND_FAULT, True)
            self._show(now)

    # ------------------------------------------------------------ tasks

    async def _inputs(self):
        while True:
            now = time.ticks_ms()
            for name, active, deb in self.inputs:
                lvl = 1 if hw.input_level(name) == active else 0
                ev = deb.update(lvl, now)
                if ev:
                    self._on_input(name, ev, now)
            self._alive["inputs"] = now
            await asyncio.sleep_ms(SAMPLE_MS)

    async def _beacon(self):
        while True:
            now = time.ticks_ms()
            self.beacon.tick(now)
            self._show(now)
            used = gc.mem_alloc()
            if used > self.heap_peak:
                self.heap_peak = used
            self._alive["beacon"] = now
            await asyncio.sleep_ms(_BEACON_MS)

    async def _schedule(self):
        while True:
            now = time.ticks_ms()
            if self.rs485 is not None:
                self.rs485.up = self.rs485.polled_within(self.cfg["backup_after_s"] * 1000)
            if self.lte is not None and self.rs485 is not None:
                self.set_fault("link_backup", self._active_link() is self.lte)
            if self._due(now):
                self.pending.set()
            if time.ticks_diff(now, self._heap_logged) >= _HEAP_LOG_MS:
                self._heap_logged = now
                gc.collect()
                log.info("heap: live %d B, peak %d B, free %d B" % (gc.mem_alloc(), self.heap_peak, gc.mem_free()))
            if self.reset_at is not None and time.ticks_diff(now, self.reset_at) >= 0:
                log.warning("rebooting on the gateway's command")
                hw.reset()
            await asyncio.sleep_ms(max(20, self.sender.wake_in_ms(self.outbox.pending, now, 500)))

    async def _run_link(self, link):
        failures = 0
        while True:
            try:
                await link.run()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                log.log(log.ERROR if failures == 1 else log.DEBUG, "%s link crashed: %r; restarting it" % (link.name, e))
                if failures == 1:
                    sys.print_exception(e)
                await asyncio.sleep_ms(min(1000 * failures, 30000))

    async def _watchdog(self):
        hw.wdt_start(_WDT_MS)
        warned = False
        while True:
            now = time.ticks_ms()
            stalled = [n for n in self._alive if time.ticks_diff(now, self._alive[n]) > _STALL_MS]
            if not stalled:
                hw.wdt_feed()
                warned = False
            elif not warned:
                log.error("%s task stalled: not feeding the watchdog" % ", ".join(stalled))
                warned = True
            await asyncio.sleep_ms(_FEED_MS)

    def _make_links(self):
        kind = self.cfg["link"]
        if "rs485" in kind:
            from link_rs485 import Rs485Link

            self.rs485 = Rs485Link(self, self.bus_addr, self.board["uarts"].get("rs485", {}))
            self.links.append(self.rs485)
        if "lte" in kind:
            try:
                from link_lte import LteLink
            except ImportError as e:
                log.error("no LTE link in this firmware (%r): deploy link_lte.py and at_modem.py" % (e,))
                return
            c = self.cfg
            self.lte = LteLink(
                self,
                lambda: hw.open_uart("modem"),
                c["gateway_host"],
                c["gateway_port"],
                apn=c["apn"] or "internet",
                sms_number=c["sms_number"] or None,
                box_id=self.box_id,
                answer_timeout_ms=c["lte_dead_s"] * 1000,
            )
            self.links.append(self.lte)

    def _load_replay(self):
        try:
            with open(REPLAY_PATH, "rb") as f:
                data = f.read()
        except OSError:
            return
        if len(data) != struct.calcsize(REPLAY_FMT):
            log.warning("%s has %d bytes, not %d: ignored" % (REPLAY_PATH, len(data), struct.calcsize(REPLAY_FMT)))
            return
        top, seen, req = struct.unpack(REPLAY_FMT, data)
        self.replay = wire.ReplayWindow(top, seen)
        self.last_request = req

    def boot(self):
        """Everything before the tasks start: outbox, counters, replay window,
        links. Also used by the self-test's link round trip."""
        try:
            torn = self.outbox.load()
        except OSError as e:
            self._flash_fault(e)
            torn = 0
        if torn:
            log.warning("outbox: a torn record (power cut during a write) was found and cut off; %d alarms intact" % len(self.outbox.pending))
        self.counter = self.outbox.counter_ceiling
        self._load_replay()
        if self.outbox.pending:
            log.info("outbox: %d unacknowledged alarms to deliver: %s" % (len(self.outbox.pending), [a[0] for a in self.outbox.pending]))
            self.pending.set()
        now = time.ticks_ms()
        for a in self.outbox.pending:
            self.born[a[0]] = now
        self.set_fault("clock_unsynced", True)
        self._make_links()

    def start_links(self):
        return [asyncio.create_task(self._run_link(link)) for link in self.links]

    async def run(self):
        await hw.start()
        log.info("firmware %s, board %s, link %s, boot reason %s" % (FW_VERSION, self.board.get("name"), self.cfg["link"], self.boot_reason))
        self.boot()
        now = time.ticks_ms()
        self._alive["inputs"] = now
        self._alive["beacon"] = now
        tasks = [asyncio.create_task(self._inputs()), asyncio.create_task(self._beacon()), asyncio.create_task(self._schedule())]
        tasks += self.start_links()
        if self.lte is not None:
            import sms

            tasks.append(asyncio.create_task(sms.fallback(self)))
        self._show(now)
        await self._watchdog()


def main(cfg, board):
    """Run the box (main.py loaded cfg and board with config.py first)."""
    hw.init(board)
    app = App(cfg, board)
    asyncio.run(app.run())
