"""A virtual call box: the real firmware on the MicroPython unix port, under a
supervisor that behaves like the board around it (brief section 4).

    box = VirtualBox(tmp / "box42", config={...}, rs485_url=bus.url)
    box.start()
    box.press("emergency"); box.wait_light("sending"); box.release("emergency")
    box.kill()      # power cut (SIGKILL)
    box.restart()   # power back on
    box.console_port   # /dev/pts/N: `mpremote connect /dev/pts/N exec ...`

What the supervisor does:
- the box's flash is a directory: config.json, outbox.log, the deployed
  firmware (*.py) and boards/; the box process runs with it as its cwd;
- the box's console is a pty pair, raw (no \\r\\n translation) with ISIG on
  and made the child's controlling terminal, so a Ctrl-C from mpremote
  interrupts main.py; `micropython -i -m main` runs the firmware, then the
  REPL. The supervisor relays that pty to a second pty whose path is
  `console_port`, so the port stays the same across reboots;
- when the interpreter exits (a soft reset in the raw REPL, Ctrl-D in the
  REPL), it prints `MPY: soft reboot` and starts it again: in the raw REPL
  (no main.py; the unix port's banner is swallowed so the console shows
  `raw REPL; CTRL-B to exit` as a board does) if it was there, else with
  main.py, as a board does;
- a box configured for LTE without a `modem_url` gets its own modem
  simulator (callbox_rig.modem_sim.ModemSimThread, `box.modem`): its modem
  UART is a TCP connection to it, and the simulator bridges to the gateway;
- hw_sim's pins, the light, the watchdog and machine.reset go over a control
  channel (TCP on 127.0.0.1): see firmware/hw_sim.py. The supervisor keeps
  the input levels across reboots (a held button stays held), enforces the
  watchdog (kill and restart with boot reason "watchdog") and performs
  reset() (restart with boot reason "hard_reset").

Buttons are driven by their logical state (pressed / door open = 1); the
electrical level comes from the board file (pull-up buttons read 0 when
pressed, the normally-closed tamper switch reads 1 when the door opens).
"""

import errno
import fcntl
import json
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty

from callbox_tools.mpy import FIRMWARE_DIR, REPO_ROOT, micropython_path, mpy_cross_path

BOARDS_DIR = REPO_ROOT / "boards"
BUTTONS = ("emergency", "panic", "tamper")
SOFT_REBOOT = b"MPY: soft reboot\r\n"
_RAW_BANNER = b"raw REPL; CTRL-B to exit"
_LOG_LIMIT = 20000  # console lines kept in memory
_SKIP_DEPLOY = ("__init__.py",)
# A board's ROMFS partition (a "romfs" data partition in an ESP32 partition
# table); a virtual box's is a file of this size beside its flash directory.
ROMFS_PARTITION_BYTES = 256 * 1024


class VirtualBoxError(RuntimeError):
    """A virtual box could not do what was asked; the message names the box."""


def _set_ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _raw_with_isig(fd):
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] |= termios.ISIG
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def load_board(name):
    path = BOARDS_DIR / ("%s.json" % name)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        raise VirtualBoxError("no board %r in %s (known: %s)" % (name, BOARDS_DIR, known))
    return json.loads(path.read_text())


