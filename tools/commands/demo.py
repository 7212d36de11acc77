"""`callbox demo`: the whole system on embedded defaults, no hardware.

    virtual boxes (the real firmware on the MicroPython unix port)
        └─ RS-485 bus emulator (TCP hub) ─► `callbox gateway` ─► `callbox console`
                                              camera+audio (synthetic)   operators' browser

Everything lives in one state directory (default .callbox-demo/): each box's
flash, the gateway's database and media, the console's database, and the
token the gateway and the console share (mode 0600, made on first start).
A second start reuses it all: alarms, operators and box identities survive.
Ctrl-C stops everything."""

NAME = "demo"
HELP = "run the whole system on embedded defaults (virtual boxes, gateway, console)"

DEFAULT_STATE = ".callbox-demo"
GATEWAY_ID = "gw-kanpur-01"


def add_arguments(parser):
    parser.add_argument("--boxes", type=int, default=6, help="virtual boxes on the RS-485 bus (default 6, at most 32)")
    parser.add_argument("--cameras", type=int, default=2, help="how many of them have a (synthetic) camera and audio (default 2)")
    parser.add_argument("--state", default=DEFAULT_STATE, help="state directory (default %s)" % DEFAULT_STATE)
    parser.add_argument("--console-port", type=int, default=8490, help="console HTTP port (default 8490)")
    parser.add_argument("--gateway-port", type=int, default=8480, help="gateway HTTP port (default 8480)")
    parser.add_argument("--lte-port", type=int, default=8470, help="gateway LTE listener port (default 8470)")
    parser.add_argument("--heartbeat", type=int, default=30, help="box heartbeat interval in seconds (default 30)")
    parser.add_argument("--echo", action="store_true", help="print every box's console lines")


def _toml_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def gateway_toml(state, token, bus_url, boxes, args):
    """The gateway's configuration for the demo (written to STATE/gateway.toml)."""
    lines = [
        "gateway_id = %s" % _toml_str(GATEWAY_ID),
        "data_dir = %s" % _toml_str(state / "gateway"),
        "",
        "[http]",
        'host = "127.0.0.1"',
        "port = %d" % args.gateway_port,
        "console_token = %s" % _toml_str(token),
        "",
        "[lte]",
        'host = "127.0.0.1"',
        "port = %d" % args.lte_port,
        "",
        "[rs485]",
        "url = %s" % _toml_str(bus_url),
        "",
        "[supervision]",
        "heartbeat_interval_s = %d.0" % args.heartbeat,
        "missed_heartbeats = 3",
        "",
        "[[sinks]]",
        'type = "console"',
        'name = "console"',
        "url = %s" % _toml_str("http://127.0.0.1:%d/" % args.console_port),
        "token = %s" % _toml_str(token),
        "",
        "[media]",
        "media_dir = %s" % _toml_str(state / "gateway" / "media"),
        "",
    ]
    for cfg in boxes[: args.cameras]:
        lines += ["[[media.boxes]]", "box_id = %d" % cfg["box_id"], 'video = { source = "synthetic", width = 640, height = 480, fps = 15 }',
                  'audio = { source = "synthetic" }', ""]
    for cfg in boxes:
        lines += ["[[boxes]]", "box_id = %d" % cfg["box_id"], "key = %s" % _toml_str(cfg["key"]), "junction = %s" % _toml_str(cfg["junction"]),
                  'link = "rs485"', "bus_addr = %d" % cfg["bus_addr"], ""]
    return "\n".join(lines)


def _secret_file(path):
    import os
    import secrets

    if not path.exists():
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _relay(proc, prefix, ready, patterns, found):
    """Copy a child's output with a prefix; note lines matching patterns."""
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        print("%s %s" % (prefix, line), flush=True)
        for key, pat in patterns.items():
            if pat in line and key not in found:
                found[key] = line
                ready.set()


