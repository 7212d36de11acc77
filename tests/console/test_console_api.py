"""The console over real HTTP on SQLite: the gateway contract
(docs/console-api.md), operators' sessions, CSRF and roles, the workflow, the
live WebSocket, escalation, history, CSV, the daily report, media and the
video-call relay to a real aiortc answerer."""

import asyncio
import csv
import io
import json
import time

import aiohttp
import pytest

from console_helpers import GATEWAY_ID, Operator, event, gw_post, health_box, post_sync

PW = "a long test password"


def test_gateway_auth_refuses_wrong_token_and_unknown_gateway(start_console):
    c = start_console()
    e = event()
    wrong = c.token[:-1] + ("1" if c.token[-1] == "0" else "0")
    for token, gw in ((wrong, GATEWAY_ID), (c.token, "gw-other"), ("", GATEWAY_ID)):
        status, body = post_sync(c, "/api/v1/events", {"events": [e]}, token=token or "x", gateway_id=gw)
        assert status == 401 and "token" in body["error"]
    # nothing was stored; the same event then goes through with the right token
    assert c.run(c.console.store.incident_by_event(e["event_id"])) is None
    status, body = post_sync(c, "/api/v1/events", {"events": [e]})
    assert status == 200 and body == {"accepted": [e["event_id"]], "duplicates": []}


def test_events_are_idempotent_by_event_id(start_console):
    c = start_console()
    a, b = event(box_id=1), event(box_id=2, kind="emergency")
    assert post_sync(c, "/api/v1/events", {"events": [a]})[1] == {"accepted": [a["event_id"]], "duplicates": []}
    status, body = post_sync(c, "/api/v1/events", {"events": [a, b]})
    assert status == 200 and body == {"accepted": [b["event_id"]], "duplicates": [a["event_id"]]}
    found = c.run(c.console.store.search())
    assert sorted(i["event_id"] for i in found) == sorted([a["event_id"], b["event_id"]])


def test_malformed_batch_is_refused_whole_and_names_the_problem(start_console):
    c = start_console()
    good, bad = event(box_id=5), event(box_id=6, kind="fire")
    status, body = post_sync(c, "/api/v1/events", {"events": [good, bad]})
    assert status == 400 and "box 6" in body["error"] and "fire" in body["error"]
    # nothing half-stored: the good event is not there, and arrives intact on retry
    assert c.run(c.console.store.search()) == []
    status, body = post_sync(c, "/api/v1/events", None, raw="{not json")
    assert status == 400 and "JSON" in body["error"]
    assert post_sync(c, "/api/v1/events", {"events": [good]})[1]["accepted"] == [good["event_id"]]


def test_media_attaches_later_and_404_for_unknown(start_console):
    c = start_console()
    e = event()
    status, body = post_sync(c, "/api/v1/media", {"event_id": e["event_id"], "snapshot_url": "/x.jpg"})
    assert status == 404 and "not known" in body["error"]
    post_sync(c, "/api/v1/events", {"events": [e]})
    clip = {"id": e["event_id"], "url": "/api/v1/media/%s/clip.mp4" % e["event_id"], "duration_s": 30.0}
    assert post_sync(c, "/api/v1/media", {"event_id": e["event_id"], "snapshot_url": "/s.jpg", "clip": clip})[0] == 200
    inc = c.run(c.console.store.incident_by_event(e["event_id"]))
    assert inc["snapshot_url"] == "/s.jpg" and inc["clip"]["url"] == clip["url"]


def test_health_latest_wins_and_logs_transitions(start_console):
    clock_c = start_console()
    c = clock_c
    rep = {"gateway_id": GATEWAY_ID, "time": "2026-11-28T19:20:05Z",
           "boxes": [health_box(1), health_box(2, passed=False)]}
    assert post_sync(c, "/api/v1/health", rep)[0] == 200
    rep["boxes"][0]["online"] = False
    assert post_sync(c, "/api/v1/health", rep)[0] == 200
    boxes = {b["box_id"]: b for b in c.run(c.console.store.boxes())}
    assert boxes[1]["online"] is False and boxes[2]["selftest"]["passed"] is False
    within, _ = c.run(c.console.store.status_history(0, time.time() + 1e6))
    assert [o for _, o in within[1]] == [True, False] and [o for _, o in within[2]] == [True]
    status, body = post_sync(c, "/api/v1/health", {"boxes": [{"box_id": 3}]})
    assert status == 400 and "box 3" in body["error"]