def deploy(flash_dir, compiled=False, romfs=None):
    """Copy the firmware and the board files onto a virtual box's flash, as
    the technician's deploy does on a real one. compiled=True installs .mpy
    files made by mpy-cross (bytecode: the box does not compile at import,
    which a 64 KiB heap cannot afford); main.py stays source.

    romfs=PATH puts the compiled modules in a ROMFS image in the partition
    file PATH instead (the ESP32's ROMFS partition, mapped by
    callbox_rig.romfs_host): the flash keeps main.py and the board files
    only."""
    flash_dir = pathlib.Path(flash_dir)
    flash_dir.mkdir(parents=True, exist_ok=True)
    if romfs is not None:
        from callbox_tools.deploying import build_bundle, romfs_image

        image = romfs_image(build_bundle(root="/rom/"))
        if len(image) > ROMFS_PARTITION_BYTES:
            raise VirtualBoxError("ROMFS image of %d bytes does not fit the %d-byte partition" % (len(image), ROMFS_PARTITION_BYTES))
        tmp = pathlib.Path(str(romfs) + ".tmp")
        tmp.write_bytes(image + b"\xff" * (ROMFS_PARTITION_BYTES - len(image)))  # the rest erased
        os.replace(tmp, romfs)
    for src in sorted(FIRMWARE_DIR.glob("*.py")):
        if src.name in _SKIP_DEPLOY:
            continue
        if romfs is not None and src.name != "main.py":
            for stale in (flash_dir / src.name, flash_dir / (src.stem + ".mpy")):
                if stale.exists():
                    stale.unlink()
            continue
        if compiled and src.name != "main.py":
            stale = flash_dir / src.name
            if stale.exists():
                stale.unlink()
            # -s: the name tracebacks show, as `callbox deploy` embeds it: the
            # .mpy's own name, interned anyway as the module's file (the
            # default, the full build path, is one more qstr per module).
            r = subprocess.run([mpy_cross_path(), "-s", src.stem + ".mpy", "-o", str(flash_dir / (src.stem + ".mpy")), str(src)], capture_output=True, text=True)
            if r.returncode != 0:
                raise VirtualBoxError("mpy-cross failed on %s: %s" % (src.name, r.stderr.strip()))
        else:
            stale = flash_dir / (src.stem + ".mpy")
            if stale.exists():
                stale.unlink()
            shutil.copyfile(src, flash_dir / src.name)
    (flash_dir / "boards").mkdir(exist_ok=True)
    for src in sorted(BOARDS_DIR.glob("*.json")):
        shutil.copyfile(src, flash_dir / "boards" / src.name)


