"""Test plumbing for the console: real servers on 127.0.0.1 in a background
event loop, a gateway played with real HTTP requests, an operator's HTTP
session, and a small fake gateway (aiohttp + aiortc) for media and calls."""

import asyncio
import json
import re
import secrets
import threading
import time

import aiohttp
from aiohttp import web

from callbox_console import auth, config
from callbox_console.server import Console, make_app

GATEWAY_ID = "gw-test-01"
# Fast scrypt in tests only: the cost is a parameter of the hash, so the code
# path is the production one.
TEST_SCRYPT_N = 2 ** 10


class FakeClock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset

    def advance(self, seconds):
        self.offset += seconds


class LoopThread:
    """An asyncio loop in a thread: servers live here, tests stay synchronous
    (Playwright's sync API needs a thread without a running loop)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="console-test-loop")
        self.thread.start()

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make_config(tmp_path, database=None, gateway_url="", token=None, **kw):
    cfg = config.ConsoleConfig(state_dir=str(tmp_path), database=database or "", scrypt_n=TEST_SCRYPT_N)
    cfg.gateways[GATEWAY_ID] = config.GatewayConfig(GATEWAY_ID, token or secrets.token_hex(32), gateway_url)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


class RunningConsole:
    """A real console (aiohttp on a free port) in a LoopThread."""

    def __init__(self, loop_thread, cfg, clock=time.time):
        self.lt = loop_thread
        self.cfg = cfg
        self.console = Console(cfg, clock=clock)
        self.app = make_app(self.console)
        self.runner = web.AppRunner(self.app, access_log=None)

        async def start():
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return self.runner.addresses[0][1]

        self.port = self.lt.run(start())
        self.url = "http://127.0.0.1:%d" % self.port
        self.token = cfg.gateways[GATEWAY_ID].token

    def run(self, coro, timeout=60):
        return self.lt.run(coro, timeout)

    def add_operator(self, username, password, role="operator", must_change=False):
        store = self.console.store
        h = auth.hash_password(password, n=TEST_SCRYPT_N)
        assert self.run(store.create_operator(username, role, h, must_change, time.time(), username.title()))

    def stop(self):
        self.lt.run(self.runner.cleanup())


def gw_headers(token, gateway_id=GATEWAY_ID):
    return {"Authorization": "Bearer " + token, "X-Callbox-Gateway": gateway_id}


async def gw_post(url, path, body, token, gateway_id=GATEWAY_ID, raw=None):
    """POST as a gateway would; returns (status, parsed JSON body)."""
    async with aiohttp.ClientSession() as s:
        data = raw if raw is not None else json.dumps(body)
        async with s.post(url + path, data=data, headers={**gw_headers(token, gateway_id),
                                                          "Content-Type": "application/json"}) as r:
            return r.status, await r.json(content_type=None)


def post_sync(console, path, body, token=None, gateway_id=GATEWAY_ID, raw=None):
    """Blocking gateway POST, run on the servers' loop thread (the test's own
    thread may host Playwright's loop)."""
    return console.run(gw_post(console.url, path, body, token or console.token, gateway_id, raw))


_seq = [0]


def event(box_id=42, kind="panic", junction="Ghantaghar Square", restore=False, event_no=None, **kw):
    if event_no is None:
        _seq[0] += 1
        event_no = _seq[0] + int(time.time() * 1000) % 10000000
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    e = {"event_id": "%08x-%08x" % (box_id, event_no), "box_id": box_id, "junction": junction,
         "lat": 26.4553, "lon": 80.3498, "kind": kind, "restore": restore, "press_time": now,
         "press_time_synced": True, "received_time": now, "link": "rs485", "snapshot_url": None, "clip": None}
    e.update(kw)
    return e


def health_box(box_id, online=True, junction="Ghantaghar Square", passed=True, **kw):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    b = {"box_id": box_id, "junction": junction, "online": online, "last_heartbeat": now, "link": "rs485",
         "rssi_dbm": -70, "power": "mains", "battery_mv": 12800, "tamper": False, "fw": "1.0.0", "outbox": 0,
         "boot_reason": "power_on", "uptime_s": 86400, "faults": [],
         "selftest": {"time": now, "passed": passed, "items": {"speaker": "pass" if passed else "fail"}}}
    b.update(kw)
    return b


