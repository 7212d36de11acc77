"""`callbox bench call`: two-way call setup in headless Chromium, CPU per
call, pre-event buffer memory and snapshot latency (issue 7).

Runs the media package standalone (one synthetic box, 640x480 at 15 fps by
default) in this process and a headless Chromium with fake devices as the
operator. Figures:

    setup_ms          offer created in the browser -> first decoded video frame
                      there (p50, p95 over --calls calls, one after another)
    cpu_per_call_pct  this process's CPU while a call is up, minus the idle
                      baseline (camera + buffer running), in % of one core
    ring_buffer_mb    the box's pre-event buffer (encoded video + mic PCM)
                      once it holds --pre-s seconds
    snapshot_ms       alarm handed to the media service -> JPEG stored and the
                      on_media hook called (median of --snapshots)
"""

import statistics
import time

NAME = "call"
HELP = "WebRTC call setup in headless Chromium, CPU per call, ring buffer MB, snapshot ms"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
TOKEN = "bench-token"
BOX = 42
TARGETS = {"setup_ms_p50": 1000, "cpu_per_call_pct": 35, "snapshot_ms": 1000}


def add_arguments(parser):
    parser.add_argument("--calls", type=int, default=20, help="calls to set up (default 20)")
    parser.add_argument("--hold-s", type=float, default=3.0, help="seconds each call stays up for the CPU figure")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--pre-s", type=float, default=10.0, help="pre-event buffer length (default 10 s)")
    parser.add_argument("--snapshots", type=int, default=5, help="alarms for the snapshot figure")


def _pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def _cpu_pct_over(seconds, sleep):
    c0, w0 = time.process_time(), time.monotonic()
    sleep(seconds)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)


def run(args):
    import pathlib
    import tempfile
    import wave

    from callbox_gateway.media import pcm
    from callbox_gateway.media.standalone import RecordingHooks, ServerThread

    from ..errors import EXIT_FAIL, CommandError

    if not pathlib.Path(CHROMIUM).exists():
        raise CommandError("Chromium is missing: apt-get install -y chromium (scripts/setup does it)", EXIT_FAIL)
    if args.calls < 1:
        raise CommandError("--calls must be at least 1", 2)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise CommandError("playwright is not installed in this venv: pip install -e '.[test]'", EXIT_FAIL)

    class TimedHooks(RecordingHooks):
        def __init__(self, token):
            super().__init__(token)
            self.snapshot_at = {}

        async def on_media(self, event_id, metadata):
            if metadata.get("snapshot_url") and event_id not in self.snapshot_at:
                self.snapshot_at[event_id] = time.monotonic()
            await super().on_media(event_id, metadata)

    tmp = tempfile.TemporaryDirectory(prefix="callbox-bench-call-")
    root = pathlib.Path(tmp.name)
    wav = root / "operator-440hz.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tone(440, 48000 * 5, 48000, -6).tobytes())
    cfg = {
        "media_dir": str(root / "media"), "cache_dir": str(root / "cache"),
        "pre_s": args.pre_s, "post_s": 2.0, "selftest_interval_s": 0.0,
        "boxes": [{"box_id": BOX, "video": {"width": args.width, "height": args.height, "fps": args.fps,
                                             "keyframe_interval_s": 1.0}}],
    }
    hooks = TimedHooks(TOKEN)
    server = ServerThread(cfg, token=TOKEN, hooks=hooks).start()
    try:
        box = server.service.boxes[BOX]
        deadline = time.monotonic() + args.pre_s + 30
        while box.health()["ring_s"] < args.pre_s and time.monotonic() < deadline:
            time.sleep(0.2)
        ring_s = box.health()["ring_s"]
        ring_mb = server.service.ring_buffer_bytes() / 1e6
        video_mb = box.ring.bytes / 1e6
        baseline = _cpu_pct_over(3.0, time.sleep)

        # Snapshot latency: alarm in -> JPEG stored and announced.
        snap_ms = []
        for i in range(args.snapshots):
            event_id = "%08x-%08x" % (BOX, 0x100 + i)
            t0 = time.monotonic()
            server.loop.call_soon_threadsafe(
                lambda e=event_id: server.loop.create_task(server.service.on_alarm(BOX, e, time.time())))
            hooks.wait_for(lambda h, e=event_id: e in h.snapshot_at, 10.0)
            if event_id not in hooks.snapshot_at:
                raise CommandError("no snapshot for alarm %s within 10 s; is the camera running? %s" % (event_id, box.health()))
            snap_ms.append((hooks.snapshot_at[event_id] - t0) * 1000.0)
            time.sleep(0.4)

        setup_ms, cpu = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS + ["--use-file-for-fake-audio-capture=%s" % wav])
            page = browser.new_page()
            page.goto(server.url + "/media-test/call.html")
            for i in range(args.calls):
                r = page.evaluate("o => startCall(o)", {"boxId": BOX, "token": TOKEN, "operator": "bench"})
                if r.get("status") != 200:
                    raise CommandError("call %d refused: %s" % (i + 1, r))
                setup_ms.append(r["setupMs"])
                session = server.service.calls[r["callId"]]
                # page.wait_for_timeout keeps Playwright's event loop running
                # while we wait (time.sleep would stall the browser link).
                cpu.append(_cpu_pct_over(args.hold_s, lambda s: page.wait_for_timeout(s * 1000)) - baseline)
                page.evaluate("id => hangup(id)", r["callId"])
                server.run(session.closed.wait(), timeout_s=60)
            browser.close()
        figures = {
            "calls": len(setup_ms),
            "setup_ms": {"p50": round(_pct(setup_ms, 50)), "p95": round(_pct(setup_ms, 95)), "max": round(max(setup_ms))},
            "cpu_per_call_pct": round(statistics.median(cpu), 1),
            "cpu_per_call_pct_max": round(max(cpu), 1),
            "cpu_baseline_pct": round(baseline, 1),
            "ring_buffer_mb": round(ring_mb, 2),
            "ring_buffer_video_mb": round(video_mb, 2),
            "ring_buffer_s": ring_s,
            "snapshot_ms": round(statistics.median(snap_ms)),
            "snapshot_ms_max": round(max(snap_ms)),
            "video": "%dx%d@%d" % (args.width, args.height, args.fps),
            "targets": TARGETS,
        }
        figures["meets_targets"] = (figures["setup_ms"]["p50"] <= TARGETS["setup_ms_p50"]
                                    and figures["cpu_per_call_pct"] <= TARGETS["cpu_per_call_pct"]
                                    and figures["snapshot_ms"] <= TARGETS["snapshot_ms"])
        return figures
    finally:
        server.stop()
        tmp.cleanup()
