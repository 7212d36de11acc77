"""Everything the console keeps: incidents and their audit log, box health and
its online/offline history, operators, sessions, login failures.

Times are epoch seconds (float). Booleans are stored as 0/1. One Store runs on
either database (db.py); the schema and every query are shared."""

import json
import logging

from . import db as dbmod

log = logging.getLogger(__name__)

_INCIDENT_COLS = (
    "event_id", "gateway_id", "box_id", "junction", "lat", "lon", "kind", "restore", "press_time",
    "press_epoch", "press_time_synced", "received_time", "console_time", "link", "snapshot_url", "clip",
    "status", "assigned_to", "outcome", "closed_at",
)
# Columns a workflow step, an escalation or a call may change.
_MUTABLE = {
    "status", "assigned_to", "escalations", "escalated_at", "ack_by", "ack_at", "unit", "dispatch_note",
    "dispatched_by", "dispatched_at", "outcome", "close_note", "closed_by", "closed_at", "call_id", "call_by",
    "call_started", "call_state", "call_duration_s", "recording_url", "snapshot_url", "clip",
}
# Box rows written per statement batch (see upsert_health).
HEALTH_CHUNK_ROWS = 100
_BOOL_INCIDENT = ("restore", "press_time_synced")

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id {serial},
    event_id TEXT NOT NULL UNIQUE,
    gateway_id TEXT NOT NULL,
    box_id BIGINT NOT NULL,
    junction TEXT NOT NULL DEFAULT '',
    lat DOUBLE PRECISION, lon DOUBLE PRECISION,
    kind TEXT NOT NULL,
    restore INTEGER NOT NULL DEFAULT 0,
    press_time TEXT, press_epoch DOUBLE PRECISION, press_time_synced INTEGER NOT NULL DEFAULT 1,
    received_time TEXT,
    console_time DOUBLE PRECISION NOT NULL,
    link TEXT, snapshot_url TEXT, clip TEXT,
    status TEXT NOT NULL,
    assigned_to TEXT,
    escalations INTEGER NOT NULL DEFAULT 0, escalated_at DOUBLE PRECISION,
    ack_by TEXT, ack_at DOUBLE PRECISION,
    unit TEXT, dispatch_note TEXT, dispatched_by TEXT, dispatched_at DOUBLE PRECISION,
    outcome TEXT, close_note TEXT, closed_by TEXT, closed_at DOUBLE PRECISION,
    call_id TEXT, call_by TEXT, call_started DOUBLE PRECISION, call_state TEXT,
    call_duration_s DOUBLE PRECISION, recording_url TEXT
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status);
CREATE INDEX IF NOT EXISTS incidents_time ON incidents (console_time);
CREATE INDEX IF NOT EXISTS incidents_box ON incidents (box_id);
CREATE TABLE IF NOT EXISTS audit (
    id {serial},
    incident_id BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS audit_incident ON audit (incident_id);
CREATE TABLE IF NOT EXISTS boxes (
    box_id BIGINT PRIMARY KEY,
    gateway_id TEXT NOT NULL,
    junction TEXT NOT NULL DEFAULT '',
    lat DOUBLE PRECISION, lon DOUBLE PRECISION,
    online INTEGER NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0,
    last_heartbeat TEXT,
    report_time DOUBLE PRECISION NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS box_status_log (
    id {serial},
    box_id BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    online INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS box_status_log_box_time ON box_status_log (box_id, time);
CREATE TABLE IF NOT EXISTS operators (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    pw_hash TEXT NOT NULL,
    must_change INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    id {serial},
    username TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_user ON login_failures (username, time);
"""


def _incident(row):
    if row is None:
        return None
    d = dict(row)
    for k in _BOOL_INCIDENT:
        d[k] = bool(d[k])
    d["clip"] = json.loads(d["clip"]) if d.get("clip") else None
    return d


def _box(row):
    d = json.loads(row["data"])
    d.update(box_id=row["box_id"], gateway_id=row["gateway_id"], junction=row["junction"] or d.get("junction", ""),
             lat=row["lat"], lon=row["lon"], online=bool(row["online"]), stale=bool(row["stale"]),
             last_heartbeat=row["last_heartbeat"], report_time=row["report_time"], first_seen=row["first_seen"])
    return d


class Store:
    def __init__(self, url):
        self.db = dbmod.connect(url)

    @property
    def dialect(self):
        return self.db.dialect

    async def open(self):
        await self.db.open()
        await self.db.script(SCHEMA.format(serial=self.db.serial))

    async def close(self):
        await self.db.close()

    # ---- live updates -------------------------------------------------
    async def listen(self, callback):
        await self.db.listen(callback)

    async def publish(self, msg):
        """Send msg to every console instance's listeners (this one included).
        Box lists are split to fit PostgreSQL's notification size."""
        if msg.get("type") == "boxes" and self.dialect == "postgres":
            chunk, size = [], 0
            for b in msg["boxes"]:
                n = len(json.dumps(b, separators=(",", ":"))) + 1
                if chunk and size + n > dbmod.MAX_NOTIFY_BYTES - 100:
                    await self.db.notify({"type": "boxes", "boxes": chunk})
                    chunk, size = [], 0
                chunk.append(b)
                size += n
            if chunk:
                await self.db.notify({"type": "boxes", "boxes": chunk})
            return
        if msg.get("type") == "incident" and self.dialect == "postgres":
            # Listeners re-read it: a note or clip can push it over the limit.
            await self.db.notify({"type": "incident_ref", "id": msg["incident"]["id"],
                                  "alert": msg.get("alert")})
            return
        await self.db.notify(msg)

    # ---- incidents ----------------------------------------------------
    async def add_event(self, gateway_id, e, now, assigned_to):
        """Insert one event; return the new incident, or None if its event_id
        is already stored (a gateway retry)."""
        restore = e["restore"]
        row = {
            "event_id": e["event_id"], "gateway_id": gateway_id, "box_id": e["box_id"], "junction": e["junction"],
            "lat": e["lat"], "lon": e["lon"], "kind": e["kind"], "restore": int(restore),
            "press_time": e["press_time"], "press_epoch": e["press_epoch"],
            "press_time_synced": int(e["press_time_synced"]), "received_time": e["received_time"],
            "console_time": now, "link": e["link"], "snapshot_url": e["snapshot_url"],
            "clip": json.dumps(e["clip"]) if e["clip"] else None,
            # A restore (trouble cleared) is a record, not a job: stored closed.
            "status": "closed" if restore else "new",
            "assigned_to": None if restore else assigned_to,
            "outcome": "restored" if restore else None, "closed_at": now if restore else None,
        }
        sql = "INSERT INTO incidents (%s) VALUES (%s) ON CONFLICT (event_id) DO NOTHING RETURNING id" % (
            ", ".join(_INCIDENT_COLS), ", ".join("?" * len(_INCIDENT_COLS)))
        got = await self.db.fetchrow(sql, *[row[c] for c in _INCIDENT_COLS])
        if got is None:
            return None
        await self.add_audit(got["id"], now, "gateway:" + gateway_id, "received",
                             {"event_id": e["event_id"], "assigned_to": row["assigned_to"]})
        return await self.incident(got["id"])

    async def incident(self, incident_id):
        return _incident(await self.db.fetchrow("SELECT * FROM incidents WHERE id = ?", incident_id))

    async def incident_by_event(self, event_id):
        return _incident(await self.db.fetchrow("SELECT * FROM incidents WHERE event_id = ?", event_id))

    async def open_incidents(self, limit=500):
        rows = await self.db.fetch("SELECT * FROM incidents WHERE status <> 'closed' ORDER BY id DESC LIMIT ?", limit)
        return [_incident(r) for r in rows]

    async def update_incident(self, incident_id, changes, expect=None):
        """Apply changes if every column in `expect` still has the given value
        (optimistic concurrency: another operator or console instance may
        have acted first). Return the updated incident, or None."""
        bad = set(changes) - _MUTABLE
        if bad:
            raise ValueError("not updatable: %s" % ", ".join(sorted(bad)))
        cols = sorted(changes)
        vals = [json.dumps(changes[c]) if c == "clip" and changes[c] is not None else changes[c] for c in cols]
        where, wvals = ["id = ?"], [incident_id]
        for k, v in (expect or {}).items():
            if v is None:
                where.append("%s IS NULL" % k)
            else:
                where.append("%s = ?" % k)
                wvals.append(v)
        sql = "UPDATE incidents SET %s WHERE %s" % (", ".join("%s = ?" % c for c in cols), " AND ".join(where))
        if await self.db.execute(sql, *vals, *wvals) != 1:
            return None
        return await self.incident(incident_id)

    async def attach_media(self, event_id, snapshot_url, clip):
        n = await self.db.execute(
            "UPDATE incidents SET snapshot_url = COALESCE(?, snapshot_url), clip = COALESCE(?, clip) "
            "WHERE event_id = ?", snapshot_url, json.dumps(clip) if clip else None, event_id)
        return await self.incident_by_event(event_id) if n else None

    async def add_audit(self, incident_id, now, actor, action, detail=None):
        await self.db.execute("INSERT INTO audit (incident_id, time, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                              incident_id, now, actor, action, json.dumps(detail or {}))

    async def audit(self, incident_id):
        rows = await self.db.fetch("SELECT time, actor, action, detail FROM audit WHERE incident_id = ? ORDER BY id",
                                   incident_id)
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows

    async def assigned_load(self):
        rows = await self.db.fetch("SELECT assigned_to, COUNT(*) AS n FROM incidents WHERE status <> 'closed' "
                                   "AND assigned_to IS NOT NULL GROUP BY assigned_to")
        return {r["assigned_to"]: int(r["n"]) for r in rows}

    async def search(self, q="", kind="", status="", box_id=None, start=None, end=None, limit=200, offset=0):
        where, args = ["1 = 1"], []
        if q:
            pat = "%" + q.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
            where.append("(LOWER(junction) LIKE ? OR LOWER(event_id) LIKE ? OR LOWER(COALESCE(unit, '')) LIKE ? "
                         "OR LOWER(COALESCE(dispatch_note, '')) LIKE ? OR LOWER(COALESCE(close_note, '')) LIKE ?)")
            args += [pat] * 5
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if status:
            where.append("status = ?")
            args.append(status)
        if box_id is not None:
            where.append("box_id = ?")
            args.append(box_id)
        if start is not None:
            where.append("console_time >= ?")
            args.append(start)
        if end is not None:
            where.append("console_time < ?")
            args.append(end)
        sql = "SELECT * FROM incidents WHERE %s ORDER BY id DESC LIMIT ? OFFSET ?" % " AND ".join(where)
        return [_incident(r) for r in await self.db.fetch(sql, *args, limit, offset)]

    async def escalation_candidates(self, kinds):
        marks = ", ".join("?" * len(kinds))
        rows = await self.db.fetch("SELECT * FROM incidents WHERE status = 'new' AND restore = 0 AND kind IN (%s)"
                                   % marks, *kinds)
        return [_incident(r) for r in rows]

    # ---- boxes ----------------------------------------------------------
    async def upsert_health(self, gateway_id, boxes, now):
        """Store the latest health of each box; log online/offline changes.
        Returns the stored boxes (as the board shows them)."""
        ids = [b["box_id"] for b in boxes]
        prev = {}
        if ids:
            # The whole table: a few thousand rows at most, one query.
            for r in await self.db.fetch("SELECT box_id, online, first_seen FROM boxes"):
                prev[r["box_id"]] = r
        stored, log_rows = [], []
        # In chunks: on SQLite every statement shares one thread, and the
        # event loop yields between chunks, so an alarm never waits behind a
        # whole 1,000-box report.
        for i in range(0, len(boxes), HEALTH_CHUNK_ROWS):
            rows = []
            for b in boxes[i:i + HEALTH_CHUNK_ROWS]:
                online = int(b["online"])
                p = prev.get(b["box_id"])
                if p is None or p["online"] != online:
                    log_rows.append((b["box_id"], now, online))
                first_seen = p["first_seen"] if p else now
                rows.append((b["box_id"], gateway_id, b.get("junction") or "", b.get("lat"), b.get("lon"), online,
                             b.get("last_heartbeat"), now, first_seen, json.dumps(b, separators=(",", ":"))))
                # as _box() would read it back, without parsing the JSON again
                d = dict(b)
                d.update(gateway_id=gateway_id, junction=b.get("junction") or "", lat=b.get("lat"),
                         lon=b.get("lon"), online=bool(online), stale=False, last_heartbeat=b.get("last_heartbeat"),
                         report_time=now, first_seen=first_seen)
                stored.append(d)
            await self._upsert_boxes(rows)
        if log_rows:
            await self.db.executemany("INSERT INTO box_status_log (box_id, time, online) VALUES (?, ?, ?)", log_rows)
        return stored

    async def _upsert_boxes(self, rows):
        await self.db.executemany(
            "INSERT INTO boxes (box_id, gateway_id, junction, lat, lon, online, stale, last_heartbeat, report_time, "
            "first_seen, data) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT (box_id) DO UPDATE SET "
            "gateway_id = excluded.gateway_id, junction = excluded.junction, lat = excluded.lat, lon = excluded.lon, "
            "online = excluded.online, stale = 0, last_heartbeat = excluded.last_heartbeat, "
            "report_time = excluded.report_time, data = excluded.data", rows)

    async def set_box_online(self, box_id, online, now, gateway_id, junction=""):
        """An offline/restore event from a gateway's supervision: change the
        box's state (creating it if health has not reported it yet)."""
        n = await self.db.execute("UPDATE boxes SET online = ? WHERE box_id = ? AND online <> ?",
                                  int(online), box_id, int(online))
        if n == 0:
            n = await self.db.execute(
                "INSERT INTO boxes (box_id, gateway_id, junction, online, report_time, first_seen, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (box_id) DO NOTHING",
                box_id, gateway_id, junction, int(online), now, now,
                json.dumps({"box_id": box_id, "junction": junction, "online": online}))
        if n:
            await self.db.execute("INSERT INTO box_status_log (box_id, time, online) VALUES (?, ?, ?)",
                                  box_id, now, int(online))
            return await self.box(box_id)
        return None

    async def mark_stale(self, now, stale_s):
        """Boxes whose gateway has gone quiet: not heard of for stale_s, shown
        offline and logged so (the availability report counts it)."""
        rows = await self.db.fetch("SELECT box_id FROM boxes WHERE online = 1 AND report_time < ?", now - stale_s)
        changed = []
        for r in rows:
            if await self.db.execute("UPDATE boxes SET online = 0, stale = 1 WHERE box_id = ? AND online = 1",
                                     r["box_id"]) == 1:
                await self.db.execute("INSERT INTO box_status_log (box_id, time, online) VALUES (?, ?, 0)",
                                      r["box_id"], now)
                changed.append(await self.box(r["box_id"]))
        return changed

    async def box(self, box_id):
        row = await self.db.fetchrow("SELECT * FROM boxes WHERE box_id = ?", box_id)
        return _box(row) if row else None

    async def boxes(self):
        return [_box(r) for r in await self.db.fetch("SELECT * FROM boxes ORDER BY box_id")]

    async def status_history(self, start, end):
        """({box_id: [(time, online)] within [start, end)}, {box_id: online at start})."""
        within = {}
        for r in await self.db.fetch("SELECT box_id, time, online FROM box_status_log WHERE time >= ? AND time < ? "
                                     "ORDER BY box_id, time, id", start, end):
            within.setdefault(r["box_id"], []).append((r["time"], bool(r["online"])))
        before = {}
        for r in await self.db.fetch(
                "SELECT l.box_id, l.online FROM box_status_log l JOIN (SELECT box_id, MAX(id) AS last_id "
                "FROM box_status_log WHERE time < ? GROUP BY box_id) m ON l.id = m.last_id", start):
            before[r["box_id"]] = bool(r["online"])
        return within, before

    # ---- operators and sessions --------------------------------------
    async def operator_count(self):
        row = await self.db.fetchrow("SELECT COUNT(*) AS n FROM operators")
        return int(row["n"])

    async def create_operator(self, username, role, pw_hash, must_change, now, display_name=""):
        """False if the name is taken."""
        n = await self.db.execute(
            "INSERT INTO operators (username, display_name, role, pw_hash, must_change, disabled, created) "
            "VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (username) DO NOTHING",
            username, display_name, role, pw_hash, int(must_change), now)
        return n == 1

    async def operator(self, username):
        return await self.db.fetchrow("SELECT * FROM operators WHERE username = ?", username)

    async def operators(self):
        return await self.db.fetch("SELECT username, display_name, role, must_change, disabled, created "
                                   "FROM operators ORDER BY username")

    async def set_password(self, username, pw_hash, must_change):
        await self.db.execute("UPDATE operators SET pw_hash = ?, must_change = ? WHERE username = ?",
                              pw_hash, int(must_change), username)

    async def set_operator(self, username, role=None, disabled=None):
        if role is not None:
            await self.db.execute("UPDATE operators SET role = ? WHERE username = ?", role, username)
        if disabled is not None:
            await self.db.execute("UPDATE operators SET disabled = ? WHERE username = ?", int(disabled), username)
            if disabled:
                await self.db.execute("DELETE FROM sessions WHERE username = ?", username)

    async def create_session(self, token_hash, username, csrf, now, expires):
        await self.db.execute("INSERT INTO sessions (token_hash, username, csrf, created, last_seen, expires) "
                              "VALUES (?, ?, ?, ?, ?, ?)", token_hash, username, csrf, now, now, expires)

    async def session(self, token_hash, now):
        return await self.db.fetchrow(
            "SELECT s.token_hash, s.username, s.csrf, s.last_seen, o.role, o.must_change, o.display_name "
            "FROM sessions s JOIN operators o ON o.username = s.username "
            "WHERE s.token_hash = ? AND s.expires > ? AND o.disabled = 0", token_hash, now)

    async def touch_session(self, token_hash, now):
        await self.db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", now, token_hash)

    async def delete_session(self, token_hash):
        await self.db.execute("DELETE FROM sessions WHERE token_hash = ?", token_hash)

    async def delete_sessions_of(self, username, keep=None):
        await self.db.execute("DELETE FROM sessions WHERE username = ? AND token_hash <> ?", username, keep or "")

    async def online_operators(self, now, presence_s):
        rows = await self.db.fetch(
            "SELECT DISTINCT s.username FROM sessions s JOIN operators o ON o.username = s.username "
            "WHERE s.last_seen > ? AND s.expires > ? AND o.disabled = 0 AND o.must_change = 0 "
            "AND o.role IN ('operator', 'supervisor') ORDER BY s.username", now - presence_s, now)
        return [r["username"] for r in rows]

    async def add_login_failure(self, username, now):
        await self.db.execute("INSERT INTO login_failures (username, time) VALUES (?, ?)", username, now)

    async def login_failures(self, username, since):
        rows = await self.db.fetch("SELECT time FROM login_failures WHERE username = ? AND time >= ?", username, since)
        return [r["time"] for r in rows]

    async def clear_login_failures(self, username):
        await self.db.execute("DELETE FROM login_failures WHERE username = ?", username)
