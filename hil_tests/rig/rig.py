"""The HIL rig: boxes, links, gateway and console wired together, and the
bookkeeping that proves "every alarm arrives exactly once, with its press
time".

    rig = VirtualRig(env, workdir)
    rig.start(boxes=4, link="rs485")      # bus, gateway, console, 4 virtual boxes
    p = rig.press(rig.boxes[0], "panic")  # a Press: rig time of the contact
    rig.release(rig.boxes[0], "panic")
    report = rig.check(timeout=30)        # waits, then lost / duplicated / latencies
    rig.stop()

The same methods drive a real bench (BenchRig, through the rig controller
firmware on a serial port): tests do not know which one they have.

Latency figures, all from the rig's clock (time.monotonic for the ACK, the
wall clock for the console, because the console stores its own wall time):

- press-to-ACK: the press (the command that closed the contact) to the last
  byte of the gateway's ACK for that alarm on the link (decoded by the rig
  with the box's key from what the bus or the LTE emulator carried);
- press-to-console: the press to `console_time`, when the console stored the
  incident (read from its database).
"""

import collections
import hashlib
import logging
import os
import pathlib
import threading
import time

from callbox_firmware import wire

from .services import ConsoleProc, ConsoleView, GatewayProc, free_port

log = logging.getLogger(__name__)

GATEWAY_ID = "gw-hil"
FIRST_BOX_ID = 0x1001
JUNCTIONS = (
    "Ghantaghar Square", "Gaushala Second Square", "Bagiya Crossing", "IIT Gate Tiraha", "Rocket Tiraha",
    "Bekarganj Square", "Baghi Chowk Tiraha", "Gopal Tiraha", "Fire Service (Fazalganj) Tiraha", "Bhatia Tiraha",
    "Lenin Park Square", "Sangeet Talkies Tiraha", "Chandrika Devi Mandir Square", "Bansmandi Square",
    "Pirod Tiraha", "Rambagh Square", "Ashok Nagar Square", "Swaroop Nagar Square", "Rajiv Petrol Pump Square",
    "Sales Tax Square", "Mainavati Marg Tiraha", "Singhpur Turn", "Silverton Tiraha", "Kabaddi Square",
    "Nahariya Square", "MG College Square", "IMA Tiraha", "Sainik Square", "Pashupati Nagar Square",
    "Machrali Gate Tiraha", "Keshav Nagar Square", "Gaushala First Square",
)
KIND_OF_BUTTON = {"emergency": "emergency", "panic": "panic"}
# The console's press time is the box's clock: wall time after a time sync,
# else its uptime placed against the last heartbeat (docs/protocol.md). The
# gateway sends no time_sync yet, so allow the heartbeat's 1 s resolution
# plus scheduling.
PRESS_TIME_TOLERANCE_S = 1.5


class RigError(RuntimeError):
    """The rig could not do what a test asked; the message names the box."""


class Press:
    """One alarm the rig caused, and what became of it."""

    __slots__ = ("box", "kind", "mono", "wall", "ack_mono", "incidents", "optional")

    def __init__(self, box, kind, mono, wall, optional=False):
        # optional: a press the box may not have stored (power cut during its
        # flash write): not lost if it never arrives, never more than once.
        self.optional = optional
        self.box = box
        self.kind = kind
        self.mono = mono
        self.wall = wall
        self.ack_mono = None
        self.incidents = []

    @property
    def ack_ms(self):
        return None if self.ack_mono is None else (self.ack_mono - self.mono) * 1000.0

    @property
    def console_ms(self):
        if not self.incidents:
            return None
        return (self.incidents[0]["console_time"] - self.wall) * 1000.0

    def __repr__(self):
        return "Press(box %d %s at %.3f)" % (self.box.box_id, self.kind, self.wall)


