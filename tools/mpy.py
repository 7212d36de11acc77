"""Where the MicroPython side lives on this machine: the unix-port
interpreter, mpy-cross, and the firmware folder."""

import os
import pathlib
import shutil
import subprocess
import sys

import callbox_firmware

FIRMWARE_DIR = pathlib.Path(callbox_firmware.__file__).resolve().parent
REPO_ROOT = FIRMWARE_DIR.parent


def _venv_bin(name):
    # The interpreter's own bin/ first (the project's .venv), then PATH.
    here = pathlib.Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        from .errors import CommandError

        raise CommandError("%s not found; run scripts/setup to install it into .venv" % name)
    return found


def micropython_path():
    return _venv_bin("micropython")


def mpy_cross_path():
    return _venv_bin("mpy-cross")


def run_micropython(script, *args, heapsize=None, cwd=None, timeout=120, env=None):
    """Run a script on the MicroPython unix port with the firmware folder on
    its import path; return the CompletedProcess (text)."""
    cmd = [micropython_path()]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    cmd += [str(script)] + [str(a) for a in args]
    e = dict(os.environ if env is None else env)
    e["MICROPYPATH"] = os.pathsep.join([str(FIRMWARE_DIR), ".frozen"])
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=e)
