"""Deploy the box firmware: compile, compare by hash on the board, copy what
changed, verify, switch atomically.

    build_bundle()  -> Bundle   pure of the board: mpy-cross -march=xtensawin
    plan(bundle, board_hashes)  pure: which files to copy, skip, remove
    deploy(board, bundle)       the I/O: stage, verify, commit (board.py)

What goes on the box (paths relative to the board's root):
- every firmware module as NAME.mpy (compiled for the ESP32's Xtensa core,
  which also loads on the unix port: bytecode-only .mpy files run anywhere);
- main.py and boot.py as source (MicroPython runs only these names at boot);
- boards/*.json, the board definitions the firmware reads;
- deploy.json, the manifest (file -> sha256 and the build id), switched in
  with the files, so `callbox deploy` and the box both know what is there.

A deploy interrupted at any point leaves the box as it was or fully done:
files are staged as NAME.new and verified before a single on-board commit.
"""

import binascii
import hashlib
import json
import logging
import os
import pathlib
import subprocess
import tempfile

from .errors import EXIT_FAIL, EXIT_WRONG_BOARD, CommandError
from .mpy import FIRMWARE_DIR, REPO_ROOT, mpy_cross_path

log = logging.getLogger(__name__)

BOARDS_DIR = REPO_ROOT / "boards"
MANIFEST = "deploy.json"
# Modules MicroPython runs by name at boot: they must stay source.
SOURCE_ONLY = ("main.py", "boot.py")
# Host-side files in firmware/ that do not belong on the box.
HOST_ONLY = ("__init__.py", "manifest.py", "conftest.py")
MPY_ARCH = "xtensawin"  # ESP32 (Xtensa LX6), per BRIEF §3
# Seconds for mpy-cross to compile one module: it takes milliseconds, the
# rest is slack for a loaded machine.
COMPILE_TIMEOUT_S = 60
# Compiled modules are kept here, named by the hash of everything that
# decides the output (source, its name on the box, the arch, the mpy-cross
# binary), so a technician's second deploy or a second box compiles nothing.
CACHE_ENV = "CALLBOX_CACHE_DIR"


def cache_dir():
    """$CALLBOX_CACHE_DIR, else $XDG_CACHE_HOME/callbox/mpy, else
    ~/.cache/callbox/mpy."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "callbox" / "mpy"


def _cache_key(src_bytes, rel, mpy_cross):
    st = os.stat(mpy_cross)
    h = hashlib.sha256()
    for part in (MPY_ARCH, rel, os.path.realpath(mpy_cross), str(st.st_size), str(st.st_mtime_ns)):
        h.update(part.encode() + b"\0")
    h.update(src_bytes)
    return h.hexdigest()


class Bundle:
    """What a deploy puts on the box: {board path: bytes}, and with
    --romfs the SHA-256 of the image in its ROMFS partition."""

    def __init__(self, files, romfs=None):
        self.files = dict(files)
        self.romfs = romfs
        self.hashes = {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}
        ident = hashlib.sha256()
        for p in sorted(self.hashes):
            ident.update(("%s %s\n" % (p, self.hashes[p])).encode())
        if romfs:
            ident.update(("romfs %s\n" % romfs).encode())
        self.build_id = ident.hexdigest()[:12]

    def with_manifest(self):
        """The bundle plus deploy.json describing it."""
        m = {"build": self.build_id, "files": self.hashes}
        if self.romfs:
            m["romfs"] = self.romfs
        manifest = json.dumps(m, sort_keys=True).encode()
        files = dict(self.files)
        files[MANIFEST] = manifest
        return files


def firmware_sources(firmware_dir=FIRMWARE_DIR):
    """(relative path, absolute path) of every module that belongs on the
    box: *.py under firmware/, without host-only files, tests or caches."""
    root = pathlib.Path(firmware_dir)
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "__pycache__")) or part in ("tests", "test") for part in rel.parts[:-1]):
            continue
        if rel.name in HOST_ONLY or rel.name.startswith("test_"):
            continue
        out.append((rel.as_posix(), path))
    return out


def compile_module(src, rel, out_dir, mpy_cross=None, cache=True, root=""):
    """mpy-cross -march=xtensawin one module; the .mpy bytes (from the cache
    when this source was compiled before by the same mpy-cross). `root` is
    where the box imports it from ("/rom/" for a ROMFS image)."""
    mpy_cross = mpy_cross or mpy_cross_path()
    name = root + rel[:-3] + ".mpy"
    cached = None
    if cache:
        cached = cache_dir() / (_cache_key(pathlib.Path(src).read_bytes(), name, mpy_cross) + ".mpy")
        try:
            return cached.read_bytes()
        except OSError:
            pass
    out = pathlib.Path(out_dir) / (rel[:-3].replace("/", "_") + ".mpy")
    # -s: the name tracebacks show. The path the box imports the .mpy from,
    # which the import interns anyway as the module's __file__: one
    # permanent qstr, not two.
    cmd = [mpy_cross, "-march=" + MPY_ARCH, "-s", name, "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    if proc.returncode != 0:
        raise CommandError(
            "mpy-cross could not compile firmware/%s for the ESP32:\n%s\nfix the module (it must run on MicroPython), then deploy again"
            % (rel, (proc.stderr or proc.stdout).strip()),
            EXIT_FAIL,
        )
    data = out.read_bytes()
    if cached is not None:
        _cache_put(cached, data)
    return data


def _cache_put(path, data):
    """Store a compiled module; written to a temporary name and renamed, so
    a reader never sees half a file. A cache that cannot be written (read-only
    home, full disk) only costs the next deploy a compile."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("%s.%d.tmp" % (path.name, os.getpid()))
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("mpy cache not written (%s): %s", path, e)


