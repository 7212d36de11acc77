"""The operators' UI in real headless Chromium (Debian's /usr/bin/chromium via
Playwright): login failures, the first-login password change, an alarm posted
as the gateway appearing on the board, acknowledge/dispatch/close, escalation,
the video call, Hindi, and a screenshot of each main screen under
build/screenshots/ (look at them; they are not committed)."""

import os
import time

import pytest

from console_helpers import GATEWAY_ID, event, health_box, post_sync
from callbox_tools.mpy import REPO_ROOT

pytestmark = pytest.mark.chromium
PW = "a long test password"
SHOTS = REPO_ROOT / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium missing: run scripts/setup (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / ("console-%s.png" % name)), full_page=True)


def _login(browser, c, user, pw=PW):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page = ctx.new_page()
    page.goto(c.url + "/login")
    page.fill("#username", user)
    page.fill("#password", pw)
    page.click("#login-button")
    page.wait_for_url(c.url + "/")
    page.wait_for_function("window.__callbox && window.__callbox.ready === true", timeout=15000)
    return ctx, page


def test_login_failures_and_first_admin_password_change(browser, start_console):
    c = start_console()
    otp = c.console.initial_admin_password
    ctx = browser.new_context(bypass_csp=True)  # CSP forbids eval; Playwright waits use it
    page = ctx.new_page()
    page.goto(c.url + "/")
    assert page.url == c.url + "/login"  # the board needs a session
    _shot(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", "not the password")
    page.click("#login-button")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    _shot(page, "login-failed")
    page.fill("#password", otp)
    page.click("#login-button")
    page.wait_for_url(c.url + "/password")
    assert page.is_visible("#must-change")
    page.fill("#current", otp)
    page.fill("#new", "short")
    page.fill("#repeat", "short")
    page.click("#password-button")
    assert "at least 10" in page.inner_text("#password-error")
    _shot(page, "password-change")
    page.fill("#current", otp)
    page.fill("#new", PW)
    page.fill("#repeat", PW)
    page.click("#password-button")
    page.wait_for_url(c.url + "/")
    page.wait_for_function("window.__callbox.ready === true")
    assert "admin" in page.inner_text("#whoami")
    ctx.close()


def test_alarm_on_board_then_acknowledge_dispatch_close(browser, start_console, fake_gateway):
    c = start_console(gateway_url=fake_gateway.url, token=fake_gateway.token)
    c.add_operator("sunita", PW, "supervisor")
    junctions = ["Ghantaghar Square", "Bagiya Crossing", "IIT Gate Tiraha", "Rocket Tiraha", "Lenin Park Square"]
    boxes = [health_box(i + 1, junction=j) for i, j in enumerate(junctions)]
    boxes[3]["online"] = False
    boxes[4]["selftest"] = {"time": boxes[4]["last_heartbeat"], "passed": False, "items": {"speaker": "fail", "mic": "pass"}}
    post_sync(c, "/api/v1/health", {"gateway_id": GATEWAY_ID, "time": "2026-11-28T19:20:05Z", "boxes": boxes})
    ctx, page = _login(browser, c, "sunita")
    try:
        assert page.is_visible("#no-alarms")
        e = event(box_id=1, kind="panic", snapshot_url="/api/v1/media/x/snapshot.jpg")
        t0 = time.time()
        assert post_sync(c, "/api/v1/events", {"events": [e]})[0] == 200
        card = page.wait_for_selector('article[data-event="%s"]' % e["event_id"], timeout=5000)
        seen = page.evaluate("ev => window.__callbox.seen[ev]", e["event_id"]) / 1000.0
        # measured, with slack for a loaded machine; the p99 target is the benchmark's
        assert seen - t0 < 3.0, "alarm visible %.3f s after the gateway's POST" % (seen - t0)
        assert "PANIC" in card.inner_text() and "Ghantaghar Square" in card.inner_text()
        assert "kind-panic" in card.get_attribute("class")  # Panic stands out (own style)
        assert page.evaluate("window.__callbox.beeps") >= 1  # audible alert played
        # the snapshot comes through the console's proxy from the gateway (a real image request)
        page.wait_for_function("document.querySelector('article[data-event=\"%s\"] img.snapshot')?.naturalWidth"
                               " === 320" % e["event_id"])
        assert any(p.endswith("/snapshot.jpg") for _m, p, _a, _g in fake_gateway.requests)
        _shot(page, "board-alarm")
        card.query_selector("button.ack").click()
        page.wait_for_selector('article[data-event="%s"][data-status="acknowledged"]' % e["event_id"])
        card = page.query_selector('article[data-event="%s"]' % e["event_id"])
        card.query_selector("input.unit").fill("PRV-12")
        card.query_selector("input.note").fill("two officers")
        card.query_selector("button.dispatch").click()
        page.wait_for_selector('article[data-event="%s"][data-status="dispatched"]' % e["event_id"])
        card = page.query_selector('article[data-event="%s"]' % e["event_id"])
        assert "PRV-12" in card.inner_text()
        card.query_selector("select.outcome").select_option("resolved")
        card.query_selector("button.close").click()
        page.wait_for_selector('article[data-event="%s"]' % e["event_id"], state="detached")
        inc = c.run(c.console.store.incident_by_event(e["event_id"]))
        assert (inc["status"], inc["ack_by"], inc["unit"], inc["outcome"]) == ("closed", "sunita", "PRV-12", "resolved")
        # map, health, history, report screens
        page.click("button[data-tab=map]")
        page.wait_for_selector('#map g.junction[data-junction="Rocket Tiraha"].state-offline')
        assert page.query_selector('#map g.junction[data-junction="Lenin Park Square"].state-warn')
        assert len(page.query_selector_all("#map g.junction")) >= 47
        _shot(page, "map")
        page.click("button[data-tab=health]")
        page.wait_for_selector("#box-4.offline")
        assert "FAILED" in page.inner_text("#box-5 td.selftest")
        assert "speaker:fail" in page.inner_text("#box-5 td.selftest")
        _shot(page, "health")
        page.click("button[data-tab=history]")
        page.wait_for_selector('#history-table tbody tr[data-id="%d"]' % inc["id"])
        page.click('#history-table tbody tr[data-id="%d"]' % inc["id"])
        page.wait_for_selector("#detail table.audit tr >> nth=3")
        assert [r.inner_text().split("\t")[2] for r in page.query_selector_all("#detail table.audit tr")] == \
            ["received", "acknowledge", "dispatch", "close"]
        _shot(page, "history")
        page.click("button[data-tab=report]")
        page.wait_for_selector("#report-alarms")
        assert "1" in page.inner_text("#report-alarms")
        _shot(page, "report")
        # Hindi
        page.click("#lang")
        assert "बॉक्स स्थिति" in page.inner_text("#tabs") and "अलार्म बोर्ड" in page.inner_text("#tabs")
        page.click("button[data-tab=board]")
        _shot(page, "board-hindi")
        page.click("#lang")
        assert "Alarm board" in page.inner_text("#tabs")
    finally:
        ctx.close()


def test_escalation_to_another_operator_and_video_call(browser, start_console, fake_gateway):
    import time as _t
    c = start_console(gateway_url=fake_gateway.url, token=fake_gateway.token, escalation_s=2.0,
                      escalation_tick_s=0.25, clock=_t.time)
    c.add_operator("asha", PW)
    c.add_operator("ravi", PW)
    ctx_a, pa = _login(browser, c, "asha")
    ctx_r, pr = _login(browser, c, "ravi")
    try:
        e = event(box_id=43, kind="emergency", junction="Bekarganj Square")
        post_sync(c, "/api/v1/events", {"events": [e]})
        sel = 'article[data-event="%s"]' % e["event_id"]
        pa.wait_for_selector(sel, timeout=5000)
        pr.wait_for_selector(sel, timeout=5000)
        first = c.run(c.console.store.incident_by_event(e["event_id"]))["assigned_to"]
        assert first in ("asha", "ravi")
        other, other_page = ("ravi", pr) if first == "asha" else ("asha", pa)
        beeps_before = other_page.evaluate("window.__callbox.beeps")
        # nobody acknowledges: after 2 s it re-alerts and rings at the other operator
        other_page.wait_for_selector(sel + ".escalated.mine", timeout=10000)
        assert other_page.evaluate("window.__callbox.beeps") > beeps_before
        inc = c.run(c.console.store.incident_by_event(e["event_id"]))
        assert inc["assigned_to"] == other and inc["escalations"] >= 1
        _shot(other_page, "board-escalated")
        other_page.click(sel + " button.ack")
        other_page.wait_for_selector(sel + '[data-status="acknowledged"]')
        # video call from the browser through the console to the gateway's aiortc peer
        other_page.click(sel + " button.call-btn")
        other_page.wait_for_function("window.__callbox.callState === 'connected'", timeout=30000)
        assert fake_gateway.calls["call-1"]["body"]["operator"] == other
        _shot(other_page, "video-call")
        other_page.click("#hangup")
        other_page.wait_for_selector(sel + " dd.call-duration", timeout=10000)
        inc = c.run(c.console.store.incident_by_event(e["event_id"]))
        assert inc["call_state"] == "ended" and inc["call_duration_s"] is not None
        assert inc["recording_url"] == "/api/v1/media/call-1/call.mp4"
    finally:
        ctx_a.close()
        ctx_r.close()


def test_health_table_of_1000_boxes_draws_only_rows_in_view(browser, start_console):
    """1,000 boxes: the table keeps every box (sorted, offline first) but puts
    only the rows in view in the DOM, so a health report never makes a frame
    long enough to hold an alarm up; scrolling and the filter reach any box."""
    c = start_console()
    c.add_operator("sunita", PW, "supervisor")
    boxes = [health_box(i, junction="Junction %d" % (i % 47)) for i in range(1, 1001)]
    boxes[699]["online"] = False  # box 700
    post_sync(c, "/api/v1/health", {"gateway_id": GATEWAY_ID, "time": "2026-11-28T19:20:05Z", "boxes": boxes})
    ctx, page = _login(browser, c, "sunita")
    try:
        page.click("button[data-tab=health]")
        page.wait_for_function("document.getElementById('health-table').dataset.boxes === '1000'")
        drawn = page.evaluate("document.querySelectorAll('#health-table tbody tr[id]').length")
        assert 10 <= drawn <= 150, drawn
        # offline first
        assert page.evaluate("document.querySelector('#health-table tbody tr[id]').id") == "box-700"
        assert page.inner_text("#health-summary").startswith("999 / 1000")
        # scrolled to the end, the last box is drawn and the page height matches 1,000 rows
        page.evaluate("const s = document.getElementById('health-scroll'); s.scrollTop = s.scrollHeight")
        page.wait_for_selector("#box-1000", timeout=5000)
        assert not page.query_selector("#box-2")
        row_px = page.evaluate("document.getElementById('box-1000').getBoundingClientRect().height")
        total = page.evaluate("document.querySelector('#health-table tbody').getBoundingClientRect().height")
        assert abs(total - 1000 * row_px) < 2 * row_px, (total, row_px)
        # the filter finds a box by number or junction
        page.fill("#health-filter", "999")
        page.wait_for_function("document.getElementById('health-table').dataset.boxes === '1'")
        assert page.query_selector("#box-999") and not page.query_selector("#box-1000")
        page.fill("#health-filter", "Junction 46")
        page.wait_for_function("document.getElementById('health-table').dataset.boxes === '%d'"
                               % sum(1 for b in boxes if b["junction"] == "Junction 46"))
        _shot(page, "health-1000")
        # a fresh report reaches the rows in view
        boxes[45]["online"] = False  # box 46, at Junction 46
        post_sync(c, "/api/v1/health", {"gateway_id": GATEWAY_ID, "time": "2026-11-28T19:20:15Z", "boxes": boxes})
        page.wait_for_selector("#box-46.offline", timeout=5000)
    finally:
        ctx.close()


def test_alarm_reaches_an_operator_on_another_tab(browser, start_console):
    """An operator reading the history (or map, or health) still sees and hears
    a new alarm: the alert bar on every tab, the board tab's count, a beep;
    the bar leads to the card."""
    c = start_console()
    c.add_operator("asha", PW)
    ctx, page = _login(browser, c, "asha")
    try:
        page.click("button[data-tab=history]")
        assert page.is_hidden("#alert-bar")
        beeps = page.evaluate("window.__callbox.beeps")
        e = event(box_id=7, kind="panic", junction="Rawatpur Crossing")
        post_sync(c, "/api/v1/events", {"events": [e]})
        page.wait_for_selector("#alert-bar.kind-panic", timeout=5000)
        bar = page.inner_text("#alert-bar")
        assert "1 alarm waiting" in bar and "Rawatpur Crossing" in bar and "PANIC" in bar
        assert "(1)" in page.inner_text(".tab[data-tab=board]")
        assert page.evaluate("window.__callbox.beeps") > beeps
        assert page.is_visible("#tab-history")  # nothing was taken away from what she was doing
        page.wait_for_selector("#history-table tbody tr.kind-panic", timeout=5000)  # the history keeps up
        _shot(page, "alert-bar-on-history")
        page.click("#alert-bar .alert-go")
        page.wait_for_selector('#tab-board article[data-event="%s"]' % e["event_id"], state="visible")
        page.click('article[data-event="%s"] button.ack' % e["event_id"])
        page.wait_for_selector("#alert-bar", state="hidden")
        assert "(" not in page.inner_text(".tab[data-tab=board]")
    finally:
        ctx.close()


def test_escalation_alone_on_shift_rerings_and_shows_supervisors(browser, start_console):
    """Nobody else to roll over to: the alarm keeps ringing at the operator
    who has it (re-alerted), and every supervisor's console (an admin here,
    who is not in the roll-over) shows it as unanswered after escalation; an
    operator who opens the console later is alerted at once."""
    import time as _t
    c = start_console(escalation_s=1.5, escalation_tick_s=0.25, clock=_t.time)
    c.add_operator("asha", PW)
    c.add_operator("boss", PW, "admin")
    c.add_operator("ravi", PW)
    ctx_a, pa = _login(browser, c, "asha")
    ctx_b, pb = _login(browser, c, "boss")
    ctx_r = None
    try:
        e = event(box_id=44, kind="emergency", junction="Bagiya Crossing")
        post_sync(c, "/api/v1/events", {"events": [e]})
        sel = 'article[data-event="%s"]' % e["event_id"]
        pa.wait_for_selector(sel + ".mine", timeout=5000)
        beeps_a = pa.evaluate("window.__callbox.beeps")
        pb.wait_for_selector("#alert-supervisor", timeout=10000)
        assert "Bagiya Crossing" in pb.inner_text("#alert-supervisor")
        assert "asha" in pb.inner_text("#alert-supervisor")
        pa.wait_for_function("window.__callbox.beeps > %d" % beeps_a, timeout=10000)  # re-alerted
        inc = c.run(c.console.store.incident_by_event(e["event_id"]))
        assert inc["assigned_to"] == "asha" and inc["escalations"] >= 1
        assert pa.is_hidden("#alert-supervisor")  # an operator is not shown the supervisor line
        _shot(pb, "supervisor-escalated")
        # ravi opens the console now: it rings at once for the waiting alarm
        ctx_r, pr = _login(browser, c, "ravi")
        pr.wait_for_function("window.__callbox.beeps >= 1", timeout=5000)
        assert pr.is_visible("#alert-bar")
    finally:
        for x in (ctx_a, ctx_b, ctx_r):
            if x is not None:
                x.close()


def test_alarm_stored_while_the_board_loads_is_not_lost(browser, start_console):
    """The board subscribes to live updates, then reads the state. An alarm
    stored between the two comes over the WebSocket before the (older) state
    arrives; the state must not wipe it off the board."""
    c = start_console()
    c.add_operator("asha", PW)
    e = event(box_id=9, kind="panic", junction="Gopal Tiraha")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page = ctx.new_page()
    held = {}

    def hold_state(route):
        resp = route.fetch()  # the state as read now, before the alarm exists
        post_sync(c, "/api/v1/events", {"events": [e]})
        time.sleep(1.0)  # the alarm's WebSocket message reaches the page meanwhile
        held["released_ms"] = time.time() * 1000
        route.fulfill(response=resp)

    page.route("**/ui/api/state", hold_state)
    try:
        page.goto(c.url + "/login")
        page.fill("#username", "asha")
        page.fill("#password", PW)
        page.click("#login-button")
        page.wait_for_function("window.__callbox && window.__callbox.ready === true", timeout=15000)
        arrived = page.evaluate("ev => window.__callbox.arrived[ev]", e["event_id"])
        assert arrived is not None and arrived < held["released_ms"], "the race was not exercised"
        page.wait_for_selector('article[data-event="%s"]' % e["event_id"], timeout=5000)
        assert page.is_visible("#alert-bar")
    finally:
        ctx.close()


def test_alarm_card_as_the_operator_sees_it_then_snapshot_and_clip_arrive(browser, start_console, fake_gateway):
    """BRIEF 1 and 8 on one card: kind, junction and place, box and link,
    press time in IST (and a warning when the box's clock was not set), who it
    rings at; the snapshot and a playable clip appear when the gateway's later
    POST /api/v1/media brings them; the clip keeps playing while new alarms
    redraw the board; the map's legend explains its colours and an alarmed
    junction leads to its card."""
    c = start_console(gateway_url=fake_gateway.url, token=fake_gateway.token)
    c.add_operator("asha", PW)
    post_sync(c, "/api/v1/health", {"gateway_id": GATEWAY_ID, "time": "2026-11-28T19:20:05Z",
                                    "boxes": [health_box(11, junction="Rocket Tiraha")]})
    ctx, page = _login(browser, c, "asha")
    try:
        e = event(box_id=11, kind="emergency", junction="Rocket Tiraha", press_time_synced=False, link="lte",
                  lat=26.4912, lon=80.3101, press_time="2026-01-15T19:20:01.000Z")
        post_sync(c, "/api/v1/events", {"events": [e]})
        sel = 'article[data-event="%s"]' % e["event_id"]
        page.wait_for_selector(sel, timeout=5000)
        text = page.inner_text(sel)
        for want in ("Emergency", "Rocket Tiraha", "26.4912, 80.3101", "#11 - LTE", "box clock not set",
                     "Ringing at", "asha", "no camera image yet", "Start video call"):
            assert want in text, (want, text)
        # 19:20:01 UTC is 00:50:01 IST the next day (an older press shows its date)
        assert "2026-01-16 00:50:01 IST" in page.inner_text(sel + " dd.press-time")
        assert page.inner_text(sel + " dd.received-time").endswith(" IST")
        assert not page.query_selector(sel + " button.clip")
        # the gateway's media arrive later
        status, _ = post_sync(c, "/api/v1/media", {
            "event_id": e["event_id"], "snapshot_url": "/api/v1/media/%s/snapshot.jpg" % e["event_id"],
            "clip": {"id": e["event_id"], "url": "/api/v1/media/%s/clip.mp4" % e["event_id"], "duration_s": 30.0,
                     "sha256": "0" * 64}})
        assert status == 200
        page.wait_for_selector(sel + " button.clip", timeout=5000)
        assert "Play clip (30 s)" in page.inner_text(sel + " button.clip")
        page.wait_for_function("document.querySelector('%s img.snapshot')?.naturalWidth === 320" % sel.replace("'", "\\'"))
        page.click(sel + " button.clip")
        # a real MP4 through the console's media proxy, decoded by Chromium
        page.wait_for_function("document.getElementById('player-video').readyState >= 2 && "
                               "document.getElementById('player-video').videoWidth === 320", timeout=15000)
        assert "Rocket Tiraha" in page.inner_text("#player-title")
        _shot(page, "clip-player")
        # another alarm redraws the board: the clip is not interrupted
        e2 = event(box_id=12, kind="panic", junction="Bagiya Crossing")
        post_sync(c, "/api/v1/events", {"events": [e2]})
        page.wait_for_selector('article[data-event="%s"]' % e2["event_id"], timeout=5000)
        assert page.is_visible("#player") and page.evaluate("document.getElementById('player-video').src") != ""
        assert "2 alarms waiting" in page.inner_text("#alert-bar")  # the bar stays visible above the player
        page.click("#player-close")
        assert page.is_hidden("#player")
        # waiting alarms first, Panic before Emergency; one being worked on goes after them
        order = "[...document.querySelectorAll('#alarms article')].map(a => a.dataset.event)"
        assert page.evaluate(order) == [e2["event_id"], e["event_id"]]
        page.click('article[data-event="%s"] button.ack' % e2["event_id"])
        page.wait_for_selector('article[data-event="%s"][data-status="acknowledged"]' % e2["event_id"])
        assert page.evaluate(order) == [e["event_id"], e2["event_id"]]
        # map: a legend for every colour, and the alarmed junction leads to its card
        page.click("button[data-tab=map]")
        assert len(page.query_selector_all("#map-legend li")) == 6
        assert "Box offline" in page.inner_text("#map-legend")
        page.click('#map g.junction.state-alarm[data-junction="Rocket Tiraha"]')
        page.wait_for_selector("#tab-board:not(.hidden) " + sel)
    finally:
        ctx.close()
