"""A deploy or provision cut by a power loss of the box (VirtualBox.kill():
SIGKILL of the interpreter, its flash folder as the cut left it) leaves the
box as it was or fully done; after power comes back the box runs, and the
next run of the same command completes. The box is in service: provisioned,
on the junction's bus, heard by a real gateway."""

import json
import subprocess
import time

import pytest

from callbox_tools.board import JOURNAL, STAGE_SUFFIX, Board
from callbox_tools.deploying import deploy
from callbox_tools.errors import EXIT_TIMEOUT
from callbox_tools.provisioning import CONFIG, build_config, new_key_hex, provision

from conftest import box_files, popen_cli, run_cli

BOX, ADDR = 42, 3
ARGS = ["--box-id", str(BOX), "--junction", "Ghantaghar Square", "--board", "devkit_rs485", "--bus-addr", str(ADDR)]


class PowerCut(KeyboardInterrupt):
    """What the laptop sees once the box is gone (the CLI gives up)."""


def heartbeats(junction):
    """Heartbeats the gateway has accepted on the bus so far."""
    return junction.metric("frames_accepted", type="HEARTBEAT", link="rs485")


def heard(junction, since, timeout=60.0):
    """Wait until the gateway has accepted more heartbeats than `since`
    (taken before the box booted: its boot heartbeat comes at once, the
    next one only heartbeat_s later): the box runs and its key is the
    gateway's."""
    return junction.wait_metric("frames_accepted", since, timeout=timeout, type="HEARTBEAT", link="rs485")


# What the firmware itself writes while it runs (its alarm log with the
# frame-counter reservations, the replay window): not the deploy's business.
RUNTIME_FILES = ("outbox.log", "replay.dat")


def visible(flash):
    """What the box runs: its files without staged ones and runtime data."""
    return {p: d for p, d in box_files(flash).items() if not p.endswith(STAGE_SUFFIX) and p not in RUNTIME_FILES}


@pytest.fixture
def in_service(make_board, junction):
    """A box with the firmware as source (an older deploy), provisioned at
    the gateway, running and heard."""
    box = make_board("box", deployed=True)
    hb = heartbeats(junction)
    with Board.connect(box.port) as b:
        provision(b, build_config(BOX, new_key_hex(), "Ghantaghar Square", "devkit_rs485", "rs485", ADDR), junction.admin(), report=lambda l: None)
        b.reset_on_close = True
    box.wait_booted(0)
    heard(junction, hb)
    return box


@pytest.mark.timeout(300)
def test_deploy_cut_by_a_power_loss(in_service, junction, bundle):
    box = in_service
    before = visible(box.flash)
    proc = popen_cli("deploy", "--port", box.port, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(box.flash.glob("*" + STAGE_SUFFIX))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    box.kill()
    out, err = proc.communicate(timeout=120)
    # The CLI says the board went away and what to do.
    assert proc.returncode == EXIT_TIMEOUT, out + err
    assert "stopped answering" in err and "check the cable and power" in err
    assert visible(box.flash) == before, "a deploy cut by a power loss changed what the box runs"
    # Power back: the old firmware boots and is heard.
    start, hb = len(box.log), heartbeats(junction)
    box.restart()
    box.wait_booted(start)
    heard(junction, hb)
    # The same command completes: the new build runs, no staged file left.
    start, hb = len(box.log), heartbeats(junction)
    r = run_cli("deploy", "--port", box.port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed files left by an interrupted deploy or provision" in r.stdout
    files = box_files(box.flash)
    assert {p: files.get(p) for p in bundle.with_manifest()} == bundle.with_manifest()
    assert not [p for p in files if p.endswith(STAGE_SUFFIX) or p == JOURNAL]
    assert not [p for p in files if p.endswith(".py") and p != "main.py"], "a source module would shadow its .mpy"
    box.wait_booted(start)
    heard(junction, hb)


@pytest.mark.timeout(300)
def test_power_lost_half_way_through_the_switch(in_service, junction, bundle):
    """The cut hits the on-board commit after some renames: the journal on
    flash lets main.py finish the switch at the next boot."""
    box = in_service

    def cut_half_way(b):
        # What the box's flash holds when power fails after half of the
        # commit's renames: the journal (the commit's first write), then
        # those renames done, on the box, by its own os.rename.
        staged = sorted(p[: -len(STAGE_SUFFIX)] for p in box_files(box.flash) if p.endswith(STAGE_SUFFIX))
        plan = {"rename": staged, "remove": [p for p in box_files(box.flash) if p.endswith(".py") and p != "main.py"]}
        assert len(staged) > 10 and plan["remove"]
        b.exec("f=open(%r,'w')\nf.write(%r)\nf.close()\n" % (JOURNAL, json.dumps(plan)))
        b.exec("import os\nfor p in %r:\n os.rename(p+%r,p)\n" % (staged[: len(staged) // 2], STAGE_SUFFIX))
        box.kill()
        raise PowerCut()

    with Board.connect(box.port) as b:
        with pytest.raises(PowerCut):
            deploy(b, bundle, report=lambda l: None, hooks={"before_commit": lambda: cut_half_way(b)})
    assert (box.flash / JOURNAL).exists()
    start, hb = len(box.log), heartbeats(junction)
    box.restart()
    box.wait_log(r"main: finished an interrupted update \(commit\.journal\)", timeout=60, start=start)
    box.wait_booted(start)
    heard(junction, hb)
    files = box_files(box.flash)
    assert {p: files.get(p) for p in bundle.with_manifest()} == bundle.with_manifest()
    assert not [p for p in files if p.endswith(STAGE_SUFFIX) or p == JOURNAL]
    r = run_cli("deploy", "--port", box.port, "--no-reset")
    assert r.returncode == 0 and "box is up to date (build %s" % bundle.build_id in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_rekey_cut_by_a_power_loss_after_the_gateway_has_the_new_key(in_service, junction):
    """The worst point: the gateway already has the new key, the box still
    runs the old one (it is refused until the provision is run again, which
    resumes with the staged key)."""
    box = in_service
    old = json.loads((box.flash / CONFIG).read_text())
    new = build_config(BOX, new_key_hex(), "Ghantaghar Square", "devkit_rs485", "rs485", ADDR)

    def cut():
        box.kill()
        raise PowerCut()

    with Board.connect(box.port) as b:
        with pytest.raises(PowerCut):
            provision(b, new, junction.admin(), force=True, report=lambda l: None, hooks={"after_register": cut})
    assert json.loads((box.flash / CONFIG).read_text()) == old
    assert junction.registered_key(BOX) == new["key"]
    # Power back: the box runs its old config, complete; the gateway refuses
    # its frames (old key) and counts them.
    refused = junction.metric("frames_rejected", reason="auth", link="rs485")
    start = len(box.log)
    box.restart()
    box.wait_booted(start)
    junction.wait_metric("frames_rejected", refused, reason="auth", link="rs485")
    # The technician runs the same command again: it resumes with the key
    # the gateway has, and the box is heard again.
    start, hb = len(box.log), heartbeats(junction)
    r = run_cli("provision", "--port", box.port, *ARGS, "--force", env=junction.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming an interrupted provision of box 42 (same key)" in r.stdout
    cfg = json.loads((box.flash / CONFIG).read_text())
    assert cfg["key"] == new["key"] == junction.registered_key(BOX)
    assert not (box.flash / (CONFIG + STAGE_SUFFIX)).exists()
    box.wait_booted(start)
    heard(junction, hb)
