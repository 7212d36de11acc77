"""The incident state machine and the escalation rule. Pure: the caller passes
the time and the list of logged-in operators; the server applies the result
to storage with a conditional update (so two console instances cannot both
act on the same step).

    new ──acknowledge──► acknowledged ──dispatch──► dispatched ──close──► closed
                              └──────────────close──────────────────────┘
    restore events (a trouble that cleared) are stored already closed.
"""

from .errors import BadRequest, Conflict

STATUSES = ("new", "acknowledged", "dispatched", "closed")
ALARM_KINDS = ("emergency", "panic", "tamper", "power", "battery", "button_fault", "offline")

# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "acknowledge": (("new",), "acknowledged"),
    "dispatch": (("acknowledged", "dispatched"), "dispatched"),
    "close": (("acknowledged", "dispatched"), "closed"),
}
# Longest free text an operator may type into unit, note, outcome.
MAX_TEXT_CHARS = 500
OUTCOMES = ("resolved", "false_alarm", "referred_112", "no_response", "other")


def plan_transition(incident, action, actor, now, form):
    """Return (expected_status, changes) for applying `action` to `incident`,
    or raise Conflict/BadRequest with a message for the operator."""
    if action not in TRANSITIONS:
        raise BadRequest("unknown action %r; use acknowledge, dispatch or close" % action)
    sources, target = TRANSITIONS[action]
    status = incident["status"]
    if status not in sources:
        who = incident.get("ack_by") or incident.get("closed_by") or "another operator"
        raise Conflict("incident %s (box %s) is %s (by %s); %s needs %s" % (
            incident["id"], incident["box_id"], status, who, action, " or ".join(sources)))
    changes = {"status": target}
    if action == "acknowledge":
        changes.update(ack_by=actor, ack_at=now, assigned_to=actor)
    elif action == "dispatch":
        unit = _text(form, "unit", required=True)
        changes.update(unit=unit, dispatch_note=_text(form, "note"), dispatched_by=actor, dispatched_at=now)
    elif action == "close":
        outcome = _text(form, "outcome", required=True)
        if outcome not in OUTCOMES:
            raise BadRequest("outcome must be one of %s" % ", ".join(OUTCOMES))
        changes.update(outcome=outcome, close_note=_text(form, "note"), closed_by=actor, closed_at=now)
    return status, changes


def _text(form, key, required=False):
    value = form.get(key, "")
    if not isinstance(value, str):
        raise BadRequest("%s must be text" % key)
    value = value.strip()
    if required and not value:
        raise BadRequest("%s is required" % key)
    if len(value) > MAX_TEXT_CHARS:
        raise BadRequest("%s is longer than %d characters" % (key, MAX_TEXT_CHARS))
    return value


def choose_operator(online, load, exclude=()):
    """Pick who an alarm rings at: the logged-in operator with the fewest open
    incidents assigned, not in `exclude` (ties by name, so it is stable).
    None when nobody else is logged in: then everyone's board keeps ringing."""
    candidates = [u for u in online if u not in exclude]
    if not candidates:
        return None
    return min(candidates, key=lambda u: (load.get(u, 0), u))


def due_for_escalation(incident, now, timeout_s):
    """An incident still `new` escalates timeout_s after it arrived, and again
    every timeout_s after each escalation, until someone acknowledges it."""
    if incident["status"] != "new" or incident.get("restore"):
        return False
    since = incident.get("escalated_at") or incident["console_time"]
    return now - since >= timeout_s


def plan_escalation(incident, now, timeout_s, online, load):
    """None, or the changes for one escalation step: ring at the next operator
    (round the logged-in ones, skipping the one it rang at) and re-alert.

    Never leaves it ringing at nobody who could hear it: with no other
    operator logged in it stays with the current one if that one is still
    logged in, else it rings at everyone (assigned_to None). Either way every
    escalated alarm is also shown to supervisors (the board shows a new
    alarm with escalations > 0 on every supervisor's console)."""
    if not due_for_escalation(incident, now, timeout_s):
        return None
    current = incident.get("assigned_to")
    nxt = choose_operator(online, load, exclude=(current,) if current else ())
    if nxt is None:
        # alone on shift: keep ringing at the same operator, if still there
        nxt = current if current in online else None
    return {"assigned_to": nxt, "escalated_at": now, "escalations": (incident.get("escalations") or 0) + 1}
