"""The live board's fan-out: every open WebSocket gets every update, in order.

Each client has a bounded queue; a client that falls this far behind (a
frozen tab) is disconnected and resynchronises on reconnect, instead of
letting the console's memory grow. Box-health updates waiting in a queue are
merged into one message before sending, so 1,000 boxes reporting every few
seconds cost one frame per client, not one per report."""

import asyncio
import collections
import logging

log = logging.getLogger(__name__)

# Messages waiting per browser before it is dropped (then it reconnects and
# gets a full snapshot): about a minute of a busy night.
CLIENT_QUEUE_MAX = 2000
# Boxes per WebSocket message: 1,000 boxes in one frame (~400 KB) took the
# sender tens of milliseconds to serialise on a loaded machine, time in which
# an alarm behind it waited; 250 keeps each step short.
BOXES_PER_MESSAGE = 250


class Client:
    def __init__(self, username, session_key=""):
        self.username = username
        self.session_key = session_key  # the session's token hash, for presence
        self._queue = collections.deque()
        self._ready = asyncio.Event()
        self.overflowed = asyncio.Event()

    def put(self, msg):
        if len(self._queue) >= CLIENT_QUEUE_MAX:
            self.overflowed.set()
            return
        self._queue.append(msg)
        self._ready.set()

    async def next_message(self):
        """The next message; consecutive box updates merged into one of at
        most BOXES_PER_MESSAGE boxes (a box reported twice keeps its latest
        state). Never reorders a box update past another kind of message."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        if self._queue[0].get("type") != "boxes":
            return self._queue.popleft()
        merged = {}
        # Stop at the first other message, so an alarm is never overtaken.
        while self._queue and self._queue[0].get("type") == "boxes":
            boxes = self._queue.popleft()["boxes"]
            for n, b in enumerate(boxes):
                if len(merged) >= BOXES_PER_MESSAGE and b["box_id"] not in merged:
                    # full: the rest goes first in the next message
                    self._queue.appendleft({"type": "boxes", "boxes": boxes[n:]})
                    return {"type": "boxes", "boxes": list(merged.values())}
                merged[b["box_id"]] = b
        return {"type": "boxes", "boxes": list(merged.values())}


class Hub:
    def __init__(self):
        self.clients = set()

    def add(self, client):
        self.clients.add(client)

    def remove(self, client):
        self.clients.discard(client)

    def broadcast(self, msg):
        for c in list(self.clients):
            c.put(msg)
