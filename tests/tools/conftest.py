"""Fixtures for the technician CLI tests: a board on a pty (the real
MicroPython unix port behind a pty, reached by the real mpremote transport),
a silent port, and a gateway admin API."""

import json
import os
import pathlib
import pty
import socket
import subprocess
import sys
import threading
import tty

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pty_repl import PtyRepl  # noqa: E402

CALLBOX = str(pathlib.Path(sys.executable).parent / "callbox")


def _virtual_box_class():
    try:
        from callbox_rig.virtual_box import VirtualBox
    except ImportError:
        return None
    return VirtualBox


@pytest.fixture
def board(tmp_path):
    """A MicroPython board on a pty with an empty flash folder. `.port` is
    the serial port, `.flash` the folder behind its filesystem."""
    flash = tmp_path / "flash"
    flash.mkdir()
    b = PtyRepl(flash).start()
    b.flash = flash
    try:
        yield b
    finally:
        b.stop()


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


def run_cli(*args, env=None, timeout=180, input=None):
    e = dict(os.environ)
    e.pop("CALLBOX_PORT", None)
    e.update(env or {})
    return subprocess.run([CALLBOX, *args], capture_output=True, text=True, timeout=timeout, env=e, input=input)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def admin(tmp_path):
    """A real HTTP admin API (see admin_server.py); `.env` is the
    environment for the CLI (URL and token)."""
    from admin_server import AdminServer

    srv = AdminServer().start()
    token_file = tmp_path / "admin.token"
    token_file.write_text(srv.token + "\n")
    srv.token_file = str(token_file)
    srv.env = {"CALLBOX_GATEWAY_URL": srv.url, "CALLBOX_GATEWAY_TOKEN": srv.token}
    try:
        yield srv
    finally:
        srv.stop()

from callbox_tools.deploying import BOARDS_DIR as REPO_BOARDS  # noqa: E402
