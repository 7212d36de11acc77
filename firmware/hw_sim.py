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

Without sim.json (micropython run by hand) the inputs stay idle, UARTs are
absent and reset() exits.
"""

import os
import sys
import json
import time
import asyncio

_FLASH_CHUNK = 4  # bytes per slow-flash step

_cfg = {}
_board = None
_levels = {}
_traces = {}
_outs = {}
_ctl = None
_power = ["mains", 12800]
_lines = []  # box -> supervisor lines queued before the channel is up
_uarts = {}


def _send(line):
    if _ctl is None:
        if len(_lines) < 32:
            _lines.append(line)
        return
    try:
        _ctl.write(line + "\n")
    except OSError:
        pass


def init(board):
    global _board, _cfg
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
    """Connect the control channel. Called again in a new event loop (the
    self-test from the REPL after the firmware was stopped), it reconnects:
    the old reader task died with the old loop, and the supervisor sends the
    input levels again to a new connection."""
    global _ctl
    addr = _cfg.get("control")
    if not addr:
        return
    if _ctl is not None:
        try:
            _ctl.close()
        except OSError:
            pass
        _ctl = None
    host, port = addr.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError as e:
        print("hw_sim: no control channel at %s: %r" % (addr, e))
        return
    _ctl = writer.s if hasattr(writer, "s") else writer
    _send("hello " + reset_cause())
    while _lines:
        _send(_lines.pop(0))
    asyncio.create_task(_control(reader))


def _apply(line):
    parts = line.split()
    if not parts:
        return
    if parts[0] == "pin" and len(parts) == 3:
        _traces.pop(parts[1], None)
        _levels[parts[1]] = int(parts[2])
    elif parts[0] == "trace" and len(parts) >= 2:
        steps = []
        for p in parts[2:]:
            lv, ms = p.split(",")
            steps.append((int(lv), int(ms)))
        _traces[parts[1]] = (time.ticks_ms(), steps)
    elif parts[0] == "set" and len(parts) == 3:
        if parts[1] == "power":
            _power[0] = parts[2]
        elif parts[1] == "battery_mv":
            _power[1] = int(parts[2])


async def _control(reader):
    global _ctl
    while True:
        line = await reader.readline()
        if not line:
            _ctl = None
            return
        try:
            _apply(line.decode())
        except (ValueError, IndexError):
            print("hw_sim: bad control line %r" % line)


def input_level(name):
    tr = _traces.get(name)
    if tr is not None:
        t = time.ticks_diff(time.ticks_ms(), tr[0])
        for lv, ms in tr[1]:
            if t < ms:
                return lv
            t -= ms
        _levels[name] = tr[1][-1][0] if tr[1] else _levels.get(name, 1)
        del _traces[name]
    return _levels.get(name, 1)


def output(name, on):
    p = _board["outputs"].get(name) if _board else None
    active = p.get("active", 1) if p else 1
    level = active if on else 1 - active
    if _outs.get(name) != level:
        _outs[name] = level
        _send("out %s %d" % (name, level))


def output_level(name):
    """The electrical level an output was last driven to (read back)."""
    p = _board["outputs"].get(name) if _board else None
    if p is None:
        raise OSError("no output %r on this board" % name)
    return _outs.get(name, 1 - p.get("active", 1))


def light_state(name):
    _send("light " + name)


class _PtyStream:
    # A pty (or any character device) as an asyncio stream: reads whatever
    # is there (up to n bytes) without blocking the loop.
    def __init__(self, path):
        import termios

        self.f = open(path, "r+b")
        try:
            attrs = termios.tcgetattr(self.f)
            attrs[0] = 0
            attrs[1] = 0
            attrs[3] = 0
            termios.tcsetattr(self.f, termios.TCSANOW, attrs)
        except (OSError, AttributeError, TypeError):
            pass
        self.s = self.f

    async def read(self, n):
        import select

        p = select.poll()
        p.register(self.f, select.POLLIN)
        while not p.poll(0):
            await asyncio.sleep_ms(2)
        out = bytearray()
        while len(out) < n and p.poll(0):
            b = self.f.read(1)
            if not b:
                break
            out += b
        return bytes(out)

    async def readexactly(self, n):
        out = b""
        while len(out) < n:
            out += await self.read(n - len(out))
        return out

    def write(self, b):
        self.f.write(b)

    async def drain(self):
        pass

    def close(self):
        self.f.close()

    async def wait_closed(self):
        pass


async def open_uart(name):
    url = _cfg.get("uarts", {}).get(name)
    if not url:
        raise OSError("no %s UART in sim.json (start the box with a %s URL)" % (name, name))
    if url.startswith("socket://"):
        host, port = url[9:].rsplit(":", 1)
        r, w = await asyncio.open_connection(host, int(port))
        return r, w
    s = _PtyStream(url)
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
    global _ctl
    if _ctl is None:
        # Not started yet (a crash at import): reach the supervisor directly.
        if not _cfg:
            init({"inputs": {}, "outputs": {}})
        addr = _cfg.get("control")
        if not addr:
            print("hw_sim: reset without a supervisor: exiting")
            sys.exit(1)
        import socket

        host, port = addr.rsplit(":", 1)
        s = socket.socket()
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        _ctl = s
    _send("reset")
    while True:
        time.sleep(1)


def reset_cause():
    return os.getenv("CALLBOX_BOOT") or "power_on"


def power():
    return (_power[0], _power[1])


def flash_write(f, data):
    delay = _cfg.get("flash_delay_ms", 0)
    if not delay:
        f.write(data)
        return
    for i in range(0, len(data), _FLASH_CHUNK):
        f.write(data[i : i + _FLASH_CHUNK])
        f.flush()
        time.sleep_ms(delay)
