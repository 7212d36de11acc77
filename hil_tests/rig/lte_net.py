"""An LTE network emulator: a TCP proxy between the boxes' modems and the
junction gateway's LTE listener, with the faults of a cellular data path.

    net = LteNet("127.0.0.1", gateway_lte_port, latency_ms=60, jitter_ms=20,
                 loss=0.10, seed=3).start()
    # point the box (its modem simulator's AT+CIPOPEN) at 127.0.0.1:net.port
    net.blackout(120)          # nothing passes either way for 120 s
    net.reset_connections()    # every connection torn down (cell change, NAT)
    net.stop()

What it does to the byte stream (the pure part is `LinkModel`, time passed in):

- **Latency and jitter.** Each chunk read from one side is written to the
  other `latency_ms` plus a uniform jitter in [-jitter_ms, +jitter_ms] later,
  never before the chunk ahead of it (TCP delivers in order).
- **Loss.** The modem's TCP retransmits a lost packet, so loss on LTE shows
  as delay, not as missing bytes: a chunk is lost with probability `loss`,
  then retransmitted after `rto_ms` (200 ms, Linux's minimum RTO), each retry
  lost again with the same probability and the RTO doubled up to
  `rto_max_ms`; the chunks behind it wait (head-of-line blocking).
- **Blackouts.** During `blackout(seconds)` data written by either side
  vanishes without a trace (as in the modem simulator's blackout: the sender's
  stack has no idea), and a new connection is accepted by the local stack but
  not connected upstream until the blackout ends; one still waiting after
  `connect_timeout_s` is closed (the modem reports +CIPOPEN error 10).
- **Reconnects.** `reset_connections()` closes every proxied connection at
  both ends, as a cell handover or a carrier NAT timeout does.

`on_data` callbacks see every chunk as it is delivered:
``fn(direction, time.monotonic(), bytes, conn_id)`` with direction ``"up"``
(box to gateway) or ``"down"``, and conn_id a number per connection; the rig decodes ACKs from them for its latency figures.
Counters in `stats`: chunks, bytes, lost (retransmissions), blackout_dropped,
connections, resets, connect_timeouts.
"""

import asyncio
import collections
import logging
import random
import threading
import time

log = logging.getLogger(__name__)

RTO_MS = 200.0  # Linux TCP_RTO_MIN
RTO_MAX_MS = 3000.0  # after a few doublings the box's own keepalive judges the link
_READ_CHUNK = 4096


class LteNetError(Exception):
    """A misuse of the LTE emulator (bad parameter, nothing to connect to)."""


class LinkModel:
    """Decides when a chunk written now arrives at the other side. Pure."""

    def __init__(self, latency_ms=0.0, jitter_ms=0.0, loss=0.0, rto_ms=RTO_MS, rto_max_ms=RTO_MAX_MS, seed=1):
        self.rng = random.Random(seed)
        self.rto_ms = rto_ms
        self.rto_max_ms = rto_max_ms
        self.blackout_until = 0.0
        self.latency_ms = self.jitter_ms = self.loss = 0.0
        self.set(latency_ms, jitter_ms, loss)
        self.stats = collections.Counter()

    def set(self, latency_ms=None, jitter_ms=None, loss=None):
        if latency_ms is not None:
            if latency_ms < 0:
                raise LteNetError("latency_ms %r must be >= 0" % (latency_ms,))
            self.latency_ms = float(latency_ms)
        if jitter_ms is not None:
            if jitter_ms < 0:
                raise LteNetError("jitter_ms %r must be >= 0" % (jitter_ms,))
            self.jitter_ms = float(jitter_ms)
        if loss is not None:
            if not 0.0 <= loss < 1.0:
                raise LteNetError("loss %r must be a probability below 1 (0.1 = 10 %% of packets)" % (loss,))
            self.loss = float(loss)

    def blackout(self, now, seconds):
        self.blackout_until = max(self.blackout_until, now + seconds)

    def end_blackout(self):
        self.blackout_until = 0.0

    def in_blackout(self, now):
        return now < self.blackout_until

    def schedule(self, now, behind=0.0):
        """Arrival time of a chunk written at `now` (`behind`: arrival of the
        chunk ahead of it on the same stream), or None if it vanishes."""
        if self.in_blackout(now):
            self.stats["blackout_dropped"] += 1
            return None
        delay = self.latency_ms
        if self.jitter_ms:
            delay += self.rng.uniform(-self.jitter_ms, self.jitter_ms)
        rto = self.rto_ms
        while self.loss and self.rng.random() < self.loss:
            self.stats["lost"] += 1
            delay += rto
            rto = min(rto * 2, self.rto_max_ms)
        self.stats["chunks"] += 1
        return max(now + max(delay, 0.0) / 1000.0, behind)