class VirtualBox:
    def __init__(self, flash_dir, config=None, board="devkit_rs485", rs485_url=None, modem_url=None, deploy=True, heapsize=None, flash_delay_ms=0, name=None, echo=False, compiled=False, modem_options=None, romfs=False, romfs_partition=False):
        self.flash_dir = pathlib.Path(flash_dir).resolve()
        self.config = config
        self.board_name = (config or {}).get("board", board)
        self.board = load_board(self.board_name)
        self.rs485_url = rs485_url
        self.modem_url = modem_url
        self.modem = None  # ModemSimThread started for an LTE box without modem_url
        self.modem_options = modem_options or {}
        self.deploy = deploy
        self.compiled = compiled
        # romfs_partition=True: the board is an ESP32 built with ROMFS: a
        # partition (a file beside the flash directory, erased when new)
        # mapped read-only, mounted at /rom when it holds an image, and
        # vfs.rom_ioctl to rewrite it (romfs_host.py, romfs_port.py).
        # romfs=True also deploys the compiled modules into it instead of
        # onto the flash.
        self.romfs_deploy = bool(romfs)
        self.romfs = self.flash_dir.with_name(self.flash_dir.name + ".romfs") if (romfs or romfs_partition) else None
        self.heapsize = heapsize
        self.flash_delay_ms = flash_delay_ms
        self.name = name or ("box %s" % (config or {}).get("box_id", self.flash_dir.name))
        self.echo = echo
        self.log = []  # console lines (str), oldest first
        self.light_history = []  # (monotonic s, state)
        self.outputs = {}  # output name -> electrical level
        self.output_history = []  # (monotonic s, name, level)
        self.boot_reasons = []
        self.watchdog_resets = 0
        self._levels = {}
        for b, spec in self.board["inputs"].items():
            self._levels[b] = 1 - spec.get("active", 0)
        self._light = None
        self._cond = threading.Condition(threading.RLock())
        self._ctl_lock = threading.Lock()
        self._proc = None
        self._master = None
        self._console_master = None
        self._console_slave = None
        self.console_port = None
        self._listener = None
        self._ctl = None
        self._ctl_buf = b""
        self._line_buf = b""
        self._raw = False
        self._swallow = False  # dropping the unix banner until the raw REPL's
        self._held = b""
        self._off = True
        self._wdt = None  # (timeout s, last feed monotonic)
        self._stop = threading.Event()
        self._thread = None

    # ------------------------------------------------------------ lifecycle

    def start(self):
        if self._thread is not None:
            raise VirtualBoxError("%s: already started" % self.name)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        if self.deploy:
            deploy(self.flash_dir, self.compiled, self.romfs if self.romfs_deploy else None)
        if self.romfs is not None and not self.romfs.exists():
            self.romfs.write_bytes(b"\xff" * ROMFS_PARTITION_BYTES)  # a new board: the partition erased
        if self.config is not None:
            (self.flash_dir / "config.json").write_text(json.dumps(self.config))
        if self.modem_url is None and "lte" in str((self.config or {}).get("link", "")):
            from .modem_sim import ModemSimThread

            self.modem = ModemSimThread(self.flash_dir.name, **self.modem_options).start()
            self.modem_url = self.modem.url
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self._console_master, self._console_slave = pty.openpty()
        tty.setraw(self._console_slave)
        os.set_blocking(self._console_master, False)
        self.console_port = os.ttyname(self._console_slave)
        with self._cond:
            self._off = False
            self._spawn("power_on")
        self._thread = threading.Thread(target=self._loop, name="vbox-%s" % self.flash_dir.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        with self._cond:
            self._off = True
            self._kill_child()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._console_master, self._console_slave):
            if fd is not None:
                os.close(fd)
        self._console_master = self._console_slave = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.modem is not None:
            self.modem.stop()
            self.modem = None
            self.modem_url = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def kill(self):
        """Power cut: SIGKILL the interpreter; the box stays off until
        restart()."""
        with self._cond:
            self._off = True
            self._kill_child()
            self._light = None
            self._cond.notify_all()

    def restart(self, reason="power_on"):
        """Power on again (after kill()), or power-cycle a running box."""
        with self._cond:
            self._kill_child()
            self._off = False
            self._spawn(reason)

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------ buttons

    def _spec(self, button):
        if button not in self.board["inputs"]:
            raise VirtualBoxError("%s: no input %r on board %s (inputs: %s)" % (self.name, button, self.board_name, ", ".join(self.board["inputs"])))
        return self.board["inputs"][button]

    def electrical(self, button, pressed):
        active = self._spec(button).get("active", 0)
        return active if pressed else 1 - active

    def press(self, button):
        """Close the button's contact (for tamper: open the door)."""
        self._set_level(button, self.electrical(button, True))

    def release(self, button):
        self._set_level(button, self.electrical(button, False))

    def play_trace(self, button, trace):
        """Play [(pressed 0|1, ms), ...] on an input, timed by the box's own
        clock (so the socket's latency does not distort it); the last level
        stays."""
        steps = []
        for level, ms in trace:
            if int(ms) <= 0:
                raise VirtualBoxError("%s: trace step (%r, %r) must last at least 1 ms" % (self.name, level, ms))
            steps.append("%d,%d" % (self.electrical(button, bool(level)), int(ms)))
        if not steps:
            raise VirtualBoxError("%s: empty trace" % self.name)
        self._levels[button] = self.electrical(button, bool(trace[-1][0]))
        self._ctl_send("trace %s %s" % (button, " ".join(steps)))

    def set_power(self, state=None, battery_mv=None):
        if state is not None:
            self._ctl_send("set power %s" % state)
        if battery_mv is not None:
            self._ctl_send("set battery_mv %d" % battery_mv)

    def _set_level(self, button, level):
        self._spec(button)
        self._levels[button] = level
        self._ctl_send("pin %s %d" % (button, level))

    def _ctl_send(self, line):
        with self._ctl_lock:
            if self._ctl is None:
                return False
            try:
                self._ctl.sendall((line + "\n").encode())
                return True
            except OSError:
                return False

    # ------------------------------------------------------------ observing

    def light(self):
        """The beacon state the box shows (idle, sending, received, connected,
        fault), or None while it is off or booting."""
        return self._light

    def wait_light(self, state, timeout=10.0, since=None):
        """Wait until the light shows `state`. With `since` (an index into
        light_history, e.g. len(box.light_history) taken before a press), a
        state shown and already left again counts too: over a fast link
        "sending" can last only milliseconds."""

        def seen():
            if since is not None and any(s == state for _, s in self.light_history[since:]):
                return True
            return self._light == state

        with self._cond:
            if not self._cond.wait_for(seen, timeout):
                raise VirtualBoxError("%s: light is %r, not %r after %.1f s; last lines:\n%s" % (self.name, self._light, state, timeout, self.tail()))
        return state

    def wait_log(self, pattern, timeout=10.0, start=0):
        """Wait for a console line matching the regex; return the match.
        Lines before index `start` are not considered."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.log):
                    m = rx.search(self.log[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VirtualBoxError("%s: no console line matching %r within %.1f s; last lines:\n%s" % (self.name, pattern, timeout, self.tail()))
                self._cond.wait(left)

    def wait_ready(self, timeout=20.0):
        """Wait until the box has connected its control channel (booted far
        enough to read its pins)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ctl is not None, timeout):
                raise VirtualBoxError("%s: did not boot within %.1f s; last lines:\n%s" % (self.name, timeout, self.tail()))

    def tail(self, n=15):
        return "\n".join(self.log[-n:])

    # ------------------------------------------------------------ the child

    def _write_sim_json(self):
        uarts = {}
        if self.rs485_url:
            uarts["rs485"] = self.rs485_url
        if self.modem_url:
            uarts["modem"] = self.modem_url
        sim = {"control": "127.0.0.1:%d" % self._listener.getsockname()[1], "uarts": uarts, "flash_delay_ms": self.flash_delay_ms}
        (self.flash_dir / "sim.json").write_text(json.dumps(sim))

    def _spawn(self, reason, run_main=True, raw=False):
        self._write_sim_json()
        master, slave = pty.openpty()
        _raw_with_isig(slave)
        cmd = [micropython_path()]
        if self.romfs is not None:
            from . import romfs_host

            cmd = [sys.executable, "-m", "callbox_rig.romfs_host", str(self.romfs)]
        if self.heapsize:
            cmd += ["-X", "heapsize=%s" % self.heapsize]
        if self.romfs is not None:
            # the port's boot mounts the partition at /rom, then main.py runs
            boot = romfs_host.BOOT if run_main else romfs_host.BOOT_REPL
            cmd += ["-i", "-c", boot]
        elif run_main:
            # -m, not a script path: a script puts its absolute directory
            # first on sys.path, so every import would intern the long build
            # path of its file as a qstr in the box's small heap.
            cmd += ["-i", "-m", "main"]
        env = dict(os.environ)
        # sys.path as on the ESP32 ('', '.frozen', '/lib'), relative to the
        # cwd, which is the flash directory.
        env["MICROPYPATH"] = ":.frozen:lib"
        env["CALLBOX_BOOT"] = reason
        self._proc = subprocess.Popen(cmd, cwd=str(self.flash_dir), stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=_set_ctty, env=env, close_fds=True)
        os.close(slave)
        self._master = master
        self._raw = False
        self._swallow = raw
        self._held = b""
        self._wdt = None
        self._light = None  # a new boot shows its own light, not the last boot's
        self._drop_ctl()
        self.boot_reasons.append(reason)
        if raw:
            os.write(master, b"\x01")

    def _kill_child(self):
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait(timeout=10)
            self._proc = None
        if self._master is not None:
            os.close(self._master)
            self._master = None
        self._drop_ctl()

    def _drop_ctl(self):
        with self._ctl_lock:
            if self._ctl is not None:
                self._ctl.close()
            self._ctl = None
            self._ctl_buf = b""

    # ------------------------------------------------------------ the loop

    def _loop(self):
        while not self._stop.is_set():
            fds = [self._console_master, self._listener]
            with self._cond:
                if self._master is not None:
                    fds.append(self._master)
                if self._ctl is not None:
                    fds.append(self._ctl)
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                continue
            with self._cond:
                if self._stop.is_set():
                    return
                for fd in ready:
                    if fd == self._master and self._master is not None:
                        self._read_child()
                    elif fd == self._console_master:
                        self._read_console()
                    elif fd is self._listener:
                        self._accept()
                    elif fd is self._ctl and self._ctl is not None:
                        self._read_ctl()
                self._check_child()

    def _read_child(self):
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        if not data:
            return
        if self._swallow:
            # Restarted into the raw REPL: a board prints no banner there,
            # only the raw REPL's own line (mpremote waits for exactly that).
            self._held += data
            i = self._held.find(_RAW_BANNER)
            if i < 0:
                self._held = self._held[-len(_RAW_BANNER):]
                return
            data = self._held[i:]
            self._held = b""
            self._swallow = False
        try:
            os.write(self._console_master, data)
        except BlockingIOError:
            pass  # nobody reading the console: bytes lost, as on a UART
        except OSError:
            pass
        if _RAW_BANNER in data:
            self._raw = True
        self._line_buf += data
        *lines, self._line_buf = self._line_buf.split(b"\n")
        if len(self._line_buf) > 4096:
            lines.append(self._line_buf)
            self._line_buf = b""
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            self.log.append(text)
            if self.echo:
                print("[%s] %s" % (self.name, text), file=sys.stderr)
        if len(self.log) > _LOG_LIMIT:
            del self.log[: len(self.log) - _LOG_LIMIT]
        if lines:
            self._cond.notify_all()

    def _read_console(self):
        try:
            data = os.read(self._console_master, 4096)
        except OSError:
            return
        if b"\x02" in data:
            self._raw = False
        if self._master is not None:
            try:
                os.write(self._master, data)
            except OSError:
                pass

    def _accept(self):
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._ctl_lock:
            if self._ctl is not None:
                self._ctl.close()
            self._ctl = conn
            self._ctl_buf = b""
        for button, level in self._levels.items():
            self._ctl_send("pin %s %d" % (button, level))
        self._cond.notify_all()

    def _read_ctl(self):
        try:
            data = self._ctl.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_ctl()
            return
        self._ctl_buf += data
        *lines, self._ctl_buf = self._ctl_buf.split(b"\n")
        for line in lines:
            self._on_ctl(line.decode("ascii", "replace").split())

    def _on_ctl(self, parts):
        if not parts:
            return
        op = parts[0]
        if op == "light" and len(parts) == 2:
            self._light = parts[1]
            self.light_history.append((time.monotonic(), parts[1]))
            self._cond.notify_all()
        elif op == "out" and len(parts) == 3:
            self.outputs[parts[1]] = int(parts[2])
            self.output_history.append((time.monotonic(), parts[1], int(parts[2])))
            if len(self.output_history) > _LOG_LIMIT:
                del self.output_history[: len(self.output_history) - _LOG_LIMIT]
        elif op == "wdt" and len(parts) == 2:
            self._wdt = [int(parts[1]) / 1000.0, time.monotonic()]
        elif op == "feed" and self._wdt is not None:
            self._wdt[1] = max(self._wdt[1], time.monotonic())
        elif op == "hold" and len(parts) == 2 and self._wdt is not None:
            # The firmware stopped at the REPL (main.py): fed until then.
            self._wdt[1] = time.monotonic() + int(parts[1]) / 1000.0
        elif op == "reset":
            self._log_event("machine.reset(): hard reset")
            self._kill_child()
            self._spawn("hard_reset")

    def _log_event(self, text):
        self.log.append("[supervisor] " + text)
        self._cond.notify_all()

    def _check_child(self):
        if self._off or self._proc is None:
            return
        if self._wdt is not None and time.monotonic() - self._wdt[1] > self._wdt[0]:
            self.watchdog_resets += 1
            self._log_event("watchdog not fed for %.1f s: reset" % self._wdt[0])
            self._kill_child()
            self._spawn("watchdog")
            return
        if self._proc.poll() is None:
            return
        # The interpreter exited: drain its last output, then reboot.
        for _ in range(20):
            if self._master is None or not select.select([self._master], [], [], 0)[0]:
                break
            self._read_child()
        raw = self._raw
        self._kill_child()
        try:
            os.write(self._console_master, SOFT_REBOOT)
        except OSError:
            pass
        self._log_event("soft reboot%s" % (" (raw REPL)" if raw else ""))
        self._spawn("soft_reset", run_main=not raw, raw=raw)
