"""`callbox bench latency`: press-to-gateway-ACK and press-to-console latency
through the whole chain, on the HIL rig (docs/hil.md).

The virtual rig (default) runs the real firmware on MicroPython unix-port
boxes, the real gateway and console, and the link emulators: the RS-485 bus
at 115200 baud, or LTE through the modem simulator and the LTE network
emulator (40 ms +- 20 ms one way, 10 % packet loss by default). Presses go
round-robin over the boxes, one every --interval-ms; each is held 100 ms.

Keys: link, presses, lost, duplicated, ack_ms and console_ms (p50, p95, p99,
max), plus boxes, loss, debounce_ms, targets and met (the issue's targets
for the virtual rig)."""

import pathlib
import tempfile
import time

NAME = "latency"
HELP = "latency: press to gateway ACK and to console, p50/p95/p99/max, lost and duplicated (HIL rig)"

DEBOUNCE_MS = 20  # firmware/debounce.py PRESS_CONFIRM_MS
TARGETS = {"rs485": {"ack_ms_p99": DEBOUNCE_MS + 40, "console_ms_p99": 300}, "lte": {"console_ms_p99": 2000}}


def add_arguments(parser):
    parser.add_argument("--link", choices=("rs485", "lte"), default="rs485", help="link to measure (default rs485)")
    parser.add_argument("--presses", type=int, default=50, help="presses in total (default 50)")
    parser.add_argument("--boxes", type=int, default=4, help="virtual boxes (default 4)")
    parser.add_argument("--interval-ms", type=int, default=400, help="time between presses (default 400 ms)")
    parser.add_argument("--loss", type=float, default=None, help="LTE packet loss (default 0.10 for --link lte)")
    parser.add_argument("--rig", default="virtual", help="rig environment: virtual, bench, or a TOML path")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the latency histograms to a PNG")
    parser.add_argument("--keep", metavar="DIR", help="keep the rig's files (logs, databases) in DIR")


def run(args):
    from callbox_rig import env as envmod
    from callbox_rig.rig import BenchRig, VirtualRig

    from ..errors import CommandError

    if args.presses < 1 or args.boxes < 1:
        raise CommandError("--presses and --boxes must be at least 1")
    try:
        env = envmod.load(args.rig)
    except envmod.EnvError as e:
        raise CommandError(str(e))
    loss = args.loss if args.loss is not None else (0.10 if args.link == "lte" else 0.0)
    tmp = None
    if args.keep:
        workdir = pathlib.Path(args.keep)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="callbox-latency-")
        workdir = pathlib.Path(tmp.name)
    rig = (VirtualRig if env.virtual else BenchRig)(env, workdir / "rig")
    try:
        rig.start(boxes=args.boxes, link=args.link, lte={"loss": loss} if args.link == "lte" else None)
        for i in range(args.presses):
            box = rig.boxes[i % len(rig.boxes)]
            rig.press(box, "panic" if i % 2 else "emergency")
            time.sleep(0.1)
            rig.release(box, "panic" if i % 2 else "emergency")
            time.sleep(max(0.0, args.interval_ms / 1000.0 - 0.1))
        report = rig.check(timeout=max(60.0, env.timing["delivery_timeout_s"]), settle_s=2.0)
    finally:
        rig.stop()
        if tmp is not None:
            tmp.cleanup()
    f = report.figures()
    out = {"link": args.link, "presses": f["presses"], "lost": f["lost"], "duplicated": f["duplicated"],
           "ack_ms": f["ack_ms"], "console_ms": f["console_ms"], "boxes": args.boxes, "rig": env.kind,
           "loss": loss, "debounce_ms": DEBOUNCE_MS, "targets": TARGETS[args.link]}
    met = f["lost"] == 0 and f["duplicated"] == 0
    for k, limit in TARGETS[args.link].items():
        which, q = k.rsplit("_", 1)
        v = f[which][q]
        met = met and v is not None and v <= limit
    out["met"] = met
    if args.plot:
        from callbox_rig.plot import histogram_png

        pathlib.Path(args.plot).write_bytes(histogram_png(
            [("press to gateway ACK (ms)", report.latencies("ack_ms")), ("press to console (ms)", report.latencies("console_ms"))],
            title="%s, %d presses, %d boxes" % (args.link, f["presses"], args.boxes)))
        out["plot"] = args.plot
    return out