class Operator:
    """An operator's browser session over plain HTTP (cookies, CSRF)."""

    def __init__(self, url):
        self.url = url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, username, password):
        async with self.session.get(self.url + "/login") as r:
            page = await r.text()
        csrf = re.search(r"name='csrf' value='([^']+)'", page).group(1)
        async with self.session.post(self.url + "/login", data={"username": username, "password": password,
                                                                "csrf": csrf}, allow_redirects=False) as r:
            status, location = r.status, r.headers.get("Location", "")
            body = await r.text()
        if status == 303 and location == "/":
            me = await self.get("/ui/api/me")
            self.csrf = me[1]["csrf"]
        return status, location, body

    async def get(self, path):
        async with self.session.get(self.url + path) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path, body=None, csrf=True):
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        async with self.session.post(self.url + path, json=body or {}, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def close(self):
        await self.session.close()


def test_jpeg(width=320, height=180):
    """A real JPEG (a blue-green gradient) made with PyAV, as a camera's
    snapshot would be."""
    import io

    import av

    f = av.VideoFrame(width, height, "yuvj420p")
    row = bytes(x * 255 // width for x in range(width))
    f.planes[0].update(row * height)
    f.planes[1].update(bytes([90]) * f.planes[1].buffer_size)
    f.planes[2].update(bytes([160]) * f.planes[2].buffer_size)
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="image2pipe")
    st = out.add_stream("mjpeg", rate=1)
    st.width, st.height, st.pix_fmt = width, height, "yuvj420p"
    for pkt in list(st.encode(f)) + list(st.encode(None)):
        out.mux(pkt)
    out.close()
    return buf.getvalue()


def test_mp4(seconds=2, width=320, height=180, fps=10):
    """A real H.264 MP4 made with PyAV (the codec and container of the
    gateway's alarm clips), moving bars so a player has frames to show."""
    import io

    import av

    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    st = out.add_stream("libx264", rate=fps)
    st.width, st.height, st.pix_fmt = width, height, "yuv420p"
    st.options = {"preset": "ultrafast", "tune": "zerolatency"}
    for n in range(seconds * fps):
        f = av.VideoFrame(width, height, "yuv420p")
        f.planes[0].update(bytes(((x + 8 * n) % 256) for x in range(width)) * height)
        f.planes[1].update(bytes([100]) * f.planes[1].buffer_size)
        f.planes[2].update(bytes([150]) * f.planes[2].buffer_size)
        f.pts = n
        for pkt in st.encode(f):
            out.mux(pkt)
    for pkt in st.encode(None):
        out.mux(pkt)
    out.close()
    return buf.getvalue()


class FakeGateway:
    """The gateway's console-facing side as docs/console-api.md describes it:
    media by event id, and /api/v1/calls answered by a real aiortc peer."""

    def __init__(self, token, gateway_id=GATEWAY_ID):
        self.token = token
        self.gateway_id = gateway_id
        self.calls = {}
        self.requests = []
        self.commands = []
        self.snapshot = test_jpeg()
        self.clip = None  # made on first request (PyAV, ~0.1 s)
        self.runner = None
        self.url = ""

    def _check(self, request):
        self.requests.append((request.method, request.path, request.headers.get("Authorization", ""),
                              request.headers.get("X-Callbox-Gateway", "")))
        if request.headers.get("Authorization") != "Bearer " + self.token or \
                request.headers.get("X-Callbox-Gateway") != self.gateway_id:
            raise web.HTTPUnauthorized(text='{"error": "bad token"}', content_type="application/json")

    async def snapshot_h(self, request):
        self._check(request)
        return web.Response(body=self.snapshot, content_type="image/jpeg")

    async def clip_h(self, request):
        self._check(request)
        if self.clip is None:
            self.clip = test_mp4()
        return web.Response(body=self.clip, content_type="video/mp4")

    async def post_call(self, request):
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import AudioStreamTrack

        self._check(request)
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call_id = "call-%d" % (len(self.calls) + 1)
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        async def _state():
            if pc.connectionState == "connected":
                connected.set()

        @pc.on("track")
        def _track(track):
            async def drain():  # consume what the operator's browser sends
                try:
                    while True:
                        await track.recv()
                except Exception:
                    pass
            asyncio.ensure_future(drain())

        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        pc.addTrack(AudioStreamTrack())  # after setRemoteDescription: reuses the offer's transceiver
        await pc.setLocalDescription(await pc.createAnswer())
        self.calls[call_id] = {"pc": pc, "started": time.time(), "body": body, "connected": connected,
                               "ended": None}
        return web.json_response({"call_id": call_id, "sdp": pc.localDescription.sdp, "type": "answer"})

    async def delete_call(self, request):
        self._check(request)
        c = self.calls.get(request.match_info["call_id"])
        if c is None:
            raise web.HTTPNotFound()
        c["ended"] = time.time()
        await c["pc"].close()
        return web.json_response({"state": "ended"})

    async def get_call(self, request):
        self._check(request)
        c = self.calls.get(request.match_info["call_id"])
        if c is None:
            raise web.HTTPNotFound()
        end = c["ended"] or time.time()
        return web.json_response({"state": "ended" if c["ended"] else "connected", "started": c["started"],
                                  "duration_s": round(end - c["started"], 1),
                                  "recording_url": "/api/v1/media/%s/call.mp4" % request.match_info["call_id"]})

    async def command(self, request):
        self._check(request)
        self.commands.append((int(request.match_info["box_id"]), await request.json()))
        return web.json_response({"request": len(self.commands)}, status=202)

    async def start(self):
        app = web.Application()
        app.add_routes([web.get("/api/v1/media/{event_id}/snapshot.jpg", self.snapshot_h),
                        web.get("/api/v1/media/{event_id}/clip.mp4", self.clip_h),
                        web.post("/api/v1/calls", self.post_call),
                        web.delete("/api/v1/calls/{call_id}", self.delete_call),
                        web.get("/api/v1/calls/{call_id}", self.get_call),
                        web.post("/api/v1/boxes/{box_id}/commands", self.command)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d" % self.runner.addresses[0][1]
        return self.url

    async def stop(self):
        for c in self.calls.values():
            await c["pc"].close()
        await self.runner.cleanup()
