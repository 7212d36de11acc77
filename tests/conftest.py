"""Fixtures shared by every test folder. Each folder of tests/ is one place in
the world (firmware = the box, gateway = the junction, console = the control
room, tools = the technician's laptop); hil_tests/ is the bench."""

import pathlib

import pytest

from callbox_tools.mpy import FIRMWARE_DIR, REPO_ROOT, micropython_path, mpy_cross_path, run_micropython

VECTORS_DIR = REPO_ROOT / "tests" / "vectors"


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def firmware_dir() -> pathlib.Path:
    return FIRMWARE_DIR


@pytest.fixture(scope="session")
def micropython() -> str:
    return micropython_path()


@pytest.fixture(scope="session")
def mpy_cross() -> str:
    return mpy_cross_path()


@pytest.fixture
def run_mpy():
    """Run a script on the real MicroPython unix port with firmware/ on its
    import path: run_mpy(script, *args, heapsize="64k") -> CompletedProcess."""
    return run_micropython
