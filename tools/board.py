"""A MicroPython board on a serial port, through mpremote's own transport.

We import `mpremote.transport_serial.SerialTransport` (mpremote 1.29.0,
pinned) instead of shelling out to the `mpremote` program: one connection
serves a whole deploy (no reconnect and soft reset per file), errors arrive
as exceptions rather than text to parse, and the device-side hash
(`fs_hashfile`) and chunked writes are exactly what `mpremote fs cp` uses.
mpremote calls that API "going to change": this module is the only place
that touches it, so an upgrade is one file to adapt, and tests run it
against the real transport.

Atomic updates: files are first written beside their target as NAME.new and
checked by hash on the device; then one script run *on the device* renames
them into place, under a journal file, so the box either keeps everything
it had or gets everything new (see `commit`). A switch torn by a power cut
is finished by `finish_interrupted_commit`, which every deploy and provision
runs first.
"""

import contextlib
import hashlib
import io
import json
import logging

from .errors import EXIT_FAIL, EXIT_NO_MICROPYTHON, EXIT_TIMEOUT, CommandError
from .serial_ports import probe_open

log = logging.getLogger(__name__)

# Seconds without a byte before a transport read gives up. A box busy in
# a flash write answers within a second; 10 s covers a loaded laptop.
READ_TIMEOUT_S = 10
# Seconds to get the raw REPL after Ctrl-C: a firmware stops in milliseconds,
# the rest is slack for one that takes a moment to unwind its tasks.
ENTER_REPL_TIMEOUT_S = 5
# While waiting for the raw REPL, one blocking read waits at most this long.
# mpremote reads a pty (a virtual box, some USB gadgets) with blocking reads
# of the port's timeout, checked against ENTER_REPL_TIMEOUT_S only between
# reads: with READ_TIMEOUT_S there, a silent port took 10-15 s to report.
# Not used once in the raw REPL: raw-paste flow control treats an empty read
# as an error, and a busy box may need more than this to answer.
ENTER_REPL_POLL_S = 0.5
# Bytes per write() call on the device: mpremote's default; bigger chunks
# gain little on a 115200-baud link and need more device RAM.
WRITE_CHUNK = 256

STAGE_SUFFIX = ".new"
# Paths on the board are relative to its working directory: "/" on an ESP32
# (where config.json is /config.json), the flash folder of a virtual box on
# the unix port (where "/" would be the laptop's own root).
# The journal of an atomic switch: present only while renames are under way.
JOURNAL = "commit.journal"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# A board that was just powered or reset prints its banner for a moment;
# keys sent into that (Ctrl-C, Ctrl-A) can be echoed twice and put mpremote's
# reader out of step. Wait until the port has been quiet this long, but no
# longer than SETTLE_MAX_S (a running firmware may log all the time; the
# Ctrl-C that follows stops it).
SETTLE_QUIET_S = 0.3
SETTLE_MAX_S = 3.0


def _settle(ser):
    import time

    start = last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last >= SETTLE_QUIET_S or now - start >= SETTLE_MAX_S:
            return
        n = ser.in_waiting
        if n:
            ser.read(n)
            last = time.monotonic()
        else:
            time.sleep(0.02)


