"""Benchmark: how fast an alarm becomes visible on a real browser's board, and
whether the board stays live while 1,000 boxes report health.

    .venv/bin/python -m callbox_console.bench [--alarms 50] [--boxes 1000] [--health-period-s 1]

Starts a console (SQLite in a temporary directory) on 127.0.0.1, logs an
operator into headless Chromium, then, while a gateway posts health for
--boxes boxes every --health-period-s (10x the real 10 s rate by default),
posts --alarms alarms one by one and records, for each, the time from the
start of the gateway's POST to the moment the browser's board drew it
(window.__callbox.seen, set when the card is rendered). Prints JSON figures.
Same machine clock on both sides; millisecond resolution."""

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


def _pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alarms", type=int, default=50)
    ap.add_argument("--boxes", type=int, default=1000)
    ap.add_argument("--health-period-s", type=float, default=1.0)
    ap.add_argument("--gap-s", type=float, default=0.2, help="pause between alarms")
    args = ap.parse_args(argv)
    print(json.dumps(run(args), indent=2))


def run(args):
    import aiohttp
    from aiohttp import web
    from playwright.sync_api import sync_playwright

    from . import auth, config
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
    stop = asyncio.Event()

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
            t0 = time.monotonic()
            async with session.post(url + "/api/v1/health", json=boxes_report(i), headers=headers) as r:
                assert r.status == 200, r.status
            health_times.append(time.monotonic() - t0)
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

        on_loop(open_session())
        page.click("button[data-tab=health]")  # the heaviest screen to keep live
        page.wait_for_function("document.querySelectorAll('#health-table tbody tr').length >= %d" % args.boxes,
                               timeout=60000)
        posted = {}

        async def post_alarm(n):
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            e = {"event_id": "%08x-%08x" % (n % args.boxes + 1, 100000 + n), "box_id": n % args.boxes + 1,
                 "junction": "Junction %d" % n, "kind": "panic" if n % 2 else "emergency", "restore": False,
                 "press_time": now, "received_time": now, "link": "rs485", "snapshot_url": None, "clip": None}
            t0 = time.time()
            async with session_box["s"].post(url + "/api/v1/events", json={"events": [e]}, headers=headers) as r:
                assert r.status == 200, r.status
            return e["event_id"], t0

        for n in range(args.alarms):
            eid, t0 = on_loop(post_alarm(n))
            posted[eid] = t0
            time.sleep(args.gap_s)
        page.wait_for_function("ids => ids.every(i => i in window.__callbox.seen)", arg=list(posted), timeout=60000)
        seen = page.evaluate("() => window.__callbox.seen")
        lat = [seen[eid] / 1000.0 - t0 for eid, t0 in posted.items()]
        live = page.evaluate("() => window.__callbox.ready")
        rows = page.evaluate("() => document.querySelectorAll('#health-table tbody tr').length")

        async def close_session():
            stop.set()
            await session_box["task"]
            await session_box["s"].close()

        on_loop(close_session())
        browser.close()
    on_loop(runner.cleanup())
    loop.call_soon_threadsafe(loop.stop)
    lat_ms = [1000 * x for x in lat]
    figures.update({
        "alarm_visible_ms_p50": round(statistics.median(lat_ms), 1),
        "alarm_visible_ms_p99": round(_pct(lat_ms, 99), 1),
        "alarm_visible_ms_max": round(max(lat_ms), 1),
        "slowest_alarm_index": lat_ms.index(max(lat_ms)),
        "target_ms_p99": 1000,
        "health_reports_posted": len(health_times),
        "health_post_ms_p50": round(1000 * statistics.median(health_times), 1) if health_times else None,
        "health_post_ms_max": round(1000 * max(health_times), 1) if health_times else None,
        "board_live_at_end": bool(live),
        "health_rows_on_board": rows,
    })
    return figures


if __name__ == "__main__":
    main()
