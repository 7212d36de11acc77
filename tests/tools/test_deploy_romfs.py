"""`callbox deploy --romfs`: the modules into the box's ROMFS partition, where
they run in place from flash (docs/firmware.md, "Memory"), over the real
mpremote transport to a virtual box built as an ESP32 with ROMFS
(VirtualBox(romfs_partition=True): callbox_rig.romfs_host, romfs_port.py,
romfs_ioctl.py emulate the partition and vfs.rom_ioctl).

What must hold: after the deploy the box runs its modules from /rom and no
module file is left on its filesystem to shadow them; a second deploy writes
nothing; a power cut in the middle of the partition write leaves a box that
starts (its old modules on the filesystem come first, and the image has no
header until its last write), and the next deploy completes; a box whose
MicroPython has no ROMFS partition is refused with nothing changed."""

import hashlib
import subprocess

import pytest

from callbox_rig.virtual_box import VirtualBox
from callbox_tools.board import Board
from callbox_tools.deploying import build_bundle, deploy_romfs, romfs_image
from callbox_tools.errors import EXIT_USAGE, EXIT_WRONG_BOARD, CommandError
from callbox_tools.mpy import _venv_bin

from conftest import box_files, run_cli

KEY = bytes(range(32))


def _cfg(box_id=7):
    return {"box_id": box_id, "key": KEY.hex(), "junction": "Rocket Tiraha", "board": "devkit_rs485", "link": "rs485", "bus_addr": 9,
            "heartbeat_s": 5, "event_start": 1}


@pytest.fixture
def rom_box(tmp_path, bus):
    """A provisioned box running compiled modules from its filesystem, with an
    erased ROMFS partition (an ESP32 flashed with a ROMFS build, deployed
    the plain way before)."""
    box = VirtualBox(tmp_path / "flash", config=_cfg(), rs485_url=bus.url, compiled=True, romfs_partition=True, name="box 7").start()
    try:
        box.wait_light("idle", timeout=30)
        yield box
    finally:
        box.stop()


def _module_file(box, name="wire"):
    """Where the box imports a module from (mpremote's own exec, which
    soft-resets the box into the raw REPL first)."""
    r = subprocess.run([_venv_bin("mpremote"), "connect", box.console_port, "exec", "import %s;print(%s.__file__)" % (name, name)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _partition(box, n):
    return box.romfs.read_bytes()[:n]


def test_deploy_romfs_moves_the_modules_into_the_partition_and_the_box_runs_from_it(rom_box):
    assert _module_file(rom_box) == "wire.mpy"  # from the filesystem
    image = romfs_image(build_bundle(root="/rom/"))
    start = len(rom_box.log)
    r = run_cli("deploy", "--romfs", "--port", rom_box.console_port, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "wrote  ROMFS image (%d bytes, verified)" % len(image) in r.stdout
    assert "remove wire.mpy" in r.stdout
    assert _partition(rom_box, len(image)) == image
    files = box_files(rom_box.flash_dir)
    assert not [p for p in files if p.endswith(".mpy")], sorted(files)
    assert "main.py" in files and "config.json" in files  # the data stays
    manifest = files["deploy.json"].decode()
    assert hashlib.sha256(image).hexdigest() in manifest
    # The firmware came back (the deploy soft-resets it) and runs from /rom.
    rom_box.wait_log(r"I box 7: firmware [\d.]+, board devkit_rs485", timeout=60, start=start)
    rom_box.wait_light("idle", timeout=30)
    assert _module_file(rom_box) == "/rom/wire.mpy"
    # Nothing to do the second time.
    r = run_cli("deploy", "--romfs", "--port", rom_box.console_port, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "same   ROMFS image" in r.stdout and "box is up to date" in r.stdout


def test_a_power_cut_during_the_partition_write_leaves_a_box_that_starts(rom_box):
    bundle = build_bundle(root="/rom/")
    image = romfs_image(bundle)
    written = []

    def cut(offset):
        written.append(offset)
        if len(written) == 10:
            rom_box.kill()  # power cut with 10 of ~46 chunks written (the header not yet)

    with pytest.raises(CommandError):
        with Board.connect(rom_box.console_port) as b:
            deploy_romfs(b, bundle, report=lambda l: None, hooks={"after_romfs_chunk": cut})
    assert written[:2] == [1024, 2048] and 0 not in written  # header last
    assert _partition(rom_box, 4) == b"\xff" * 4  # no valid image yet
    start = len(rom_box.log)
    rom_box.restart()
    rom_box.wait_log(r"I box 7: firmware [\d.]+, board devkit_rs485, link rs485, boot reason power_on", timeout=60, start=start)
    rom_box.wait_light("idle", timeout=30)
    assert _module_file(rom_box) == "wire.mpy"  # the old modules, from the filesystem
    # The next deploy completes.
    r = run_cli("deploy", "--romfs", "--port", rom_box.console_port, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _partition(rom_box, len(image)) == image
    assert _module_file(rom_box) == "/rom/wire.mpy"


def test_a_box_without_a_romfs_partition_is_refused_with_nothing_changed(board):
    """A stock MicroPython (no ROMFS) on a new board: exit 8, flash as it was."""
    before = box_files(board.flash)
    r = run_cli("deploy", "--romfs", "--port", board.port, timeout=300)
    assert r.returncode == EXIT_WRONG_BOARD, r.stdout + r.stderr
    assert "no ROMFS partition" in r.stderr and "without --romfs" in r.stderr
    assert box_files(board.flash) == before


def test_romfs_cannot_be_combined_with_source(board):
    r = run_cli("deploy", "--romfs", "--source", "--port", board.port, timeout=60)
    assert r.returncode == EXIT_USAGE and "--source" in r.stderr