class Report:
    """The outcome of a scenario: per press, and the totals the summary table
    and the latency benchmark print."""

    def __init__(self, presses, extra_incidents):
        self.presses = presses
        self.extra = extra_incidents  # incidents no press accounts for
        self.lost = [p for p in presses if not p.incidents and not p.optional]
        self.duplicated = sum(max(0, len(p.incidents) - 1) for p in presses) + len(extra_incidents)
        self.delivered = sum(1 for p in presses if p.incidents)

    def latencies(self, which):
        return sorted(v for v in (getattr(p, which) for p in self.presses) if v is not None)

    def figures(self):
        return {"presses": len(self.presses), "delivered": self.delivered, "lost": len(self.lost),
                "duplicated": self.duplicated, "ack_ms": percentiles(self.latencies("ack_ms")),
                "console_ms": percentiles(self.latencies("console_ms"))}

    def explain(self):
        out = []
        for p in self.lost:
            out.append("LOST: %r; box log:\n%s" % (p, p.box.tail()))
        for p in self.presses:
            if len(p.incidents) > 1:
                out.append("DUPLICATED: %r -> %s" % (p, [i["event_id"] for i in p.incidents]))
        for i in self.extra:
            out.append("EXTRA incident no press explains: %s box %d %s" % (i["event_id"], i["box_id"], i["kind"]))
        return "\n".join(out)


