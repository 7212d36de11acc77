"""The contract every box link (RS-485, LTE) fulfils.

A link moves frames between the box and the gateway and owns its transport:
buffers, timing, reconnects. It knows nothing about alarms. The application
(app.py) owns what to send and what a received frame means, and is handed to
the link as `host`, which provides:

    host.next_up_frame(link) -> bytes or None
        The next wire frame (wire.encode_frame output, delimiters included)
        the box wants to send on this link, or None when it has nothing.
        RS-485 calls it when polled; LTE calls it whenever `host.pending` is
        set. The LTE link clears host.pending, then calls
        next_up_frame() once per wake-up; a host with more to send sets
        pending again. Calling it again without a delivery is allowed: the host decides
        what is (re)sent, with what counter.
    host.pending
        An asyncio.Event set by the host when it has something to send.
    host.on_frame(frame, link)
        A verified, replay-checked wire.Frame for this box (ACK, CALL_STATE,
        COMMAND, POLL is handled by the link itself and never passed up).
    host.decode(piece) -> wire.Frame
        Decode and verify a COBS piece with the box's key (raises
        wire.WireError); links count errors by reason.
    host.log(level, msg)
        The box's tiny leveled logger.
    host.idle_frame(link) -> bytes
        An IDLE frame (RS-485 answers a POLL with it when next_up_frame
        returns None).
    host.cfg, host.board, host.box_id
        The box's config.json, board dict and id; app.py constructs the LTE
        link as link_lte.LteLink(host).

next_up_frame(link) returns None for a link that is not the active up path
(with "rs485+lte", LTE carries traffic only after RS-485 has not been polled
for cfg["backup_after_s"]).

A link subclass implements `run()` (an asyncio task that never returns unless
cancelled) and keeps `up` (bool) and `rssi_dbm` (int, -128 unknown) current.
`counters` holds per-reason error counts for the heartbeat and for `monitor`.
"""


class Link:
    name = "none"

    def __init__(self, host):
        self.host = host
        self.up = False
        self.rssi_dbm = -128
        self.counters = {}

    def count(self, reason):
        self.counters[reason] = self.counters.get(reason, 0) + 1