def test_gateway_gone_quiet_shows_boxes_offline(start_console):
    c = start_console(health_stale_s=60)
    post_sync(c, "/api/v1/health", {"boxes": [health_box(9)]})
    c.console.clock.advance(61)
    c.run(c.console.escalate_once())
    b = c.run(c.console.store.box(9))
    assert b["online"] is False and b["stale"] is True


def test_first_admin_must_change_one_time_password(start_console):
    c = start_console()
    otp = c.console.initial_admin_password
    assert otp and len(otp) >= 12

    async def scenario():
        op = Operator(c.url)
        try:
            status, location, _ = await op.login("admin", otp)
            assert (status, location) == (303, "/password")
            # every API refuses until the password is changed
            assert (await op.get("/ui/api/state"))[0] == 403
            async with op.session.get(c.url + "/password") as r:
                page = await r.text()
            import re
            csrf = re.search(r"name='csrf' value='([^']+)'", page).group(1)
            form = {"csrf": csrf, "current": otp, "new": "short", "repeat": "short"}
            async with op.session.post(c.url + "/password", data=form, allow_redirects=False) as r:
                assert r.status == 400
            form.update(new=PW, repeat=PW)
            async with op.session.post(c.url + "/password", data=form, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/"
            assert (await op.get("/ui/api/state"))[0] == 200
        finally:
            await op.close()
        # the one-time password no longer works
        op2 = Operator(c.url)
        try:
            assert (await op2.login("admin", otp))[0] == 401
            assert (await op2.login("admin", PW))[:2] == (303, "/")
        finally:
            await op2.close()

    asyncio.run(scenario())


def test_second_start_prints_no_password(start_console, loop_thread, tmp_path):
    c = start_console()
    assert c.console.initial_admin_password
    from console_helpers import RunningConsole
    c2 = RunningConsole(loop_thread, c.cfg)
    try:
        assert c2.console.initial_admin_password is None
    finally:
        c2.stop()


def test_login_failures_and_lockout(start_console):
    c = start_console(login_max_failures=3)
    c.add_operator("asha", PW)

    async def scenario():
        op = Operator(c.url)
        try:
            status, _, body = await op.login("asha", "wrong password!")
            assert status == 401 and "Wrong user name or password" in body
            status, _, body = await op.login("nobody", PW)  # same answer for an unknown user
            assert status == 401 and "Wrong user name or password" in body
            await op.login("asha", "wrong again!!")
            await op.login("asha", "and again!!!")
            status, _, body = await op.login("asha", PW)  # right password, but locked
            assert status == 429 and "Too many failed attempts" in body
            c.console.clock.advance(c.cfg.login_window_s + 1)
            assert (await op.login("asha", PW))[:2] == (303, "/")
            # a login without the form's CSRF token is refused
            async with op.session.post(c.url + "/login", data={"username": "asha", "password": PW},
                                       allow_redirects=False) as r:
                assert r.status == 403
        finally:
            await op.close()

    asyncio.run(scenario())


async def _ws_next(ws, want, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        m = json.loads(msg.data)
        if want(m):
            return m


def test_workflow_over_http_with_live_updates_and_audit(start_console):
    c = start_console()
    c.add_operator("asha", PW)
    c.add_operator("ravi", PW)

    async def scenario():
        asha, ravi = Operator(c.url), Operator(c.url)
        try:
            await asha.login("asha", PW)
            await ravi.login("ravi", PW)
            ws = await asha.session.ws_connect(c.url + "/ui/ws")
            await _ws_next(ws, lambda m: m["type"] == "hello")
            e = event(box_id=42, kind="panic")
            t0 = time.monotonic()
            status, _ = await gw_post(c.url, "/api/v1/events", {"events": [e]}, c.token)
            assert status == 200
            m = await _ws_next(ws, lambda m: m["type"] == "incident")
            # generous: the 1 s target is measured by the benchmark, not here
            assert time.monotonic() - t0 < 5
            inc = m["incident"]
            assert m["alert"] == "new" and inc["event_id"] == e["event_id"] and inc["status"] == "new"
            assert inc["junction"] == "Ghantaghar Square" and inc["assigned_to"] == "asha"  # asha's board is live
            iid = inc["id"]
            # CSRF: no header, or another session's token -> 403; nothing changed
            assert (await asha.post("/ui/api/incidents/%d/acknowledge" % iid, csrf=False))[0] == 403
            asha_csrf = asha.csrf
            asha.csrf = ravi.csrf
            assert (await asha.post("/ui/api/incidents/%d/acknowledge" % iid))[0] == 403
            asha.csrf = asha_csrf
            status, body = await asha.post("/ui/api/incidents/%d/acknowledge" % iid)
            assert status == 200 and body["incident"]["ack_by"] == "asha"
            status, body = await ravi.post("/ui/api/incidents/%d/acknowledge" % iid)
            assert status == 409 and "asha" in body["error"]
            assert (await ravi.post("/ui/api/incidents/%d/dispatch" % iid, {"unit": ""}))[0] == 400
            status, body = await ravi.post("/ui/api/incidents/%d/dispatch" % iid, {"unit": "PRV-12", "note": "2 officers"})
            assert status == 200 and body["incident"]["status"] == "dispatched"
            status, body = await asha.post("/ui/api/incidents/%d/close" % iid, {"outcome": "resolved", "note": "ok"})
            assert status == 200 and body["incident"]["status"] == "closed" and body["incident"]["closed_by"] == "asha"
            m = await _ws_next(ws, lambda m: m["type"] == "incident" and m["incident"]["status"] == "closed")
            assert m["incident"]["outcome"] == "resolved"
            status, detail = await ravi.get("/ui/api/incidents/%d" % iid)
            assert [a["action"] for a in detail["audit"]] == ["received", "acknowledge", "dispatch", "close"]
            assert [a["actor"] for a in detail["audit"][1:]] == ["asha", "ravi", "asha"]
            assert detail["audit"][2]["detail"]["unit"] == "PRV-12"
            await ws.close()
        finally:
            await asha.close()
            await ravi.close()

    asyncio.run(scenario())


def test_escalation_rolls_over_to_another_logged_in_operator(start_console):
    c = start_console(escalation_s=30)
    c.add_operator("asha", PW)
    c.add_operator("ravi", PW)

    async def scenario():
        asha, ravi = Operator(c.url), Operator(c.url)
        try:
            await asha.login("asha", PW)
            await ravi.login("ravi", PW)
            ws_a = await asha.session.ws_connect(c.url + "/ui/ws")
            ws_r = await ravi.session.ws_connect(c.url + "/ui/ws")
            await _ws_next(ws_a, lambda m: m["type"] == "hello")
            await _ws_next(ws_r, lambda m: m["type"] == "hello")
            e = event(kind="emergency")
            await gw_post(c.url, "/api/v1/events", {"events": [e]}, c.token)
            first = (await _ws_next(ws_r, lambda m: m["type"] == "incident"))["incident"]["assigned_to"]
            assert first in ("asha", "ravi")
            c.console.clock.advance(29)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(c.console.escalate_once(), c.lt.loop))
            c.console.clock.advance(2)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(c.console.escalate_once(), c.lt.loop))
            m = await _ws_next(ws_r, lambda m: m["type"] == "incident" and m["alert"] == "escalated")
            inc = m["incident"]
            assert inc["escalations"] == 1 and inc["assigned_to"] != first and inc["assigned_to"] in ("asha", "ravi")
            status, detail = await asha.get("/ui/api/incidents/%d" % inc["id"])
            esc = [a for a in detail["audit"] if a["action"] == "escalated"]
            assert len(esc) == 1 and esc[0]["detail"]["from"] == first and esc[0]["detail"]["to"] == inc["assigned_to"]
            # acknowledged: no more escalation
            await asha.post("/ui/api/incidents/%d/acknowledge" % inc["id"])
            c.console.clock.advance(100)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(c.console.escalate_once(), c.lt.loop))
            status, detail = await asha.get("/ui/api/incidents/%d" % inc["id"])
            assert detail["incident"]["escalations"] == 1
            await ws_a.close()
            await ws_r.close()
        finally:
            await asha.close()
            await ravi.close()

    asyncio.run(scenario())