def run(args):
    import json
    import os
    import pathlib
    import subprocess
    import sys
    import threading
    import time

    from callbox_rig.bus import Rs485Bus
    from callbox_rig.virtual_box import VirtualBox

    from ..errors import EXIT_USAGE, CommandError
    from .sim import _serve as serve_control
    from .sim import demo_config

    if not 1 <= args.boxes <= 32:
        raise CommandError("--boxes must be 1..32 (one RS-485 segment)", EXIT_USAGE)
    state = pathlib.Path(args.state).resolve()
    for sub in ("boxes", "gateway", "console"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    token_file = state / "gateway.token"
    token = _secret_file(token_file)

    procs, boxes, servers = [], [], []
    bus = Rs485Bus().start()
    try:
        configs = []
        for i in range(args.boxes):
            flash = state / "boxes" / ("box-%d" % (i + 1))
            existing = flash / "config.json"
            cfg = json.loads(existing.read_text()) if existing.exists() else demo_config(i, "devkit_rs485", args.heartbeat)
            configs.append(cfg)
        toml_path = state / "gateway.toml"
        fd = os.open(str(toml_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(gateway_toml(state, token, bus.url, configs, args))

        cli = [sys.executable, "-m", "callbox_tools.cli"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        found, ready = {}, threading.Event()
        console = subprocess.Popen(cli + ["console", "--listen", "127.0.0.1:%d" % args.console_port, "--state-dir", str(state / "console"),
                                          "--gateway", GATEWAY_ID, "--gateway-url", "http://127.0.0.1:%d" % args.gateway_port,
                                          "--gateway-token-file", str(token_file)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        procs.append(console)
        threading.Thread(target=_relay, args=(console, "[console]", ready, {"console": "console: http", "password": "first start: log in"}, found),
                         daemon=True).start()
        gateway = subprocess.Popen(cli + ["-v", "gateway", "--config", str(toml_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        procs.append(gateway)
        threading.Thread(target=_relay, args=(gateway, "[gateway]", ready, {"gateway": "gateway_started"}, found), daemon=True).start()

        for cfg in configs:
            flash = state / "boxes" / ("box-%d" % cfg["box_id"])
            box = VirtualBox(flash, config=cfg, rs485_url=bus.url, name="box %d" % cfg["box_id"], echo=args.echo)
            box.start()
            boxes.append(box)
            servers.append(serve_control(box, str(state / "boxes" / ("box-%d.sock" % cfg["box_id"]))))
        (state / "boxes" / "sim.json").write_text(json.dumps({"bus": bus.url, "boxes": [
            {"box_id": c["box_id"], "junction": c["junction"], "bus_addr": c["bus_addr"], "console": b.console_port}
            for c, b in zip(configs, boxes)]}, indent=1))

        deadline = time.monotonic() + 60
        while not ("console" in found and "gateway" in found) and time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise CommandError("a demo service exited with code %d; see its lines above (a port in use? try --console-port/--gateway-port)" % p.returncode)
            ready.wait(0.5)
            ready.clear()
        print()
        print("== Kanpur call-box demo is running ==")
        print("control-room console:  http://127.0.0.1:%d/" % args.console_port)
        if "password" in found:
            print("first login:           %s" % found["password"].split("console: ", 1)[-1])
        else:
            print("login:                 as before (the one-time admin password was shown on the first start)")
        print("gateway:               http://127.0.0.1:%d/health   /metrics" % args.gateway_port)
        for c, b in zip(configs, boxes):
            print("box %-3d %-28s bus address %-3d console %s" % (c["box_id"], c["junction"], c["bus_addr"], b.console_port))
        print("press a button:        callbox press 1 panic --state %s" % (state / "boxes"))
        print("                       callbox press 2 emergency --state %s   (then 'Start video call' in the console)" % (state / "boxes"))
        print("Ctrl-C stops everything; state is kept in %s" % state)
        print("demo ready", flush=True)
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise CommandError("a demo service exited with code %d; see its lines above" % p.returncode)
            time.sleep(1)
    finally:
        for s in servers:
            s.close()
        for b in boxes:
            b.stop()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        bus.stop()
