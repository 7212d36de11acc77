"""Benchmark: how fast an alarm becomes visible on a real browser's board, and
whether the board stays live while 1,000 boxes report health.

    .venv/bin/callbox bench console [--runs 3] [--alarms 50] [--boxes 1000] [--trace]
    .venv/bin/python -m callbox_console.bench ...   (same arguments)

Each run starts a fresh console (SQLite in a temporary directory) on
127.0.0.1 and a fresh headless Chromium (Debian's /usr/bin/chromium), logs an
operator in, opens the box-health tab (the heaviest screen to keep live),
then, while a gateway posts health for --boxes boxes every --health-period-s
(10x the real 10 s rate by default), posts --alarms alarms one by one and
records, for each, the time from the start of the gateway's POST to the frame
in which the browser drew its card (window.__callbox.painted: the first frame
rendered after the card entered the DOM). Same machine clock on both sides;
millisecond resolution.

Each alarm's time is also split into stages, so a slow one says where it
waited:

    post      start of the POST -> the gateway has the 200 (stored, published)
    published start of the POST -> the console handed it to the live hub
    sent      start of the POST -> the board's WebSocket sender took it
    arrived   start of the POST -> the browser's onmessage ran
    dom       start of the POST -> the card was in the DOM
    painted   start of the POST -> the frame with the card was rendered

With --trace the slowest alarm also lists the browser's long animation frames
(the Long Animation Frames API, with script attribution) and the console's
event-loop stalls that overlapped it.

Figures: per run p50/p99/max and the first alarm's time; over runs the median
of each."""

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"
GATEWAY = "gw-bench"
TARGET_P99_MS = 1000  # issue 6: visible within 1 s of receipt, p99 over 50 presses
STAGES = ("post", "published", "sent", "arrived", "dom", "painted")
# The console's event loop is sampled every this often; a sample that comes
# late by more than LOOP_STALL_MS is recorded as a stall (for --trace).
LOOP_PROBE_S = 0.005
LOOP_STALL_MS = 30

# Collected in the page from the first script on: long animation frames
# (over 50 ms), with the scripts that ran in them.
LOAF_SCRIPT = """
window.__bench_loaf = [];
try {
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) window.__bench_loaf.push({
      start: performance.timeOrigin + e.startTime, duration: e.duration,
      render_start: e.renderStart ? performance.timeOrigin + e.renderStart : null,
      style_layout_start: e.styleAndLayoutStart ? performance.timeOrigin + e.styleAndLayoutStart : null,
      blocking: e.blockingDuration,
      scripts: e.scripts.map(s => ({invoker: s.invoker, duration: Math.round(s.duration),
        source: (s.sourceFunctionName || "") + "@" + (s.sourceURL || "").split("/").pop() + ":" + s.sourceCharPosition}))});
  }).observe({type: "long-animation-frame", buffered: true});
} catch (e) { /* no LoAF in this browser: traces only lack the browser side */ }
"""


def add_arguments(ap):
    ap.add_argument("--runs", type=int, default=1, help="fresh console and browser per run (default 1)")
    ap.add_argument("--alarms", type=int, default=50, help="alarms posted as a gateway per run (default 50)")
    ap.add_argument("--boxes", type=int, default=1000, help="boxes reporting health (default 1,000)")
    ap.add_argument("--health-period-s", type=float, default=1.0,
                    help="seconds between health posts (default 1 s, 10x the real rate)")
    ap.add_argument("--gap-s", type=float, default=0.2, help="seconds between alarms (default 0.2)")
    ap.add_argument("--trace", action="store_true",
                    help="add the slowest alarm's stages, long frames and event-loop stalls")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    print(json.dumps(run(ap.parse_args(argv)), indent=2))


def _pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def run(args):
    runs = [_one_run(args) for _ in range(max(1, getattr(args, "runs", 1)))]
    if len(runs) == 1:
        return runs[0]
    keys = ("alarm_visible_ms_p50", "alarm_visible_ms_p99", "alarm_visible_ms_max", "first_alarm_ms",
            "dom_ms_p99", "health_post_ms_p50")
    out = {"runs": len(runs), "alarms": args.alarms, "boxes": args.boxes, "health_period_s": args.health_period_s,
           "target_ms_p99": TARGET_P99_MS}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out["median_" + k] = round(statistics.median(vals), 1) if vals else None
    out["worst_alarm_visible_ms_p99"] = max(r["alarm_visible_ms_p99"] for r in runs)
    out["runs_meeting_target"] = sum(r["alarm_visible_ms_p99"] <= TARGET_P99_MS for r in runs)
    out["board_live_at_end"] = all(r["board_live_at_end"] for r in runs)
    out["per_run"] = [{k: r[k] for k in ("alarm_visible_ms_p50", "alarm_visible_ms_p99", "alarm_visible_ms_max",
                                         "first_alarm_ms", "slowest_alarm_index")} for r in runs]
    if getattr(args, "trace", False):
        out["traces"] = [r.get("slowest") for r in runs]
    return out


