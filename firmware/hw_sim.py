"""The simulated hardware of a virtual box (MicroPython unix port).

The supervisor writes sim.json into the box's flash directory:
    {"control": "127.0.0.1:PORT",            the control channel (TCP)
     "uarts": {"rs485": "socket://127.0.0.1:PORT" | "/dev/pts/N", ...},
     "flash_delay_ms": 0}                     slow flash, for power-cut tests

Control channel, one ASCII line per message.
  supervisor -> box:
    pin NAME LEVEL                electrical level of an input
    trace NAME L,MS L,MS ...      play levels with durations, timed here
    set power mains|battery       mains state
    set battery_mv N
  box -> supervisor:
    hello BOOT_REASON
    out NAME LEVEL                an output pin changed (electrical)
    light STATE                   the beacon state changed
    wdt TIMEOUT_MS | feed         the watchdog (the supervisor enforces it)
    hold MS                       count the watchdog as fed for MS (firmware
                                  stopped at the REPL, see wdt_hold)
    reset                         machine.reset: the supervisor restarts us

The control channel is a plain non-blocking socket, read when the firmware
samples an input or the power (that is when a pin's level matters): no task
and no asyncio stream to keep in RAM. Lines sent before start() are dropped.

Without sim.json (micropython run by hand) the inputs stay idle, UARTs are
absent and reset() exits.
"""

import time

_cfg = {}
_board = None
# input -> electrical level, or (start ticks, [(level, ms), ...]) while a
# trace plays (one dict for both: a second one and its name cost RAM)
_levels = {}
_outs = {}  # output -> electrical level last driven
_power = ["mains", 12800]
_ctl = None  # the control channel (socket), None when not connected
_rx = ""  # the start of a control line whose end has not arrived yet


def _send(line):
    if _ctl is not None:
        try:
            _ctl.write(line + "\n")
        except OSError:
            pass


def _connect():
    # (Re)connect the control channel (if sim.json names one) and say hello.
    global _ctl
    if not _cfg.get("control"):
        return
    if _ctl is not None:
        _ctl.close()
    import socket

    host, port = _cfg["control"].rsplit(":", 1)
    try:
        _ctl = socket.socket()
        _ctl.connect(socket.getaddrinfo(host, int(port))[0][-1])
    except OSError as e:
        _ctl = None
        print("hw_sim: no control channel: %r" % (e,))
        return
    _ctl.setblocking(False)
    _send("hello " + reset_cause())


def init(board):
    global _board, _cfg
    import json

    _board = board
    try:
        with open("sim.json") as f:
            _cfg = json.loads(f.read())
    except (OSError, ValueError):
        _cfg = {}
    for name in board["inputs"]:
        if name not in _levels:
            _levels[name] = 1 - board["inputs"][name].get("active", 0)


async def start():
    """Connect the control channel. Called again (the self-test from the
    REPL after the firmware was stopped) it reconnects, and the supervisor
    sends the input levels again to the new connection."""
    _connect()


def _poll():
    # Apply every line the supervisor sent since the last look. The socket
    # is non-blocking: readline() gives None when nothing is there, or the
    # start of a line whose rest is still on its way.
    global _ctl, _rx
    while _ctl is not None:
        try:
            got = _ctl.readline()
        except OSError:  # the supervisor reset the connection
            got = ""
        if got is None:  # nothing more for now
            return
        if not got:  # the supervisor closed the channel
            _ctl = None
            return
        _rx += got.decode()
        if not _rx.endswith("\n"):
            return
        line = _rx
        _rx = ""
        p = line.split()
        try:
            if p[0] == "pin":
                _levels[p[1]] = int(p[2])
            elif p[0] == "trace" and len(p) > 2:
                steps = []
                for s in p[2:]:
                    lv, ms = s.split(",")
                    steps.append((int(lv), int(ms)))
                _levels[p[1]] = (time.ticks_ms(), steps)
            elif p[0] == "set":
                if p[1] == "power":
                    _power[0] = p[2]
                else:
                    _power[1] = int(p[2])
        except (ValueError, IndexError):
            print("hw_sim: bad control line %r" % line)


def input_level(name):
    _poll()
    v = _levels.get(name, 1)
    if type(v) is int:
        return v
    # a trace: the level of the step we are in
    t = time.ticks_diff(time.ticks_ms(), v[0])
    for lv, ms in v[1]:
        if t < ms:
            return lv
        t -= ms
    _levels[name] = lv  # played out: its last level stays
    return lv


def output(name, on):
    p = _board["outputs"].get(name) if _board else None
    active = p.get("active", 1) if p else 1
    level = active if on else 1 - active
    if _outs.get(name) != level:
        _outs[name] = level
        _send("out %s %d" % (name, level))


def output_level(name):
    """The electrical level an output was last driven to (read back); a
    KeyError for an output the board does not have."""
    return _outs.get(name, 1 - _board["outputs"][name].get("active", 1))


def light_state(name):
    _send("light " + name)


async def open_uart(name):
    url = _cfg.get("uarts", {}).get(name)
    if not url:
        raise OSError("no %s UART in sim.json" % name)
    import asyncio

    if url.startswith("socket://"):
        host, port = url[9:].rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))
    # A pty: raw (iflag, oflag, lflag = 0) and a read returns what is there
    # (cc[VTIME], cc[VMIN] = 0; indexes 5 and 6 on Linux), so asyncio's
    # stream can wait for it with poll() as for a socket.
    import termios

    f = open(url, "r+b")
    a = termios.tcgetattr(f.fileno())
    a[0] = a[1] = a[3] = a[6][5] = a[6][6] = 0
    termios.tcsetattr(f.fileno(), termios.TCSANOW, a)
    s = asyncio.StreamReader(f)
    return s, s


async def uart_tx_done(name):
    pass


def wdt_start(timeout_ms):
    _send("wdt %d" % timeout_ms)


def wdt_feed():
    _send("feed")


def wdt_hold(ms):
    _send("hold %d" % ms)


def reset():
    if _ctl is None:
        # Not started yet (a crash at import): reach the supervisor now.
        if not _cfg:
            init({"inputs": {}, "outputs": {}})
        _connect()
        if _ctl is None:
            print("hw_sim: no supervisor: exiting")
            raise SystemExit(1)
    _send("reset")
    while True:
        time.sleep(1)


def reset_cause():
    import os

    return os.getenv("CALLBOX_BOOT") or "power_on"


def power():
    _poll()
    return tuple(_power)


def flash_write(f, data):
    delay = _cfg.get("flash_delay_ms", 0)
    if not delay:
        f.write(data)
        return
    for i in range(0, len(data), 4):  # 4 bytes per slow-flash step
        f.write(data[i : i + 4])
        f.flush()
        time.sleep_ms(delay)
