"""LTE listener: boxes on LTE keep one TCP connection (optionally TLS) each.

A connection belongs to the box of its first authenticated frame; frames for
any other box on it are rejected. Limits per connection, so a slow, oversized
or garbage connection cannot starve the others (all in LteConfig):

- buffer: wire.FrameReader never holds more than MAX_ENCODED (218) bytes; a
  longer run without a delimiter is dropped and counted (hunting);
- auth_timeout_s: no authenticated frame yet -> closed (port scans, slowloris);
- idle_timeout_s: silent for longer -> closed (half-open after a lost PDP context);
- frames_per_s / burst_frames: a token bucket; when it is empty the
  connection's reading is paused (TCP back-pressure) until it refills: nothing
  is dropped, the sender is only slowed;
- max_bad_frames: that many rejected frames (CRC, COBS, auth, replay) and the
  connection is closed;
- max_write_buffer_bytes: a box that does not read its ACKs is closed;
- max_connections: new connections beyond it are closed at once.

Downlink frames (ACK, CALL_STATE, COMMAND) go to the box's newest connection.
"""

import asyncio
import collections
import logging
import ssl

from callbox_firmware import wire

from .errors import LinkError
from .observe import kv

log = logging.getLogger(__name__)

_READ_CHECK_S = 1.0  # how often the idle/auth timers are checked


class BoxConnection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.cfg = server.cfg
        self.transport = None
        self.reader = wire.FrameReader()
        self.box_id = None
        self.peer = "?"
        self.bad = 0
        self.tokens = float(self.cfg.burst_frames)
        self.tokens_at = server.clock.monotonic()
        self.last_rx = self.tokens_at
        self.opened = self.tokens_at
        self.backlog = collections.deque()  # pieces read while the bucket was empty
        self.paused = False
        self.closed = False

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport):
        self.transport = transport
        p = transport.get_extra_info("peername")
        self.peer = "%s:%s" % (p[0], p[1]) if p else "?"
        if len(self.server.conns) >= self.cfg.max_connections:
            self.server.metrics.inc("lte_refused", reason="max_connections")
            self.server.rlog.warning("max_conn", "lte_refused", peer=self.peer, reason="max_connections", limit=self.cfg.max_connections)
            transport.abort()
            self.closed = True
            return
        transport.set_write_buffer_limits(high=self.cfg.max_write_buffer_bytes)
        self.server.conns.add(self)
        self.server.metrics.inc("lte_connections")

    def connection_lost(self, exc):
        self.closed = True
        self.server.conns.discard(self)
        if self.box_id is not None and self.server.by_box.get(self.box_id) is self:
            del self.server.by_box[self.box_id]
        self.backlog.clear()

    def pause_writing(self):
        # The box does not read: its write buffer passed max_write_buffer_bytes.
        self.close("slow_reader")

    def data_received(self, data):
        now = self.server.clock.monotonic()
        self.last_rx = now
        pieces = self.reader.feed(data)
        if self.reader.oversize:
            self.server.metrics.inc("frames_rejected", self.reader.oversize, reason=wire.E_OVERSIZE, link="lte")
            self.bad += self.reader.oversize
            self.reader.oversize = 0
        self.backlog.extend(pieces)
        self._drain(now)
        if self.bad >= self.cfg.max_bad_frames:
            self.close("bad_frames")

    # ---------------------------------------------------------------- frames

    def _refill(self, now):
        self.tokens = min(float(self.cfg.burst_frames), self.tokens + (now - self.tokens_at) * self.cfg.frames_per_s)
        self.tokens_at = now

    def _drain(self, now):
        self._refill(now)
        pipeline = self.server.pipeline
        while self.backlog and not self.closed:
            if self.tokens < 1.0:
                if not self.paused:
                    self.paused = True
                    self.transport.pause_reading()
                    self.server.metrics.inc("lte_rate_limited")
                    wait = (1.0 - self.tokens) / self.cfg.frames_per_s
                    asyncio.get_running_loop().call_later(wait, self._resume)
                return
            self.tokens -= 1.0
            piece = self.backlog.popleft()
            try:
                out = pipeline.submit(piece, "lte", self._reply, conn_box=self.box_id)
            except wire.WireError:
                self.bad += 1
                if self.bad >= self.cfg.max_bad_frames:
                    self.close("bad_frames")
                continue
            if self.box_id is None:
                self.box_id = out.frame.box_id
                old = self.server.by_box.get(self.box_id)
                self.server.by_box[self.box_id] = self
                if old is not None and old is not self:
                    # The box reconnected; the old socket is half-open.
                    old.close("replaced")
                log.info(kv("lte_box_connected", box=self.box_id, peer=self.peer))

    def _resume(self):
        if self.closed:
            return
        self.paused = False
        self._drain(self.server.clock.monotonic())
        if not self.paused and not self.closed:
            self.transport.resume_reading()

    def _reply(self, out, ok):
        if not ok or out.ack is None or self.closed:
            return
        try:
            frame = self.server.ingest.encode_down(out.frame.box_id, out.ack)
        except wire.WireError:
            return  # revoked between the frame and the commit
        self.transport.write(frame)
        self.server.metrics.inc("acks_sent", link="lte")

    def send(self, frame):
        if not self.closed:
            self.transport.write(frame)

    def close(self, reason):
        if self.closed:
            return
        self.closed = True
        self.server.metrics.inc("lte_closed", reason=reason)
        lvl = logging.INFO if reason in ("replaced", "revoked", "idle") else logging.WARNING
        if reason == "bad_frames":
            self.server.rlog.warning(("bad", self.peer.split(":")[0]), "lte_closed", peer=self.peer, box=self.box_id, reason=reason, bad_frames=self.bad)
        else:
            log.log(lvl, kv("lte_closed", peer=self.peer, box=self.box_id, reason=reason))
        self.transport.abort()


