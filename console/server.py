"""The console service: gateways post alarms and health (docs/console-api.md),
operators work the board in a browser (docs/console.md).

A thin aiohttp shell over the pure parts (validate, workflow, auth, report)
and the store. Live updates: store.publish -> (PostgreSQL NOTIFY ->) every
instance's Hub -> each browser's WebSocket."""

import asyncio
import csv
import datetime
import html
import io
import json
import logging
import pathlib
import time

import aiohttp
from aiohttp import web

from . import auth, i18n, junctions, report, validate, workflow
from .errors import (BadRequest, ConsoleError, Forbidden, GatewayUnavailable, NotFound, Unauthorized)
from .live import Client, Hub
from .store import Store

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "callbox_session"
LOGIN_CSRF_COOKIE = "callbox_login_csrf"
LANG_COOKIE = "callbox_lang"
# 1,000 boxes of health in one POST is about 400 KB; 8 MiB leaves room and
# still stops a runaway sender.
MAX_BODY_BYTES = 8 * 1024 * 1024
# An SDP offer from Chromium is 3-6 KB; refuse anything absurd.
MAX_SDP_BYTES = 64 * 1024
# History page and CSV export: rows per request.
HISTORY_LIMIT = 500
CSV_LIMIT = 100000
RECENT_ON_BOARD = 20

CONSOLE_KEY = web.AppKey("console", object)

CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'")


def _json_error(status, message):
    return web.json_response({"error": message}, status=status)


