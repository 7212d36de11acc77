"""Fixtures for the technician CLI tests, all real parts:

- `board`: a new ESP32 board as it comes out of `callbox flash`: MicroPython
  with an empty flash. It is a virtual box (callbox_rig.virtual_box): the
  MicroPython unix port under the supervisor that behaves like a board (brief
  section 4); `.port` is its console pty, which the real mpremote transport
  talks to, `.flash` the folder behind its filesystem. It sits on the
  junction's emulated RS-485 bus (`bus`), so once deployed and provisioned it
  reaches the gateway. `make_board(name)` gives more of them.
- `junction`: a real `callbox gateway` process (RS-485 master on `bus`, an
  LTE listener, the admin API) with its own data_dir and admin.token, as the
  technician finds it at the junction.
- `silent_port`: a serial port where nothing answers (no MicroPython, no ROM).
"""

import json
import os
import pathlib
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tty
import urllib.request

import pytest

from callbox_rig.bus import Rs485Bus
from callbox_rig.services import free_port  # noqa: F401  (tests import it from here)
from callbox_rig.virtual_box import VirtualBox

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CALLBOX = str(pathlib.Path(sys.executable).parent / "callbox")
# How long a gateway may take to print its ready line on a loaded machine
# (it starts in about a second on an idle one).
GATEWAY_START_S = 60
# The gateway waits this long for a box's reply to a poll. The deployed value
# is 5 ms (a C firmware answers in microseconds); the virtual box is the
# MicroPython unix port sharing two cores with the whole test suite.
TURNAROUND_MS = 50.0


