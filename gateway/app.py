"""The gateway process: wires store, registry, ingest, transports, forwarders
and the HTTP API together (the thin asyncio shell around the pure cores).

HTTP (aiohttp, http.host:http.port, default 127.0.0.1:8480):
    GET    /health                          liveness and a summary (JSON), no token
    GET    /metrics                         Prometheus text, no token
    GET    /api/v1/admin/boxes              registry without keys          admin token
    POST   /api/v1/admin/boxes              add or re-key a box            admin token
    DELETE /api/v1/admin/boxes/{box_id}     revoke a box                   admin token
    POST   /api/v1/boxes/{box_id}/commands  {"op": "selftest"} -> 202      console token
    ... and whatever callbox_gateway.media mounts (calls, media files).
"""

import asyncio
import gc
import hmac
import inspect
import json
import logging
import os
import secrets
import sqlite3
import struct

from aiohttp import web

from callbox_firmware import wire

from .clock import Clock
from .config import Config, resolve
from .errors import ConfigError, GatewayError, RegistryError, StorageError
from .forward import Forwarder, ForwardPolicy
from .ingest import Ingest, iso
from .lte import LteServer
from .observe import Metrics, RateLimitedLog, kv
from .pipeline import Pipeline
from .registry import Registry, on_bus
from .rs485 import BusMaster
from .store import Store
from .supervision import Supervisor, fault_names, merge_selftest

log = logging.getLogger(__name__)

try:  # the camera/call pipeline is optional (issue 7)
    from . import media as _media
except ImportError:
    _media = None

_ALARM_KINDS_WITH_MEDIA = ("emergency", "panic")
_MAX_ADMIN_BODY = 16 * 1024  # a box record is a few hundred bytes


class Hooks:
    """What the media package may call back into the gateway."""

    def __init__(self, gw):
        self._gw = gw

    def send_call_state(self, box_id, state, event=0, prompt="none"):
        """Queue a CALL_STATE frame to the box (its light and prompt). True if
        queued on a link that currently reaches the box."""
        return self._gw.send_down(box_id, {"type": "CALL_STATE", "state": state, "event": event, "prompt": prompt})

    def verify_console_token(self, request):
        return self._gw.check_token(request, self._gw.console_token)

    def on_media(self, event_id, meta):
        """The media service's callback: snapshot (clip None) and later the
        clip are ready for event_id."""
        try:
            box_id = int(event_id.split("-")[0], 16)
        except (ValueError, AttributeError):
            log.warning(kv("on_media_bad_event_id", event_id=event_id))
            return
        meta = meta or {}
        self.attach_media(event_id, box_id, meta.get("snapshot_url"), meta.get("clip"))

    def on_selftest(self, box_id, result):
        """An audio self-test result from the media service: merged with the
        box's own self-test (buttons, flash) in the next health report."""
        s = self._gw.supervisor.boxes.get(int(box_id))
        if s is not None:
            merge_selftest(s.health, "audio", result)
            self._gw.health_changed.set()

    def attach_media(self, event_id, box_id, snapshot_url=None, clip=None):
        """Snapshot/clip ready after the alarm: queued as POST /api/v1/media
        to every console sink (durable, retried on 404)."""
        sinks = [n for n, s in self._gw.sinks.items() if hasattr(s, "deliver_media")]
        if sinks:
            self._gw.store.add_media(event_id, box_id, {"event_id": event_id, "snapshot_url": snapshot_url, "clip": clip}, sinks)
            for n in sinks:
                self._gw.forwarders[n].wake.set()