class LteNet:
    """The proxy, on its own event loop in a thread (tests stay synchronous)."""

    def __init__(self, upstream_host, upstream_port, latency_ms=0.0, jitter_ms=0.0, loss=0.0,
                 rto_ms=RTO_MS, connect_timeout_s=10.0, seed=1, host="127.0.0.1", port=0):
        self.upstream = (upstream_host, upstream_port)
        self.model = LinkModel(latency_ms, jitter_ms, loss, rto_ms, seed=seed)
        self.connect_timeout_s = connect_timeout_s
        self.host = host
        self.port = port
        self.on_data = []
        self._loop = None
        self._thread = None
        self._server = None
        self._conns = set()
        self._ready = threading.Event()
        self._blackout_over = None

    @property
    def stats(self):
        return self.model.stats

    # ------------------------------------------------------------ control (any thread)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="lte-net", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise LteNetError("LTE emulator did not start within 10 s")
        if self._server is None:
            raise LteNetError("LTE emulator cannot listen on %s:%d" % (self.host, self.port))
        return self

    def stop(self):
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, fn, *args):
        done = threading.Event()
        out = []

        def run():
            try:
                out.append(fn(*args))
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)
        return out[0] if out else None

    def set(self, latency_ms=None, jitter_ms=None, loss=None):
        self._call(self.model.set, latency_ms, jitter_ms, loss)

    def blackout(self, seconds):
        """Nothing passes for `seconds` from now."""
        log.info("lte net: blackout for %.1f s", seconds)
        self._call(self._start_blackout, seconds)

    def end_blackout(self):
        self._call(self._stop_blackout)

    def reset_connections(self):
        """Close every proxied connection at both ends."""
        return self._call(self._reset)

    @property
    def connections(self):
        return len(self._conns)

    # ------------------------------------------------------------ loop side

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._blackout_over = asyncio.Event()
        self._blackout_over.set()
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._client, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as e:
            log.error("lte net: cannot listen: %s", e)
            self._server = None
        self._ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self):
        if self._server is not None:
            self._server.close()
        self._reset()

    def _start_blackout(self, seconds):
        now = time.monotonic()
        self.model.blackout(now, seconds)
        self._blackout_over.clear()
        self._loop.call_later(seconds, self._check_blackout)

    def _check_blackout(self):
        if not self.model.in_blackout(time.monotonic()):
            self._blackout_over.set()
        else:
            self._loop.call_later(max(0.01, self.model.blackout_until - time.monotonic()), self._check_blackout)

    def _stop_blackout(self):
        self.model.end_blackout()
        self._blackout_over.set()

    def _reset(self):
        n = 0
        for c in list(self._conns):
            c.close()
            n += 1
        self.model.stats["resets"] += n
        return n

    async def _client(self, reader, writer):
        conn = _Conn(self, writer)
        self._conns.add(conn)
        self.model.stats["connections"] += 1
        try:
            if not self._blackout_over.is_set():
                # Held: whatever the box writes meanwhile vanishes, as the
                # rest of its data does in a blackout.
                async def discard():
                    while True:
                        d = await reader.read(_READ_CHUNK)
                        if not d:
                            return
                        self.model.stats["blackout_dropped"] += 1

                drain = asyncio.ensure_future(discard())
                try:
                    await asyncio.wait_for(self._blackout_over.wait(), self.connect_timeout_s)
                except asyncio.TimeoutError:
                    self.model.stats["connect_timeouts"] += 1
                    return
                finally:
                    drain.cancel()
                    try:
                        await drain
                    except (asyncio.CancelledError, Exception):
                        pass
            if conn.closed:
                return
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), self.connect_timeout_s)
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("lte net: gateway %s:%d unreachable: %s", self.upstream[0], self.upstream[1], e)
                return
            conn.up_writer = up_w
            await asyncio.gather(conn.pump(reader, up_w, "up"), conn.pump(up_r, writer, "down"), return_exceptions=True)
        finally:
            conn.close()
            self._conns.discard(conn)


class _Conn:
    _ids = 0

    def __init__(self, net, writer):
        _Conn._ids += 1
        self.id = _Conn._ids
        self.net = net
        self.writer = writer
        self.up_writer = None
        self.closed = False
        self._tasks = []

    def close(self):
        if self.closed:
            return
        self.closed = True
        for w in (self.writer, self.up_writer):
            if w is not None:
                try:
                    w.close()
                except Exception:
                    pass
        for t in self._tasks:
            t.cancel()

    async def pump(self, reader, writer, direction):
        """Read from one side, deliver to the other as the model says."""
        queue = collections.deque()
        ready = asyncio.Event()
        model = self.net.model

        async def deliver():
            while True:
                while not queue:
                    ready.clear()
                    await ready.wait()
                at, data = queue[0]
                d = at - time.monotonic()
                if d > 0:
                    await asyncio.sleep(d)
                queue.popleft()
                writer.write(data)
                for cb in self.net.on_data:
                    try:
                        cb(direction, time.monotonic(), data, self.id)
                    except Exception:
                        log.exception("lte net: on_data callback failed")
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        self._tasks.append(task)
        last = 0.0
        try:
            while not self.closed:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                at = model.schedule(time.monotonic(), last)
                if at is None:
                    continue
                model.stats["bytes_" + direction] += len(data)
                last = at
                queue.append((at, data))
                ready.set()
            # Let what is in flight arrive before closing the other side.
            while queue and not self.closed:
                await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()