def build_bundle(firmware_dir=FIRMWARE_DIR, boards_dir=BOARDS_DIR, source=False, root=""):
    """Compile the firmware (or keep it as source with source=True, for
    debugging with readable tracebacks) and collect the board files. `root`
    is where the box imports the modules from: "" (its filesystem) or
    "/rom/" (a ROMFS image, see romfs_image)."""
    files = {}
    sources = firmware_sources(firmware_dir)
    if not sources:
        raise CommandError("no firmware modules found in %s" % firmware_dir, EXIT_FAIL)
    with tempfile.TemporaryDirectory(prefix="callbox-build-") as tmp:
        for rel, path in sources:
            if source or pathlib.PurePosixPath(rel).name in SOURCE_ONLY:
                files[rel] = path.read_bytes()
            else:
                files[rel[:-3] + ".mpy"] = compile_module(path, rel, tmp, root=root)
    boards_dir = pathlib.Path(boards_dir)
    if boards_dir.is_dir():
        for path in sorted(boards_dir.glob("*.json")):
            files["boards/" + path.name] = path.read_bytes()
    return Bundle(files)


def romfs_image(bundle):
    """The bundle's compiled modules as a ROMFS image, built by mpremote's
    own builder (`mpremote romfs build`): what `mpremote romfs deploy` writes
    to a board's ROMFS partition, and what a virtual box maps as one
    (callbox_rig.romfs_host). Modules in a ROMFS run in place from flash:
    their bytecode and strings never enter the heap (docs/firmware.md,
    "Memory"). main.py and boot.py, which the port runs by file name, the
    board files, config and the outbox stay on the read-write filesystem."""
    import contextlib
    import io

    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory(prefix="callbox-romfs-") as tmp:
        n = 0
        for rel, data in sorted(bundle.files.items()):
            if rel.endswith(".mpy"):
                out = pathlib.Path(tmp) / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                n += 1
        if not n:
            raise CommandError("no compiled modules for a ROMFS image (a source build cannot run in place)", EXIT_FAIL)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints each file
            return make_romfs(tmp, mpy_cross=False)


class Plan:
    def __init__(self, copy, same, remove):
        self.copy = copy  # board paths to write
        self.same = same  # board paths whose hash already matches
        self.remove = remove  # board paths to delete (shadowing or stale)


def plan(files, board_hashes, old_manifest=None, remove_also=()):
    """Pure: which of `files` ({path: bytes}) to copy given the board's
    hashes ({path: hex or None}), and what to delete: the other form of
    each module (a stale foo.py would shadow foo.mpy) and files the previous
    deploy put there that this one no longer has."""
    copy, same = [], []
    for path in sorted(files):
        if board_hashes.get(path) == hashlib.sha256(files[path]).hexdigest():
            same.append(path)
        else:
            copy.append(path)
    remove = _shadow_candidates(files) | set(remove_also)
    for path in (old_manifest or {}).get("files", {}):
        if path not in files:
            remove.add(path)
    remove = sorted(p for p in remove if p not in files and board_hashes.get(p) is not None)
    return Plan(copy, same, remove)


def _shadow_candidates(files):
    out = set()
    for path in files:
        if path.endswith(".mpy"):
            out.add(path[:-4] + ".py")
        elif path.endswith(".py"):
            out.add(path[:-3] + ".mpy")
    return out - set(files)