class Gateway:
    def __init__(self, config=None, clock=None, forward_policy=None):
        self.cfg = config or Config()
        self.clock = clock or Clock()
        self.forward_policy = forward_policy or ForwardPolicy(self.cfg.forward.base_s, self.cfg.forward.cap_s)
        self.metrics = Metrics()
        self.rlog = RateLimitedLog(log)
        self.store = None
        self.sinks = {}
        self.forwarders = {}
        self.lte = None
        self.bus = None
        self.media = None
        self._tasks = []
        self._media_tasks = set()
        self._runner = None
        self.http_port = None
        self.health_changed = asyncio.Event()
        self.stopped = asyncio.Event()

    # ---------------------------------------------------------------- tokens

    def _token_file(self, name, configured):
        if configured:
            return configured
        p = self.cfg.data_path() / name
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            tok = secrets.token_hex(32)
            fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(tok + "\n")
            log.info(kv("token_created", file=p))
            return tok

    @staticmethod
    def check_token(request, token):
        got = request.headers.get("Authorization", "")
        return bool(token) and hmac.compare_digest(got.encode(), ("Bearer " + token).encode())

    # ---------------------------------------------------------------- start/stop

    async def start(self):
        cfg = self.cfg
        data = cfg.data_path()
        data.mkdir(parents=True, exist_ok=True)
        self.store = Store(data / "gateway.db", cfg.storage.synchronous, cfg.storage.max_db_mb)
        self.admin_token = self._token_file("admin.token", cfg.http.admin_token)
        self.console_token = self._token_file("console.token", cfg.http.console_token)
        self.registry = Registry(self.store)
        self.store.transaction(lambda: self._config_boxes(cfg))
        s = cfg.supervision
        self.supervisor = Supervisor(s.heartbeat_interval_s, s.missed_heartbeats, s.battery_low_mv, s.battery_ok_mv)
        states = self.store.load_states()
        now = self.clock.monotonic()
        for box in self.registry:
            self.supervisor.add(box.box_id, now, states.get(box.box_id))
        self._build_sinks()
        self.ingest = Ingest(self.registry, self.store, self.supervisor, list(self.sinks), self.metrics)
        self.ingest.want_time_sync = self._want_time_sync
        self._time_syncs = []
        loop = asyncio.get_running_loop()
        self.pipeline = Pipeline(self.ingest, self.clock, loop, self.metrics)
        self.pipeline.on_commit.append(self._committed)
        self.pipeline.after_flush.append(self._send_time_syncs)
        self.registry.listeners.append(self._registry_changed)
        for name, sink in self.sinks.items():
            if hasattr(sink, "start"):
                await sink.start()
            f = Forwarder(name, sink, self.store, self.metrics, self.clock, self.forward_policy)
            self.forwarders[name] = f
            self._tasks.append(f.start())
            if hasattr(sink, "health_loop"):
                self._tasks.append(asyncio.ensure_future(sink.health_loop(self.health_report, self.health_changed, self.clock)))
        if cfg.lte.enabled:
            self.lte = LteServer(cfg.lte, self.pipeline, self.ingest, self.metrics, self.clock, self.rlog)
            await self.lte.start()
        if cfg.rs485.url:
            self.bus = BusMaster(cfg.rs485, self.registry, self.ingest, self.pipeline, self.metrics, self.rlog)
            await self.bus.start()
        await self._start_http()
        self._tasks.append(asyncio.ensure_future(self._supervise()))
        log.info(kv("gateway_started", gateway=cfg.gateway_id, http_port=self.http_port, lte_port=self.lte.port if self.lte else "off",
                    rs485=cfg.rs485.url or "off", boxes=len(self.registry), sinks=",".join(self.sinks) or "none", db=data / "gateway.db"))

    def _config_boxes(self, cfg):
        # One transaction for all: 1,000 boxes are one fsync, not 1,000.
        for rec in cfg.boxes:
            rec = dict(rec)
            if "key_file" in rec:
                try:
                    rec["key"] = resolve(cfg, rec.pop("key_file")).read_text().strip()
                except OSError as e:
                    raise ConfigError("[[boxes]] box %s: key_file unreadable (%s)" % (rec.get("box_id"), e)) from None
            try:
                self.registry.add(rec, self.clock.wall())
            except RegistryError as e:
                raise ConfigError("[[boxes]]: %s" % e) from None

    def _build_sinks(self):
        for i, tbl in enumerate(self.cfg.sinks):
            tbl = dict(tbl)
            kind = tbl.pop("type")
            name = tbl.pop("name", "%s%d" % (kind, i))
            if name in self.sinks:
                raise ConfigError("[[sinks]] name %r used twice" % name)
            if kind == "console":
                from .forward_http import ConsoleSink

                allowed = {"url", "token", "timeout_s", "ca_file", "health_interval_s"}
                bad = set(tbl) - allowed
                if bad:
                    raise ConfigError("[[sinks]] %s: unknown keys %s; valid: %s" % (name, ", ".join(sorted(bad)), ", ".join(sorted(allowed))))
                self.sinks[name] = ConsoleSink(tbl.get("url", ""), tbl.get("token") or self.console_token, self.cfg.gateway_id,
                                               tbl.get("timeout_s", 10.0), tbl.get("ca_file", ""), tbl.get("health_interval_s", 10.0), name)
            else:
                try:
                    from . import forward_dc09
                except ImportError as e:
                    raise ConfigError("[[sinks]] %s: DC-09 forwarding is not installed (%s)" % (name, e)) from None
                self.sinks[name] = forward_dc09.Dc09Sink(forward_dc09.Dc09Config.from_dict(tbl, base_dir=self.cfg.config_dir or None),
                                                         state_dir=self.cfg.data_path() / ("dc09-" + forward_dc09.file_safe(name)))

    async def _start_http(self):
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/health", self.h_health)
        app.router.add_get("/metrics", self.h_metrics)
        app.router.add_get("/api/v1/admin/boxes", self.h_list_boxes)
        app.router.add_post("/api/v1/admin/boxes", self.h_add_box)
        app.router.add_delete("/api/v1/admin/boxes/{box_id}", self.h_revoke_box)
        app.router.add_post("/api/v1/boxes/{box_id}/commands", self.h_command)
        if _media is not None and hasattr(_media, "setup"):
            media_cfg = dict(self.cfg.media)
            # Clips and recordings live with the gateway's other state, never
            # in whatever directory the gateway was started from.
            media_cfg.setdefault("media_dir", str(self.cfg.data_path() / "media"))
            if self.cfg.config_dir:
                for k in ("media_dir", "cache_dir"):
                    if media_cfg.get(k):
                        media_cfg[k] = str(resolve(self.cfg, media_cfg[k]))
            try:
                self.media = _media.setup(app, media_cfg, Hooks(self))
                if self.media is None:
                    self.media = _media
            except Exception as e:
                log.error(kv("media_setup_failed", error=repr(e), hint="alarms and forwarding run without camera/calls"))
                self.media = None
        self.app = app
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.http.host, self.cfg.http.port)
        try:
            await site.start()
        except OSError as e:
            from .errors import LinkError

            raise LinkError("HTTP cannot bind %s:%d (%s); set http.port" % (self.cfg.http.host, self.cfg.http.port, e)) from None
        self.http_port = site._server.sockets[0].getsockname()[1]

    async def stop(self):
        for t in list(self._media_tasks):
            t.cancel()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.bus:
            await self.bus.stop()
        if self.lte:
            await self.lte.stop()
        for s in self.sinks.values():
            if hasattr(s, "close"):
                await s.close()
        if self._runner:
            await self._runner.cleanup()
        if self.pipeline is not None:
            self.pipeline.flush()
        if self.store:
            self.store.close()
        self.stopped.set()

    pipeline = None

    # ---------------------------------------------------------------- events

    def _committed(self, events):
        for f in self.forwarders.values():
            f.wake.set()
        self.health_changed.set()
        if self.media is None:
            return
        for ev in events:
            if ev["_source"] != "box" or ev["kind"] not in _ALARM_KINDS_WITH_MEDIA or ev["restore"]:
                continue
            box_id = ev["box_id"]
            if not self.media_has_box(box_id):
                continue  # no camera or audio at this box: nothing to capture
            try:
                if ev["kind"] == "emergency":
                    # Emergency pressed while the box's call is connected: the
                    # citizen hangs up (docs/gateway.md, "Calls"). The press is
                    # still stored and forwarded like any other.
                    action = self.media.box_press_action(box_id) if hasattr(self.media, "box_press_action") else None
                    if action == "hangup":
                        log.info(kv("box_hangup", box=box_id, event_id=ev["event_id"]))
                        self._media_task(self.media.hangup_box(box_id), "media_hangup_failed")
                        continue
                    if action == "ignore":
                        log.info(kv("box_hangup_ignored", box=box_id, event_id=ev["event_id"], reason="call just connected"))
                        continue
                r = self.media.on_alarm(box_id, ev["event_id"], ev["press_time"], kind=ev["kind"], synced=ev["press_time_synced"])
            except Exception as e:
                log.error(kv("media_on_alarm_failed", box=box_id, event_id=ev["event_id"], error=repr(e)))
                continue
            self._media_task(r, "media_on_alarm_failed")

    def media_has_box(self, box_id):
        """True if the media service has a camera or audio for this box."""
        if self.media is None:
            return False
        has = getattr(self.media, "has_box", None)
        return True if has is None else bool(has(box_id))

    def _media_task(self, r, what):
        if not inspect.isawaitable(r):
            return None
        t = asyncio.ensure_future(r)
        t.what = what
        self._media_tasks.add(t)
        t.add_done_callback(self._media_done)
        return t

    def _media_done(self, t):
        self._media_tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            # The alarm itself is stored, ACKed and forwarded; only its
            # snapshot/clip, a hang-up or a self-test failed (a dead camera,
            # a box in a call).
            what = getattr(t, "what", "media_failed")
            self.rlog.warning((what, repr(t.exception())[:60]), what, error=repr(t.exception()))

    def _registry_changed(self, box_id, box):
        self.ingest.forget(box_id)
        if box is None:
            self.supervisor.remove(box_id)
            if self.lte:
                self.lte.drop_box(box_id)
        else:
            self.supervisor.add(box_id, self.clock.monotonic())
        if self.bus:
            self.bus.refresh_addresses()
        self.health_changed.set()

    def _next_request(self):
        """A COMMAND request number. A box runs each request number once
        (protocol.md 5.5), so numbering starts at a random point after every
        gateway start instead of at 1."""
        if not hasattr(self, "_request"):
            self._request = secrets.randbelow(65535)
        self._request = self._request % 65535 + 1
        return self._request

    def _want_time_sync(self, box_id):
        # Called while a heartbeat is judged; sent after the batch's commit
        # (_send_time_syncs), so the heartbeat's ACK goes first.
        self._time_syncs.append(box_id)

    def _send_time_syncs(self):
        while self._time_syncs:
            box_id = self._time_syncs.pop(0)
            wall = self.clock.wall()
            args = struct.pack(">IH", int(wall), int((wall % 1) * 1000))
            if self.send_down(box_id, {"type": "COMMAND", "request": self._next_request(), "op": "time_sync", "args": args}):
                self.metrics.inc("time_syncs_sent")
                log.info(kv("time_sync_sent", box=box_id))

    async def _supervise(self):
        while True:
            await self.clock.sleep(self.cfg.supervision.tick_s)
            evs = self.ingest.supervise(self.clock.monotonic(), self.clock.wall())
            for ev in evs:
                log.warning(kv("box_offline", box=ev["box_id"], junction=ev["junction"],
                               silent_s=self.supervisor.offline_after_s, hint="check the box's power and link"))
            self.pipeline.kick()
            self._update_gauges()

    def _update_gauges(self):
        m = self.metrics
        m.set("boxes_registered", len(self.registry))
        m.set("boxes_online", sum(1 for s in self.supervisor.boxes.values() if s.online))
        try:
            for (sink, state), n in self.store.queue_depth().items():
                m.set("outbox_rows", n, sink=sink, state=state)
        except (StorageError, sqlite3.Error) as e:
            log.debug(kv("queue_depth_failed", error=e))
        # Sinks that keep their own counters (DC-09: replies, failovers per
        # receiver) show them here, labelled with the sink's name.
        for name, sink in self.sinks.items():
            samples = getattr(sink, "metric_samples", None)
            if samples is None:
                continue
            for kind, mname, labels, value in samples():
                if kind == "counter":
                    m.set_counter(mname, value, sink=name, **labels)
                else:
                    m.set(mname, value, sink=name, **labels)

    def send_down(self, box_id, msg):
        """Queue a downlink frame on the box's link. A box on the bus with LTE
        backup ("rs485+lte") is reached over LTE only while it has an LTE
        connection and has not answered a poll lately (it fell back to LTE)."""
        box = self.registry.get(box_id)
        if box is None:
            return False
        if box.link == "rs485+lte" and self.lte is not None and box_id in self.lte.by_box:
            if self.bus is None or not self.bus.answering(box.bus_addr):
                try:
                    return self.lte.send(box_id, self.ingest.encode_down(box_id, msg))
                except (wire.WireError, StorageError):
                    return False
        if on_bus(box.link) and self.bus is not None:
            return self.bus.queue(box_id, msg)
        if self.lte is not None:
            try:
                return self.lte.send(box_id, self.ingest.encode_down(box_id, msg))
            except (wire.WireError, StorageError):
                return False
        return False

    # ---------------------------------------------------------------- reports

    def health_report(self):
        boxes = []
        for box in self.registry:
            s = self.supervisor.boxes.get(box.box_id)
            h = dict(s.health) if s else {}
            lh = h.get("last_heartbeat")
            boxes.append({
                "box_id": box.box_id, "junction": box.junction, "lat": box.lat, "lon": box.lon,
                "online": bool(s and s.online), "last_heartbeat": iso(lh) if lh else None, "link": h.get("link", box.link),
                "rssi_dbm": h.get("rssi_dbm"), "power": h.get("power", "unknown"), "battery_mv": h.get("battery_mv"),
                "tamper": bool(s and s.troubles.get("tamper")), "fw": h.get("fw"), "outbox": h.get("outbox"),
                "boot_reason": h.get("boot_reason"), "uptime_s": h.get("uptime_s"), "faults": fault_names(h.get("faults", [])),
                "selftest": h.get("selftest"),
            })
        return {"gateway_id": self.cfg.gateway_id, "time": iso(self.clock.wall()), "boxes": boxes}

    # ---------------------------------------------------------------- HTTP

    async def h_health(self, request):
        self._update_gauges()
        depth = self.store.queue_depth()
        body = {
            "status": "ok", "gateway_id": self.cfg.gateway_id,
            "boxes": len(self.registry), "online": sum(1 for s in self.supervisor.boxes.values() if s.online),
            "lte_connections": len(self.lte.conns) if self.lte else None,
            "rs485_cycle_ms": round(self.bus.last_cycle_s * 1000, 2) if self.bus and self.bus.last_cycle_s else None,
            "outbox_pending": sum(n for (_, st), n in depth.items() if st == "pending"),
            "outbox_parked": sum(n for (_, st), n in depth.items() if st == "parked"),
            "commit_failures": self.metrics.total("commit_failures"),
        }
        if body["commit_failures"] and self.pipeline._full_warned:
            body["status"] = "degraded: storage failing, alarms not ACKed"
        return web.json_response(body)

    async def h_metrics(self, request):
        self._update_gauges()
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    def _admin(self, request):
        if not self.check_token(request, self.admin_token):
            self.rlog.warning(("admin401", request.remote), "admin_unauthorized", peer=request.remote)
            raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or wrong admin bearer token"}), content_type="application/json")

    @staticmethod
    def _err(status, message):
        return web.json_response({"error": message}, status=status)

    async def h_list_boxes(self, request):
        self._admin(request)
        return web.json_response({"boxes": self.registry.listing()})

    async def h_add_box(self, request):
        self._admin(request)
        if request.content_length and request.content_length > _MAX_ADMIN_BODY:
            return self._err(413, "body too large")
        try:
            rec = await request.json()
        except ValueError:
            return self._err(400, "body is not JSON; send {box_id, key (hex), junction, lat, lon, link, bus_addr}")
        try:
            box = self.registry.add(rec, self.clock.wall())
        except RegistryError as e:
            return self._err(400, str(e))
        except StorageError as e:
            return self._err(503, str(e))
        log.info(kv("box_added", box=box.box_id, junction=box.junction, link=box.link, addr=box.bus_addr))
        return web.json_response({"box": box.public()}, status=201)

    async def h_revoke_box(self, request):
        self._admin(request)
        try:
            box_id = int(request.match_info["box_id"])
        except ValueError:
            return self._err(400, "box_id must be an integer")
        try:
            self.registry.revoke(box_id)
        except RegistryError as e:
            return self._err(404, str(e))
        except StorageError as e:
            return self._err(503, str(e))
        log.info(kv("box_revoked", box=box_id))
        return web.json_response({"revoked": box_id})

    async def h_command(self, request):
        if not self.check_token(request, self.console_token):
            return self._err(401, "missing or wrong console bearer token")
        try:
            box_id = int(request.match_info["box_id"])
            body = await request.json()
            op = body["op"]
        except (ValueError, KeyError, TypeError):
            return self._err(400, 'send {"op": "selftest"}')
        if op not in wire.COMMAND_OPS.values():
            return self._err(400, "op %r unknown; one of %s" % (op, ", ".join(wire.COMMAND_OPS.values())))
        self._next_request()
        audio = False
        if op == "selftest" and self.registry.get(box_id) is not None and self.media_has_box(box_id):
            # The speaker/mic tone loopback runs on the gateway's audio path,
            # so it runs even while the box's data link is down.
            audio = self._media_task(self._audio_selftest(box_id), "media_selftest_failed") is not None
        queued = self.send_down(box_id, {"type": "COMMAND", "request": self._request, "op": op, "args": b""})
        if not queued and not audio:
            return self._err(409, "box %d is not registered or not connected right now" % box_id)
        return web.json_response({"request": self._request, "box_command": queued, "audio_selftest": audio}, status=202)

    async def _audio_selftest(self, box_id):
        try:
            return await self.media.selftest(box_id)
        except Exception as e:
            # A box in a call refuses (the tone would cut the call); a box
            # without audio has nothing to test. The console sees no result.
            log.warning(kv("audio_selftest_failed", box=box_id, error=e, hint="retry after the call, or check [[media.boxes]]"))
            return None


async def run_forever(cfg, ready=None):
    """Run a gateway until cancelled (SIGINT/SIGTERM in the CLI)."""
    gw = Gateway(cfg)
    try:
        await gw.start()
    except GatewayError:
        await gw.stop()
        raise
    # Everything built at start (the registry, each box's state, the HTTP
    # app) lives as long as the process: take it out of the cyclic garbage
    # collector's walks. A full collection over it stalled the event loop for
    # 20-30 ms under `callbox bench gateway`, and every frame waiting then
    # waited that much longer for its ACK.
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready(gw)
    try:
        await asyncio.Event().wait()
    finally:
        await gw.stop()
