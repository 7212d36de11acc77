# The ROMFS part of an ESP32 MicroPython build, for the unix port (MicroPython
# code; romfs_host.BOOT runs it in the box's interpreter before main.py).
#
# A port built with MICROPY_VFS_ROM does two things in C (extmod/vfs.h):
# - at start-up, mounts ROM segment 0 at /rom if it holds a valid image and
#   appends "/rom" and "/rom/lib" to sys.path (after "" and ".frozen", before
#   "/lib"), so modules on the filesystem come first;
# - vfs.rom_ioctl(op, ...): 1 number of segments; 2 segment 0 as a buffer;
#   3 prepare (erase) a write: (3, 0, len) or (3, 0, offset, len), returns
#   the minimum write size; 4 write: (4, 0, offset, buf); 5 write complete;
#   6 minimum prepare size (the erase block). Errors are negative errnos.
#
# Here the segment is the partition file that romfs_host mapped read-only
# and shared (CALLBOX_ROMFS = "address:size", CALLBOX_ROMFS_FILE = its
# path): reads go through the mapping, as on flash; writes go to the file
# and show in the mapping, as a flash write shows in the cache-mapped
# partition; an erase sets 0xFF.
#
# rom_ioctl is romfs_ioctl.py, run only by BOOT_REPL (the raw REPL after a
# soft reset, where `callbox deploy --romfs` and `mpremote romfs deploy`
# work): unlike the C original it would live in the box's heap, and even
# compiling it interns its names for good. This file is the start-up part.
import sys, os, uctypes, vfs

try:
    vfs.mount(vfs.VfsRom(memoryview(uctypes.bytearray_at(*[int(x) for x in os.getenv("CALLBOX_ROMFS").split(":")]))), "/rom")
    sys.path.insert(2, "/rom/lib")
    sys.path.insert(2, "/rom")
except OSError:
    pass  # no valid image in the partition (erased, or a write cut short)
del sys, os, uctypes, vfs
