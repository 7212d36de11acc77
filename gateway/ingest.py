"""Frame ingest, the gateway's core: verify -> replay window -> dedupe ->
decide ACK and events, then one commit per batch.

Transports hand pieces (COBS-encoded bytes between two 0x00) to `process()`
with the time; it returns an `Outcome` (the frame, the ACK to send once the
batch is committed, the events it made) or raises wire.WireError. `commit()`
writes the whole batch in one SQLite transaction; only after it returns may
the transports send the ACKs. If it raises StorageError, the replay windows go
back to where they were before the batch (the box will resend, perhaps with the
same counter), no ACK is sent, and gateway-made events are carried into the
next batch. No sleeping, no sockets: the shells (lte.py, rs485.py, app.py) do
the I/O and call this from the event loop.

Replay scheme (docs/gateway.md): per box, the highest uplink counter accepted
and the 24-bit window bitmap below it are written in the same transaction as
the frame's effects. After a crash the window is exactly what was committed:
a frame accepted but not committed was not ACKed, and accepting it again is
right (its alarm is deduplicated by event id anyway).
"""

import datetime
import json
import logging

from callbox_firmware import wire

from . import codec
from .observe import RateLimitedLog, kv
from .store import TX_RESERVE_BLOCK
from .supervision import merge_selftest

log = logging.getLogger(__name__)

_ACKED_TYPES = (wire.MSG_ALARM, wire.MSG_HEARTBEAT, wire.MSG_RESULT)
# A heartbeat that changes no state (only uptime, RSSI, battery mV within its
# band) updates the box's stored health at most this often: otherwise every
# heartbeat costs a JSON encode and a row write in the batch. After a crash
# the health report shows a snapshot at most this old until the next one.
HEALTH_PERSIST_S = 60.0
# A box whose clock (HEARTBEAT time_s) is unset or off by more than this gets
# a time_sync COMMAND (protocol.md 5.3), at most once per TIME_SYNC_EVERY_S.
TIME_SYNC_DRIFT_S = 2.0
TIME_SYNC_EVERY_S = 60.0
# A box's own trouble kinds that also have a state in supervision.
_BOX_KINDS = tuple(wire.ALARM_KINDS.values())


def iso(ts):
    """Epoch seconds -> '2026-11-28T19:20:01.123Z'."""
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def event_id(box_id, event):
    return "%08x-%08x" % (box_id, event)


class Outcome:
    __slots__ = ("frame", "ack", "events", "status")

    def __init__(self, frame, ack=None, events=(), status=None):
        self.frame = frame
        self.ack = ack  # message dict for wire.encode_message, or None
        self.events = list(events)
        self.status = status  # "stored" / "duplicate" for an ALARM


