"""`callbox deploy` over the real mpremote transport to MicroPython on a pty:
compile, copy, skip by hash, verify, and an interrupted deploy that leaves
the box as it was or fully done."""

import hashlib
import json
import signal
import subprocess
import time

import pytest

from callbox_tools.board import JOURNAL, Board
from callbox_tools.deploying import MANIFEST, Bundle, build_bundle, deploy, plan
from callbox_tools.errors import EXIT_NO_MICROPYTHON, CommandError

from conftest import CALLBOX, run_cli


def sha(b):
    return hashlib.sha256(b).hexdigest()


def visible_files(flash):
    """What the box would run: every file except staged ones and the journal."""
    out = {}
    for p in sorted(flash.rglob("*")):
        if p.is_file():
            rel = p.relative_to(flash).as_posix()
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def bundle():
    return build_bundle()


def test_bundle_is_compiled_for_the_esp32(bundle):
    mods = [p for p in bundle.files if p.endswith(".mpy")]
    assert "wire.mpy" in mods
    for p in mods:
        data = bundle.files[p]
        # .mpy v6 header (MicroPython 1.23+). Bytecode-only modules record
        # no arch (byte 2 is 0), which is why they also load on the unix port.
        assert data[0:2] == b"M\x06", p
    assert not any(p.endswith("__init__.py") or p.endswith("__init__.mpy") for p in bundle.files)
    assert any(p.startswith("boards/") for p in bundle.files)


def test_plan_skips_matching_and_removes_shadows_and_stale():
    files = {"a.mpy": b"A", "b.mpy": b"B", "main.py": b"M"}
    hashes = {"a.mpy": sha(b"A"), "b.mpy": sha(b"old"), "a.py": sha(b"src"), "gone.mpy": sha(b"g")}
    p = plan(files, hashes, {"files": {"gone.mpy": "x", "a.mpy": "y"}})
    assert p.same == ["a.mpy"] and p.copy == ["b.mpy", "main.py"]
    assert p.remove == ["a.py", "gone.mpy"]


def test_cli_deploy_then_nothing_to_copy_then_one_change(board, bundle):
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0, r.stderr
    files = visible_files(board.flash)
    for path, data in bundle.files.items():
        assert files[path] == data, path
    manifest = json.loads(files[MANIFEST])
    assert manifest["build"] == bundle.build_id and manifest["files"]["wire.mpy"] == sha(bundle.files["wire.mpy"])
    assert "copied wire.mpy" in r.stdout

    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr

    # A module damaged on the box (and a stray source shadowing a module)
    # are found by hash on the box and fixed; nothing else is copied.
    (board.flash / "wire.mpy").write_bytes(b"damaged")
    (board.flash / "outbox.py").write_text("raise ImportError('stale')\n")
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0, r.stderr
    assert "copied wire.mpy" in r.stdout and "remove outbox.py" in r.stdout
    assert "1 copied" in r.stdout
    assert (board.flash / "wire.mpy").read_bytes() == bundle.files["wire.mpy"]
    assert not (board.flash / "outbox.py").exists()

    # The deployed firmware imports on the box (the .mpy files load).
    with Board.connect(board.port) as b:
        assert b.exec("import wire\nprint(wire.VERSION)").strip() == b"1"


def test_deploy_to_a_port_without_micropython(silent_port):
    r = run_cli("deploy", "--port", silent_port, timeout=120)
    assert r.returncode == EXIT_NO_MICROPYTHON, r.stderr
    assert "no MicroPython answered" in r.stderr and "callbox flash" in r.stderr


class Interrupt(KeyboardInterrupt):
    pass


def _old_bundle(bundle):
    """An "installed" firmware that differs from `bundle` in every module."""
    return Bundle({p: d + b"#old" if p.endswith(".py") else d[:-1] + b"\x00" for p, d in bundle.files.items()})


@pytest.mark.parametrize("stop_after", [0, 1, 5, "all", "commit"])
def test_interrupted_deploy_leaves_old_or_new_never_a_mix(board, bundle, stop_after):
    old = Bundle({"wire.mpy": b"old wire", "outbox.mpy": b"old outbox", "boards/x.json": b"{}"})
    with Board.connect(board.port) as b:
        deploy(b, old, report=lambda l: None)
    before = visible_files(board.flash)

    staged = []

    def after_stage(path):
        staged.append(path)
        if stop_after != "all" and stop_after != "commit" and len(staged) > stop_after:
            raise Interrupt()

    def before_commit():
        if stop_after == "all":
            raise Interrupt()

    hooks = {"after_stage": after_stage, "before_commit": before_commit}
    with Board.connect(board.port) as b:
        if stop_after == "commit":
            # Ctrl-C arriving while the commit script runs on the box: the
            # script has been sent whole, the box finishes it.
            deploy(b, bundle, report=lambda l: None)
        else:
            with pytest.raises(Interrupt):
                deploy(b, bundle, report=lambda l: None, hooks=hooks)
    after = {p: d for p, d in visible_files(board.flash).items() if not p.endswith(".new")}
    new = bundle.with_manifest()
    if stop_after == "commit":
        assert {p: after[p] for p in new} == new
    else:
        assert after == before, "an interrupted deploy changed what the box runs"
    # The next deploy cleans up and completes.
    with Board.connect(board.port) as b:
        lines = []
        deploy(b, bundle, report=lines.append)
    final = visible_files(board.flash)
    assert not [p for p in final if p.endswith(".new") or p == JOURNAL]
    for p, d in new.items():
        assert final[p] == d
    assert "outbox.mpy" in final and final["outbox.mpy"] == bundle.files["outbox.mpy"]


def test_a_switch_torn_by_a_power_cut_is_finished(board, bundle):
    # The box lost power half way through the renames: journal present,
    # one file renamed, one still staged.
    (board.flash / "a.mpy").write_bytes(b"new a")
    (board.flash / "b.mpy").write_bytes(b"old b")
    (board.flash / "b.mpy.new").write_bytes(b"new b")
    (board.flash / JOURNAL).write_text(json.dumps({"rename": ["a.mpy", "b.mpy"], "remove": ["c.py"]}))
    (board.flash / "c.py").write_text("stale")
    with Board.connect(board.port) as b:
        assert b.finish_interrupted_commit() == "finished"
    assert (board.flash / "b.mpy").read_bytes() == b"new b"
    assert (board.flash / "a.mpy").read_bytes() == b"new a"
    assert not (board.flash / "c.py").exists() and not (board.flash / JOURNAL).exists()


def test_ctrl_c_during_a_cli_deploy(board, bundle):
    """The real CLI process gets SIGINT in the middle of copying."""
    proc = subprocess.Popen([CALLBOX, "deploy", "--port", board.port, "--no-reset"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until a staged file appears on the box, then interrupt.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(board.flash.rglob("*.new")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    files = visible_files(board.flash)
    runs = {p: d for p, d in files.items() if not p.endswith(".new")}
    if proc.returncode == 0:  # it had already finished: fully done
        assert runs.get("wire.mpy") == bundle.files["wire.mpy"]
    else:
        assert proc.returncode == 130 and "interrupted" in err
        assert runs == {} or MANIFEST in runs  # nothing half-installed
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0, r.stderr
    assert visible_files(board.flash)["wire.mpy"] == bundle.files["wire.mpy"]
    assert not list(board.flash.rglob("*.new"))
