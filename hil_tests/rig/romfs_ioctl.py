# vfs.rom_ioctl of an ESP32 MicroPython build with ROMFS, for the unix port
# (MicroPython code; romfs_host.BOOT_REPL runs it after romfs_port.py, in the
# raw REPL of a virtual box with a ROMFS partition). See romfs_port.py for
# the interface and for why only there: unlike the C original, this code
# lives in the box's heap (~1.6 KB and 8 interned names at compile time),
# and a running firmware never calls it.
#
# The built-in vfs module cannot take a new attribute, so `vfs` in
# sys.modules becomes a stand-in that has rom_ioctl and passes every other
# name to the real one.
import sys, os, uctypes, vfs


class _Vfs:
    # Held by the class, not as globals of __main__, which code typed at
    # the REPL shares (an `import vfs` there rebinds the name `vfs`).
    _v = vfs
    _f = os.getenv("CALLBOX_ROMFS_FILE")
    _s = uctypes.bytearray_at(*[int(x) for x in os.getenv("CALLBOX_ROMFS").split(":")])

    def __getattr__(self, name):
        return getattr(self._v, name)

    def rom_ioctl(self, op, seg=0, *a):
        if op == 1:
            return 1
        if seg:
            return -22  # EINVAL
        if op == 2:
            return memoryview(self._s)
        if op == 6:
            return 4096
        if op == 5:
            return 0
        if op == 3 or op == 4:
            off, x = a if len(a) == 2 else (0, a[0])
            n = x if op == 3 else len(x)
            if off < 0 or off + n > len(self._s):
                return -22
            with open(self._f, "r+b") as f:
                f.seek(off)
                if op == 4:
                    f.write(x)
                    return 0
                while n > 0:
                    f.write(b"\xff" * min(n, 256))
                    n -= 256
            return 4
        return -22

sys.modules["vfs"] = _Vfs()
del sys, os, uctypes, vfs
