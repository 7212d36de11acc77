"""The call's state machine, pure: no aiortc, no clock of its own. The shell
(calls.py) feeds it events with the time and sends what it returns to the
box as CALL_STATE frames (state, prompt), which also decide which voice
prompt the gateway plays on the box speaker.

    ringing ──connected──► connected ──end(by)──► ended
       │                                            ▲
       └──────── end(by) / connect timeout ─────────┘

end(outcome="dispatched") ends the call telling the citizen "help is on the
way" (CALL_STATE dispatched, prompt help_on_way); a plain end sends
CALL_STATE ended. Every event in a state where it means nothing returns no
actions (a second hang-up, a late "connected" after the end), so a race
between the browser, the console and the box can never send a wrong frame.
"""

RINGING = "ringing"
CONNECTED = "connected"
ENDED = "ended"
OUTCOMES = ("ended", "dispatched")
ENDED_BY = ("console", "browser", "box", "timeout", "failure", "shutdown")


class CallStateMachine:
    def __init__(self, call_id, box_id, event, now, connect_timeout_s, announce=True):
        self.call_id = call_id
        self.box_id = box_id
        self.event = event
        self.created = now
        self.connect_timeout_s = connect_timeout_s
        self.state = RINGING
        self.connected_at = None
        self.ended_at = None
        self.ended_by = None
        self.outcome = None
        # The first action: tell the box it is ringing; speak "connecting"
        # unless the alarm already did for this event.
        self.initial = [(RINGING, "connecting" if announce else "none")]

    def on_connected(self, now):
        if self.state != RINGING:
            return []
        self.state = CONNECTED
        self.connected_at = now
        return [(CONNECTED, "none")]

    def on_end(self, now, by, outcome="ended"):
        if by not in ENDED_BY:
            raise ValueError("ended by %r; expected one of %s" % (by, ENDED_BY))
        if outcome not in OUTCOMES:
            raise ValueError("outcome %r; expected one of %s" % (outcome, OUTCOMES))
        if self.state == ENDED:
            return []
        self.state = ENDED
        self.ended_at = now
        self.ended_by = by
        self.outcome = outcome
        if outcome == "dispatched":
            return [("dispatched", "help_on_way")]
        return [(ENDED, "none")]

    def on_tick(self, now):
        """Call now and then: ends a call stuck in ringing."""
        if self.state == RINGING and now - self.created >= self.connect_timeout_s:
            return self.on_end(now, "timeout")
        return []

    def duration_s(self, now):
        if self.connected_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.connected_at)