def run_cli(*args, env=None, timeout=180, input=None):
    """Run the real `callbox` console script; CompletedProcess with text."""
    e = dict(os.environ)
    for k in ("CALLBOX_PORT", "CALLBOX_GATEWAY_URL", "CALLBOX_GATEWAY_TOKEN"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([CALLBOX, *args], capture_output=True, text=True, timeout=timeout, env=e, input=input)


def popen_cli(*args, **kw):
    """Start the real `callbox` for a test that interrupts it (Ctrl-C). SIGINT
    is reset to its default in the child: a test run started in the
    background inherits it ignored, and Python then never raises
    KeyboardInterrupt."""
    return subprocess.Popen([CALLBOX, *args], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


@pytest.fixture(scope="session", autouse=True)
def mpy_cache(tmp_path_factory):
    """Compiled modules are cached per session in a temporary folder (the
    CLI's cache, callbox_tools.deploying.cache_dir), never in ~/.cache; the
    CLI processes the tests start inherit it."""
    from callbox_tools.deploying import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("mpy-cache"))
    try:
        yield os.environ[CACHE_ENV]
    finally:
        if old is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def bundle(mpy_cache):
    """The firmware as `callbox deploy` builds it (compiled once a session)."""
    from callbox_tools.deploying import build_bundle

    return build_bundle()


# ---------------------------------------------------------------- the board


class NewBoard(VirtualBox):
    """A board fresh from `callbox flash`: MicroPython, nothing deployed, no
    config. What the CLI does to it lands in `.flash`."""

    @property
    def port(self):
        return self.console_port

    @property
    def flash(self):
        return self.flash_dir

    def wait_booted(self, start, timeout=60.0):
        """Wait until the firmware has booted with an identity after console
        line `start` (a provision or deploy soft-resets the box) and reads
        its pins (a button pressed before that is never seen: the
        supervisor only passes on the level at that moment)."""
        m = self.wait_log(r"I box \d+: firmware [\d.]+, board (\S+), link (\S+), boot reason", timeout=timeout, start=start)
        self.wait_ready(timeout)
        return m

    def wait_shown(self, state, since, timeout=30.0):
        """Wait until the light has shown `state` at some point after
        light_history[since] (not a state left over from before)."""
        deadline = time.monotonic() + timeout
        while not any(s == state for _, s in self.light_history[since:]):
            if time.monotonic() > deadline:
                raise AssertionError("%s: light did not show %r within %.0f s (shown since: %r); console ends:\n%s"
                                     % (self.name, state, timeout, [s for _, s in self.light_history[since:]], self.tail()))
            time.sleep(0.02)


@pytest.fixture
def bus():
    """The junction's RS-485 pair (a TCP hub every transceiver hears)."""
    b = Rs485Bus().start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def make_board(tmp_path, bus):
    """make_board(name, deployed=False, config=None, modem_url=None): a new
    board on the bus. deployed=True puts the firmware (as source) and boards/
    on it the way the rig does, and `config` a config.json, for tests about
    what comes after `callbox deploy` or `provision`; `modem_url` wires its
    modem UART (a callbox_rig.modem_sim simulator) for LTE."""
    boards = []

    def make(name="board", deployed=False, config=None, modem_url=None):
        b = NewBoard(tmp_path / name, config=config, deploy=deployed, rs485_url=bus.url, modem_url=modem_url, name=name)
        boards.append(b)
        return b.start()

    try:
        yield make
    finally:
        for b in boards:
            b.stop()


@pytest.fixture
def board(make_board):
    return make_board("board")


def box_files(flash):
    """{path: bytes} of what is on the box's flash, without the virtual
    box's own wiring file (sim.json: its pins and UARTs, not firmware)."""
    out = {}
    for p in sorted(pathlib.Path(flash).rglob("*")):
        rel = p.relative_to(flash).as_posix()
        if p.is_file() and rel != "sim.json":
            out[rel] = p.read_bytes()
    return out


@pytest.fixture
def silent_port():
    """A serial port (pty) where nothing answers: no MicroPython, no ROM."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    try:
        yield name
    finally:
        os.close(slave)
        os.close(master)


# ---------------------------------------------------------------- the gateway


class Junction:
    """`callbox gateway` in a process of its own, configured as at a junction:
    HTTP API (admin), LTE listener, RS-485 master on the bus. Ports are picked
    by the gateway (port 0) and read back from its ready line."""

    READY = re.compile(r"^gateway \S+: http://[\d.]+:(\d+)\s+lte [\d.]+:(\d+)")

    def __init__(self, workdir, bus_url):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "gateway.toml"
        self.config_path.write_text(
            'gateway_id = "gw-test"\n'
            'data_dir = "%s"\n'
            '[http]\nhost = "127.0.0.1"\nport = 0\n'
            '[lte]\nenabled = true\nhost = "127.0.0.1"\nport = 0\n'
            '[rs485]\nurl = "%s"\nturnaround_ms = %.1f\n' % (self.data_dir, bus_url, TURNAROUND_MS)
        )
        self.log_path = self.workdir / "gateway.log"
        self.proc = None
        self.url = None
        self.lte_port = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([CALLBOX, "gateway", "--config", str(self.config_path)], stdout=subprocess.PIPE, stderr=log,
                                         text=True, start_new_session=True)
        deadline = time.monotonic() + GATEWAY_START_S
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            m = self.READY.match(line)
            if m:
                self.url = "http://127.0.0.1:%s" % m.group(1)
                self.lte_port = int(m.group(2))
                return self
        self.stop()
        raise AssertionError("callbox gateway did not start: %r; its log ends:\n%s" % (line, self.tail()))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, n=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def token_file(self):
        """data_dir/admin.token, written by the gateway at its first start."""
        return str(self.data_dir / "admin.token")

    @property
    def token(self):
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def env(self):
        """The technician's environment for the CLI: URL and admin token."""
        return {"CALLBOX_GATEWAY_URL": self.url, "CALLBOX_GATEWAY_TOKEN": self.token}

    def admin(self):
        from callbox_tools.provisioning import GatewayAdmin

        return GatewayAdmin(self.url, self.token)

    def registered_key(self, box_id):
        """The key the gateway holds for box_id (None if not registered),
        read from its database: the admin API never shows keys."""
        db = self.data_dir / "gateway.db"
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
        try:
            r = con.execute("SELECT key_hex FROM boxes WHERE box_id=? AND revoked=0", (box_id,)).fetchone()
        finally:
            con.close()
        return r[0] if r else None

    def boxes(self):
        """The registry as the admin API lists it: {box_id: record}."""
        return {r["box_id"]: r for r in self.admin().boxes()}

    def events(self, box_id):
        """Every event the gateway has committed for box_id, oldest first,
        read from its SQLite database (read-only)."""
        db = self.data_dir / "gateway.db"
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
        try:
            rows = con.execute("SELECT event_id, kind, body FROM events WHERE box_id=? ORDER BY rowid", (box_id,))
            return [{"event_id": r[0], "kind": r[1], "link": json.loads(r[2]).get("link")} for r in rows]
        finally:
            con.close()

    def wait_event(self, box_id, kind, timeout=60.0, after=0):
        """The first event of `kind` from box_id beyond the first `after`."""
        deadline = time.monotonic() + timeout
        while True:
            evs = [e for e in self.events(box_id)[after:] if e["kind"] == kind]
            if evs:
                return evs[0]
            if time.monotonic() > deadline:
                raise AssertionError("the gateway stored no %s event from box %d within %.0f s; it has %r; its log ends:\n%s"
                                     % (kind, box_id, timeout, self.events(box_id), self.tail()))
            time.sleep(0.1)

    def metric(self, name, **labels):
        """A counter from /metrics (0 when absent)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^callbox_gateway_%s_total(?:\{(.*)\})? (\S+)$" % re.escape(name), line)
            if not m:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if all(got.get(k) == str(v) for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def wait_metric(self, name, above, timeout=60.0, **labels):
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(name, **labels)
            if v > above:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("gateway metric %s%r stayed at %s (wanted > %s) for %.0f s; its log ends:\n%s"
                                     % (name, labels, v, above, timeout, self.tail()))
            time.sleep(0.2)


@pytest.fixture
def junction(tmp_path, bus):
    j = Junction(tmp_path / "gateway", bus.url).start()
    try:
        yield j
    finally:
        j.stop()