def deploy(board, bundle, report=print, hooks=None, remove_also=()):
    """Put `bundle` on the board. Returns the Plan that was carried out.
    `report(line)` gets one line per file; `hooks` (tests only) may hold
    "after_stage" called with each staged path. `remove_also`: paths to
    delete if present (the modules a ROMFS image now holds)."""
    hooks = hooks or {}
    resumed = board.finish_interrupted_commit()
    if resumed == "finished":
        report("finished a switch that was interrupted last time")
    elif resumed == "cleaned":
        report("removed files left by an interrupted deploy or provision")
    files = bundle.with_manifest()
    old_manifest = None
    raw = board.read(MANIFEST)
    if raw:
        try:
            old_manifest = json.loads(raw)
        except ValueError:
            old_manifest = None
    candidates = sorted(set(files) | _shadow_candidates(files) | set((old_manifest or {}).get("files", {})) | set(remove_also))
    hashes = board.sha256_many(candidates)
    p = plan(files, hashes, old_manifest, remove_also)
    # The manifest changes whenever anything else does; it is not news.
    real_copies = [x for x in p.copy if x != MANIFEST]
    if not real_copies and not p.remove:
        report("box is up to date (build %s, %d files)" % (bundle.build_id, len(bundle.files)))
        return p
    for d in sorted({os.path.dirname(x) for x in p.copy if os.path.dirname(x)}):
        board.makedirs(d)
    for path in p.same:
        if path != MANIFEST:
            report("  same   %s" % path)
    for path in p.copy:
        board.stage(path, files[path])
        if path != MANIFEST:
            report("  copied %s (%d bytes, verified)" % (path, len(files[path])))
        if "after_stage" in hooks:
            hooks["after_stage"](path)
    for path in p.remove:
        report("  remove %s" % path)
    board.commit(p.copy, remove=p.remove, before_rename=hooks.get("before_commit"))
    # Verify what the box now runs, by hash on the board.
    after = board.sha256_many(sorted(files))
    bad = [x for x in files if after.get(x) != hashlib.sha256(files[x]).hexdigest()]
    if bad:
        raise CommandError(
            "%s: after the switch these files do not match: %s; run `callbox deploy` again" % (board.port, ", ".join(bad)), EXIT_FAIL
        )
    report(
        "deployed build %s: %d copied, %d unchanged, %d removed"
        % (bundle.build_id, len(real_copies), len([x for x in p.same if x != MANIFEST]), len(p.remove))
    )
    return p


# ---------------------------------------------------------------- ROMFS
#
# `callbox deploy --romfs`, for boards whose MicroPython is built with ROMFS
# (MICROPY_VFS_ROM and a "romfs" partition): the modules go into the ROMFS
# partition as one image and run in place from flash, so their code never
# enters the heap (docs/firmware.md, "Memory"); main.py, boot.py and the
# board files go on the filesystem as in a plain deploy.
#
# Order, so that a power cut at any point leaves a box that starts:
# 1. soft reset first: no code from the old image may be running while the
#    partition is rewritten (it executes in place);
# 2. erase, write every chunk but the first, then the first, which holds
#    the image's header: until the last write the partition holds no valid
#    image, the port mounts nothing, and the box keeps running the modules
#    on its filesystem, which come before /rom on sys.path;
# 3. check the image by hash on the box;
# 4. only then the usual journalled switch of the filesystem, which also
#    removes the module files the image now holds.
# A box that already ran from ROMFS has no module files left to fall back
# on: a cut during step 2 leaves it at the REPL ("no module named ..."),
# and running the deploy again repairs it.

ROMFS_CHUNK = 1024  # bytes per write over the raw REPL (a multiple of every flash's minimum write)