def _iso(t):
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def tz_label(offset_min):
    """How times are labelled for operators: IST for India's +05:30."""
    if offset_min == 330:
        return "IST"
    sign = "+" if offset_min >= 0 else "-"
    return "UTC%s%02d:%02d" % (sign, abs(offset_min) // 60, abs(offset_min) % 60)


class Console:
    def __init__(self, cfg, store=None, clock=time.time):
        self.cfg = cfg
        self.store = store or Store(cfg.db_url())
        self.clock = clock
        self.hub = Hub()
        self.http = None
        self._tasks = []
        self.initial_admin_password = None  # set once, on the very first start
        self._warned = set()

    # ---- lifecycle ------------------------------------------------------
    async def start(self):
        await self.store.open()
        self.initial_admin_password = await self.ensure_admin()
        await self.store.listen(self._on_live)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.gateway_timeout_s))
        self._tasks.append(asyncio.create_task(self._escalation_loop(), name="console-escalation"))

    async def stop(self):
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if self.http is not None:
            await self.http.close()
        await self.store.close()

    async def ensure_admin(self):
        """First start: create `admin` with a one-time password (returned, to
        be printed once; must be changed at first login). Never a default."""
        if await self.store.operator_count():
            return None
        password = auth.one_time_password()
        pw_hash = await asyncio.to_thread(auth.hash_password, password, self.cfg.scrypt_n)
        if not await self.store.create_operator("admin", "admin", pw_hash, True, self.clock(), "Administrator"):
            return None  # another console instance won the race and printed its own
        log.warning("created operator 'admin' with a one-time password (shown once on the console's stdout)")
        return password

    # ---- live updates ---------------------------------------------------
    def _on_live(self, msg):
        if msg.get("type") == "incident_ref":
            asyncio.get_running_loop().create_task(self._resolve_ref(msg))
            return
        self.hub.broadcast(msg)

    async def _resolve_ref(self, msg):
        inc = await self.store.incident(msg["id"])
        if inc is not None:
            self.hub.broadcast({"type": "incident", "incident": inc, "alert": msg.get("alert")})

    async def _publish_incident(self, inc, alert=None):
        await self.store.publish({"type": "incident", "incident": inc, "alert": alert})

    # ---- escalation -----------------------------------------------------
    async def _escalation_loop(self):
        while True:
            try:
                await self.escalate_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation pass failed; retrying in %.0f s", self.cfg.escalation_tick_s)
            await asyncio.sleep(self.cfg.escalation_tick_s)

    async def escalate_once(self):
        now = self.clock()
        # Boards connected to this instance are live right now; other
        # instances refresh theirs the same way.
        for token_hash in {c.session_key for c in self.hub.clients}:
            await self.store.touch_session(token_hash, now)
        candidates = await self.store.escalation_candidates(tuple(self.cfg.escalate_kinds))
        due = [i for i in candidates if workflow.due_for_escalation(i, now, self.cfg.escalation_s)]
        if due:
            online = await self.store.online_operators(now, self.cfg.presence_s)
            load = await self.store.assigned_load()
            for inc in due:
                plan = workflow.plan_escalation(inc, now, self.cfg.escalation_s, online, load)
                if plan is None:
                    continue
                updated = await self.store.update_incident(
                    inc["id"], plan, expect={"status": "new", "escalations": inc["escalations"]})
                if updated is None:
                    continue  # acknowledged meanwhile, or another instance escalated it
                if plan["assigned_to"]:
                    load[plan["assigned_to"]] = load.get(plan["assigned_to"], 0) + 1
                await self.store.add_audit(inc["id"], now, "console", "escalated",
                                           {"from": inc.get("assigned_to"), "to": plan["assigned_to"],
                                            "after_s": round(now - inc["console_time"], 1)})
                if online:
                    log.warning("incident %s (box %s, %s) unacknowledged for %.0f s: escalated to %s and shown to "
                                "supervisors", inc["id"], inc["box_id"], inc["kind"], now - inc["console_time"],
                                plan["assigned_to"] or "every open console")
                else:
                    log.error("incident %s (box %s, %s) unacknowledged for %.0f s and no operator has the console "
                              "open: it rings on every console that opens; staff the control room",
                              inc["id"], inc["box_id"], inc["kind"], now - inc["console_time"])
                await self._publish_incident(updated, alert="escalated")
        stale = await self.store.mark_stale(now, self.cfg.health_stale_s)
        if stale:
            log.warning("%d boxes not reported by their gateway for %.0f s: shown offline",
                        len(stale), self.cfg.health_stale_s)
            await self.store.publish({"type": "boxes", "boxes": stale})

    # ---- gateway side ---------------------------------------------------
    def gateway_of(self, request):
        gw_id = request.headers.get("X-Callbox-Gateway", "")
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        gw = self.cfg.gateways.get(gw_id)
        if gw is None or not auth.tokens_equal(token, gw.token):
            key = (gw_id[:64], request.remote)
            msg = ("gateway %r from %s: unknown gateway id or wrong token; check X-Callbox-Gateway and the token in "
                   "the console's [gateways] config" % (gw_id[:64], request.remote))
            if key not in self._warned:
                self._warned.add(key)
                log.warning(msg)
            else:
                log.debug(msg)
            raise Unauthorized("unknown gateway or wrong token; check X-Callbox-Gateway and the bearer token")
        return gw

    async def _json(self, request):
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not valid JSON")

    async def post_events(self, request):
        gw = self.gateway_of(request)
        events = validate.events_body(await self._json(request))
        now = self.clock()
        accepted, duplicates = [], []
        online = load = None
        for e in events:
            assigned = None
            if not e["restore"]:
                if online is None:
                    online = await self.store.online_operators(now, self.cfg.presence_s)
                    load = await self.store.assigned_load()
                assigned = workflow.choose_operator(online, load)
            inc = await self.store.add_event(gw.gateway_id, e, now, assigned)
            if inc is None:
                duplicates.append(e["event_id"])
                continue
            accepted.append(e["event_id"])
            if assigned:
                load[assigned] = load.get(assigned, 0) + 1
            await self._publish_incident(inc, alert=None if e["restore"] else "new")
            if e["kind"] == "offline":
                box = await self.store.set_box_online(e["box_id"], e["restore"], now, gw.gateway_id, e["junction"])
                if box:
                    await self.store.publish({"type": "boxes", "boxes": [box]})
            log.info("gateway %s: %s event %s from box %d at %s", gw.gateway_id,
                     e["kind"] + (" restore" if e["restore"] else ""), e["event_id"], e["box_id"], e["junction"])
        return web.json_response({"accepted": accepted, "duplicates": duplicates})

    async def post_media(self, request):
        gw = self.gateway_of(request)
        m = validate.media_body(await self._json(request))
        inc = await self.store.attach_media(m["event_id"], m["snapshot_url"], m["clip"])
        if inc is None:
            raise NotFound("event %s is not known to the console yet; post it to /api/v1/events first"
                           % m["event_id"])
        log.info("gateway %s: media for event %s", gw.gateway_id, m["event_id"])
        await self._publish_incident(inc)
        return web.json_response({"ok": True})

    async def post_health(self, request):
        gw = self.gateway_of(request)
        body = await self._json(request)
        boxes = []
        for chunk in validate.health_chunks(body):
            boxes.extend(chunk)
            await asyncio.sleep(0)  # let an alarm that arrived meanwhile through
        stored = await self.store.upsert_health(gw.gateway_id, boxes, self.clock())
        if stored:
            await self.store.publish({"type": "boxes", "boxes": stored})
        return web.json_response({"ok": True, "boxes": len(stored)})

    # ---- operator sessions ---------------------------------------------
    async def session_of(self, request):
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await self.store.session(auth.token_hash(token), self.clock())

    async def require(self, request, permission, csrf=True):
        s = await self.session_of(request)
        if s is None:
            raise Unauthorized("not logged in or session expired; log in again")
        if s["must_change"]:
            raise Forbidden("change your one-time password first (/password)")
        if not auth.can(s["role"], permission):
            raise Forbidden("%s (%s) may not do this; ask a %s" % (s["username"], s["role"],
                                                                   auth.PERMISSIONS[permission]))
        if csrf and request.method not in ("GET", "HEAD"):
            if not auth.tokens_equal(request.headers.get("X-CSRF-Token", ""), s["csrf"]):
                raise Forbidden("missing or wrong CSRF token; reload the page")
        return s

    def lang(self, request):
        return i18n.pick(request.query.get("lang") or request.cookies.get(LANG_COOKIE, ""))

    def _page(self, lang, title, body, status=200):
        t = i18n.table(lang)
        page = ("<!doctype html><html lang='%s'><head><meta charset='utf-8'><title>%s</title>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                "<link rel='stylesheet' href='/static/app.css'><link rel='icon' href='/static/favicon.svg' type='image/svg+xml'>"
                "</head><body class='page-form'>"
                "<header class='topbar'><h1>%s</h1><nav><a href='?lang=%s' id='lang-switch'>%s</a></nav></header>"
                "<main class='form-card'>%s</main></body></html>") % (
            lang, html.escape(title), html.escape(t["app_title"]), "hi" if lang == "en" else "en",
            html.escape(t["language"]), body)
        resp = web.Response(text=page, content_type="text/html", status=status)
        resp.set_cookie(LANG_COOKIE, lang, samesite="Strict", path="/")
        return resp

    def _login_page(self, lang, error="", status=200, username=""):
        t = i18n.table(lang)
        csrf = auth.new_token()
        err = "<p class='error' id='login-error' role='alert'>%s</p>" % html.escape(error) if error else ""
        body = ("<h2>%s</h2>%s<form method='post' action='/login' id='login-form'>"
                "<input type='hidden' name='csrf' value='%s'>"
                "<label>%s<input name='username' id='username' autocomplete='username' value='%s' required></label>"
                "<label>%s<input name='password' id='password' type='password' autocomplete='current-password' "
                "required></label><button type='submit' id='login-button'>%s</button></form>") % (
            html.escape(t["login"]), err, csrf, html.escape(t["username"]), html.escape(username),
            html.escape(t["password"]), html.escape(t["login"]))
        resp = self._page(lang, t["login"], body, status)
        resp.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict", path="/login",
                        secure=self.cfg.cookie_secure)
        return resp

    async def get_login(self, request):
        return self._login_page(self.lang(request))

    async def post_login(self, request):
        lang = self.lang(request)
        t = i18n.table(lang)
        form = await request.post()
        username = str(form.get("username", ""))[:64].strip()
        password = str(form.get("password", ""))
        if not auth.tokens_equal(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return self._login_page(lang, t["session_expired"], 403, username)
        now = self.clock()
        failures = await self.store.login_failures(username, now - self.cfg.login_window_s)
        if auth.locked_out(failures, now, self.cfg.login_max_failures, self.cfg.login_window_s):
            log.warning("login for %r refused: %d failures in %.0f s (from %s)", username, len(failures),
                        self.cfg.login_window_s, request.remote)
            await self.store.add_login_failure(username, now)
            return self._login_page(lang, t["locked_out"], 429, username)
        op = await self.store.operator(username) if username else None
        stored = op["pw_hash"] if op and not op["disabled"] else auth.dummy_hash()
        ok = await asyncio.to_thread(auth.verify_password, password, stored)
        if not ok or op is None or op["disabled"]:
            await self.store.add_login_failure(username, now)
            log.warning("failed login for %r from %s", username, request.remote)
            return self._login_page(lang, t["login_failed"], 401, username)
        await self.store.clear_login_failures(username)
        token = auth.new_token()
        await self.store.create_session(auth.token_hash(token), username, auth.new_token(), now,
                                        now + self.cfg.session_ttl_s)
        log.info("operator %s logged in from %s", username, request.remote)
        resp = web.HTTPSeeOther("/password" if op["must_change"] else "/")
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=self.cfg.cookie_secure, max_age=int(self.cfg.session_ttl_s))
        resp.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
        raise resp

    async def post_logout(self, request):
        s = await self.session_of(request)
        if s is not None:
            form = await request.post()
            if not auth.tokens_equal(str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", ""),
                                     s["csrf"]):
                raise Forbidden("missing or wrong CSRF token; reload the page")
            await self.store.delete_session(s["token_hash"])
            log.info("operator %s logged out", s["username"])
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(SESSION_COOKIE, path="/")
        raise resp

    def _password_page(self, lang, s, error="", status=200):
        t = i18n.table(lang)
        note = "<p class='notice' id='must-change'>%s</p>" % html.escape(t["must_change"]) if s["must_change"] else ""
        err = "<p class='error' id='password-error' role='alert'>%s</p>" % html.escape(error) if error else ""
        body = ("<h2>%s</h2>%s%s<form method='post' action='/password' id='password-form'>"
                "<input type='hidden' name='csrf' value='%s'>"
                "<label>%s<input name='current' id='current' type='password' autocomplete='current-password' required></label>"
                "<label>%s<input name='new' id='new' type='password' autocomplete='new-password' required></label>"
                "<label>%s<input name='repeat' id='repeat' type='password' autocomplete='new-password' required></label>"
                "<button type='submit' id='password-button'>%s</button></form>") % (
            html.escape(t["change_password"]), note, err, s["csrf"], html.escape(t["current_password"]),
            html.escape(t["new_password"]), html.escape(t["repeat_password"]), html.escape(t["save"]))
        return self._page(lang, t["change_password"], body, status)

    async def get_password(self, request):
        s = await self.session_of(request)
        if s is None:
            raise web.HTTPSeeOther("/login")
        return self._password_page(self.lang(request), s)

    async def post_password(self, request):
        s = await self.session_of(request)
        if s is None:
            raise web.HTTPSeeOther("/login")
        lang = self.lang(request)
        t = i18n.table(lang)
        form = await request.post()
        if not auth.tokens_equal(str(form.get("csrf", "")), s["csrf"]):
            return self._password_page(lang, s, t["session_expired"], 403)
        current, new, repeat = (str(form.get(k, "")) for k in ("current", "new", "repeat"))
        op = await self.store.operator(s["username"])
        if not await asyncio.to_thread(auth.verify_password, current, op["pw_hash"]):
            await self.store.add_login_failure(s["username"], self.clock())
            return self._password_page(lang, s, t["login_failed"], 401)
        if new != repeat:
            return self._password_page(lang, s, t["passwords_differ"], 400)
        try:
            auth.check_password_policy(new, s["username"])
            if new == current:
                raise auth.PasswordPolicyError("the new password must differ from the current one")
        except auth.PasswordPolicyError as e:
            return self._password_page(lang, s, str(e), 400)
        await self.store.set_password(s["username"], await asyncio.to_thread(auth.hash_password, new,
                                                                             self.cfg.scrypt_n), False)
        await self.store.delete_sessions_of(s["username"], keep=s["token_hash"])
        log.info("operator %s changed their password", s["username"])
        raise web.HTTPSeeOther("/")

    async def index(self, request):
        s = await self.session_of(request)
        if s is None:
            raise web.HTTPSeeOther("/login")
        if s["must_change"]:
            raise web.HTTPSeeOther("/password")
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def i18n_json(self, request):
        return web.json_response({lang: i18n.table(lang) for lang in i18n.LANGUAGES})

    # ---- browser API ----------------------------------------------------
    def map_layout(self, boxes):
        names = list(self.cfg.junction_names or junctions.KANPUR_JUNCTIONS)
        for b in boxes:
            if b.get("junction") and b["junction"] not in names:
                names.append(b["junction"])
        coords = dict(self.cfg.junction_coords)
        return junctions.layout(names, coords)

    async def me(self, request):
        s = await self.require(request, "board.view")
        return web.json_response({
            "username": s["username"], "role": s["role"], "display_name": s["display_name"], "csrf": s["csrf"],
            "permissions": [p for p in auth.PERMISSIONS if auth.can(s["role"], p)],
            "escalation_s": self.cfg.escalation_s, "health_stale_s": self.cfg.health_stale_s,
            "outcomes": list(workflow.OUTCOMES), "kinds": list(workflow.ALARM_KINDS),
            "tz_offset_min": self.cfg.tz_offset_min, "tz_label": tz_label(self.cfg.tz_offset_min),
        })

    async def state(self, request):
        await self.require(request, "board.view")
        boxes = await self.store.boxes()
        return web.json_response({
            "incidents": await self.store.open_incidents(),
            "recent": await self.store.search(limit=RECENT_ON_BOARD),
            "boxes": boxes, "map": self.map_layout(boxes), "now": self.clock(),
        })

    async def websocket(self, request):
        s = await self.require(request, "board.view")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise Forbidden("WebSocket from another origin (%s) refused" % origin[:100])
        ws = web.WebSocketResponse(heartbeat=15.0)
        await ws.prepare(request)
        client = Client(s["username"], s["token_hash"])
        self.hub.add(client)
        await self.store.touch_session(s["token_hash"], self.clock())

        async def presence():
            # A live board is what makes an operator "logged in" for roll-over.
            while True:
                await asyncio.sleep(max(1.0, self.cfg.presence_s / 3))
                await self.store.touch_session(s["token_hash"], self.clock())

        async def sender():
            while True:
                msg = await client.next_message()
                await ws.send_str(json.dumps(msg, separators=(",", ":")))

        async def reader():
            async for m in ws:
                if m.type == aiohttp.WSMsgType.ERROR:
                    break

        tasks = [asyncio.create_task(f()) for f in (presence, sender, reader)]
        tasks.append(asyncio.create_task(client.overflowed.wait()))
        try:
            await ws.send_str(json.dumps({"type": "hello", "now": self.clock()}))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.remove(client)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if client.overflowed.is_set():
                log.warning("board of %s fell %d messages behind: disconnected (it resynchronises on reconnect)",
                            s["username"], 2000)
            await ws.close()
        return ws

    async def _incident_or_404(self, request):
        try:
            incident_id = int(request.match_info["id"])
        except ValueError:
            raise NotFound("no such incident")
        inc = await self.store.incident(incident_id)
        if inc is None:
            raise NotFound("incident %s does not exist" % incident_id)
        return inc

    async def incident_detail(self, request):
        await self.require(request, "history.view")
        inc = await self._incident_or_404(request)
        return web.json_response({"incident": inc, "audit": await self.store.audit(inc["id"])})

    async def incident_action(self, request):
        s = await self.require(request, "incident.act")
        inc = await self._incident_or_404(request)
        action = request.match_info["action"]
        form = await self._json(request)
        if not isinstance(form, dict):
            raise BadRequest("body must be a JSON object")
        now = self.clock()
        expected, changes = workflow.plan_transition(inc, action, s["username"], now, form)
        updated = await self.store.update_incident(inc["id"], changes, expect={"status": expected})
        if updated is None:
            fresh = await self.store.incident(inc["id"])
            workflow.plan_transition(fresh, action, s["username"], now, form)  # raises the right Conflict
            raise BadRequest("incident %s changed meanwhile; reload and try again" % inc["id"])
        detail = {k: v for k, v in changes.items() if k in ("unit", "dispatch_note", "outcome", "close_note")}
        await self.store.add_audit(inc["id"], now, s["username"], action, detail)
        log.info("operator %s: %s incident %s (box %s)", s["username"], action, inc["id"], inc["box_id"])
        await self._publish_incident(updated)
        return web.json_response({"incident": updated})

    # ---- video call and media (console -> gateway) ----------------------
    def _gateway_for(self, inc):
        gw = self.cfg.gateways.get(inc["gateway_id"])
        if gw is None or not gw.base_url:
            raise GatewayUnavailable("gateway %s of box %s has no base_url in the console config; add "
                                     "[gateways.%s] base_url" % (inc["gateway_id"], inc["box_id"], inc["gateway_id"]))
        return gw

    def _gw_headers(self, gw):
        return {"Authorization": "Bearer " + gw.token, "X-Callbox-Gateway": gw.gateway_id}

    async def start_call(self, request):
        s = await self.require(request, "incident.act")
        inc = await self._incident_or_404(request)
        if inc["kind"] != "emergency":
            raise BadRequest("a video call is for Emergency alarms; incident %s is %s" % (inc["id"], inc["kind"]))
        if inc["status"] == "closed":
            raise BadRequest("incident %s is closed" % inc["id"])
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("type") != "offer" or not isinstance(body.get("sdp"), str) \
                or not 0 < len(body["sdp"]) <= MAX_SDP_BYTES:
            raise BadRequest('body must be {"type": "offer", "sdp": "<SDP offer>"}')
        gw = self._gateway_for(inc)
        payload = {"event_id": inc["event_id"], "box_id": inc["box_id"], "sdp": body["sdp"], "type": "offer",
                   "operator": s["username"]}
        try:
            async with self.http.post(gw.base_url + "/api/v1/calls", json=payload, headers=self._gw_headers(gw)) as r:
                if r.status != 200:
                    text = (await r.text())[:200]
                    raise GatewayUnavailable("gateway %s refused the call to box %s: HTTP %d %s" % (
                        gw.gateway_id, inc["box_id"], r.status, text))
                answer = await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            raise GatewayUnavailable("gateway %s did not answer the call to box %s (%s); check the gateway runs and "
                                     "its base_url %s" % (gw.gateway_id, inc["box_id"], e.__class__.__name__,
                                                          gw.base_url))
        if not isinstance(answer, dict) or answer.get("type") != "answer" or not isinstance(answer.get("sdp"), str):
            raise GatewayUnavailable("gateway %s sent no SDP answer for box %s" % (gw.gateway_id, inc["box_id"]))
        now = self.clock()
        call_id = str(answer.get("call_id", ""))[:100]
        updated = await self.store.update_incident(inc["id"], {
            "call_id": call_id, "call_by": s["username"], "call_started": now, "call_state": "connecting",
            "call_duration_s": None, "recording_url": None})
        await self.store.add_audit(inc["id"], now, s["username"], "call_started", {"call_id": call_id})
        log.info("operator %s: video call %s to box %s", s["username"], call_id, inc["box_id"])
        await self._publish_incident(updated)
        return web.json_response({"call_id": call_id, "sdp": answer["sdp"], "type": "answer"})

    async def end_call(self, request):
        s = await self.require(request, "incident.act")
        inc = await self._incident_or_404(request)
        if not inc.get("call_id"):
            raise BadRequest("incident %s has no call" % inc["id"])
        gw = self._gateway_for(inc)
        url = "%s/api/v1/calls/%s" % (gw.base_url, inc["call_id"])
        info = {}
        try:
            async with self.http.delete(url, headers=self._gw_headers(gw)) as r:
                if r.status not in (200, 202, 204, 404):
                    log.warning("gateway %s: hang-up of call %s gave HTTP %d", gw.gateway_id, inc["call_id"], r.status)
            async with self.http.get(url, headers=self._gw_headers(gw)) as r:
                if r.status == 200:
                    info = await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            log.warning("gateway %s: hang-up of call %s failed (%s); duration taken from the console's clock",
                        gw.gateway_id, inc["call_id"], e.__class__.__name__)
        now = self.clock()
        duration = info.get("duration_s") if isinstance(info.get("duration_s"), (int, float)) else \
            round(now - (inc.get("call_started") or now), 1)
        rec = info.get("recording_url") if isinstance(info.get("recording_url"), str) else None
        updated = await self.store.update_incident(inc["id"], {"call_state": "ended", "call_duration_s": duration,
                                                               "recording_url": rec})
        await self.store.add_audit(inc["id"], now, s["username"], "call_ended",
                                   {"call_id": inc["call_id"], "duration_s": duration, "recording_url": rec})
        await self._publish_incident(updated)
        return web.json_response({"incident": updated})

    async def media(self, request):
        await self.require(request, "board.view")
        inc = await self._incident_or_404(request)
        what = request.match_info["what"]
        url = {"snapshot": inc.get("snapshot_url"), "clip": (inc.get("clip") or {}).get("url"),
               "recording": inc.get("recording_url")}.get(what)
        if not url:
            raise NotFound("incident %s has no %s" % (inc["id"], what))
        gw = self._gateway_for(inc)
        if url.startswith("/"):
            url = gw.base_url + url
        elif not url.startswith(gw.base_url + "/"):
            raise Forbidden("media URL of incident %s is not on its gateway" % inc["id"])
        try:
            async with self.http.get(url, headers=self._gw_headers(gw)) as r:
                if r.status != 200:
                    raise NotFound("gateway %s has no %s for event %s (HTTP %d)" % (gw.gateway_id, what,
                                                                                  inc["event_id"], r.status))
                resp = web.StreamResponse(headers={"Content-Type": r.headers.get("Content-Type",
                                                                                 "application/octet-stream"),
                                                   "Cache-Control": "private, max-age=3600"})
                await resp.prepare(request)
                async for chunk in r.content.iter_chunked(65536):
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise GatewayUnavailable("gateway %s unreachable for %s of event %s (%s)" % (
                gw.gateway_id, what, inc["event_id"], e.__class__.__name__))

    async def selftest(self, request):
        s = await self.require(request, "box.command")
        try:
            box_id = int(request.match_info["box_id"])
        except ValueError:
            raise NotFound("no such box")
        box = await self.store.box(box_id)
        if box is None:
            raise NotFound("box %d has never reported" % box_id)
        gw = self._gateway_for({"gateway_id": box["gateway_id"], "box_id": box_id})
        try:
            async with self.http.post("%s/api/v1/boxes/%d/commands" % (gw.base_url, box_id), json={"op": "selftest"},
                                      headers=self._gw_headers(gw)) as r:
                if r.status not in (200, 202):
                    raise GatewayUnavailable("gateway %s refused a self-test of box %d: HTTP %d"
                                             % (gw.gateway_id, box_id, r.status))
                result = await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            raise GatewayUnavailable("gateway %s unreachable for a self-test of box %d (%s)"
                                     % (gw.gateway_id, box_id, e.__class__.__name__))
        log.info("operator %s asked box %d for a self-test", s["username"], box_id)
        return web.json_response({"requested": True, "gateway": result}, status=202)

    # ---- history and reports -------------------------------------------
    def _filters(self, request):
        q = request.query
        f = {"q": q.get("q", "")[:100], "kind": q.get("kind", ""), "status": q.get("status", "")}
        if f["kind"] and f["kind"] not in workflow.ALARM_KINDS:
            raise BadRequest("kind must be one of %s" % ", ".join(workflow.ALARM_KINDS))
        if f["status"] and f["status"] not in workflow.STATUSES:
            raise BadRequest("status must be one of %s" % ", ".join(workflow.STATUSES))
        if q.get("box"):
            try:
                f["box_id"] = int(q["box"])
            except ValueError:
                raise BadRequest("box must be a number")
        if q.get("from"):
            f["start"] = report.day_bounds(q["from"], self.cfg.tz_offset_min)[0]
        if q.get("to"):
            f["end"] = report.day_bounds(q["to"], self.cfg.tz_offset_min)[1]
        return f

    async def history(self, request):
        await self.require(request, "history.view")
        rows = await self.store.search(limit=HISTORY_LIMIT, **self._filters(request))
        return web.json_response({"incidents": rows, "limit": HISTORY_LIMIT})

    CSV_COLUMNS = ("id", "event_id", "box_id", "junction", "kind", "restore", "press_time", "received_time",
                   "console_time", "status", "assigned_to", "escalations", "ack_by", "ack_at", "unit",
                   "dispatch_note", "dispatched_by", "dispatched_at", "outcome", "close_note", "closed_by",
                   "closed_at", "call_id", "call_duration_s", "recording_url", "gateway_id")

    async def history_csv(self, request):
        await self.require(request, "history.export")
        rows = await self.store.search(limit=CSV_LIMIT, **self._filters(request))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.CSV_COLUMNS)
        for r in rows:
            out = []
            for c in self.CSV_COLUMNS:
                v = r.get(c)
                if c.endswith("_at") or c == "console_time":
                    v = _iso(v)
                v = "" if v is None else str(v)
                if v[:1] in ("=", "+", "-", "@") and c not in ("console_time",):
                    v = "'" + v  # no formulas when the file is opened in a spreadsheet
                out.append(v)
            w.writerow(out)
        return web.Response(body=buf.getvalue().encode("utf-8-sig"), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": "attachment; filename=callbox-incidents.csv"})

    async def daily_report(self, request):
        await self.require(request, "report.view")
        now = self.clock()
        tz = datetime.timezone(datetime.timedelta(minutes=self.cfg.tz_offset_min))
        day = request.query.get("day") or datetime.datetime.fromtimestamp(now, tz).date().isoformat()
        start, end = report.day_bounds(day, self.cfg.tz_offset_min)
        incidents = await self.store.search(start=start, end=end, limit=CSV_LIMIT)
        within, before = await self.store.status_history(start, end)
        per_box = []
        alarms_by_box = {}
        for inc in incidents:
            if not inc["restore"]:
                alarms_by_box[inc["box_id"]] = alarms_by_box.get(inc["box_id"], 0) + 1
        for b in await self.store.boxes():
            a = report.availability(within.get(b["box_id"], []), start, end, now, before.get(b["box_id"]),
                                    b["first_seen"])
            per_box.append({"box_id": b["box_id"], "junction": b["junction"], "online": b["online"],
                            "availability": None if a is None else round(a, 4),
                            "alarms": alarms_by_box.get(b["box_id"], 0)})
        return web.json_response({"day": day, "start": start, "end": end, "summary": report.summarize(incidents),
                                  "boxes": per_box})

    # ---- operators (admin) ---------------------------------------------
    async def list_operators(self, request):
        await self.require(request, "operators.manage")
        return web.json_response({"operators": await self.store.operators(), "roles": list(auth.ROLES)})

    async def create_operator(self, request):
        s = await self.require(request, "operators.manage")
        body = await self._json(request)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        username = str(body.get("username", "")).strip()
        role = body.get("role", "operator")
        if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").replace("-", "").isalnum():
            raise BadRequest("user name: 1-64 letters, digits, '.', '_' or '-'")
        if role not in auth.ROLES:
            raise BadRequest("role must be one of %s" % ", ".join(auth.ROLES))
        password = auth.one_time_password()
        pw_hash = await asyncio.to_thread(auth.hash_password, password, self.cfg.scrypt_n)
        if not await self.store.create_operator(username, role, pw_hash, True, self.clock(),
                                                str(body.get("display_name", ""))[:100]):
            raise BadRequest("operator %s already exists" % username)
        log.info("admin %s created operator %s (%s)", s["username"], username, role)
        # Shown once to the admin, who hands it over; the operator must change it.
        return web.json_response({"username": username, "role": role, "one_time_password": password})

    async def update_operator(self, request):
        s = await self.require(request, "operators.manage")
        username = request.match_info["username"]
        if await self.store.operator(username) is None:
            raise NotFound("no operator %s" % username)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        role = body.get("role")
        if role is not None and role not in auth.ROLES:
            raise BadRequest("role must be one of %s" % ", ".join(auth.ROLES))
        disabled = body.get("disabled")
        if username == s["username"] and (disabled or (role and role != "admin")):
            raise BadRequest("you cannot disable or demote yourself; ask another admin")
        await self.store.set_operator(username, role=role, disabled=None if disabled is None else bool(disabled))
        out = {"username": username}
        if body.get("reset_password"):
            password = auth.one_time_password()
            await self.store.set_password(username, await asyncio.to_thread(auth.hash_password, password,
                                                                             self.cfg.scrypt_n), True)
            await self.store.delete_sessions_of(username)
            out["one_time_password"] = password
        log.info("admin %s updated operator %s", s["username"], username)
        return web.json_response(out)


@web.middleware
async def error_middleware(request, handler):
    try:
        resp = await handler(request)
    except ConsoleError as e:
        if request.path.startswith("/api/") or request.path.startswith("/ui/"):
            return _json_error(e.http_status, str(e))
        if isinstance(e, Unauthorized):
            raise web.HTTPSeeOther("/login")
        return web.Response(status=e.http_status, text=str(e))
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


def make_app(console):
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    c = console
    app.add_routes([
        web.post("/api/v1/events", c.post_events),
        web.post("/api/v1/media", c.post_media),
        web.post("/api/v1/health", c.post_health),
        web.get("/", c.index),
        web.get("/login", c.get_login),
        web.post("/login", c.post_login),
        web.post("/logout", c.post_logout),
        web.get("/password", c.get_password),
        web.post("/password", c.post_password),
        web.get("/ui/i18n.json", c.i18n_json),
        web.get("/ui/api/me", c.me),
        web.get("/ui/api/state", c.state),
        web.get("/ui/ws", c.websocket),
        web.get("/ui/api/incidents/{id}", c.incident_detail),
        web.post("/ui/api/incidents/{id}/call", c.start_call),
        web.post("/ui/api/incidents/{id}/hangup", c.end_call),
        web.post("/ui/api/incidents/{id}/{action}", c.incident_action),
        web.get("/ui/media/{id}/{what}", c.media),
        web.post("/ui/api/boxes/{box_id}/selftest", c.selftest),
        web.get("/ui/api/history", c.history),
        web.get("/ui/history.csv", c.history_csv),
        web.get("/ui/api/report", c.daily_report),
        web.get("/ui/api/operators", c.list_operators),
        web.post("/ui/api/operators", c.create_operator),
        web.post("/ui/api/operators/{username}", c.update_operator),
        web.static("/static", STATIC_DIR),
    ])

    async def on_startup(_app):
        await console.start()

    async def on_cleanup(_app):
        await console.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app[CONSOLE_KEY] = console
    return app
