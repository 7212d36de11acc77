"""The gateway and the console as real processes for the HIL rig, and a
read-only view of what reached the control room.

- `GatewayProc`: the junction gateway (`callbox gateway`) from a config dict
  written as TOML; `kill()` is
  kill -9, `start()` again restarts it on the same ports and database.
- `ConsoleProc`: `callbox console` on a fixed port with its own SQLite
  database; `kill()`/`start()` take the control room down and back.
- `ConsoleView`: reads the console's database (SQLite, read-only): the
  incidents (event id, box, kind, press time, console_time) and box health.
"""

import json
import os
import pathlib
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time


class ServiceError(RuntimeError):
    """A rig service did not start or answer; the message says which and why."""


_handed_out = set()


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(rng=None):
    """A TCP port on 127.0.0.1 that is free now and stays free until a service binds it.

    `bind(("127.0.0.1", 0))` returns a port from the kernel's ephemeral range, and the
    kernel hands out that same range as the local end of every outgoing connection. A
    port picked that way and bound by a service a second later can be taken in between:
    CI saw 32 virtual boxes connecting to the bus emulator take the gateway's HTTP port
    ("address already in use"). So the port comes from below the ephemeral range, where
    no connect() lands, is checked with a real bind, and is never handed out twice by
    this process."""
    import random

    rng = rng or random.SystemRandom()
    eph_lo, _ = _ephemeral_range()
    lo, hi = 20000, eph_lo - 1
    if hi <= lo:  # an unusual range: fall back to the kernel's choice
        lo, hi = 1024, eph_lo - 1
    for _ in range(200):
        port = rng.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ServiceError("no free TCP port found in %d-%d" % (lo, hi))


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ServiceError("cannot write %r to TOML" % (v,))


def to_toml(d):
    """A small TOML writer for configs: scalars, lists, tables, arrays of tables."""
    lines = []
    for k, v in d.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict)):
            lines.append("%s = %s" % (k, _toml_value(v)))
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append("\n[%s]" % k)
            lines += ["%s = %s" % (kk, _toml_value(vv)) for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append("\n[[%s]]" % k)
                lines += ["%s = %s" % (kk, _toml_value(vv)) for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


class _Proc:
    name = "service"
    ready_re = None

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.stdout = []
        self.log_path = self.workdir / ("%s.log" % self.name)
        self.starts = 0
        self._ready = None

    def command(self):
        raise ServiceError("%s: a service class must say how to run it (command())" % self.name)

    def start(self, timeout=60.0):
        if self.running:
            raise ServiceError("%s is already running (pid %d)" % (self.name, self.proc.pid))
        self.stdout = []
        self._ready = threading.Event()
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.pop("CALLBOX_GATEWAY_TOKEN", None)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, cwd=str(self.workdir), env=env,
                                     start_new_session=True)
        log.close()
        self.starts += 1
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServiceError("%s did not start within %.0f s; its log %s ends:\n%s" % (
                    self.name, timeout, self.log_path, self.tail()))
        return self

    def _read(self, proc):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stdout.append(line)
            if self.ready_re.search(line):
                self._ready.set()

    def tail(self, n=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """kill -9: no shutdown code runs (a crash, a power cut of the server)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class GatewayProc(_Proc):
    name = "gateway"
    ready_re = re.compile(r"^gateway \S+: http://")

    def __init__(self, workdir, config, forward_base_s=1.0, forward_cap_s=60.0):
        super().__init__(workdir)
        self.config = config
        self.forward_base_s = forward_base_s
        self.forward_cap_s = forward_cap_s
        self.config_path = self.workdir / "gateway.toml"

    def command(self):
        # Compressed time: a control room that comes back is retried within
        # seconds, not after the deployed 60 s cap ([forward] in the TOML).
        config = dict(self.config, forward={"base_s": float(self.forward_base_s), "cap_s": float(self.forward_cap_s)})
        fd = os.open(str(self.config_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # box keys and tokens
        with os.fdopen(fd, "w") as f:
            f.write(to_toml(config))
        return [sys.executable, "-m", "callbox_tools.cli", "-v", "gateway", "--config", str(self.config_path)]

    @property
    def http_url(self):
        return "http://127.0.0.1:%d" % self.config["http"]["port"]

    def health(self):
        import urllib.request

        with urllib.request.urlopen(self.http_url + "/health", timeout=5) as r:
            return json.loads(r.read())


class ConsoleProc(_Proc):
    name = "console"
    ready_re = re.compile(r"^console: http://")

    def __init__(self, workdir, port, gateway_id, gateway_token, gateway_url):
        super().__init__(workdir)
        self.port = port
        self.gateway_id = gateway_id
        self.state_dir = self.workdir / "state"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.token_file = self.workdir / "gateway.token"
        self.token_file.write_text(gateway_token + "\n")
        os.chmod(self.token_file, 0o600)
        self.gateway_url = gateway_url

    def command(self):
        exe = pathlib.Path(sys.executable).parent / "callbox"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "callbox_tools.cli"]
        return cmd + ["console", "--listen", "127.0.0.1:%d" % self.port, "--state-dir", str(self.state_dir),
                      "--gateway", self.gateway_id, "--gateway-url", self.gateway_url,
                      "--gateway-token-file", str(self.token_file)]

    @property
    def db_path(self):
        return self.state_dir / "console.db"


class ConsoleView:
    """What the control room has: read straight from the console's SQLite
    database (read-only), so nothing in the test path can hide a duplicate."""

    def __init__(self, db_path):
        self.db_path = pathlib.Path(db_path)

    def _query(self, sql, *args):
        if not self.db_path.exists():
            return []
        try:
            con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        except sqlite3.OperationalError:
            return []
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args)]
        except sqlite3.OperationalError:
            return []  # schema not created yet
        finally:
            con.close()

    def incidents(self, box_id=None, kinds=None, restore=None):
        sql = "SELECT * FROM incidents"
        cond, args = [], []
        if box_id is not None:
            cond.append("box_id = ?")
            args.append(box_id)
        if restore is not None:
            cond.append("restore = ?")
            args.append(int(restore))
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        rows = self._query(sql + " ORDER BY id", *args)
        if kinds is not None:
            rows = [r for r in rows if r["kind"] in kinds]
        return rows

    def wait_incidents(self, n, timeout, **filters):
        """At least n incidents matching the filters (polling the database)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.incidents(**filters)
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def box(self, box_id):
        rows = self._query("SELECT * FROM boxes WHERE box_id = ?", box_id)
        return rows[0] if rows else None