class Ingest:
    def __init__(self, registry, store, supervisor, sinks, metrics, on_event=None):
        self.registry = registry
        self.store = store
        self.sup = supervisor
        self.sinks = list(sinks)  # sink names: one outbox row each per event
        self.metrics = metrics
        self.on_event = on_event  # called with each committed event
        self.rlog = RateLimitedLog(log)
        self._windows = {}  # box_id -> wire.ReplayWindow
        self._tx = {}  # box_id -> [next counter, reserved up to]
        # The batch being built.
        self._events = []
        self._event_ids = set()
        self._touched = {}  # box_id -> (top, seen) before the batch
        self._states = set()
        self._carry = []  # gateway events whose commit failed
        self._durable = False  # the batch holds something a power cut must not take
        self._state_saved = {}  # box_id -> monotonic time its state was last written
        self._now = 0.0  # monotonic time of the latest frame or tick
        self._time_sync_at = {}  # box_id -> monotonic time of the last time_sync asked
        self.want_time_sync = None  # callable(box_id), set by the gateway
        self.batches = 0

    # ------------------------------------------------------------ keys, windows

    def forget(self, box_id):
        """The box was revoked or re-keyed: drop cached windows and counters."""
        self._windows.pop(box_id, None)
        self._tx.pop(box_id, None)
        self._state_saved.pop(box_id, None)

    def _window(self, box_id):
        w = self._windows.get(box_id)
        if w is None:
            top, seen, _ = self.store.load_replay(box_id)
            w = self._windows[box_id] = wire.ReplayWindow(top, seen)
        return w

    # ------------------------------------------------------------ one frame

    def reject(self, e, link):
        """Count and (rate-limited) log a rejected piece."""
        self.metrics.inc("frames_rejected", reason=e.reason, link=link)
        if e.reason in (wire.E_UNKNOWN_BOX, wire.E_AUTH, wire.E_REPLAY):
            self.rlog.warning((e.reason, e.box_id), "frame_rejected", reason=e.reason, box=e.box_id, link=link, detail=e.detail)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(kv("frame_rejected", reason=e.reason, link=link, detail=e.detail))

    def process(self, piece, link, now, wall, bus_addr=None, conn_box=None):
        """Decode and judge one piece. Raises wire.WireError (already counted).

        bus_addr: the address just polled (RS-485); conn_box: the box this LTE
        connection belongs to, or None before its first good frame."""
        self._now = now
        try:
            frame = codec.decode_frame(piece, self.registry.key_for, expect_down=False)
            if conn_box is not None and frame.box_id != conn_box:
                raise wire.WireError(wire.E_TYPE, "frame for box %d on box %d's connection" % (frame.box_id, conn_box), frame.box_id)
            if bus_addr is not None:
                # The frame must come from the bus address the box is
                # registered at. It may be a late reply from another box on
                # the bus (it answered after its own slot ended): that frame
                # is authenticated, so it is judged like any other and its
                # ACK goes out in that box's next slot (rs485.BusMaster).
                box = self.registry.get(frame.box_id)
                if box is None or frame.addr != box.bus_addr:
                    raise wire.WireError(wire.E_TYPE, "frame from address %d, box registered at %s (poll of %d)" % (
                        frame.addr, box.bus_addr if box else "no address", bus_addr), frame.box_id)
            w = self._window(frame.box_id)
            if frame.box_id not in self._touched:
                self._touched[frame.box_id] = w.state()
            w.accept(frame.counter, frame.box_id)
        except wire.WireError as e:
            self.reject(e, link)
            raise
        self.metrics.inc("frames_accepted", type=frame.type_name, link=link)
        box_id = frame.box_id
        out = Outcome(frame)
        for ch in self.sup.seen(box_id, now):
            out.events.append(self._gateway_event(ch, wall, link))
        m = frame.msg
        t = frame.mtype
        if t == wire.MSG_ALARM:
            eid = event_id(box_id, m["event"])
            if eid in self._event_ids or self.store.has_event(eid):
                out.status = "duplicate"
                self.metrics.inc("alarms_duplicate")
            else:
                out.status = "stored"
                ev = self._box_event(frame, eid, wall, link)
                self._event_ids.add(eid)
                out.events.append(ev)
                if m["kind"] in ("tamper", "power", "battery"):
                    self.sup.box_alarm(box_id, m["kind"], m["restore"], now)
                box = self.registry.get(box_id)
                if box is not None and m["event"] < box.event_start:
                    self.rlog.warning(("event_start", box_id), "alarm_below_event_start", box=box_id, alarm_event=m["event"], event_start=box.event_start,
                                      hint="the box's event counter was not set on replacement; check provisioning")
            out.ack = {"type": "ACK", "acked_type": "ALARM", "acked_counter": frame.counter, "event": m["event"], "status": out.status}
        elif t == wire.MSG_HEARTBEAT:
            for ch in self.sup.heartbeat(box_id, m, now, wall):
                out.events.append(self._gateway_event(ch, wall, link))
            if abs(m["time_s"] - wall) > TIME_SYNC_DRIFT_S and self.want_time_sync is not None:
                last = self._time_sync_at.get(box_id)
                if last is None or now - last >= TIME_SYNC_EVERY_S:
                    self._time_sync_at[box_id] = now
                    self.want_time_sync(box_id)
            out.ack = {"type": "ACK", "acked_type": "HEARTBEAT", "acked_counter": frame.counter, "event": 0, "status": "stored"}
        elif t == wire.MSG_RESULT:
            s = self.sup.boxes[box_id]
            res = {"time": iso(wall), "request": m["request"], "op": m["op"], "status": m["status"], "data": m["data"].hex()}
            if m["op"] == "selftest":
                merge_selftest(s.health, "box", {"time": iso(wall), "passed": m["status"] == "ok", "items": _selftest_items(m["data"])})
            s.health["last_result"] = res
            self._durable = True
            out.ack = {"type": "ACK", "acked_type": "RESULT", "acked_counter": frame.counter, "event": m["request"], "status": "stored"}
        # IDLE: nothing to ACK; it only proves the box is alive.
        self._events.extend(e for e in out.events if e["_source"] == "gateway")
        # The box's supervision state goes to disk when something a restart
        # must know changed (online, troubles, a result); a heartbeat that
        # only refreshes health (uptime, RSSI) at most every HEALTH_PERSIST_S.
        if out.events or t == wire.MSG_ALARM or t == wire.MSG_RESULT or now - self._state_saved.get(box_id, -HEALTH_PERSIST_S) >= HEALTH_PERSIST_S:
            self._states.add(box_id)
        return out

    def supervise(self, now, wall):
        """Periodic supervision tick: offline boxes become gateway events in
        the next batch."""
        self._now = now
        evs = [self._gateway_event(ch, wall, "gateway") for ch in self.sup.tick(now)]
        self._events.extend(evs)
        for ev in evs:
            self._states.add(ev["box_id"])
        return evs

    def _box_event(self, frame, eid, wall, link):
        m = frame.msg
        box = self.registry.get(frame.box_id)
        if m["time_synced"]:
            press = m["time_s"] + m["time_ms"] / 1000.0
        else:
            # Uptime-based: place it against the box's last heartbeat uptime.
            press = wall
            h = self.sup.boxes.get(frame.box_id)
            if h is not None and h.health.get("last_heartbeat"):
                box_uptime_now = h.health["uptime_s"] + (wall - h.health["last_heartbeat"])
                press = min(wall, wall - (box_uptime_now - (m["time_s"] + m["time_ms"] / 1000.0)))
        ev = self._event_base(frame.box_id, box, eid, m["kind"], m["restore"], wall, link)
        ev["press_time"] = iso(press)
        ev["press_time_synced"] = bool(m["time_synced"])
        ev["_source"] = "box"
        ev["_event"] = m["event"]
        self._events.append(ev)
        return ev

    def _gateway_event(self, change, wall, link):
        box_id, kind, restore = change
        box = self.registry.get(box_id)
        ev = self._event_base(box_id, box, None, kind, restore, wall, link if link != "gateway" else (box.link if box else "none"))
        ev["press_time"] = iso(wall)
        ev["press_time_synced"] = True
        ev["_source"] = "gateway"
        return ev

    def _event_base(self, box_id, box, eid, kind, restore, wall, link):
        return {
            "event_id": eid, "box_id": box_id, "junction": box.junction if box else "", "lat": box.lat if box else None,
            "lon": box.lon if box else None, "kind": kind, "restore": bool(restore), "press_time": None, "press_time_synced": True,
            "received_time": iso(wall), "link": link, "snapshot_url": None, "clip": None, "_received_s": wall,
        }

    # ------------------------------------------------------------ the batch

    def pending(self):
        return bool(self._events or self._touched or self._states or self._carry)

    def commit(self):
        """Write the batch; return the committed events. Raises StorageError
        (nothing written; windows restored; no ACK may be sent)."""
        events = self._carry + self._events
        touched = self._touched
        states = self._states

        def tx():
            for ev in events:
                if ev["event_id"] is None:
                    ev["event_id"] = "%08x-g%d" % (ev["box_id"], self.store.next_gateway_seq())
                self.store.add_event(ev, self.sinks)
            for box_id in touched:
                top, seen = self._windows[box_id].state()
                self.store.save_rx(box_id, top, seen)
            for box_id in states:
                s = self.sup.boxes.get(box_id)
                if s is not None:
                    self.store.save_state(box_id, s.persist())
                    saved[box_id] = self._now

        saved = {}
        durable = bool(events) or self._durable
        self._events, self._event_ids, self._touched, self._states, self._durable = [], set(), {}, set(), False
        try:
            self.store.transaction(tx, durable=durable)
        except Exception:  # StorageError, or a bug: either way nothing was kept
            self._restore_windows(touched)
            gw = [e for e in events if e["_source"] == "gateway"]
            for e in gw:
                if e["event_id"] and "-g" in e["event_id"]:
                    e["event_id"] = None  # its sequence number was rolled back too
            self._carry = gw
            self._states |= states
            self.metrics.inc("commit_failures")
            raise
        self._carry = []
        self._state_saved.update(saved)
        self.batches += 1
        self.metrics.inc("commits")
        for ev in events:
            self.metrics.inc("events_stored", kind=ev["kind"], source=ev["_source"])
            log.info(kv("event_stored", box=ev["box_id"], event_id=ev["event_id"], kind=ev["kind"], restore=ev["restore"], link=ev["link"]))
            if self.on_event is not None:
                self.on_event(ev)
        return events

    def abort(self):
        """Drop the batch without writing (the transport died before commit):
        windows go back, no ACKs."""
        self._restore_windows(self._touched)
        self._events, self._event_ids, self._touched = [e for e in self._events if e["_source"] == "gateway"], set(), {}

    def _restore_windows(self, touched):
        """Put the replay windows back to their state before the batch."""
        for box_id, (top, seen) in touched.items():
            if box_id in self._windows:
                self._windows[box_id] = wire.ReplayWindow(top, seen)

    # ------------------------------------------------------------ downlink

    def encode_down(self, box_id, msg, addr=0):
        """Encode a gateway->box frame with the box's next downlink counter."""
        box = self.registry.get(box_id)
        if box is None:
            raise wire.WireError(wire.E_UNKNOWN_BOX, "not registered", box_id)
        c = self._tx.get(box_id)
        if c is None:
            _, _, reserved = self.store.load_replay(box_id)
            c = self._tx[box_id] = [reserved, reserved]
        if c[0] >= c[1]:
            upto = c[0] + TX_RESERVE_BLOCK
            self.store.transaction(lambda: self.store.reserve_tx(box_id, upto))
            c[1] = upto
        n = c[0]
        c[0] += 1
        return wire.encode_message(box.key, msg, box_id, n, addr)


def _selftest_items(data):
    """RESULT data of a self-test: the firmware's lines 'item=pass' or
    'item=fail:detail' (firmware/selftest.py), a JSON object {"flash": "pass",
    ...} (earlier firmware), or 'speaker=pass,mic=fail'. Values are kept as
    sent ("fail:no ACK"). Anything else is kept as hex under "raw"."""
    items = {}
    try:
        text = bytes(data).decode("ascii")
    except UnicodeDecodeError:
        return {"raw": bytes(data).hex()}
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return {"raw": bytes(data).hex()}
        if isinstance(obj, dict):
            return {str(k): str(v) for k, v in obj.items()}
        return {"raw": bytes(data).hex()}
    for part in text.split("\n") if "\n" in text else text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            items[k.strip()] = v.strip()
    return items
