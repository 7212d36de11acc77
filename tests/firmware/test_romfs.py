"""The ROMFS deploy: the compiled modules in an image that the port maps
from flash and imports in place (tools/deploying.romfs_image,
callbox_rig.romfs_host; docs/firmware.md "Memory").

What must hold: the image has every firmware module but main.py (which the
port runs by file name from the filesystem); modules imported from it leave
their bytecode and strings out of the heap; the mapped image is read-only,
as flash is; a missing or empty image is a clear error, not a crash."""

import os
import signal
import subprocess
import sys

import pytest

from callbox_rig import romfs_host
from callbox_tools.deploying import build_bundle, firmware_sources, romfs_image

MOUNT = romfs_host.BOOT.rsplit(";", 1)[0]  # the boot without `import main`


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("romfs") / "fw.romfs"
    path.write_bytes(romfs_image(build_bundle(root="/rom/")))
    return path


def _no_core_dump():
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the fault test must not leave a core file


def _host(image, code, heap="1m"):
    return subprocess.run([sys.executable, "-m", "callbox_rig.romfs_host", str(image), "-X", "heapsize=" + heap, "-c", MOUNT + ";" + code],
                          capture_output=True, text=True, timeout=60, cwd=str(image.parent), env=dict(os.environ, MICROPYPATH=":.frozen"),
                          preexec_fn=_no_core_dump)


def test_the_image_holds_every_module_but_main_and_names_them_by_their_rom_path(image):
    r = _host(image, "import os,wire;print(sorted(os.listdir('/rom')));print(wire.__file__)")
    assert r.returncode == 0, r.stderr
    listed, wire_file = r.stdout.splitlines()[-2:]
    expected = sorted(rel[:-3] + ".mpy" for rel, _ in firmware_sources() if rel not in ("main.py", "boot.py"))
    assert eval(listed) == expected
    assert wire_file == "/rom/wire.mpy"
    # a traceback names the module by the path it runs from (mpy-cross -s)
    r = _host(image, "import wire;wire.cobs_decode(b'\\x05a')")
    assert r.returncode == 1 and 'File "/rom/wire.mpy"' in r.stdout + r.stderr and "past end" in r.stdout + r.stderr


def test_modules_imported_from_the_image_leave_their_code_out_of_the_heap(image, tmp_path):
    """Same modules, same interpreter, one run each: in place from the image
    against copied into the heap from .mpy files on the filesystem."""
    probe = "import gc;gc.collect();a=gc.mem_alloc();import wire,outbox,sender,feedback;gc.collect();print(gc.mem_alloc()-a)"
    in_place = _host(image, probe)
    assert in_place.returncode == 0, in_place.stderr
    for rel, data in build_bundle().files.items():  # the same modules as .mpy files
        if rel.endswith(".mpy"):
            (tmp_path / rel).write_bytes(data)
    from callbox_tools.mpy import micropython_path

    files = subprocess.run([micropython_path(), "-X", "heapsize=1m", "-c", probe], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                           env=dict(os.environ, MICROPYPATH=":.frozen"))
    assert files.returncode == 0, files.stderr
    rom, flash = int(in_place.stdout.split()[-1]), int(files.stdout.split()[-1])
    print("\nwire+outbox+sender+feedback: %d B in place, %d B from files" % (rom, flash))
    assert rom < 0.75 * flash


def test_the_mapped_image_is_read_only_like_flash(image):
    """A write into the partition faults (SIGSEGV), as a write to the ESP32's
    memory-mapped flash does: firmware cannot corrupt its own code."""
    r = _host(image, "a,n=__import__('os').getenv('CALLBOX_ROMFS').split(':');"
                     "b=__import__('uctypes').bytearray_at(int(a),int(n));print('read',b[0]);b[0]=0;print('wrote')")
    assert "read" in r.stdout and "wrote" not in r.stdout
    assert r.returncode == -signal.SIGSEGV


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_a_missing_or_empty_image_is_a_clear_error(tmp_path, what):
    path = tmp_path / "fw.romfs"
    if what == "empty":
        path.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "callbox_rig.romfs_host", str(path), "-c", "print(1)"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert str(path) in r.stderr and "Traceback" not in r.stderr


def test_a_source_build_cannot_become_an_image():
    from callbox_tools.errors import CommandError

    with pytest.raises(CommandError, match="no compiled modules"):
        romfs_image(build_bundle(source=True))
