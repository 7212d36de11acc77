"""`callbox sim`: start virtual boxes (the real firmware on the MicroPython
unix port) with demo identities at Kanpur junctions, on one emulated RS-485
bus, until Ctrl-C.

Each box's flash is STATE/box-<id>/; its control socket STATE/box-<id>.sock
takes one JSON line {"op": "press"|"release"|"trace"|"light", "button": ...,
"trace": [[level, ms], ...]} and answers {"ok": true, "light": "..."}
(`callbox press` is its client). STATE/sim.json lists the boxes, their
console ptys (for mpremote), keys and the bus URL for a gateway."""

NAME = "sim"
HELP = "start virtual boxes on an emulated RS-485 bus (demo identities at Kanpur junctions)"

JUNCTIONS = ["Ghantaghar Square", "Gaushala Second Square", "Bagiya Crossing", "IIT Gate Tiraha", "Rocket Tiraha", "Bekarganj Square", "Baghi Chowk Tiraha", "Gopal Tiraha"]
DEFAULT_STATE = ".callbox-sim"


def add_arguments(parser):
    parser.add_argument("--boxes", type=int, default=2, help="how many virtual boxes (default 2)")
    parser.add_argument("--state", default=DEFAULT_STATE, help="state directory: flash of each box, control sockets (default %s)" % DEFAULT_STATE)
    parser.add_argument("--board", default="devkit_rs485", help="board file name in boards/")
    parser.add_argument("--heartbeat", type=int, default=30, help="heartbeat interval in seconds")
    parser.add_argument("--echo", action="store_true", help="print every box's console lines")
    parser.add_argument("--romfs", action="store_true", help="run the firmware from a ROMFS image in place, as in production (docs/firmware.md, Memory)")
    parser.add_argument("--heapsize", default=None, help="MicroPython heap of each box, e.g. 64k (the ESP32's; use with --romfs)")


def demo_config(i, board, heartbeat_s):
    import hashlib

    box_id = i + 1
    # Demo keys are derived, not secret: never use them on a real box.
    key = hashlib.sha256(b"callbox demo key %d" % box_id).hexdigest()
    return {"box_id": box_id, "key": key, "junction": JUNCTIONS[i % len(JUNCTIONS)], "board": board, "link": "rs485", "bus_addr": box_id, "heartbeat_s": heartbeat_s, "event_start": 1}


def _serve(box, path):
    import json
    import os
    import socket
    import threading

    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def handle(conn):
        with conn:
            try:
                req = json.loads(conn.makefile().readline())
                op = req.get("op")
                if op == "press":
                    box.press(req["button"])
                elif op == "release":
                    box.release(req["button"])
                elif op == "trace":
                    box.play_trace(req["button"], req["trace"])
                elif op != "light":
                    raise ValueError("unknown op %r" % op)
                if op != "light" and req.get("wait"):
                    try:
                        box.wait_light(req["wait"], timeout=5)
                    except Exception:
                        pass
                reply = {"ok": True, "light": box.light()}
            except Exception as e:  # the client shows it; the sim keeps running
                reply = {"ok": False, "error": str(e)}
            conn.sendall((json.dumps(reply) + "\n").encode())

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def run(args):
    import json
    import pathlib
    import time

    from callbox_rig.bus import Rs485Bus
    from callbox_rig.virtual_box import VirtualBox

    from ..errors import CommandError, EXIT_USAGE

    if not 1 <= args.boxes <= 32:
        raise CommandError("--boxes must be 1..32", EXIT_USAGE)
    state = pathlib.Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    bus = Rs485Bus().start()
    boxes, servers, info = [], [], []
    try:
        for i in range(args.boxes):
            cfg = demo_config(i, args.board, args.heartbeat)
            flash = state / ("box-%d" % cfg["box_id"])
            existing = flash / "config.json"
            if existing.exists():
                cfg = json.loads(existing.read_text())
            box = VirtualBox(flash, config=cfg, rs485_url=bus.url, name="box %d" % cfg["box_id"], echo=args.echo,
                             romfs=args.romfs, compiled=args.romfs, heapsize=args.heapsize)
            box.start()
            boxes.append(box)
            sock = str(state / ("box-%d.sock" % cfg["box_id"]))
            servers.append(_serve(box, sock))
            info.append({"box_id": cfg["box_id"], "junction": cfg["junction"], "bus_addr": cfg["bus_addr"], "key": cfg["key"], "console": box.console_port, "control": sock, "flash": str(flash)})
        (state / "sim.json").write_text(json.dumps({"bus": bus.url, "boxes": info}, indent=1))
        print("RS-485 bus for the gateway: %s" % bus.url)
        for b in info:
            print("box %d at %s: bus address %d, console %s" % (b["box_id"], b["junction"], b["bus_addr"], b["console"]))
        print("press a button:  callbox press %d emergency [--release] [--state %s]" % (info[0]["box_id"], args.state))
        print("talk to a box:   mpremote connect %s repl" % info[0]["console"])
        print("(keys and paths in %s; Ctrl-C stops the boxes)" % (state / "sim.json"))
        while True:
            time.sleep(1)
    finally:
        for s in servers:
            s.close()
        for b in boxes:
            b.stop()
        bus.stop()