class LteServer:
    def __init__(self, cfg, pipeline, ingest, metrics, clock, rlog):
        self.cfg = cfg
        self.pipeline = pipeline
        self.ingest = ingest
        self.metrics = metrics
        self.clock = clock
        self.rlog = rlog
        self.conns = set()
        self.by_box = {}
        self.server = None
        self._timer = None
        self.port = None

    def _ssl(self):
        if not self.cfg.tls_cert:
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key or None)
        except (OSError, ssl.SSLError) as e:
            raise LinkError("LTE TLS: cannot load lte.tls_cert/lte.tls_key (%s); check the paths and that the key matches" % e) from None
        return ctx

    async def start(self):
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: BoxConnection(self), self.cfg.host, self.cfg.port, ssl=self._ssl(), backlog=1024)
        except OSError as e:
            raise LinkError("LTE listener cannot bind %s:%d (%s); is another gateway running? set lte.port" % (self.cfg.host, self.cfg.port, e)) from None
        self.port = self.server.sockets[0].getsockname()[1]
        self._timer = asyncio.ensure_future(self._watch())
        log.info(kv("lte_listening", host=self.cfg.host, port=self.port, tls=bool(self.cfg.tls_cert)))

    async def _watch(self):
        while True:
            await asyncio.sleep(_READ_CHECK_S)
            now = self.clock.monotonic()
            for c in list(self.conns):
                if c.box_id is None and now - c.opened > self.cfg.auth_timeout_s:
                    c.close("auth_timeout")
                elif now - c.last_rx > self.cfg.idle_timeout_s:
                    c.close("idle")
            self.metrics.set("lte_open_connections", len(self.conns))

    def send(self, box_id, frame):
        c = self.by_box.get(box_id)
        if c is None:
            return False
        c.send(frame)
        return True

    def drop_box(self, box_id):
        c = self.by_box.get(box_id)
        if c is not None:
            c.close("revoked")

    async def stop(self):
        if self._timer:
            self._timer.cancel()
        if self.server:
            self.server.close()
            for c in list(self.conns):
                c.transport.abort()
            await self.server.wait_closed()