def percentiles(values):
    """p50/p95/p99/max in ms (nearest-rank), None when there is nothing."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    v = sorted(values)

    def rank(q):
        k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
        return round(v[k], 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(v[-1], 1)}


def _iso_epoch(s):
    import datetime

    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class BoxHandle:
    """One box on the rig: its identity, and the part that runs it (a
    VirtualBox, or a real board behind the rig controller)."""

    def __init__(self, index, box_id, key, link, bus_addr, junction):
        self.index = index
        self.box_id = box_id
        self.key = key  # raw bytes; never logged
        self.wire_key = wire.BoxKey(key)
        self.link = link
        self.bus_addr = bus_addr
        self.junction = junction
        self.vbox = None
        self.modem = None
        self.endpoint = "box%d" % box_id

    def tail(self, n=25):
        return self.vbox.tail(n) if self.vbox is not None else "(no console log)"

    def registry_record(self):
        rec = {"box_id": self.box_id, "key": self.key.hex(), "junction": self.junction, "link": self.link,
               "lat": 26.45 + self.index * 0.001, "lon": 80.33 + self.index * 0.001}
        if self.link == "rs485":
            rec["bus_addr"] = self.bus_addr
        return rec

    def __repr__(self):
        return "box %d (%s, %s)" % (self.box_id, self.junction, self.link)


class AckTap:
    """Decodes the gateway's downlink as a link carries it and timestamps
    each ACK for an ALARM: (box_id, event) -> time of its last byte."""

    def __init__(self, boxes):
        self.keys = {b.box_id: b.wire_key for b in boxes}
        self.readers = collections.defaultdict(wire.FrameReader)
        self.acks = {}
        self.cond = threading.Condition()

    def feed(self, stream, t, data):
        for piece in self.readers[stream].feed(data):
            try:
                f = wire.decode_frame(piece, self.keys.get, expect_down=True)
            except wire.WireError:
                continue
            if f.mtype == wire.MSG_ACK and f.msg["acked_type"] == "ALARM":
                with self.cond:
                    self.acks.setdefault((f.box_id, f.msg["event"]), t)
                    self.cond.notify_all()


class VirtualRig:
    kind = "virtual"

    def __init__(self, env, workdir):
        self.env = env
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.boxes = []
        self.presses = []
        self.bus = None
        self.lte = None
        self.modems = None
        self.gateway = None
        self.console = None
        self.view = None
        self.tap = None
        self.controller = None
        self.link = None
        self.reports = []  # (name, Report) for the run report

    # ------------------------------------------------------------ assembly

    def start(self, boxes=1, link="rs485", ber=None, lte=None, start_boxes=True, flash_delay_ms=0):
        """Bring up the chain: link emulator, console, gateway, boxes."""
        from .controller import VirtualRigController

        if link not in ("rs485", "lte"):
            raise RigError("link %r: use rs485 or lte" % (link,))
        t = self.env.timing
        self.link = link
        for i in range(boxes):
            key = hashlib.sha256(os.urandom(32)).digest()  # fresh per run: nothing secret in the repo
            self.boxes.append(BoxHandle(i, FIRST_BOX_ID + i, key, link, i + 1, JUNCTIONS[i % len(JUNCTIONS)]))
        self.tap = AckTap(self.boxes)
        http_port, console_port = free_port(), free_port()
        token = os.urandom(32).hex()
        gw_cfg = {
            "gateway_id": GATEWAY_ID, "data_dir": str(self.workdir / "gateway"),
            "http": {"host": "127.0.0.1", "port": http_port, "admin_token": os.urandom(16).hex(), "console_token": token},
            "lte": {"enabled": link == "lte", "host": "127.0.0.1", "port": free_port() if link == "lte" else 0,
                    "idle_timeout_s": float(t["heartbeat_s"] * 3)},
            "supervision": {"heartbeat_interval_s": float(t["heartbeat_s"]), "missed_heartbeats": int(t["missed_heartbeats"]),
                            "tick_s": 0.5},
            "storage": {"synchronous": "FULL"},
            "sinks": [{"type": "console", "name": "console", "url": "http://127.0.0.1:%d" % console_port, "token": token,
                       "timeout_s": 5.0, "health_interval_s": float(t.get("health_interval_s", 2.0))}],
            "boxes": [b.registry_record() for b in self.boxes],
        }
        if link == "rs485":
            from .rs485_bus import Rs485Bus

            r = self.env.rs485
            self.bus = Rs485Bus(baud=r["baud"], ber=r["ber"] if ber is None else ber, turnaround_zero=r["turnaround_zero"],
                                seed=r.get("seed", 1)).start()
            gw_url = self.bus.add_tcp("gateway", position=0)
            for b in self.boxes:
                b.url = self.bus.add_tcp(b.endpoint, position=b.index + 1)
            self.bus.on_transmit.append(lambda talker, end, data: talker == "gateway" and self.tap.feed("bus", end, data))
            gw_cfg["rs485"] = {"url": gw_url, "baud": r["baud"], "turnaround_ms": float(r["turnaround_ms"])}
        else:
            from .lte_net import LteNet
            from .modem_pool import ModemPool

            cfg = dict(self.env.lte)
            cfg.update(lte or {})
            self.lte = LteNet("127.0.0.1", gw_cfg["lte"]["port"], latency_ms=cfg["latency_ms"], jitter_ms=cfg["jitter_ms"],
                              loss=cfg["loss"], connect_timeout_s=cfg.get("connect_timeout_s", 10.0), seed=cfg.get("seed", 1)).start()
            self.lte.on_data.append(lambda direction, at, data, conn: direction == "down" and self.tap.feed(conn, at, data))
            self.modems = ModemPool().start()
            for b in self.boxes:
                b.modem = self.modems.add("box%d" % b.box_id)
                b.url = b.modem.url
        self.console = ConsoleProc(self.workdir / "console", console_port, GATEWAY_ID, token, "http://127.0.0.1:%d" % http_port).start()
        self.view = ConsoleView(self.console.db_path)
        self.gateway = GatewayProc(self.workdir / "gateway", gw_cfg, forward_base_s=t["forward_base_s"],
                                   forward_cap_s=t["forward_cap_s"]).start()
        self.controller = VirtualRigController(self)
        for b in self.boxes:
            self._make_vbox(b, flash_delay_ms)
        if start_boxes:
            self.start_boxes(self.boxes)
        return self

    def _make_vbox(self, b, flash_delay_ms=0):
        from .virtual_box import VirtualBox

        t = self.env.timing
        cfg = {"box_id": b.box_id, "key": b.key.hex(), "junction": b.junction, "heartbeat_s": int(t["heartbeat_s"]),
               "event_start": 1, "log_level": "info"}
        if b.link == "rs485":
            cfg.update({"board": self.env.boxes["board_rs485"], "link": "rs485", "bus_addr": b.bus_addr})
            b.vbox = VirtualBox(self.workdir / ("box%d" % b.box_id), config=cfg, rs485_url=b.url, flash_delay_ms=flash_delay_ms,
                                heapsize=self.env.boxes.get("heapsize") or None, name="box %d" % b.box_id,
                                romfs=bool(self.env.boxes.get("romfs")), compiled=bool(self.env.boxes.get("romfs")))
        else:
            cfg.update({"board": self.env.boxes["board_lte"], "link": "lte", "bus_addr": 1, "gateway_host": "127.0.0.1",
                        "gateway_port": self.lte.port, "apn": "internet", "sms_number": "+910000000000"})
            b.vbox = VirtualBox(self.workdir / ("box%d" % b.box_id), config=cfg, modem_url=b.url, flash_delay_ms=flash_delay_ms,
                                heapsize=self.env.boxes.get("heapsize") or None, name="box %d" % b.box_id,
                                romfs=bool(self.env.boxes.get("romfs")), compiled=bool(self.env.boxes.get("romfs")))

    def start_boxes(self, boxes, timeout=60.0):
        for b in boxes:
            b.vbox.start()
        for b in boxes:
            b.vbox.wait_ready(timeout)
        self.wait_online(boxes, timeout)

    def wait_online(self, boxes, timeout=60.0):
        """Until the gateway has heard from each box (its light shows idle and
        the gateway reports it online)."""
        deadline = time.monotonic() + timeout
        want = {b.box_id for b in boxes}
        while True:
            try:
                h = self.gateway.health()
            except OSError:
                h = {}
            online = self.online_boxes()
            if want <= online:
                return
            crashed = [b for b in boxes if b.vbox is not None and any("firmware crashed" in l for l in b.vbox.log[-200:])]
            if crashed:
                raise RigError("%s: the firmware crashed while booting; its console:\n%s" % (crashed[0], crashed[0].tail(25)))
            if time.monotonic() > deadline:
                missing = sorted(want - online)
                tails = "\n".join("%s:\n%s" % (b, b.tail(10)) for b in boxes if b.box_id in missing)
                raise RigError("boxes %s not online at the gateway within %.0f s (gateway health %s)\n%s\ngateway log:\n%s" % (
                    missing, timeout, h, tails, self.gateway.tail()))
            time.sleep(0.2)

    def online_boxes(self):
        """Boxes the console shows online with a heartbeat: the gateway heard
        them and its health report reached the control room."""
        out = set()
        for b in self.boxes:
            row = self.view.box(b.box_id)
            if row and row["online"] and row["last_heartbeat"]:
                out.add(b.box_id)
        return out

    def stop(self):
        for b in self.boxes:
            if b.vbox is not None:
                try:
                    b.vbox.stop()
                except Exception:
                    log.exception("stopping %s", b)
        for svc in (self.gateway, self.console):
            if svc is not None:
                svc.stop()
        if self.bus is not None:
            self.bus.stop()
        if self.lte is not None:
            self.lte.stop()
        if self.modems is not None:
            self.modems.stop()

    # ------------------------------------------------------------ stimuli

    def press(self, box, button, hold_s=None):
        """Close the contact; returns the Press the rig will account for."""
        p = self._record(box, button)
        self.controller.press(box, button)
        if hold_s is not None:
            time.sleep(hold_s)
            self.controller.release(box, button)
        return p

    def release(self, box, button):
        self.controller.release(box, button)

    def trace(self, box, button, steps, counts_as_press=True, optional=False):
        """Play a contact trace [(level, ms), ...]; the press time is the first
        closed step. counts_as_press=False for traces that must NOT raise an
        alarm (spikes: an incident from one counts as a duplicate);
        optional=True for a press that may be lost by design."""
        offset = 0
        for level, ms in steps:
            if level:
                break
            offset += ms
        p = None
        if counts_as_press:
            p = self._record(box, button, offset / 1000.0, optional)
        self.controller.trace(box, button, steps)
        return p

    def _record(self, box, button, offset_s=0.0, optional=False):
        p = Press(box, KIND_OF_BUTTON[button], time.monotonic() + offset_s, time.time() + offset_s, optional)
        self.presses.append(p)
        return p

    # ------------------------------------------------------------ checking

    def check(self, timeout=60.0, presses=None, settle_s=1.0, name=None):
        """Wait until every press has reached the console (or timeout), then
        a little longer for duplicates, and account for every incident."""
        presses = self.presses if presses is None else presses
        boxes = {b.box_id for b in self.boxes}
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.view.incidents(kinds=("emergency", "panic"), restore=False) if r["box_id"] in boxes]
            by_box = collections.Counter((r["box_id"], r["kind"]) for r in rows)
            need = collections.Counter((p.box.box_id, p.kind) for p in self.presses if not p.optional)
            if all(by_box[k] >= n for k, n in need.items()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(settle_s)
        rows = [r for r in self.view.incidents(kinds=("emergency", "panic"), restore=False) if r["box_id"] in boxes]
        # Match every press of the run (an earlier phase's incidents are not
        # extras of this one); report on the ones asked about.
        everything = self._match(self.presses, rows)
        report = Report(presses, everything.extra)
        self.reports.append((name, report))
        return report

    def _match(self, presses, rows):
        """Pair presses and incidents per (box, kind) in order: the box's
        event ids rise with its presses."""
        for p in presses:
            p.incidents = []
        extra = []
        groups = collections.defaultdict(list)
        for p in sorted(presses, key=lambda p: p.mono):
            groups[(p.box.box_id, p.kind)].append(p)
        rows_by = collections.defaultdict(list)
        for r in rows:
            rows_by[(r["box_id"], r["kind"])].append(r)
        for k, rs in rows_by.items():
            rs.sort(key=lambda r: int(r["event_id"].split("-")[1], 16) if "-g" not in r["event_id"] else 0)
            ps = groups.get(k, [])
            for i, r in enumerate(rs):
                if i < len(ps):
                    ps[i].incidents.append(r)
                else:
                    extra.append(r)
        with self.tap.cond:
            for p in presses:
                if p.incidents:
                    ev = int(p.incidents[0]["event_id"].split("-")[1], 16)
                    p.ack_mono = self.tap.acks.get((p.box.box_id, ev))
        return Report(presses, extra)

    def assert_delivered_once(self, report):
        """Every press at the console exactly once, with its press time."""
        assert report.lost == [], report.explain()
        assert report.duplicated == 0, report.explain()
        for p in report.presses:
            if p.optional and not p.incidents:
                continue
            err = self.press_time_error_s(p)
            assert err is not None and abs(err) <= PRESS_TIME_TOLERANCE_S, \
                "%r: console press time is %s s off the rig's press time" % (p, err)

    def press_time_error_s(self, p):
        """Console press time minus the rig's press time, in seconds."""
        if not p.incidents or not p.incidents[0]["press_time"]:
            return None
        return _iso_epoch(p.incidents[0]["press_time"]) - p.wall


