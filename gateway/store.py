"""The gateway's durable state in one SQLite database (WAL).

Tables:
    boxes     the registry: id, key (hex), junction, place, link, bus address, revoked
    replay    per box: highest uplink counter accepted and the window bitmap
              below it (rx_top, rx_seen); the downlink counter reserved (tx_reserved)
    events    every alarm and trouble, box-made and gateway-made, by event_id (dedupe)
    outbox    the store-and-forward queue: one row per (sink, event_id, kind)
    box_state supervision and health per box (online, troubles, last heartbeat)
    meta      gateway sequence for gateway-made event ids

One transaction per ingest batch holds the events, their outbox rows, the
replay counters and the box state: an alarm is ACKed only after that commit
returned, so an ACKed alarm is on disk (synchronous=FULL: on the platter, not
just in the OS cache). A failed commit (disk full) rolls everything back and
raises StorageError; the caller then sends no ACK.

Everything runs on the thread that opened the store (the event loop's).
"""

import json
import logging
import pathlib
import sqlite3

from .errors import RegistryError, StorageError, StorageFullError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (
    box_id INTEGER PRIMARY KEY,
    key_hex TEXT NOT NULL,
    junction TEXT NOT NULL DEFAULT '',
    lat REAL, lon REAL,
    link TEXT NOT NULL DEFAULT 'lte',
    bus_addr INTEGER NOT NULL DEFAULT 0,
    event_start INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS replay (
    box_id INTEGER PRIMARY KEY,
    rx_top INTEGER NOT NULL DEFAULT -1,
    rx_seen INTEGER NOT NULL DEFAULT 0,
    tx_reserved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    box_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    restore INTEGER NOT NULL,
    received REAL NOT NULL,
    body TEXT NOT NULL
);
-- The highest event of a box in O(log n) (admin listing, `callbox replace`).
CREATE INDEX IF NOT EXISTS events_box ON events (box_id, event_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    box_id INTEGER NOT NULL,
    what TEXT NOT NULL DEFAULT 'event',
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (sink, event_id, what)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, state, seq);
CREATE TABLE IF NOT EXISTS box_state (
    box_id INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

# Downlink counters are reserved in blocks so a frame to a box costs no write:
# after a crash the gateway starts above the reserved value, skipping at most
# one block (a box's replay window only needs the counter to grow).
TX_RESERVE_BLOCK = 1024


def _is_full(e):
    s = str(e).lower()
    return "full" in s or "max_page_count" in s


class Store:
    def __init__(self, path, synchronous="FULL", max_db_mb=0.0):
        self.path = pathlib.Path(path)
        self.synchronous = synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=%s" % synchronous)
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
            if max_db_mb:
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                self.set_max_pages(max(16, int(max_db_mb * 1024 * 1024 / page)))
        except sqlite3.Error as e:
            raise StorageError("cannot open the gateway database %s: %s; check the path and its permissions" % (self.path, e)) from None
        self._in_tx = False

    def set_max_pages(self, pages):
        """Cap the database size (PRAGMA max_page_count): tests use it to play
        a full disk."""
        return self.db.execute("PRAGMA max_page_count=%d" % pages).fetchone()[0]

    def page_count(self):
        return self.db.execute("PRAGMA page_count").fetchone()[0]

    def close(self):
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    # ------------------------------------------------------------ transactions

    def begin(self):
        self.db.execute("BEGIN IMMEDIATE")
        self._in_tx = True

    def commit(self):
        try:
            self.db.execute("COMMIT")
        finally:
            self._in_tx = False

    def rollback(self):
        self._in_tx = False
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def transaction(self, fn, durable=True):
        """Run fn() inside one transaction; StorageError (nothing kept) on
        any SQLite failure. Nested calls join the outer transaction.

        durable=False: commit without fsync (synchronous=NORMAL in WAL mode:
        survives the process being killed, not a power cut). For batches
        without events (IDLE replies, heartbeats): their loss on a power cut
        costs nothing, and the fsync would stall the event loop for every
        RS-485 slot."""
        if self._in_tx:
            return fn()
        lazy = not durable and self.synchronous != "NORMAL"
        if lazy:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._transaction(fn)
        finally:
            if lazy:
                self.db.execute("PRAGMA synchronous=%s" % self.synchronous)

    def _transaction(self, fn):
        try:
            self.begin()
            out = fn()
            self.commit()
            return out
        except sqlite3.Error as e:
            self.rollback()
            if _is_full(e):
                raise StorageFullError("the gateway database is full (%s); nothing was stored or ACKed, boxes keep their alarms and retry; free disk space or raise storage.max_db_mb" % e) from None
            raise StorageError("database write failed (%s); nothing was stored or ACKed" % e) from None
        except BaseException:
            self.rollback()
            raise

    # ------------------------------------------------------------ registry

    def load_boxes(self):
        cur = self.db.execute("SELECT box_id, key_hex, junction, lat, lon, link, bus_addr, event_start, revoked FROM boxes")
        return [dict(zip(("box_id", "key_hex", "junction", "lat", "lon", "link", "bus_addr", "event_start", "revoked"), r)) for r in cur]

    def put_box(self, rec, now):
        def tx():
            self.db.execute(
                "INSERT INTO boxes (box_id, key_hex, junction, lat, lon, link, bus_addr, event_start, revoked, added) VALUES (?,?,?,?,?,?,?,?,0,?) "
                "ON CONFLICT(box_id) DO UPDATE SET key_hex=excluded.key_hex, junction=excluded.junction, lat=excluded.lat, lon=excluded.lon, "
                "link=excluded.link, bus_addr=excluded.bus_addr, event_start=excluded.event_start, revoked=0",
                (rec["box_id"], rec["key_hex"], rec["junction"], rec["lat"], rec["lon"], rec["link"], rec["bus_addr"], rec["event_start"], now),
            )

        self.transaction(tx)

    def box_key_hex(self, box_id):
        r = self.db.execute("SELECT key_hex FROM boxes WHERE box_id=?", (box_id,)).fetchone()
        return r[0] if r else None

    def reset_rx(self, box_id):
        """A new key (a replaced box): its uplink counters start again."""
        self.transaction(lambda: self.db.execute("UPDATE replay SET rx_top=-1, rx_seen=0 WHERE box_id=?", (box_id,)))

    def revoke_box(self, box_id):
        def tx():
            n = self.db.execute("UPDATE boxes SET revoked=1 WHERE box_id=? AND revoked=0", (box_id,)).rowcount
            if not n:
                raise RegistryError("not registered or already revoked; list boxes with GET /api/v1/admin/boxes", box_id)

        self.transaction(tx)

    # ------------------------------------------------------------ replay

    def load_replay(self, box_id):
        r = self.db.execute("SELECT rx_top, rx_seen, tx_reserved FROM replay WHERE box_id=?", (box_id,)).fetchone()
        return r if r else (-1, 0, 0)

    def save_rx(self, box_id, top, seen):
        self.db.execute(
            "INSERT INTO replay (box_id, rx_top, rx_seen) VALUES (?,?,?) ON CONFLICT(box_id) DO UPDATE SET rx_top=excluded.rx_top, rx_seen=excluded.rx_seen",
            (box_id, top, seen),
        )

    def reserve_tx(self, box_id, upto):
        self.db.execute(
            "INSERT INTO replay (box_id, tx_reserved) VALUES (?,?) ON CONFLICT(box_id) DO UPDATE SET tx_reserved=excluded.tx_reserved",
            (box_id, upto),
        )

    # ------------------------------------------------------------ events

    def has_event(self, event_id):
        return self.db.execute("SELECT 1 FROM events WHERE event_id=?", (event_id,)).fetchone() is not None

    def add_event(self, ev, sinks):
        """Inside a transaction: the event and one outbox row per sink."""
        body = json.dumps(ev, separators=(",", ":"))
        self.db.execute(
            "INSERT INTO events (event_id, box_id, kind, restore, received, body) VALUES (?,?,?,?,?,?)",
            (ev["event_id"], ev["box_id"], ev["kind"], 1 if ev["restore"] else 0, ev["_received_s"], body),
        )
        for s in sinks:
            self.db.execute("INSERT OR IGNORE INTO outbox (sink, event_id, box_id, what, body) VALUES (?,?,?,?,?)", (s, ev["event_id"], ev["box_id"], "event", body))

    def add_media(self, event_id, box_id, body, sinks):
        def tx():
            for s in sinks:
                self.db.execute(
                    "INSERT INTO outbox (sink, event_id, box_id, what, body) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(sink, event_id, what) DO UPDATE SET body=excluded.body, state='pending'",
                    (s, event_id, box_id, "media", json.dumps(body, separators=(",", ":"))),
                )

        self.transaction(tx)

    def events(self, box_id=None):
        q = "SELECT body FROM events" + (" WHERE box_id=?" if box_id is not None else "") + " ORDER BY rowid"
        return [json.loads(r[0]) for r in self.db.execute(q, () if box_id is None else (box_id,))]

    def last_event(self, box_id):
        """The highest event number stored from box_id (None if none).
        Box event ids are "%08x-%08x" (fixed width, lower-case hex), so the
        largest id is the largest number; gateway-made ids "%08x-g..." sort
        after every hex digit and are kept out by the bound."""
        r = self.db.execute("SELECT MAX(event_id) FROM events WHERE box_id=? AND event_id < ?", (box_id, "%08x-g" % box_id)).fetchone()
        if not r or r[0] is None:
            return None
        try:
            return int(r[0].split("-", 1)[1], 16)
        except (IndexError, ValueError):
            return None

    def last_events(self, box_ids=None):
        """{box_id: highest event number} for the given (default: every
        registered) box ids that have events."""
        if box_ids is None:
            box_ids = [r[0] for r in self.db.execute("SELECT box_id FROM boxes")]
        out = {}
        for b in box_ids:
            n = self.last_event(b)
            if n is not None:
                out[b] = n
        return out

    def event_count(self):
        return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def next_gateway_seq(self):
        """Inside a transaction: the next gateway-made event sequence."""
        r = self.db.execute("SELECT v FROM meta WHERE k='gateway_seq'").fetchone()
        n = int(r[0]) + 1 if r else 1
        self.db.execute("INSERT INTO meta (k, v) VALUES ('gateway_seq', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (str(n),))
        return n

    # ------------------------------------------------------------ outbox

    def pending(self, sink, limit):
        cur = self.db.execute("SELECT seq, event_id, box_id, what, body, attempts FROM outbox WHERE sink=? AND state='pending' ORDER BY seq LIMIT ?", (sink, limit))
        return [{"seq": r[0], "event_id": r[1], "box_id": r[2], "what": r[3], "body": json.loads(r[4]), "attempts": r[5]} for r in cur]

    def delivered(self, seqs):
        def tx():
            self.db.executemany("DELETE FROM outbox WHERE seq=?", [(s,) for s in seqs])

        self.transaction(tx)

    def failed(self, seqs, error, park=False):
        def tx():
            self.db.executemany(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, state=? WHERE seq=?",
                [(error[:500], "parked" if park else "pending", s) for s in seqs],
            )

        self.transaction(tx)

    def queue_depth(self):
        out = {}
        for sink, state, n in self.db.execute("SELECT sink, state, COUNT(*) FROM outbox GROUP BY sink, state"):
            out[(sink, state)] = n
        return out

    # ------------------------------------------------------------ box state

    def load_states(self):
        return {r[0]: json.loads(r[1]) for r in self.db.execute("SELECT box_id, body FROM box_state")}

    def save_state(self, box_id, state):
        self.db.execute(
            "INSERT INTO box_state (box_id, body) VALUES (?,?) ON CONFLICT(box_id) DO UPDATE SET body=excluded.body",
            (box_id, json.dumps(state, separators=(",", ":"))),
        )
