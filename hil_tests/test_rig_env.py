"""The rig environment files and the plugin's choice of rig: the shipped
files load, a wrong file is refused with the key named, and tests marked
`hardware` are skipped with their reason on the virtual rig."""

import subprocess
import sys
import textwrap

import pytest

from callbox_rig import env as envmod


def test_shipped_environment_files_load():
    v = envmod.load("virtual")
    assert v.virtual and v.rs485["baud"] == 115200
    b = envmod.load("bench")
    assert not b.virtual and b.rig["controller_port"] and b.bench_boxes[0]["lines"]["panic"] == 1


def _write(tmp_path, text):
    p = tmp_path / "env.toml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_bad_environment_files_are_refused_with_the_reason(tmp_path):
    base = (envmod.ENV_DIR / "virtual.toml").read_text()
    with pytest.raises(envmod.EnvError, match="unknown key bauds in \\[rs485\\]"):
        envmod.load(_write(tmp_path, base.replace("baud = 115200", "bauds = 115200")))
    with pytest.raises(envmod.EnvError, match="kind = 'robot'"):
        envmod.load(_write(tmp_path, base.replace('kind = "virtual"', 'kind = "robot"')))
    with pytest.raises(envmod.EnvError, match="needs \\[rig\\] controller_port"):
        envmod.load(_write(tmp_path, base.replace('kind = "virtual"', 'kind = "real"')))
    with pytest.raises(envmod.EnvError, match="not found; use --rig with one of bench, virtual"):
        envmod.load(str(tmp_path / "missing.toml"))
    with pytest.raises(envmod.EnvError, match="not valid TOML"):
        envmod.load(_write(tmp_path, "[rig\n"))


def test_hardware_tests_skip_on_the_virtual_rig_and_a_bad_rig_is_a_usage_error(tmp_path):
    hil = tmp_path / "hil_tests"
    hil.mkdir()
    (hil / "conftest.py").write_text("from callbox_rig.plugin import *  # noqa\n")
    (hil / "test_x.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.hardware("needs the bench's light sensor")
        def test_needs_bench():
            assert False

        def test_plain(rig_env):
            assert rig_env.virtual
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    hardware: real bench\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(hil)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "1 passed, 1 skipped" in r.stdout, r.stdout + r.stderr
    assert "virtual rig: needs the bench's light sensor (run with --rig bench)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rig", "nowhere.toml", str(hil)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "nowhere.toml not found" in r.stderr, r.stdout + r.stderr
