"""`callbox bench ram`: the heap each firmware module takes on the box.

Builds the firmware as `callbox deploy` does (mpy-cross bytecode, file
names embedded) and imports it on the MicroPython unix port in the
order a running box does, printing what each import added to the live heap
(`gc.mem_alloc()` after `gc.collect()`), and the interned-name (qstr) count.
With --romfs the modules come from a ROMFS image mapped outside the heap
(callbox_rig.romfs_host), as on an ESP32 with a ROMFS partition: their
bytecode and strings run in place, and the figures are what is left.

Read the figures with two facts of the allocator in mind (docs/firmware.md,
"Memory"): the qstr pool grows in steps (pools of 20, 40, 80, 160, 320, 640
names: the 621st name takes ~8 KB at once), and a step lands on whichever
module crosses it. This is the 64-bit unix port: pointers, object headers
and the GC block (32 bytes) are twice the ESP32's.
"""

import json
import re
import subprocess
import tempfile
from pathlib import Path

NAME = "ram"
HELP = "box firmware: heap each module adds when imported (MicroPython unix port, .mpy)"

# What an RS-485 box holds while it runs (app.py's imports and its link),
# then what an LTE box adds.
RS485 = ("wire", "log", "debounce", "outbox", "sender", "feedback", "hw", "link", "link_rs485", "app")
LTE = ("at_modem", "link_lte")

_SCRIPT = """
import gc, sys, micropython
import struct, binascii, hashlib
gc.collect()
base = gc.mem_alloc()
last = base
for m in ["asyncio"] + MODULES:
    __import__(m)
    gc.collect()
    a = gc.mem_alloc()
    print("MOD", m, a - last)
    last = a
print("TOTAL", last - base)
micropython.qstr_info()
"""


def add_arguments(parser):
    parser.add_argument("--lte", action="store_true", help="also import the LTE link's modules")
    parser.add_argument("--romfs", action="store_true", help="import them from a ROMFS image (run in place) instead of files")


def measure(lte=False, romfs=False):
    """{"modules": {name: bytes}, "total_bytes", "qstrs", "qstr_pools"}."""
    import sys

    from ..deploying import build_bundle, romfs_image
    from ..mpy import micropython_path

    mods = RS485 + (LTE if lte else ())
    # The modules as `callbox deploy` builds them (compiled, cached), from
    # the box's filesystem or from its ROMFS partition.
    bundle = build_bundle(root="/rom/" if romfs else "")
    with tempfile.TemporaryDirectory(prefix="callbox-ram-") as d:
        d = Path(d)
        (d / "ram_probe.py").write_text("MODULES = %r\n" % (list(mods),) + _SCRIPT)
        if romfs:
            from callbox_rig import romfs_host

            (d / "fw.romfs").write_bytes(romfs_image(bundle))
            cmd = [sys.executable, "-m", "callbox_rig.romfs_host", str(d / "fw.romfs"), "-X", "heapsize=1m", "-c",
                   romfs_host.BOOT.replace("import main", "import ram_probe")]
        else:
            for rel, data in bundle.files.items():
                if rel.endswith(".mpy"):
                    (d / rel).write_bytes(data)
            # -m with the build directory as cwd: sys.path "" as on the box, so
            # file names stay short (a script path would put its absolute
            # directory on sys.path and intern every long file path).
            cmd = [micropython_path(), "-X", "heapsize=1m", "-m", "ram_probe"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(d), env={"MICROPYPATH": ":.frozen"}, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("micropython failed: %s" % (r.stderr.strip() or r.stdout.strip()))
    out = {"modules": {}, "total_bytes": None, "qstrs": None, "qstr_pools": None}
    for line in r.stdout.splitlines():
        p = line.split()
        if p[:1] == ["MOD"]:
            out["modules"][p[1]] = int(p[2])
        elif p[:1] == ["TOTAL"]:
            out["total_bytes"] = int(p[1])
        m = re.match(r"qstr pool: n_pool=(\d+), n_qstr=(\d+)", line)
        if m:
            out["qstr_pools"], out["qstrs"] = int(m.group(1)), int(m.group(2))
    return out


def run(args):
    res = measure(args.lte, args.romfs)
    res["link"] = "lte" if args.lte else "rs485"
    res["port"] = "micropython unix, 64-bit, compiled .mpy" + (" run in place from a ROMFS image" if args.romfs else "")
    return res


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(measure(), indent=2))