def _one_run(args):
    import aiohttp
    from aiohttp import web
    from playwright.sync_api import sync_playwright

    from . import auth, config, live
    from .server import Console, make_app

    tmp = tempfile.mkdtemp(prefix="callbox-console-bench-")
    token = secrets.token_hex(32)
    cfg = config.ConsoleConfig(state_dir=tmp, scrypt_n=2 ** 12)
    cfg.gateways[GATEWAY] = config.GatewayConfig(GATEWAY, token, "")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    console = Console(cfg)
    runner = web.AppRunner(make_app(console), access_log=None)

    # Server-side stage times, by event id (wrapping the hub and the clients
    # of this console only; nothing here changes what they do).
    server = {"published": {}, "sent": {}}
    hub_broadcast = console.hub.broadcast

    def traced_broadcast(msg):
        if msg.get("type") == "incident":
            server["published"].setdefault(msg["incident"]["event_id"], time.time())
        hub_broadcast(msg)

    console.hub.broadcast = traced_broadcast
    hub_add = console.hub.add

    def traced_add(client):
        next_message = client.next_message

        async def traced_next():
            msg = await next_message()
            if msg.get("type") == "incident":
                server["sent"].setdefault(msg["incident"]["event_id"], time.time())
            return msg

        client.next_message = traced_next
        hub_add(client)

    console.hub.add = traced_add
    stalls = []
    stop = asyncio.Event()

    async def loop_probe():
        while not stop.is_set():
            t0 = time.time()
            await asyncio.sleep(LOOP_PROBE_S)
            late_ms = (time.time() - t0 - LOOP_PROBE_S) * 1000
            if late_ms > LOOP_STALL_MS:
                stalls.append((t0, round(late_ms, 1)))

    async def start():
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        pw = "bench operator password"
        await console.store.create_operator("bench", "supervisor", auth.hash_password(pw, n=2 ** 12), False, time.time())
        return runner.addresses[0][1], pw

    port, pw = on_loop(start())
    url = "http://127.0.0.1:%d" % port
    headers = {"Authorization": "Bearer " + token, "X-Callbox-Gateway": GATEWAY}
    health_times = []
    health_spans = []

    def boxes_report(i):
        hb = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"gateway_id": GATEWAY, "time": hb, "boxes": [
            {"box_id": b, "junction": "Junction %d" % (b % 47), "online": (b + i) % 97 != 0, "last_heartbeat": hb,
             "link": "rs485" if b % 3 else "lte", "rssi_dbm": -60 - b % 40, "power": "mains", "battery_mv": 12800,
             "tamper": False, "fw": "1.0.0", "outbox": 0, "boot_reason": "power_on", "uptime_s": 1000 + i,
             "faults": [], "selftest": {"time": hb, "passed": b % 50 != 0, "items": {}}}
            for b in range(1, args.boxes + 1)]}

    async def health_loop(session):
        i = 0
        while not stop.is_set():
            body = json.dumps(boxes_report(i))
            t0 = time.time()
            async with session.post(url + "/api/v1/health", data=body,
                                    headers={**headers, "Content-Type": "application/json"}) as r:
                assert r.status == 200, r.status
            t1 = time.time()
            health_times.append(t1 - t0)
            health_spans.append((t0, t1))
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), args.health_period_s)
            except asyncio.TimeoutError:
                pass

    figures = {"alarms": args.alarms, "boxes": args.boxes, "health_period_s": args.health_period_s}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        ctx.add_init_script(LOAF_SCRIPT)
        page = ctx.new_page()
        page.goto(url + "/login")
        page.fill("#username", "bench")
        page.fill("#password", pw)
        page.click("#login-button")
        page.wait_for_function("window.__callbox && window.__callbox.ready === true", timeout=30000)
        session_box = {}

        async def open_session():
            session_box["s"] = aiohttp.ClientSession()
            session_box["task"] = asyncio.ensure_future(health_loop(session_box["s"]))
            session_box["probe"] = asyncio.ensure_future(loop_probe())

        on_loop(open_session())
        page.click("button[data-tab=health]")  # the heaviest screen to keep live
        page.wait_for_function("document.getElementById('health-table').dataset.boxes === '%d'" % args.boxes,
                               timeout=60000)
        posted, answered = {}, {}

        async def post_alarm(n):
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            e = {"event_id": "%08x-%08x" % (n % args.boxes + 1, 100000 + n), "box_id": n % args.boxes + 1,
                 "junction": "Junction %d" % n, "kind": "panic" if n % 2 else "emergency", "restore": False,
                 "press_time": now, "received_time": now, "link": "rs485", "snapshot_url": None, "clip": None}
            t0 = time.time()
            async with session_box["s"].post(url + "/api/v1/events", json={"events": [e]}, headers=headers) as r:
                assert r.status == 200, r.status
            return e["event_id"], t0, time.time()

        for n in range(args.alarms):
            eid, t0, t1 = on_loop(post_alarm(n))
            posted[eid] = t0
            answered[eid] = t1
            time.sleep(args.gap_s)
        page.wait_for_function("ids => ids.every(i => i in window.__callbox.painted)", arg=list(posted),
                               timeout=60000)
        cb = page.evaluate("() => ({seen: window.__callbox.seen, painted: window.__callbox.painted, "
                           "arrived: window.__callbox.arrived, ready: window.__callbox.ready})")
        loaf = page.evaluate("() => window.__bench_loaf || []")
        rows = page.evaluate("() => [Number(document.getElementById('health-table').dataset.boxes), "
                             "document.querySelectorAll('#health-table tbody tr[id]').length]")

        async def close_session():
            stop.set()
            await session_box["task"]
            await session_box["probe"]
            await session_box["s"].close()

        on_loop(close_session())
        browser.close()
    on_loop(runner.cleanup())
    loop.call_soon_threadsafe(loop.stop)

    def ms(t, t0):
        return None if t is None else round(1000 * (t - t0), 1)

    per_alarm = []
    for eid, t0 in posted.items():
        per_alarm.append({"event_id": eid, "post": ms(answered[eid], t0),
                          "published": ms(server["published"].get(eid), t0), "sent": ms(server["sent"].get(eid), t0),
                          "arrived": ms(cb["arrived"].get(eid, 0) / 1000.0 or None, t0),
                          "dom": ms(cb["seen"][eid] / 1000.0, t0), "painted": ms(cb["painted"][eid] / 1000.0, t0)})
    lat_ms = [a["painted"] for a in per_alarm]
    dom_ms = [a["dom"] for a in per_alarm]
    slow_i = lat_ms.index(max(lat_ms))
    figures.update({
        "alarm_visible_ms_p50": round(statistics.median(lat_ms), 1),
        "alarm_visible_ms_p99": round(_pct(lat_ms, 99), 1),
        "alarm_visible_ms_max": round(max(lat_ms), 1),
        "first_alarm_ms": lat_ms[0],
        "slowest_alarm_index": slow_i,
        "dom_ms_p50": round(statistics.median(dom_ms), 1),
        "dom_ms_p99": round(_pct(dom_ms, 99), 1),
        "target_ms_p99": TARGET_P99_MS,
        "stages_ms_p99": {s: round(_pct([a[s] for a in per_alarm if a[s] is not None], 99), 1) for s in STAGES
                          if any(a[s] is not None for a in per_alarm)},
        "health_reports_posted": len(health_times),
        "health_post_ms_p50": round(1000 * statistics.median(health_times), 1) if health_times else None,
        "health_post_ms_max": round(1000 * max(health_times), 1) if health_times else None,
        "board_live_at_end": bool(cb["ready"]),
        "health_boxes_on_board": rows[0],
        "health_rows_drawn": rows[1],
    })
    if getattr(args, "trace", False):
        slow = per_alarm[slow_i]
        t0 = posted[slow["event_id"]]
        t_end = t0 + slow["painted"] / 1000.0
        figures["slowest"] = {
            "index": slow_i, "stages_ms": {s: slow[s] for s in STAGES},
            "long_frames": [{"start_ms": ms(f["start"] / 1000.0, t0), "duration_ms": round(f["duration"]),
                             "render_start_ms": ms(f["render_start"] / 1000.0, t0) if f["render_start"] else None,
                             "style_layout_start_ms": ms(f["style_layout_start"] / 1000.0, t0)
                             if f["style_layout_start"] else None,
                             "scripts": f["scripts"][:6]}
                            for f in loaf if f["start"] / 1000.0 < t_end and (f["start"] + f["duration"]) / 1000.0 > t0 - 0.5],
            "loop_stalls": [{"start_ms": ms(s0, t0), "late_ms": late} for s0, late in stalls
                            if t0 - 0.5 < s0 < t_end],
            "health_posts": [{"start_ms": ms(a, t0), "end_ms": ms(b, t0)} for a, b in health_spans
                             if a < t_end and b > t0 - 0.5],
        }
        figures["first_alarm_stages_ms"] = {s: per_alarm[0][s] for s in STAGES}
    return figures


if __name__ == "__main__":
    main()