def test_escalation_when_the_operator_has_left_rings_everywhere_and_says_so(start_console, caplog):
    """The alarm rang at asha, who then closed her console; nobody else is
    logged in. Escalation must not keep it ringing at her: it rings on every
    console (assigned to nobody), and the log says nobody has the console open."""
    c = start_console(escalation_s=30, presence_s=20)
    c.add_operator("asha", PW)

    async def scenario():
        asha = Operator(c.url)
        try:
            await asha.login("asha", PW)
            ws = await asha.session.ws_connect(c.url + "/ui/ws")
            await _ws_next(ws, lambda m: m["type"] == "hello")
            e = event(kind="panic")
            await gw_post(c.url, "/api/v1/events", {"events": [e]}, c.token)
            inc = (await _ws_next(ws, lambda m: m["type"] == "incident"))["incident"]
            assert inc["assigned_to"] == "asha"
            await ws.close()
            return inc["id"]
        finally:
            await asha.close()

    incident_id = asyncio.run(scenario())
    c.console.clock.advance(31)  # past escalation_s, and asha not seen for more than presence_s
    with caplog.at_level("ERROR", logger="callbox_console.server"):
        c.run(c.console.escalate_once())
    inc = c.run(c.console.store.incident(incident_id))
    assert inc["escalations"] == 1 and inc["assigned_to"] is None and inc["status"] == "new"
    assert any("no operator has the console open" in r.getMessage() and "box 42" in r.getMessage()
               for r in caplog.records)


