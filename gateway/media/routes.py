"""HTTP routes of docs/console-api.md for media and calls (aiohttp).

    GET    /api/v1/media/{media_id}/snapshot.jpg
    GET    /api/v1/media/{media_id}/clip.mp4       alarm clip, or call recording (media id = call id)
    POST   /api/v1/calls                           {"event_id", "box_id", "sdp", "type": "offer", "operator"}
    GET    /api/v1/calls/{call_id}
    DELETE /api/v1/calls/{call_id}[?outcome=dispatched]

Every route asks hooks.verify_console_token(request) first: 401 otherwise.
Errors are JSON {"error": message} with the MediaError's status.
"""

import inspect
import json
import logging

from aiohttp import web

from .errors import CallError, MediaError, MediaNotReady

log = logging.getLogger(__name__)

# An SDP offer from a browser is 3-8 KB; anything far larger is not one.
MAX_OFFER_BYTES = 64 * 1024
MAX_BODY_BYTES = MAX_OFFER_BYTES + 4096


def _error(status, message, **headers):
    return web.json_response({"error": message}, status=status, headers=headers or None)


def make_routes(service, app_key):
    warned = {"auth": False}

    async def authorised(request):
        fn = service.hooks.get("verify_console_token")
        if fn is None:
            return False  # no verifier configured: refuse everything (fail closed)
        ok = fn(request)
        if inspect.isawaitable(ok):
            ok = await ok
        if not ok:
            (log.warning if not warned["auth"] else log.debug)(
                "media request %s %s refused: no valid console token (from %s)", request.method, request.path, request.remote)
            warned["auth"] = True
        return bool(ok)

    def guarded(handler):
        async def wrapper(request):
            if not await authorised(request):
                return _error(401, "a valid console token is required (Authorization: Bearer <token>); log in to the console")
            try:
                return await handler(request)
            except MediaNotReady as e:
                return _error(503, str(e), **{"Retry-After": "2"})
            except MediaError as e:
                return _error(getattr(e, "http_status", 500), str(e))
        return wrapper

    async def get_media(request, what):
        media_id = request.match_info["media_id"]
        path, entry = service.media_file(media_id, what)
        headers = {"X-Content-SHA256": entry["sha256"], "Cache-Control": "private, max-age=3600"}
        return web.FileResponse(path, headers=headers)

    async def snapshot(request):
        return await get_media(request, "snapshot")

    async def clip(request):
        return await get_media(request, "clip")

    async def post_call(request):
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise CallError("offer too large (%d bytes; at most %d)" % (request.content_length, MAX_BODY_BYTES))
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError) as e:
            raise CallError("body is not JSON (%s); send {\"box_id\", \"sdp\", \"type\": \"offer\"}" % e)
        if not isinstance(body, dict):
            raise CallError("body must be a JSON object with box_id, sdp, type")
        box_id = body.get("box_id")
        if not isinstance(box_id, int) or isinstance(box_id, bool):
            raise CallError("box_id must be an integer, got %r" % (box_id,))
        if body.get("type") != "offer" or not isinstance(body.get("sdp"), str) or not body["sdp"].strip():
            raise CallError("need \"type\": \"offer\" and the offer's \"sdp\" text", box_id)
        if len(body["sdp"]) > MAX_OFFER_BYTES:
            raise CallError("offer SDP too large (%d bytes; at most %d)" % (len(body["sdp"]), MAX_OFFER_BYTES), box_id)
        event_id = body.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise CallError("event_id must be a string like \"0000002a-00000007\"", box_id)
        operator = str(body.get("operator") or "")[:64]
        session, answer = await service.open_call(box_id, body["sdp"], event_id, operator)
        return web.json_response({"call_id": session.call_id, "sdp": answer, "type": "answer"})

    async def get_call(request):
        return web.json_response(service.call(request.match_info["call_id"]).status())

    async def delete_call(request):
        session = service.call(request.match_info["call_id"])
        outcome = request.query.get("outcome", "ended")
        if outcome not in ("ended", "dispatched"):
            raise CallError("outcome must be ended or dispatched, got %r" % outcome, session.box.box_id)
        await session.hangup("console", outcome)
        return web.json_response(session.status())

    return [
        web.get("/api/v1/media/{media_id}/snapshot.jpg", guarded(snapshot)),
        web.get("/api/v1/media/{media_id}/clip.mp4", guarded(clip)),
        web.post("/api/v1/calls", guarded(post_call)),
        web.get("/api/v1/calls/{call_id}", guarded(get_call)),
        web.delete("/api/v1/calls/{call_id}", guarded(delete_call)),
    ]
