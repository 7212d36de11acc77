"""A MicroPython unix-port REPL on a pseudo-terminal, for the tests that need
"a MicroPython REPL answering where the ROM bootloader should" (esptool's
error paths) and as a stand-in board until callbox_rig.virtual_box exists.

It follows BRIEF §4: the child's side of the pty is in raw mode and is the
child's controlling terminal; `micropython -i main.py` runs the firmware and
then a REPL; when the interpreter exits (a raw-REPL soft reset), the
supervisor prints `MPY: soft reboot` and restarts it without main.py, as a
real board does. The flash is a plain folder (the child's working directory).
"""

import os
import pty
import select
import termios
import subprocess
import threading
import tty

from callbox_tools.mpy import FIRMWARE_DIR, micropython_path


class PtyRepl:
    def __init__(self, flash_dir, run_main=False, heapsize="256k"):
        self.flash_dir = str(flash_dir)
        self.run_main = run_main
        self.heapsize = heapsize
        self.master_fd = None
        self.slave_fd = None
        self.port = None
        self.proc = None
        self._stop = threading.Event()
        self._thread = None
        self._bridge_thread = None
        self.host_master_fd = None
        self._host_slave_fd = None

    def start(self):
        # Pair A: the interpreter's terminal. Raw (no \n -> \r\n), but
        # ISIG kept so a Ctrl-C from the host interrupts a running main.py.
        self.master_fd, self.slave_fd = pty.openpty()
        tty.setraw(self.slave_fd)
        attrs = termios.tcgetattr(self.slave_fd)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(self.slave_fd, termios.TCSANOW, attrs)
        # Pair B: the "USB serial port" the host opens (its path is `port`).
        self.host_master_fd, host_slave = pty.openpty()
        tty.setraw(host_slave)
        self.port = os.ttyname(host_slave)
        self._host_slave_fd = host_slave
        self._spawn(first=True)
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()
        self._bridge_thread = threading.Thread(target=self._bridge, daemon=True)
        self._bridge_thread.start()
        return self

    def _bridge(self):
        a, b = self.master_fd, self.host_master_fd
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.2)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    os.write(b if fd == a else a, data)

    def _spawn(self, first):
        cmd = [micropython_path(), "-X", "heapsize=%s" % self.heapsize, "-i"]
        if first and self.run_main and os.path.exists(os.path.join(self.flash_dir, "main.py")):
            cmd.append("main.py")
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([self.flash_dir, str(FIRMWARE_DIR)])
        slave = self.slave_fd

        def child_setup():
            os.setsid()
            import fcntl
            import termios

            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=slave, stderr=slave, cwd=self.flash_dir, env=env, preexec_fn=child_setup, close_fds=True
        )

    def _supervise(self):
        while not self._stop.is_set():
            proc = self.proc
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                break
            os.write(self.host_master_fd, b"MPY: soft reboot\r\n")
            self._spawn(first=False)
            # A soft reset from the raw REPL comes back in the raw REPL.
            os.write(self.master_fd, b"\x01")

    def stop(self):
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._thread:
            self._thread.join(timeout=10)
        if self._bridge_thread:
            self._bridge_thread.join(timeout=10)
        for fd in (self.master_fd, self.slave_fd, self.host_master_fd, self._host_slave_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
