"""`callbox deploy` over the real mpremote transport to a new board (a virtual
box on a pty): the build, the plan, a port without MicroPython, and a deploy
stopped by the laptop (the CLI killed, Ctrl-C) that leaves the box as it was
or fully done. The full deploy, redeploy and repair run in
test_bench_procedure.py; power cuts of the box in test_power_cuts.py."""

import hashlib
import json
import signal
import subprocess
import time

import pytest

from callbox_tools.board import JOURNAL, Board
from callbox_tools.deploying import Bundle, build_bundle, deploy, plan
from callbox_tools.errors import EXIT_NO_MICROPYTHON

from conftest import box_files, popen_cli, run_cli


def sha(b):
    return hashlib.sha256(b).hexdigest()


def visible_files(flash):
    """Every file on the box's flash (staged ones and the journal included)."""
    return box_files(flash)


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


def test_compiled_modules_are_cached_by_source(tmp_path, monkeypatch, bundle):
    from callbox_tools.deploying import cache_dir, compile_module

    monkeypatch.setenv("CALLBOX_CACHE_DIR", str(tmp_path / "cache"))
    fresh = build_bundle()
    assert fresh.files == bundle.files
    cached = sorted(cache_dir().glob("*.mpy"))
    assert len(cached) == len([p for p in bundle.files if p.endswith(".mpy")])
    # A second build reads the cache: same bytes, no new entry, mpy-cross
    # not run.
    def no_compile(*a, **k):
        raise AssertionError("mpy-cross ran for a cached module: %r" % (a,))

    with monkeypatch.context() as m:
        m.setattr("callbox_tools.deploying.subprocess.run", no_compile)
        assert build_bundle().files == bundle.files and sorted(cache_dir().glob("*.mpy")) == cached
    # Another source is another entry.
    src = tmp_path / "m.py"
    src.write_text("x = 1\n")
    one = compile_module(src, "m.py", tmp_path)
    src.write_text("x = 2\n")
    assert compile_module(src, "m.py", tmp_path) != one
    assert len(list(cache_dir().glob("*.mpy"))) == len(cached) + 2
    assert not list(cache_dir().glob("*.tmp"))


def test_plan_skips_matching_and_removes_shadows_and_stale():
    files = {"a.mpy": b"A", "b.mpy": b"B", "main.py": b"M"}
    hashes = {"a.mpy": sha(b"A"), "b.mpy": sha(b"old"), "a.py": sha(b"src"), "gone.mpy": sha(b"g")}
    p = plan(files, hashes, {"files": {"gone.mpy": "x", "a.mpy": "y"}})
    assert p.same == ["a.mpy"] and p.copy == ["b.mpy", "main.py"]
    assert p.remove == ["a.py", "gone.mpy"]


def test_deploy_to_a_port_without_micropython(silent_port):
    t0 = time.monotonic()
    r = run_cli("deploy", "--port", silent_port, timeout=120)
    assert r.returncode == EXIT_NO_MICROPYTHON, r.stderr
    assert "no MicroPython answered" in r.stderr and "callbox flash" in r.stderr
    # Bounded by ENTER_REPL_TIMEOUT_S (5 s), not by the 10 s read timeout
    # per blocking pty read; generous for a loaded machine.
    assert time.monotonic() - t0 < 60


class Interrupt(KeyboardInterrupt):
    pass


def _old_bundle(bundle):
    """An "installed" firmware that differs from `bundle` in every module."""
    return Bundle({p: d + b"#old" if p.endswith(".py") else d[:-1] + b"\x00" for p, d in bundle.files.items()})


@pytest.mark.parametrize("stop_after", [1, "all", "commit"])
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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_cli_deploy_stopped_on_the_laptop(board, bundle, sig):
    """The real CLI process gets Ctrl-C (it leaves the raw REPL cleanly) or
    is killed outright (the laptop died: the box is left in the raw REPL,
    perhaps half way through a paste) in the middle of copying."""
    proc = popen_cli("deploy", "--port", board.port, "--no-reset", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until three staged files are on the box, then stop the CLI.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(board.flash.rglob("*.new"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    # Stopped at 3 of 24 files: it cannot have finished.
    assert proc.returncode == (130 if sig == signal.SIGINT else -9), out + err
    if sig == signal.SIGINT:
        assert "callbox: interrupted" in err
    files = visible_files(board.flash)
    runs = {p: d for p, d in files.items() if not p.endswith(".new")}
    assert runs == {} or runs == bundle.with_manifest(), "an interrupted deploy left a mix on a new board"
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0, r.stderr
    assert visible_files(board.flash)["wire.mpy"] == bundle.files["wire.mpy"]
    assert not list(board.flash.rglob("*.new"))
