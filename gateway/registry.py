"""The box registry: who may talk to this gateway, with which key, from where.

Boxes are added and revoked at run time (admin API) and persisted in the
store. A revoked box's frames are rejected as `unknown_box` at once, and its
LTE connection is closed by the listener."""

import math

from callbox_firmware import wire

from .errors import RegistryError

# "rs485+lte": a box on the bus with an LTE backup. It is polled on the bus,
# and its LTE connection is accepted too (any registered box's is: the key is
# what authenticates). An alarm that arrives on both is deduplicated by its
# event id like any resend.
LINK_NAMES = ("rs485", "lte", "rs485+lte")


def on_bus(link):
    """True for links the RS-485 master polls ("rs485", "rs485+lte")."""
    return link in ("rs485", "rs485+lte")


class Box:
    __slots__ = ("box_id", "key", "junction", "lat", "lon", "link", "bus_addr", "event_start")

    def __init__(self, box_id, key, junction, lat, lon, link, bus_addr, event_start=0):
        self.box_id = box_id
        self.key = key  # wire.BoxKey; its repr hides the secret
        self.junction = junction
        self.lat = lat
        self.lon = lon
        self.link = link
        self.bus_addr = bus_addr
        self.event_start = event_start

    def __repr__(self):
        return "Box(%d %r %s addr=%d key=<secret>)" % (self.box_id, self.junction, self.link, self.bus_addr)

    def public(self):
        """The record without its key (admin API listings, health reports)."""
        return {"box_id": self.box_id, "junction": self.junction, "lat": self.lat, "lon": self.lon, "link": self.link, "bus_addr": self.bus_addr, "event_start": self.event_start}


def validate(rec):
    """Check an admin-API or config record; return the normalised record
    (key as lower-case hex). Raises RegistryError naming the field."""
    if not isinstance(rec, dict):
        raise RegistryError("a box record must be a JSON object")
    box_id = rec.get("box_id")
    if not isinstance(box_id, int) or isinstance(box_id, bool) or not 0 < box_id <= 0xFFFFFFFF:
        raise RegistryError("box_id %r must be an integer 1..4294967295" % (box_id,))
    key_hex = rec.get("key")
    try:
        key = bytes.fromhex(key_hex)
    except (TypeError, ValueError):
        raise RegistryError("key must be hex (32 random bytes = 64 hex digits); generate one with `callbox provision`", box_id) from None
    if not 16 <= len(key) <= 64:
        raise RegistryError("key is %d bytes; use 16..64 (32 recommended)" % len(key), box_id)
    link = rec.get("link", "lte")
    if link not in LINK_NAMES:
        raise RegistryError("link %r must be one of %s" % (link, ", ".join(LINK_NAMES)), box_id)
    addr = rec.get("bus_addr", 0)
    if not isinstance(addr, int) or isinstance(addr, bool):
        raise RegistryError("bus_addr %r must be an integer" % (addr,), box_id)
    if on_bus(link) and not 1 <= addr <= wire.ADDR_MAX:
        raise RegistryError("bus_addr %d must be 1..%d for a box on the RS-485 bus (link %s)" % (addr, wire.ADDR_MAX, link), box_id)
    if link == "lte" and addr != 0 and not 1 <= addr <= wire.ADDR_MAX:
        raise RegistryError("bus_addr %d out of range" % addr, box_id)
    out = {"box_id": box_id, "key_hex": key.hex(), "junction": str(rec.get("junction", "")), "link": link, "bus_addr": addr}
    for k in ("lat", "lon"):
        v = rec.get(k)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
            raise RegistryError("%s %r must be a number" % (k, v), box_id)
        out[k] = None if v is None else float(v)
    es = rec.get("event_start", 0)
    if not isinstance(es, int) or isinstance(es, bool) or es < 0:
        raise RegistryError("event_start %r must be a non-negative integer" % (es,), box_id)
    out["event_start"] = es
    return out


class Registry:
    def __init__(self, store):
        self.store = store
        self._boxes = {}
        self._by_addr = {}
        self.listeners = []  # callables(box_id, box or None) on add/revoke
        for r in store.load_boxes():
            if not r["revoked"]:
                self._install(r)

    def _install(self, r):
        box = Box(r["box_id"], wire.BoxKey(bytes.fromhex(r["key_hex"])), r["junction"], r["lat"], r["lon"], r["link"], r["bus_addr"], r["event_start"])
        old = self._boxes.get(box.box_id)
        if old is not None and on_bus(old.link):
            self._by_addr.pop(old.bus_addr, None)
        self._boxes[box.box_id] = box
        if on_bus(box.link):
            self._by_addr[box.bus_addr] = box.box_id
        return box

    def add(self, rec, now=0.0):
        r = validate(rec)
        other = self._by_addr.get(r["bus_addr"]) if on_bus(r["link"]) else None
        if other is not None and other != r["box_id"]:
            raise RegistryError("bus address %d is already box %d; revoke it first or pick a free address" % (r["bus_addr"], other), r["box_id"])
        old_key = self.store.box_key_hex(r["box_id"])
        self.store.put_box(r, now)
        if old_key is not None and old_key != r["key_hex"]:
            # A replaced box (new key) counts its frames from 0 again; frames
            # under the old key no longer verify, so nothing can be replayed.
            self.store.reset_rx(r["box_id"])
        box = self._install(r)
        for fn in self.listeners:
            fn(box.box_id, box)
        return box

    def revoke(self, box_id):
        self.store.revoke_box(box_id)
        box = self._boxes.pop(box_id, None)
        if box is not None and on_bus(box.link):
            self._by_addr.pop(box.bus_addr, None)
        for fn in self.listeners:
            fn(box_id, None)

    def get(self, box_id):
        return self._boxes.get(box_id)

    def key_for(self, box_id):
        b = self._boxes.get(box_id)
        return None if b is None else b.key

    def by_addr(self, addr):
        box_id = self._by_addr.get(addr)
        return None if box_id is None else self._boxes.get(box_id)

    def rs485_addresses(self):
        return sorted(self._by_addr)

    def listing(self):
        """Every box without its key, with "last_event": the highest event
        number the gateway has stored from that box id (None if none), so a
        replacement box can start above it (`callbox replace`)."""
        last = self.store.last_events([b.box_id for b in self])
        out = []
        for b in self:
            rec = b.public()
            rec["last_event"] = last.get(b.box_id)
            out.append(rec)
        return out

    def __iter__(self):
        return iter(list(self._boxes.values()))

    def __len__(self):
        return len(self._boxes)
