"""The media package on its own: an aiohttp app with only the media routes
and a test page, run in a background thread. The tests and `callbox bench
call` use it; a technician can use it to try a camera without the gateway:

    python -m callbox_gateway.media.standalone --port 8490 --token secret

then open http://127.0.0.1:8490/media-test/call.html and, in the browser
console, `startCall({boxId: 42, token: "secret"})`.

Hooks here are recording fakes that behave like the gateway's: CALL_STATE
frames are kept in a list instead of being queued to a box.
"""

import argparse
import asyncio
import hmac
import logging
import pathlib
import threading
import time

from aiohttp import web

from . import setup

STATIC_DIR = pathlib.Path(__file__).with_name("static")


class RecordingHooks:
    """verify_console_token compares the bearer token in constant time;
    send_call_state and on_media/on_selftest are recorded."""

    def __init__(self, token):
        self.token = token
        self.call_states = []  # (time, box_id, state, event, prompt)
        self.media = []  # (event_id, metadata)
        self.selftests = []
        self.changed = threading.Condition()

    def verify_console_token(self, request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].encode(), self.token.encode())

    def _record(self, lst, item):
        with self.changed:
            lst.append(item)
            self.changed.notify_all()

    def send_call_state(self, box_id, state, event, prompt):
        self._record(self.call_states, (time.time(), box_id, state, event, prompt))

    async def on_media(self, event_id, metadata):
        self._record(self.media, (event_id, metadata))

    def on_selftest(self, box_id, result):
        self._record(self.selftests, (box_id, result))

    def wait_for(self, predicate, timeout_s):
        """Block until predicate(self) is true; returns its last value."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                v = predicate(self)
                left = deadline - time.monotonic()
                if v or left <= 0:
                    return v
                self.changed.wait(left)


def make_app(config, hooks):
    app = web.Application()
    service = setup(app, config, hooks)

    async def page(_request):
        return web.FileResponse(STATIC_DIR / "call_test.html")

    app.router.add_get("/media-test/call.html", page)
    return app, service


class ServerThread:
    """Runs make_app() on 127.0.0.1 (port 0 = a free one) in its own thread
    and event loop. .url, .service, .hooks; .run(coro) runs a coroutine on
    that loop and returns its result."""

    def __init__(self, config, token="test-token", port=0, hooks=None):
        self.config = config
        self.token = token
        self.port = port
        self.hooks = hooks or RecordingHooks(token)
        self.loop = None
        self.url = None
        self.service = None
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="media-server", daemon=True)

    def start(self, timeout_s=30.0):
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("media server did not start in %.0f s" % timeout_s)
        if self._error is not None:
            raise self._error
        return self

    def _main(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self):
        try:
            app, self.service = make_app(self.config, self.hooks)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = "http://127.0.0.1:%d" % port
            self._stop = asyncio.Event()
        except BaseException as e:
            self._error = e
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self._runner.cleanup()

    def run(self, coro, timeout_s=120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self, timeout_s=30.0):
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8490)
    p.add_argument("--token", required=True, help="console bearer token the page must send")
    p.add_argument("--box", type=int, default=42)
    p.add_argument("--media-dir", default="callbox-media")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = {"media_dir": args.media_dir, "boxes": [{"box_id": args.box}]}
    server = ServerThread(cfg, token=args.token, port=args.port).start()
    print("serving %s/media-test/call.html (Ctrl-C to stop)" % server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