def test_roles_history_csv_and_report(start_console):
    c = start_console()
    c.add_operator("asha", PW, "operator")
    c.add_operator("sunita", PW, "supervisor")
    events = [event(box_id=1, kind="panic", junction="Rocket Tiraha"),
              event(box_id=2, kind="emergency", junction="=HYPERLINK(\"x\")"),
              event(box_id=1, kind="tamper", junction="Rocket Tiraha")]
    post_sync(c, "/api/v1/events", {"events": events})
    post_sync(c, "/api/v1/health", {"boxes": [health_box(1, junction="Rocket Tiraha"), health_box(2, online=False)]})

    async def scenario():
        asha, sunita = Operator(c.url), Operator(c.url)
        try:
            await asha.login("asha", PW)
            await sunita.login("sunita", PW)
            status, body = await asha.get("/ui/api/history?q=rocket")
            assert status == 200 and len(body["incidents"]) == 2
            status, body = await asha.get("/ui/api/history?kind=panic")
            assert [i["event_id"] for i in body["incidents"]] == [events[0]["event_id"]]
            assert (await asha.get("/ui/api/history?kind=fire"))[0] == 400
            # operators may search but not export, nor see reports, nor manage operators
            async with asha.session.get(c.url + "/ui/history.csv") as r:
                assert r.status == 403
            assert (await asha.get("/ui/api/report"))[0] == 403
            assert (await asha.get("/ui/api/operators"))[0] == 403
            async with sunita.session.get(c.url + "/ui/history.csv?box=1") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
                rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
            assert sorted(r["kind"] for r in rows) == ["panic", "tamper"]
            async with sunita.session.get(c.url + "/ui/history.csv?box=2") as r:
                rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
            assert rows[0]["junction"].startswith("'=")  # no spreadsheet formula injection
            status, rep = await sunita.get("/ui/api/report")
            assert status == 200 and rep["summary"]["alarms"] == 3
            assert rep["summary"]["by_kind"] == {"panic": 1, "emergency": 1, "tamper": 1}
            per = {b["box_id"]: b for b in rep["boxes"]}
            assert per[1]["alarms"] == 2 and per[1]["availability"] == 1.0
            assert per[2]["availability"] == 0.0
            assert (await sunita.get("/ui/api/report?day=yesterday"))[0] == 400
        finally:
            await asha.close()
            await sunita.close()

    asyncio.run(scenario())


def test_admin_creates_operator_with_one_time_password(start_console):
    c = start_console()
    c.add_operator("root2", PW, "admin")

    async def scenario():
        admin = Operator(c.url)
        try:
            await admin.login("root2", PW)
            status, body = await admin.post("/ui/api/operators", {"username": "meera", "role": "supervisor"})
            assert status == 200 and len(body["one_time_password"]) >= 12
            assert (await admin.post("/ui/api/operators", {"username": "meera"}))[0] == 400
            assert (await admin.post("/ui/api/operators", {"username": "x y"}))[0] == 400
            new = Operator(c.url)
            try:
                assert (await new.login("meera", body["one_time_password"]))[:2] == (303, "/password")
            finally:
                await new.close()
            ops = {o["username"]: o for o in (await admin.get("/ui/api/operators"))[1]["operators"]}
            assert ops["meera"]["role"] == "supervisor" and ops["meera"]["must_change"]
            assert "pw_hash" not in ops["meera"]
        finally:
            await admin.close()

    asyncio.run(scenario())


