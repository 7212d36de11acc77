"""`callbox sim` and `callbox press` as a technician uses them: two shells."""

import os
import signal
import subprocess
import sys
import time

import pytest

CALLBOX = [sys.executable, "-m", "callbox_tools.cli"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("layout", [[], ["--romfs", "--heapsize", "64k"]], ids=["files", "romfs-64k"])
def test_sim_then_press_from_another_shell(tmp_path, layout):
    state = tmp_path / "state"
    sim = subprocess.Popen(CALLBOX + ["sim", "--boxes", "2", "--state", str(state)] + layout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = []
        while not any("press a button" in l for l in lines):
            line = sim.stdout.readline()
            assert line, "sim ended early: %s" % sim.stderr.read()
            lines.append(line)
        assert any("Ghantaghar Square" in l for l in lines)
        deadline = time.time() + 30
        while True:
            r = subprocess.run(CALLBOX + ["press", "2", "panic", "--state", str(state)], capture_output=True, text=True, timeout=30)
            if "light sending" in r.stdout or time.time() > deadline:
                break
            time.sleep(0.5)  # the box may still be booting
        assert r.returncode == 0 and "box 2: panic press; light sending" in r.stdout, r.stdout + r.stderr
        r = subprocess.run(CALLBOX + ["press", "2", "panic", "--release", "--state", str(state)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(CALLBOX + ["press", "9", "panic", "--state", str(state)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 3 and "box 9" in r.stderr and "callbox sim" in r.stderr
        assert (state / "box-2" / "outbox.log").exists()  # the alarm is on the box's flash
        if layout:  # the code is in the image beside the flash, not on it
            assert (state / "box-2.romfs").stat().st_size > 20000 and not list((state / "box-2").glob("*.mpy"))
    finally:
        os.killpg(sim.pid, signal.SIGINT)
        sim.wait(timeout=20)
