"""The daily report: alarms of the day and each box's availability (share of
the day it was online). Pure functions over rows the store gives."""

import datetime

DAY_S = 86400


def day_bounds(day, tz_offset_min):
    """Epoch seconds [start, end) of the local day `day` (YYYY-MM-DD) for a
    fixed UTC offset (Kanpur: +330 minutes, no daylight saving)."""
    try:
        d = datetime.date.fromisoformat(day)
    except (TypeError, ValueError):
        from .errors import BadRequest

        raise BadRequest("day must be YYYY-MM-DD, got %r" % (day,))
    tz = datetime.timezone(datetime.timedelta(minutes=tz_offset_min))
    start = datetime.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()
    return start, start + DAY_S


def availability(transitions, start, end, now, state_before=None, first_seen=None):
    """Share of [start, min(end, now)) the box was online.

    transitions: [(time, online)] sorted by time, within or before the window;
    state_before: online state at `start` (from the last transition before it),
    None if the box was not known yet (then counting starts at first_seen or
    at its first transition). Returns None when the box was not known at all
    during the window."""
    stop = min(end, now)
    begin = start
    state = state_before
    if state is None:
        known = [t for t, _ in transitions if t < stop]
        if first_seen is not None and first_seen < stop:
            known.append(max(first_seen, start))
        if not known:
            return None
        begin = max(start, min(known))
    if stop <= begin:
        return None
    online_s = 0.0
    t_prev = begin
    for t, online in transitions:
        if t <= begin:
            state = bool(online)
            continue
        if t >= stop:
            break
        if state:
            online_s += t - t_prev
        t_prev = t
        state = bool(online)
    if state:
        online_s += stop - t_prev
    return online_s / (stop - begin)


def summarize(incidents):
    """Counts by kind and status, and the acknowledge times of the day."""
    by_kind, by_status = {}, {}
    ack_s = []
    for inc in incidents:
        if inc.get("restore"):
            continue
        by_kind[inc["kind"]] = by_kind.get(inc["kind"], 0) + 1
        by_status[inc["status"]] = by_status.get(inc["status"], 0) + 1
        if inc.get("ack_at"):
            ack_s.append(inc["ack_at"] - inc["console_time"])
    ack_s.sort()
    return {
        "alarms": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_status": by_status,
        "ack_median_s": ack_s[len(ack_s) // 2] if ack_s else None,
        "ack_max_s": ack_s[-1] if ack_s else None,
    }