def test_media_proxy_and_selftest_go_to_the_gateway_with_its_token(start_console, fake_gateway):
    c = start_console(gateway_url=fake_gateway.url, token=fake_gateway.token)
    c.add_operator("sunita", PW, "supervisor")
    e = event(snapshot_url="/api/v1/media/%s/snapshot.jpg" % event()["event_id"])
    post_sync(c, "/api/v1/events", {"events": [e]})
    post_sync(c, "/api/v1/health", {"boxes": [health_box(42)]})
    inc = c.run(c.console.store.incident_by_event(e["event_id"]))

    async def scenario():
        op = Operator(c.url)
        try:
            await op.login("sunita", PW)
            async with op.session.get(c.url + "/ui/media/%d/snapshot" % inc["id"]) as r:
                assert r.status == 200 and await r.read() == fake_gateway.snapshot
            async with op.session.get(c.url + "/ui/media/%d/clip" % inc["id"]) as r:
                assert r.status == 404
            status, body = await op.post("/ui/api/boxes/42/selftest")
            assert status == 202 and fake_gateway.commands == [(42, {"op": "selftest"})]
        finally:
            await op.close()

    asyncio.run(scenario())
    assert all(auth == "Bearer " + fake_gateway.token and gw == GATEWAY_ID
               for _m, _p, auth, gw in fake_gateway.requests)


def test_video_call_relayed_to_a_real_aiortc_answerer(start_console, fake_gateway):
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    c = start_console(gateway_url=fake_gateway.url, token=fake_gateway.token)
    c.add_operator("asha", PW)
    panic, emergency = event(kind="panic"), event(kind="emergency", box_id=43)
    post_sync(c, "/api/v1/events", {"events": [panic, emergency]})
    p_inc = c.run(c.console.store.incident_by_event(panic["event_id"]))
    e_inc = c.run(c.console.store.incident_by_event(emergency["event_id"]))

    async def scenario():
        op = Operator(c.url)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            await op.login("asha", PW)
            pc.addTrack(AudioStreamTrack())  # the operator's mic
            connected = asyncio.Event()

            @pc.on("connectionstatechange")
            async def _s():
                if pc.connectionState == "connected":
                    connected.set()

            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            status, body = await op.post("/ui/api/incidents/%d/call" % p_inc["id"], offer)
            assert status == 400 and "Emergency" in body["error"]
            assert (await op.post("/ui/api/incidents/%d/call" % e_inc["id"], offer, csrf=False))[0] == 403
            assert fake_gateway.calls == {}  # nothing reached the gateway without a valid session and CSRF
            status, ans = await op.post("/ui/api/incidents/%d/call" % e_inc["id"], offer)
            assert status == 200 and ans["type"] == "answer" and ans["call_id"] == "call-1"
            sent = fake_gateway.calls["call-1"]["body"]
            assert sent["event_id"] == emergency["event_id"] and sent["box_id"] == 43 and sent["operator"] == "asha"
            await pc.setRemoteDescription(RTCSessionDescription(ans["sdp"], "answer"))
            await asyncio.wait_for(connected.wait(), 30)
            status, body = await op.post("/ui/api/incidents/%d/hangup" % e_inc["id"])
            assert status == 200
            inc = body["incident"]
            assert inc["call_state"] == "ended" and inc["call_duration_s"] >= 0
            assert inc["recording_url"] == "/api/v1/media/call-1/call.mp4"
            status, detail = await op.get("/ui/api/incidents/%d" % e_inc["id"])
            assert [a["action"] for a in detail["audit"]][-2:] == ["call_started", "call_ended"]
        finally:
            await pc.close()
            await op.close()

    asyncio.run(scenario())


def test_call_fails_clearly_when_the_gateway_is_down(start_console):
    c = start_console(gateway_url="http://127.0.0.1:9", gateway_timeout_s=3)
    c.add_operator("asha", PW)
    e = event(kind="emergency")
    post_sync(c, "/api/v1/events", {"events": [e]})
    inc = c.run(c.console.store.incident_by_event(e["event_id"]))

    async def scenario():
        op = Operator(c.url)
        try:
            await op.login("asha", PW)
            status, body = await op.post("/ui/api/incidents/%d/call" % inc["id"], {"type": "offer", "sdp": "v=0"})
            assert status == 502 and GATEWAY_ID in body["error"] and "base_url" in body["error"]
        finally:
            await op.close()

    asyncio.run(scenario())
    assert c.run(c.console.store.incident(inc["id"]))["call_id"] is None