class BenchRig(VirtualRig):
    """Real boards on a bench: the rig controller presses their buttons and
    switches their power, the gateway runs here on a USB RS-485 adapter, the
    console here too. Boxes are provisioned already (their keys in key_file)."""

    kind = "real"

    def start(self, boxes=1, link="rs485", ber=None, lte=None, start_boxes=True, flash_delay_ms=0):
        from .controller import SerialRigController

        if link != "rs485":
            raise RigError("the example bench has RS-485 boxes only; add LTE boxes to the environment file first")
        bench = self.env.bench_boxes[:boxes]
        if len(bench) < boxes:
            raise RigError("the test wants %d boxes; %s lists %d in [[bench_boxes]]" % (boxes, self.env.path, len(bench)))
        t = self.env.timing
        self.link = link
        for i, spec in enumerate(bench):
            key = bytes.fromhex(pathlib.Path(spec["key_file"]).read_text().strip())
            self.boxes.append(BoxHandle(i, spec["box_id"], key, "rs485", spec.get("bus_addr", i + 1), JUNCTIONS[i % len(JUNCTIONS)]))
        self.tap = AckTap(self.boxes)
        http_port, console_port = free_port(), free_port()
        token = os.urandom(32).hex()
        gw_cfg = {
            "gateway_id": GATEWAY_ID, "data_dir": str(self.workdir / "gateway"),
            "http": {"host": "127.0.0.1", "port": http_port, "admin_token": os.urandom(16).hex(), "console_token": token},
            "lte": {"enabled": False},
            "rs485": {"url": self.env.rs485["gateway_port"], "baud": self.env.rs485["baud"], "turnaround_ms": float(self.env.rs485["turnaround_ms"])},
            "supervision": {"heartbeat_interval_s": float(t["heartbeat_s"]), "missed_heartbeats": int(t["missed_heartbeats"]), "tick_s": 0.5},
            "sinks": [{"type": "console", "name": "console", "url": "http://127.0.0.1:%d" % console_port, "token": token,
                       "timeout_s": 5.0, "health_interval_s": float(t.get("health_interval_s", 2.0))}],
            "boxes": [b.registry_record() for b in self.boxes],
        }
        self.console = ConsoleProc(self.workdir / "console", console_port, GATEWAY_ID, token, "http://127.0.0.1:%d" % http_port).start()
        self.view = ConsoleView(self.console.db_path)
        self.gateway = GatewayProc(self.workdir / "gateway", gw_cfg, forward_base_s=t["forward_base_s"], forward_cap_s=t["forward_cap_s"]).start()
        channels = {spec["box_id"]: spec["lines"] for spec in bench}
        self.controller = SerialRigController(self.env.rig["controller_port"], channels, self.env.rig.get("controller_baud", 115200))
        if start_boxes:
            for b in self.boxes:
                self.controller.power(b, True)
            self.wait_online(self.boxes, 120)
        return self

    def stop(self):
        if self.controller is not None and hasattr(self.controller, "close"):
            self.controller.close()
        super().stop()
