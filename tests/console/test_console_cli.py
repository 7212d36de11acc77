"""`callbox console` as the README demo will start it: prints the URL and, on
the first start only, the one-time admin password; keeps the demo gateway's
token in the state directory (mode 0600), never on stdout."""

import os
import subprocess
import sys
import pytest


def _start(state_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("CALLBOX_GATEWAY_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "callbox_tools.cli", "console", "--listen", "127.0.0.1:0",
                             "--state-dir", str(state_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _read_lines(proc, n):
    """The first n lines of stdout (the console prints them at start-up)."""
    lines = []
    for _ in range(n):
        line = proc.stdout.readline()
        if not line:
            pytest.fail("console exited early: %r %r" % (lines, proc.stderr.read()))
        lines.append(line)
    return lines


def _stop(proc):
    proc.terminate()
    rest, _err = proc.communicate(timeout=30)
    return rest


def test_first_start_prints_one_time_password_once(tmp_path):
    p = _start(tmp_path)
    try:
        out = "".join(_read_lines(p, 3))  # URL, gateway, one-time password
    finally:
        out_rest = _stop(p)
    assert "console: http://127.0.0.1:" in out
    assert "one-time password" in out and "'admin'" in out
    token_file = tmp_path / "gw-kanpur-01.token"
    assert token_file.exists() and (token_file.stat().st_mode & 0o777) == 0o600
    token = token_file.read_text().strip()
    assert len(token) == 64 and token not in out
    assert token not in out_rest
    p = _start(tmp_path)
    try:
        out2 = "".join(_read_lines(p, 2))  # URL, gateway
    finally:
        out2 += _stop(p)
    assert "console: http://127.0.0.1:" in out2 and "one-time password" not in out2