class Board:
    """An open raw-REPL session with a MicroPython board. Use as a context
    manager: it leaves the raw REPL on exit (and soft-resets the board if
    asked, so its main.py runs again)."""

    def __init__(self, port, transport):
        self.port = port
        self.t = transport
        self.reset_on_close = False

    # -- connection -----------------------------------------------------

    @classmethod
    def connect(cls, port, baudrate=115200):
        probe_open(port)
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        quiet = io.StringIO()
        try:
            with contextlib.redirect_stdout(quiet):
                t = SerialTransport(port, baudrate=baudrate, exclusive=True, timeout=READ_TIMEOUT_S)
        except TransportError as e:
            raise CommandError("%s: cannot open the port (%s); run `callbox ports`" % (port, e), EXIT_FAIL) from None
        _settle(t.serial)
        try:
            t.serial.timeout = ENTER_REPL_POLL_S
            with contextlib.redirect_stdout(quiet):
                t.enter_raw_repl(soft_reset=False, timeout_overall=ENTER_REPL_TIMEOUT_S)
            t.serial.timeout = READ_TIMEOUT_S
        except (TransportError, OSError) as e:
            t.close()
            seen = quiet.getvalue().strip()
            raise CommandError(
                "%s: no MicroPython answered (%s%s); flash MicroPython first with "
                "`callbox flash --port %s IMAGE.bin`, or check that this is the box's port"
                % (port, e, ("; it sent %s" % seen[:80]) if seen else "", port),
                EXIT_NO_MICROPYTHON,
            ) from None
        log.debug("%s: raw REPL entered", port)
        return cls(port, t)

    def close(self):
        try:
            if self.reset_on_close:
                self.soft_reset()
            else:
                self.t.exit_raw_repl()
        finally:
            self.t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def soft_reset_raw(self):
        """Soft-reset and stay in the raw REPL (main.py does not run): a fresh
        heap with no firmware code running, as mpremote does before its own
        commands. A ROMFS rewrite needs it: the firmware runs in place from
        the partition."""
        from mpremote.transport import TransportError

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.t.enter_raw_repl(soft_reset=True, timeout_overall=ENTER_REPL_TIMEOUT_S)
        except (TransportError, OSError) as e:
            raise CommandError("%s: the box did not come back from a soft reset (%s); check the cable and power, then retry" % (self.port, e),
                               EXIT_TIMEOUT) from None

    def soft_reset(self):
        """Leave the raw REPL and soft-reset, so the box boots its main.py."""
        self.t.exit_raw_repl()
        self.t.serial.write(b"\x04")

    # -- code ------------------------------------------------------------

    def exec(self, code, timeout_s=READ_TIMEOUT_S):
        """Run code on the board; its stdout as bytes. A Python exception on
        the board becomes a CommandError with the board's traceback."""
        from mpremote.transport import TransportError, TransportExecError

        try:
            self.t.exec_raw_no_follow(code)
            out, err = self.t.follow(timeout_s)
        except TransportExecError as e:  # pragma: no cover - exec_raw path
            raise CommandError("%s: the board raised: %s" % (self.port, e.error_output.strip()), EXIT_FAIL) from None
        except TransportError as e:
            raise CommandError(
                "%s: the board stopped answering (%s); check the cable and power, then retry" % (self.port, e), EXIT_TIMEOUT
            ) from None
        if err:
            raise CommandError("%s: the board raised: %s" % (self.port, err.decode("utf-8", "replace").strip()), EXIT_FAIL)
        return out

    def eval_json(self, expr, timeout_s=READ_TIMEOUT_S):
        out = self.exec("import json\nprint(json.dumps(%s))" % expr, timeout_s=timeout_s)
        return json.loads(out.decode().strip().splitlines()[-1])

    # -- files -----------------------------------------------------------

    def sha256(self, path):
        """The file's SHA-256 computed on the board (hex), None if absent."""
        code = (
            "import hashlib\n"
            "try:\n f=open(%r,'rb')\nexcept OSError:\n print('-')\nelse:\n"
            " h=hashlib.sha256()\n b=bytearray(%d)\n m=memoryview(b)\n"
            " while 1:\n  n=f.readinto(b)\n  if not n:break\n  h.update(m[:n])\n"
            " f.close()\n import binascii\n print(binascii.hexlify(h.digest()).decode())\n"
        ) % (path, WRITE_CHUNK)
        out = self.exec(code).decode().strip()
        return None if out == "-" else out

    def sha256_many(self, paths):
        """{path: hex or None} for many files, in one round trip."""
        code = (
            "import hashlib,binascii,json\nr={}\nb=bytearray(%d)\nm=memoryview(b)\n"
            "for p in %r:\n try:\n  f=open(p,'rb')\n except OSError:\n  r[p]=None\n  continue\n"
            " h=hashlib.sha256()\n while 1:\n  n=f.readinto(b)\n  if not n:break\n  h.update(m[:n])\n"
            " f.close()\n r[p]=binascii.hexlify(h.digest()).decode()\nprint(json.dumps(r))\n"
        ) % (WRITE_CHUNK, list(paths))
        return json.loads(self.exec(code, timeout_s=max(READ_TIMEOUT_S, len(paths))).decode().strip())

    def read(self, path):
        """File contents, or None if absent."""
        out = self.exec(
            "import binascii\ntry:\n f=open(%r,'rb')\nexcept OSError:\n print('-')\nelse:\n"
            " print(binascii.hexlify(f.read()).decode())\n f.close()\n" % path
        )
        out = out.decode().strip()
        return None if out == "-" else bytes.fromhex(out)

    def write(self, path, data, progress=None):
        """Write a file (not atomic: callers stage with STAGE_SUFFIX)."""
        self.exec("f=open(%r,'wb')\nw=f.write" % path)
        done = 0
        for i in range(0, len(data), WRITE_CHUNK):
            chunk = data[i : i + WRITE_CHUNK]
            self.exec("w(%r)" % (bytes(chunk),))
            done += len(chunk)
            if progress:
                progress(done, len(data))
        self.exec("f.close()\ndel f,w")

    def makedirs(self, path):
        """Create every folder of `path` (a folder) that is missing."""
        if path in ("", ".", "/"):
            return
        self.exec(
            "import os\np='.'\nfor d in %r.strip('/').split('/'):\n p+='/'+d\n try:\n  os.mkdir(p)\n except OSError:\n  pass\n" % path
        )

    def remove(self, paths):
        self.exec("import os\nfor p in %r:\n try:\n  os.remove(p)\n except OSError:\n  pass\n" % list(paths))

    def listdir(self, path="."):
        return self.eval_json("[e[0] for e in __import__('os').ilistdir(%r)]" % path)

    def stage(self, path, data, progress=None):
        """Write `data` to PATH.new and check it by hash on the board."""
        staged = path + STAGE_SUFFIX
        self.write(staged, data, progress)
        got = self.sha256(staged)
        want = sha256_hex(data)
        if got != want:
            raise CommandError(
                "%s: %s did not verify after writing (board has sha256 %s, expected %s); "
                "the flash may be full or failing: retry, then reflash" % (self.port, staged, got, want),
                EXIT_FAIL,
            )
        return staged

    def commit(self, paths, remove=(), before_rename=None):
        """Rename every staged PATH.new onto PATH, then delete `remove`, in
        one script that runs on the board: once sent, a Ctrl-C or a killed
        laptop cannot stop it half way. The journal (written first, removed
        last) lists both, so a power cut during the switch is finished by the
        next `finish_interrupted_commit`. `before_rename` is a test hook."""
        plan = {"rename": list(paths), "remove": list(remove)}
        if not plan["rename"] and not plan["remove"]:
            return
        if before_rename:
            before_rename()
        self.exec("import json\nf=open(%r,'w')\nf.write(%r)\nf.close()\n" % (JOURNAL, json.dumps(plan)) + _APPLY_JOURNAL)

    def finish_interrupted_commit(self):
        """Finish a switch that a power cut stopped, or drop the staged
        files of a write that never reached its commit. Returns what it did:
        "finished", "cleaned" or None."""
        code = (
            "import os\ntry:\n os.stat(%r)\n J=1\nexcept OSError:\n J=0\n"
            "if J:\n" + "".join(" " + line + "\n" for line in _APPLY_JOURNAL.splitlines()) + " print('finished')\n"
            "else:\n n=0\n def walk(d):\n  global n\n  for e in os.ilistdir(d):\n   q=(d.rstrip('/')+'/'+e[0])\n"
            "   if e[1]==0x4000:\n    walk(q)\n   elif q.endswith(%r):\n    os.remove(q)\n    n+=1\n"
            " walk('.')\n print('cleaned' if n else '-')\n"
        ) % (JOURNAL, STAGE_SUFFIX)
        out = self.exec(code).decode().strip()
        return None if out == "-" else out


# Runs on the board: apply the journal (renames of staged files that are
# still there, then removals), then drop it. Idempotent, so a power cut at
# any line is finished by running it again. littlefs (the ESP32 default)
# renames over an existing file atomically; FAT refuses, so there the old
# file is removed first (the journal covers that window).
_APPLY_JOURNAL = (
    "import os,json\n"
    "f=open(%r)\nJ=json.loads(f.read())\nf.close()\n"
    "for p in J['rename']:\n"
    " try:\n  os.stat(p+%r)\n except OSError:\n  continue\n"
    " try:\n  os.rename(p+%r,p)\n"
    " except OSError:\n  os.remove(p)\n  os.rename(p+%r,p)\n"
    "for p in J['remove']:\n"
    " try:\n  os.remove(p)\n except OSError:\n  pass\n"
    "os.remove(%r)\n"
) % (JOURNAL, STAGE_SUFFIX, STAGE_SUFFIX, STAGE_SUFFIX, JOURNAL)
