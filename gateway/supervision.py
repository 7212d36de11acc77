"""Supervision: which boxes are alive, and which are in trouble. A pure core:
every call takes the time; nothing here sleeps or does I/O.

- A box is `offline` (communication trouble, console kind "offline") when no
  authenticated frame has come from it for `missed_heartbeats` heartbeat
  intervals; the first authenticated frame after that restores it.
- Tamper, mains power and battery are troubles with a state each. A box
  reports them itself (an ALARM of kind tamper/power/battery, restore flag for
  the clear), and in every HEARTBEAT (tamper bit, power source, battery mV).
  The box's own ALARM sets the state and is forwarded as the box's event; a
  heartbeat that disagrees with the known state (the box's ALARM was lost, or
  older firmware) makes a gateway event. So each change is reported once in the
  usual order (ALARM first, heartbeats later agree with it).

Changes are returned as (box_id, kind, restore) tuples; the ingest turns them
into gateway-made events.
"""

TROUBLE_KINDS = ("tamper", "power", "battery")
# Health keys that do not come from the heartbeat and survive the next one.
_KEPT_HEALTH = ("selftest", "selftest_parts", "last_result")


def fault_names(faults):
    """HEARTBEAT faults as strings. The codec names the bits it knows
    ("flash", "emergency_stuck") and passes unknown bits (newer firmware) as
    integers: those become "unknown_0x40", so sorting, joining and JSON on
    the way to the console never meet a mix of types."""
    if not faults:
        return []  # the usual case, on the per-heartbeat path
    out = []
    for f in faults:
        if isinstance(f, str):
            out.append(f)
        elif isinstance(f, int) and not isinstance(f, bool):
            out.append("unknown_0x%02x" % f)
        else:
            out.append(str(f))
    return out


def merge_selftest(health, part, result):
    """Put one self-test result ("box": buttons and flash from the box's
    RESULT; "audio": the gateway's speaker/mic tone loopback) into a box's
    health, and recompute health["selftest"]: the newest time, passed only
    if every part passed, the items of all parts together."""
    parts = dict(health.get("selftest_parts") or {})
    parts[part] = result
    health["selftest_parts"] = parts
    items = {}
    times = []
    passed = True
    for name in sorted(parts):
        r = parts[name] or {}
        items.update({str(k): v for k, v in (r.get("items") or {}).items()})
        if r.get("time"):
            times.append(str(r["time"]))
        passed = passed and bool(r.get("passed"))
    merged = {"time": max(times) if times else None, "passed": passed, "items": items}
    reasons = [str(parts[n]["reason"]) for n in sorted(parts) if (parts[n] or {}).get("reason")]
    if reasons:
        merged["reason"] = "; ".join(reasons)
    health["selftest"] = merged
    return merged


class BoxSupervision:
    __slots__ = ("online", "last_seen", "troubles", "health")

    def __init__(self, now, online=True, troubles=None, health=None):
        self.online = online
        self.last_seen = now  # a box gets a full timeout after the gateway starts
        self.troubles = dict(troubles or {"tamper": False, "power": False, "battery": False})
        self.health = dict(health or {})

    def persist(self):
        return {"online": self.online, "troubles": self.troubles, "health": self.health}


class Supervisor:
    def __init__(self, heartbeat_interval_s=60.0, missed_heartbeats=3, battery_low_mv=11500, battery_ok_mv=12000):
        self.heartbeat_interval_s = heartbeat_interval_s
        self.missed_heartbeats = missed_heartbeats
        self.battery_low_mv = battery_low_mv
        self.battery_ok_mv = battery_ok_mv
        self.boxes = {}

    @property
    def offline_after_s(self):
        return self.heartbeat_interval_s * self.missed_heartbeats

    def add(self, box_id, now, persisted=None):
        if box_id in self.boxes:
            return self.boxes[box_id]
        p = persisted or {}
        s = BoxSupervision(now, p.get("online", True), p.get("troubles"), p.get("health"))
        self.boxes[box_id] = s
        return s

    def remove(self, box_id):
        self.boxes.pop(box_id, None)

    def seen(self, box_id, now):
        """An authenticated frame arrived. Returns changes."""
        s = self.boxes.get(box_id) or self.add(box_id, now)
        s.last_seen = now
        if not s.online:
            s.online = True
            return [(box_id, "offline", True)]
        return []

    def box_alarm(self, box_id, kind, restore, now):
        """The box reported a trouble itself (its ALARM is its event)."""
        s = self.boxes.get(box_id) or self.add(box_id, now)
        if kind in TROUBLE_KINDS:
            s.troubles[kind] = not restore

    def heartbeat(self, box_id, hb, now, wall):
        """A HEARTBEAT's fields; returns the trouble changes it reveals."""
        s = self.boxes.get(box_id) or self.add(box_id, now)
        health = {
            "last_heartbeat": wall, "uptime_s": hb["uptime_s"], "power": hb["power"], "battery_mv": hb["battery_mv"],
            "tamper": hb["tamper"], "link": hb["link"], "rssi_dbm": hb["rssi_dbm"], "fw": hb["fw"], "outbox": hb["outbox"],
            "boot_reason": hb["boot_reason"], "faults": fault_names(hb["faults"]),
        }
        for k in _KEPT_HEALTH:
            if k in s.health:
                health[k] = s.health[k]
        health.setdefault("selftest", None)
        s.health = health
        out = []
        seen_state = {"tamper": bool(hb["tamper"]), "power": hb["power"] == "battery"}
        mv = hb["battery_mv"]
        if mv and mv < self.battery_low_mv:
            seen_state["battery"] = True
        elif mv >= self.battery_ok_mv:
            seen_state["battery"] = False
        # Between the two thresholds the battery keeps its state (hysteresis).
        for kind in TROUBLE_KINDS:
            if kind in seen_state and seen_state[kind] != s.troubles[kind]:
                s.troubles[kind] = seen_state[kind]
                out.append((box_id, kind, not seen_state[kind]))
        return out

    def tick(self, now):
        """Boxes that just went silent for too long."""
        out = []
        limit = self.offline_after_s
        for box_id, s in self.boxes.items():
            if s.online and now - s.last_seen > limit:
                s.online = False
                out.append((box_id, "offline", False))
        return out
