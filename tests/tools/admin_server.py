"""A small real aiohttp server implementing the gateway admin API contract
(docs/gateway.md; the same routes and bodies as callbox_gateway.app):

    GET    /api/v1/admin/boxes            {"boxes": [record without key]}
    POST   /api/v1/admin/boxes            add or re-key (upsert) -> 201 {"box": ...}
    DELETE /api/v1/admin/boxes/{box_id}   revoke -> 200 {"revoked": id}, 404 unknown

All bearer-token protected (401 otherwise). It runs in a thread on
127.0.0.1:0 so the CLI under test talks real HTTP to it."""

import asyncio
import json
import threading

from aiohttp import web


class AdminServer:
    def __init__(self, token="t" * 64):
        self.token = token
        self.boxes = {}  # box_id -> full record, key included
        self.revoked = []
        self.requests = []  # (method, path)
        self.url = None
        self._loop = None
        self._runner = None
        self._thread = None
        self._ready = threading.Event()

    def _auth(self, request):
        if request.headers.get("Authorization") != "Bearer " + self.token:
            raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or wrong admin bearer token"}), content_type="application/json")

    async def list_boxes(self, request):
        self.requests.append(("GET", request.path))
        self._auth(request)
        return web.json_response({"boxes": [{k: v for k, v in r.items() if k != "key"} for r in self.boxes.values()]})

    async def add_box(self, request):
        self.requests.append(("POST", request.path))
        self._auth(request)
        rec = await request.json()
        for field in ("box_id", "key", "link", "bus_addr"):
            if field not in rec:
                return web.json_response({"error": "%s missing" % field}, status=400)
        if len(bytes.fromhex(rec["key"])) != 32:
            return web.json_response({"error": "key must be 32 bytes"}, status=400)
        self.boxes[rec["box_id"]] = dict(rec)
        return web.json_response({"box": {k: v for k, v in rec.items() if k != "key"}}, status=201)

    async def revoke_box(self, request):
        self.requests.append(("DELETE", request.path))
        self._auth(request)
        box_id = int(request.match_info["box_id"])
        if box_id not in self.boxes:
            return web.json_response({"error": "box %d unknown" % box_id}, status=404)
        del self.boxes[box_id]
        self.revoked.append(box_id)
        return web.json_response({"revoked": box_id})

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("admin server did not start")
        return self

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/v1/admin/boxes", self.list_boxes)
        app.router.add_post("/api/v1/admin/boxes", self.add_box)
        app.router.add_delete("/api/v1/admin/boxes/{box_id}", self.revoke_box)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = "http://127.0.0.1:%d" % port
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        if self._loop:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            fut.result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
