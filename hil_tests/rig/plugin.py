"""The HIL suite's pytest plugin (pytest-embedded / labgrid style): the same
tests run against virtual boxes here and real boards on a bench; the
environment file chosen with --rig says which.

    pytest hil_tests                          # --rig virtual (hil_tests/env/virtual.toml)
    pytest hil_tests --rig bench              # hil_tests/env/bench.toml
    pytest hil_tests --rig /etc/callbox/mybench.toml --junitxml build/hil.xml

Fixtures:
    rig_env     the loaded environment (RigEnv)
    rig         a rig, not started: rig.start(boxes=N, link="rs485"|"lte", ...)
                then rig.press/release/trace, rig.controller, rig.check()
    gateway     the rig's gateway process (after rig.start)
    console     the console's view (incidents, box health) (after rig.start)
    boxes       the rig's boxes (after rig.start)

Tests marked `hardware` need something only a bench has (a real light
sensor, real DE timing); on the virtual rig they are skipped with the reason.

Each scenario's rig.check() report goes into the JUnit XML as properties
(presses, delivered, lost, duplicated, latency percentiles) and into the
summary table printed at the end of the run.
"""

import pytest

from . import env as envmod

_ROWS_KEY = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("callbox-hil", "call box hardware-in-the-loop rig")
    group.addoption("--rig", default="virtual", metavar="ENV",
                    help="rig environment: 'virtual' (default), 'bench', or a path to a TOML file (see hil_tests/env/)")


def pytest_configure(config):
    config.stash[_ROWS_KEY] = []


def _env(config):
    env = getattr(config, "_callbox_rig_env", None)
    if env is None:
        try:
            env = envmod.load(config.getoption("--rig"))
        except envmod.EnvError as e:
            raise pytest.UsageError(str(e))
        config._callbox_rig_env = env
    return env


def pytest_collection_modifyitems(config, items):
    hil = [i for i in items if "hil_tests" in str(i.path)]
    if not hil:
        return
    env = _env(config)
    if env.virtual:
        for item in hil:
            m = item.get_closest_marker("hardware")
            if m is not None:
                why = m.args[0] if m.args else "needs real hardware"
                item.add_marker(pytest.mark.skip(reason="virtual rig: %s (run with --rig bench)" % why))


@pytest.fixture(scope="session")
def rig_env(pytestconfig):
    return _env(pytestconfig)


@pytest.fixture
def rig(rig_env, tmp_path, request):
    from .rig import BenchRig, VirtualRig

    r = (VirtualRig if rig_env.virtual else BenchRig)(rig_env, tmp_path / "rig")
    yield r
    try:
        rows = request.config.stash[_ROWS_KEY]
        for name, report in r.reports:
            f = report.figures()
            label = request.node.name + ("" if name is None else "[%s]" % name)
            rows.append((label, f))
            for k in ("presses", "delivered", "lost", "duplicated"):
                request.node.user_properties.append(("%s%s" % ("" if name is None else name + ".", k), f[k]))
            for which in ("ack_ms", "console_ms"):
                for q, v in f[which].items():
                    request.node.user_properties.append(("%s%s_%s" % ("" if name is None else name + ".", which, q), v))
    finally:
        r.stop()


@pytest.fixture
def gateway(rig):
    return rig.gateway


@pytest.fixture
def console(rig):
    return rig.view


@pytest.fixture
def boxes(rig):
    return rig.boxes


def _fmt(v):
    return "-" if v is None else ("%.0f" % v)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(_ROWS_KEY, [])
    if not rows:
        return
    tr = terminalreporter
    env = getattr(config, "_callbox_rig_env", None)
    tr.section("HIL scenarios (%s rig)" % (env.kind if env else "?"))
    head = "%-46s %7s %9s %4s %4s  %s" % ("scenario", "presses", "delivered", "lost", "dup",
                                          "ack ms p50/p99/max      console ms p50/p99/max")
    tr.write_line(head)
    tr.write_line("-" * len(head))
    for label, f in rows:
        a, c = f["ack_ms"], f["console_ms"]
        tr.write_line("%-46s %7d %9d %4d %4d  %6s/%6s/%6s   %6s/%6s/%6s" % (
            label[:46], f["presses"], f["delivered"], f["lost"], f["duplicated"],
            _fmt(a["p50"]), _fmt(a["p99"]), _fmt(a["max"]), _fmt(c["p50"]), _fmt(c["p99"]), _fmt(c["max"])))
