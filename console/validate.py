"""Checks on what gateways send (docs/console-api.md). A malformed batch is
refused whole with every problem named, so nothing half-stored is left behind
and the gateway's log says which event and field to look at."""

import datetime
import json
import re

from .errors import BadRequest
from .workflow import ALARM_KINDS

# Limits against a broken or hostile gateway (each named with its reason).
MAX_EVENTS_PER_POST = 500        # a gateway drains its queue in batches; 500 covers an hour of a busy junction
MAX_BOXES_PER_HEALTH = 2000      # one gateway serves at most a few hundred boxes; 2,000 leaves headroom
MAX_TEXT = 200                   # junction names, URLs, link names
MAX_BOX_JSON_BYTES = 4096        # one box's health record as stored
BOX_ID_MAX = 0xFFFFFFFF          # the wire carries a 32-bit box id

_EVENT_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")


def parse_time(value, field, where):
    if not isinstance(value, str):
        raise BadRequest("%s: %s must be an ISO 8601 time string" % (where, field))
    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("%s: %s %r is not an ISO 8601 time" % (where, field, value[:40]))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def _opt_text(d, key, where, limit=MAX_TEXT):
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise BadRequest("%s: %s must be text of at most %d characters" % (where, key, limit))
    return v


def _opt_coord(d, key, lo, hi, where):
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise BadRequest("%s: %s must be a number in [%s, %s]" % (where, key, lo, hi))
    return float(v)


def box_id_of(d, where):
    v = d.get("box_id")
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= BOX_ID_MAX:
        raise BadRequest("%s: box_id must be an integer 0..%d" % (where, BOX_ID_MAX))
    return v


def _clip(v, where):
    if v is None:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("url"), str) or len(v["url"]) > MAX_TEXT:
        raise BadRequest("%s: clip must be null or an object with a url" % where)
    return v


def event(d, i):
    """One event from POST /api/v1/events, normalised; raises BadRequest."""
    where = "event %d" % i
    if not isinstance(d, dict):
        raise BadRequest("%s is not an object" % where)
    eid = d.get("event_id")
    if not isinstance(eid, str) or not _EVENT_ID.match(eid):
        raise BadRequest("%s: event_id must be 1-64 characters of [0-9A-Za-z_.:-]" % where)
    where = "event %s" % eid
    box_id = box_id_of(d, where)
    where = "event %s (box %d)" % (eid, box_id)
    kind = d.get("kind")
    if kind not in ALARM_KINDS:
        raise BadRequest("%s: kind %r is not one of %s" % (where, kind, ", ".join(ALARM_KINDS)))
    restore = d.get("restore", False)
    if not isinstance(restore, bool):
        raise BadRequest("%s: restore must be true or false" % where)
    press_time = d.get("press_time")
    press_epoch = parse_time(press_time, "press_time", where)
    received = d.get("received_time")
    if received is not None:
        parse_time(received, "received_time", where)
    synced = d.get("press_time_synced", True)
    if not isinstance(synced, bool):
        raise BadRequest("%s: press_time_synced must be true or false" % where)
    return {
        "event_id": eid, "box_id": box_id, "kind": kind, "restore": restore,
        "junction": _opt_text(d, "junction", where) or "",
        "lat": _opt_coord(d, "lat", -90, 90, where), "lon": _opt_coord(d, "lon", -180, 180, where),
        "press_time": press_time, "press_epoch": press_epoch, "press_time_synced": synced,
        "received_time": received, "link": _opt_text(d, "link", where),
        "snapshot_url": _opt_text(d, "snapshot_url", where), "clip": _clip(d.get("clip"), where),
    }


def events_body(body):
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise BadRequest('body must be {"events": [...]}')
    events = body["events"]
    if len(events) > MAX_EVENTS_PER_POST:
        raise BadRequest("%d events in one POST; send at most %d" % (len(events), MAX_EVENTS_PER_POST))
    out, problems, seen = [], [], set()
    for i, d in enumerate(events):
        try:
            e = event(d, i)
        except BadRequest as exc:
            problems.append(str(exc))
            continue
        if e["event_id"] in seen:
            continue  # the same event twice in one batch: keep the first
        seen.add(e["event_id"])
        out.append(e)
    if problems:
        raise BadRequest("; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""))
    return out


def media_body(body):
    if not isinstance(body, dict) or not isinstance(body.get("event_id"), str):
        raise BadRequest('body must be {"event_id": "...", "snapshot_url": ..., "clip": ...}')
    where = "media for event %s" % body["event_id"][:64]
    return {"event_id": body["event_id"], "snapshot_url": _opt_text(body, "snapshot_url", where),
            "clip": _clip(body.get("clip"), where)}


# Boxes checked per step of health_chunks: the server yields to its event
# loop between steps, so a 1,000-box report never holds an alarm up for long.
HEALTH_CHUNK_BOXES = 100


def health_body(body):
    """All boxes of POST /api/v1/health, checked; raises BadRequest naming
    every bad box (up to ten), and then nothing of the report is stored."""
    return [b for chunk in health_chunks(body) for b in chunk]


def health_chunks(body, size=HEALTH_CHUNK_BOXES):
    """health_body in steps: yields lists of at most `size` checked boxes and
    raises BadRequest after the last one if any box was bad (so the caller,
    which stores nothing until the end, still refuses the report whole)."""
    if not isinstance(body, dict) or not isinstance(body.get("boxes"), list):
        raise BadRequest('body must be {"gateway_id": ..., "time": ..., "boxes": [...]}')
    boxes = body["boxes"]
    if len(boxes) > MAX_BOXES_PER_HEALTH:
        raise BadRequest("%d boxes in one report; send at most %d" % (len(boxes), MAX_BOXES_PER_HEALTH))
    problems = []
    for start in range(0, len(boxes), size):
        out = []
        for i in range(start, min(start + size, len(boxes))):
            try:
                out.append(_health_box(boxes[i], i))
            except BadRequest as exc:
                problems.append(str(exc))
        yield out
    if problems:
        raise BadRequest("; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""))


def _health_box(b, i):
    where = "box %d in the report" % i
    if not isinstance(b, dict):
        raise BadRequest("%s is not an object" % where)
    box_id = box_id_of(b, where)
    where = "box %d" % box_id
    online = b.get("online")
    if not isinstance(online, bool):
        raise BadRequest("%s: online must be true or false" % where)
    if b.get("last_heartbeat") is not None:
        parse_time(b["last_heartbeat"], "last_heartbeat", where)
    _opt_text(b, "junction", where)
    _opt_coord(b, "lat", -90, 90, where)
    _opt_coord(b, "lon", -180, 180, where)
    raw = json.dumps(b, separators=(",", ":"))
    if len(raw) > MAX_BOX_JSON_BYTES:
        raise BadRequest("%s: record is %d bytes; at most %d" % (where, len(raw), MAX_BOX_JSON_BYTES))
    return b
