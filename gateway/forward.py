"""Store-and-forward: the outbox table drained to each sink, in order.

Each sink has its own queue (outbox rows with its name), so a dead alarm
receiving centre does not hold back the console. A worker per sink takes the
oldest pending rows (seq order, so in order per box), delivers them, and
deletes them only after the sink returned. The sink decides what failed:

    sink.deliver(event)         -> None or raises DeliveryError(msg, retryable)
    sink.deliver_batch(rows)    optional: many at once (the console's POST /events)

`ForwardPolicy` is the pure core: what to do after an outcome, how long to
wait (capped exponential backoff with jitter, the random source injected).
"""

import asyncio
import logging
import random

from .errors import DeliveryError, StorageError
from .observe import kv

log = logging.getLogger(__name__)


class ForwardPolicy:
    """Backoff 1 s, 2 s, 4 s ... capped at 60 s, each scaled by a jitter of
    0.8..1.2 so gateways that lost the same console do not return in step."""

    def __init__(self, base_s=1.0, cap_s=60.0, batch=50, rand=random.random):
        self.base_s = base_s
        self.cap_s = cap_s
        self.batch = batch
        self.rand = rand

    def next_delay(self, tries):
        d = min(self.cap_s, self.base_s * (2 ** min(tries, 30)))
        return d * (0.8 + 0.4 * self.rand())

    def decide(self, error, n_rows):
        """After a DeliveryError for n_rows: 'retry' (keep all, back off),
        'split' (retry one by one to find the bad one) or 'park' (this row
        will never be accepted: set aside, counted, next rows go on)."""
        if error.retryable:
            return "retry"
        return "split" if n_rows > 1 else "park"


class Forwarder:
    def __init__(self, name, sink, store, metrics, clock, policy=None):
        self.name = name
        self.sink = sink
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.policy = policy or ForwardPolicy()
        self.wake = asyncio.Event()
        self.tries = 0
        self.delivered = 0
        self._warned = None
        self._task = None
        self.batch = self.policy.batch if hasattr(sink, "deliver_batch") else 1

    def start(self):
        self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self):
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)

    async def _send(self, rows):
        if hasattr(self.sink, "deliver_batch"):
            await self.sink.deliver_batch(rows)
        else:
            for r in rows:
                await self.sink.deliver(r["body"])

    async def run(self):
        while True:
            try:
                rows = self.store.pending(self.name, self.batch)
            except Exception as e:  # the database went away: try again later
                log.error(kv("outbox_read_failed", sink=self.name, error=e))
                await self.clock.sleep(self.policy.next_delay(3))
                continue
            self.metrics.set("outbox_pending", len(rows), sink=self.name)
            if not rows:
                self.wake.clear()
                await self.wake.wait()
                continue
            await self.deliver(rows)

    async def deliver(self, rows):
        """One attempt at rows (in seq order); returns after their fate is
        written. Retryable failures sleep the backoff here."""
        try:
            await self._send(rows)
        except DeliveryError as e:
            action = self.policy.decide(e, len(rows))
            self.metrics.inc("forward_failures", sink=self.name, retryable=str(e.retryable).lower())
            key = (str(e.status), e.retryable)
            if self._warned != key:
                log.warning(kv("forward_failed", sink=self.name, rows=len(rows), first=rows[0]["event_id"], error=str(e), action=action))
                self._warned = key
            else:
                log.debug(kv("forward_failed", sink=self.name, rows=len(rows), error=str(e)))
            if action == "retry":
                try:
                    self.store.failed([r["seq"] for r in rows], str(e))
                except StorageError:
                    pass
                delay = self.policy.next_delay(self.tries)
                self.tries += 1
                await self.clock.sleep(delay)
            elif action == "split":
                for r in rows:
                    await self.deliver([r])
            else:
                self.store.failed([r["seq"] for r in rows], str(e), park=True)
                self.metrics.inc("forward_parked", sink=self.name)
                log.error(kv("forward_parked", sink=self.name, event_id=rows[0]["event_id"], error=str(e),
                             hint="the receiver refuses this event as malformed; see outbox.last_error"))
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # A sink bug must not kill the queue: treat as retryable.
            log.exception(kv("sink_crashed", sink=self.name, error=e))
            delay = self.policy.next_delay(self.tries)
            self.tries += 1
            await self.clock.sleep(delay)
            return
        self.store.delivered([r["seq"] for r in rows])
        self.delivered += len(rows)
        self.metrics.inc("forwarded", len(rows), sink=self.name)
        if self.tries or self._warned:
            log.info(kv("forward_recovered", sink=self.name, after_tries=self.tries))
        self.tries = 0
        self._warned = None