# The two flavours of rom_ioctl(2): a buffer written with rom_ioctl(3/4/5)
# (stm32, esp8266, this project's virtual box), or a block device with
# ioctl, readblocks and writeblocks (the ESP32's partition object), told
# apart as mpremote's own `romfs deploy` does. The block device is read back
# with readblocks, from the flash itself rather than through the cache
# mapping. (Only the buffer flavour runs here: no ESP32 on the test machine.)
_ROMFS_SIZE = (
    "import vfs,json\nr=0\n"
    "if hasattr(vfs,'rom_ioctl') and vfs.rom_ioctl(1)>0:\n"
    " _d=vfs.rom_ioctl(2,0)\n"
    " r=_d.ioctl(4,0)*_d.ioctl(5,0) if hasattr(_d,'ioctl') else len(memoryview(_d))\n"
    "print(json.dumps(r))\n"
)
_ROMFS_HASH = (
    "import vfs,hashlib,binascii\n_d=vfs.rom_ioctl(2,0)\nh=hashlib.sha256()\nn=%d\n"
    "if hasattr(_d,'readblocks'):\n"
    " bs=_d.ioctl(5,0)\n b=bytearray(bs)\n i=0\n"
    " while n>0:\n  _d.readblocks(i,b)\n  h.update(memoryview(b)[:min(n,bs)])\n  n-=bs\n  i+=1\n"
    "else:\n h.update(memoryview(_d)[:n])\n"
    "print(binascii.hexlify(h.digest()).decode())\n"
)
_ROMFS_PREPARE = (
    "import vfs,binascii\n"
    "try:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
    "_d=vfs.rom_ioctl(2,0)\n_o=hasattr(_d,'ioctl')\n"
    "if _o:\n _b=_d.ioctl(5,0)\n for i in range((%d+_b-1)//_b):\n  _d.ioctl(6,i)\n r=_b\n"
    "else:\n r=vfs.rom_ioctl(3,0,%d)\n"
    "print(r)\n"
)
_ROMFS_WRITE = (
    "_x=binascii.a2b_base64(%r)\n"
    "if _o:\n _d.writeblocks(%d//_b,_x,%d%%_b)\nelif vfs.rom_ioctl(4,0,%d,_x):\n raise OSError('rom_ioctl write')\n"
)


def romfs_partition_bytes(board):
    """Size of the box's ROMFS partition; CommandError if its MicroPython
    has none (a stock ESP32_GENERIC image, a virtual box without one)."""
    size = json.loads(board.exec(_ROMFS_SIZE).decode().strip().splitlines()[-1])
    if not size:
        raise CommandError(
            "%s: this box's MicroPython has no ROMFS partition (no vfs.rom_ioctl segment); flash a build with "
            "MICROPY_VFS_ROM and a \"romfs\" partition (docs/technician.md), or deploy without --romfs" % board.port,
            EXIT_WRONG_BOARD,
        )
    return size


def romfs_hash(board, n):
    return board.exec(_ROMFS_HASH % n).decode().strip().splitlines()[-1]


def write_romfs(board, image, report=print, hooks=None):
    """Write `image` to the box's ROMFS partition (header last) and check it
    by hash. Returns True if written, False if the partition held it already."""
    hooks = hooks or {}
    want = hashlib.sha256(image).hexdigest()
    size = romfs_partition_bytes(board)
    if len(image) > size:
        raise CommandError("%s: the ROMFS image (%d bytes) does not fit the box's %d-byte partition" % (board.port, len(image), size), EXIT_FAIL)
    if romfs_hash(board, len(image)) == want:
        report("  same   ROMFS image (%d bytes)" % len(image))
        return False
    min_write = int(board.exec(_ROMFS_PREPARE % (len(image), len(image))).decode().strip().splitlines()[-1])
    if min_write <= 0 or ROMFS_CHUNK % min_write:
        raise CommandError("%s: the box refused to erase its ROMFS partition (rom_ioctl answered %d)" % (board.port, min_write), EXIT_FAIL)
    pad = (-len(image)) % min_write
    data = image + b"\xff" * pad  # 0xFF: erased flash, written as is
    offsets = list(range(0, len(data), ROMFS_CHUNK))
    for off in offsets[1:] + offsets[:1]:  # the header last
        chunk = binascii.b2a_base64(data[off : off + ROMFS_CHUNK], newline=False).decode()
        board.exec(_ROMFS_WRITE % (chunk, off, off, off))
        if "after_romfs_chunk" in hooks:
            hooks["after_romfs_chunk"](off)
    board.exec("import vfs\nif not _o:\n vfs.rom_ioctl(5,0)\n")
    got = romfs_hash(board, len(image))
    if got != want:
        raise CommandError("%s: the ROMFS partition does not read back as written; run `callbox deploy --romfs` again" % board.port, EXIT_FAIL)
    report("  wrote  ROMFS image (%d bytes, verified)" % len(image))
    return True


def deploy_romfs(board, bundle, report=print, hooks=None):
    """`bundle` built with root="/rom/": its .mpy modules into the ROMFS
    partition as one image, the rest onto the filesystem; the module files a
    previous deploy left there are removed (they would come first on
    sys.path). Returns the filesystem Plan."""
    image = romfs_image(bundle)
    board.soft_reset_raw()
    write_romfs(board, image, report, hooks)
    modules = [p for p in bundle.files if p.endswith(".mpy")]
    rest = Bundle({p: d for p, d in bundle.files.items() if p not in modules}, romfs=hashlib.sha256(image).hexdigest())
    return deploy(board, rest, report, hooks, remove_also=modules + [p[:-4] + ".py" for p in modules])
