"""Group commit: the thin shell between the transports and the ingest core.

Transports call `submit()` from the event loop for each piece they read. The
first submit of a loop iteration schedules one `flush()` with call_soon, so
every piece read in the same iteration (hundreds under load) shares one SQLite
commit, one fsync. After the commit each transport's `reply(outcome, ok)` is
called: ok=True means the ACK may go out; ok=False means the batch was not
stored (disk full): the transport sends nothing and the box retries.

A batch is also committed as soon as it holds MAX_BATCH_FRAMES frames. After
the gateway was kept off the CPU for a while, one loop pass reads a backlog of
thousands of frames; without the cap the first frame's ACK waited for every
later frame to be judged (measured: batches of 2,500 frames, 150+ ms). With
it the ACKs leave in steps while the rest of the backlog is read.
"""

import logging
import time

from .errors import StorageError
from .observe import kv

log = logging.getLogger(__name__)

# Frames per commit at most. Judging a frame costs about 50 us, a commit with
# its fsync a few hundred: 64 frames keep the commit overhead under a tenth
# while no ACK waits for more than ~3 ms of other frames' work.
MAX_BATCH_FRAMES = 64


class Pipeline:
    def __init__(self, ingest, clock, loop, metrics):
        self.ingest = ingest
        self.clock = clock
        self.loop = loop
        self.metrics = metrics
        self._replies = []
        self._scheduled = False
        self.on_commit = []  # callables(events) after each good commit
        self.after_flush = []  # callables() after each batch's replies went out
        self._full_warned = False

    def submit(self, piece, link, reply, bus_addr=None, conn_box=None):
        """Judge one piece now; reply(outcome, ok) after the commit.
        Raises wire.WireError for a rejected piece (counted, no reply)."""
        judged = time.perf_counter()
        out = self.ingest.process(piece, link, self.clock.monotonic(), self.clock.wall(), bus_addr, conn_box)
        self._replies.append((reply, out, judged, link))
        if len(self._replies) >= MAX_BATCH_FRAMES:
            self.flush()
        else:
            self._schedule()
        return out

    def kick(self):
        """Something other than a frame (a supervision tick) changed the batch."""
        if self.ingest.pending():
            self._schedule()

    def _schedule(self):
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self):
        self._scheduled = False
        replies, self._replies = self._replies, []
        if not replies and not self.ingest.pending():
            return
        try:
            events = self.ingest.commit()
        except Exception as e:
            if not isinstance(e, StorageError):
                # A bug, not a full disk: still nothing was ACKed, and every
                # waiting transport must hear so (the bus must not hang).
                log.exception(kv("commit_crashed", frames=len(replies)))
            if not self._full_warned:
                log.error(kv("commit_failed", frames=len(replies), error=str(e)))
                self._full_warned = True
            else:
                log.debug(kv("commit_failed", frames=len(replies), error=str(e)))
            for reply, out, _, _ in replies:
                _safe(reply, out, False)
            return
        if self._full_warned:
            log.warning(kv("commit_recovered"))
            self._full_warned = False
        self.metrics.inc("frames_committed", len(replies))
        for reply, out, judged, link in replies:
            _safe(reply, out, True)
            if out.ack is not None:
                # The gateway's own share of the ACK latency: from the frame
                # being read and judged to its ACK handed to the transport.
                self.metrics.observe("ack_delay_seconds", time.perf_counter() - judged, link=link)
        if events:
            for fn in self.on_commit:
                try:
                    fn(events)
                except Exception:
                    log.exception(kv("on_commit_failed"))
        for fn in self.after_flush:
            try:
                fn()
            except Exception:
                log.exception(kv("after_flush_failed"))


def _safe(reply, out, ok):
    try:
        reply(out, ok)
    except Exception:
        log.exception(kv("reply_failed", box=out.frame.box_id))
