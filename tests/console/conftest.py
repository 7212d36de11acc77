"""Fixtures for the console tests: a background event loop, consoles on
SQLite or on a private PostgreSQL cluster, and the fake gateway."""

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest

from callbox_rig.services import free_port as _free_port

from console_helpers import FakeClock, FakeGateway, LoopThread, RunningConsole, make_config


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def start_console(loop_thread, tmp_path):
    """start_console(**config) -> RunningConsole; stopped at teardown."""
    started = []

    def start(clock=None, **kw):
        d = tmp_path / ("c%d" % len(started))
        d.mkdir()
        c = RunningConsole(loop_thread, make_config(d, **kw), clock=clock or FakeClock())
        started.append(c)
        return c

    yield start
    for c in reversed(started):
        c.stop()


@pytest.fixture
def fake_gateway(loop_thread):
    import secrets

    gw = FakeGateway(secrets.token_hex(32))
    loop_thread.run(gw.start())
    yield gw
    loop_thread.run(gw.stop())


@pytest.fixture(scope="session")
def postgres_server():
    """A private, throwaway PostgreSQL cluster (Debian's postgresql package),
    run as the `postgres` user on a free port in a temporary directory.
    Yields the base URL (without database name)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: run scripts/setup (or apt-get install postgresql)")
    bindir = os.path.dirname(bins[-1])
    try:
        pg_user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no `postgres` user: install Debian's postgresql package (scripts/setup)")
    root = tempfile.mkdtemp(prefix="callbox-pg-")
    os.chmod(root, 0o755)
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.mkdir(sock)
    os.chown(root, pg_user.pw_uid, pg_user.pw_gid)
    os.chown(sock, pg_user.pw_uid, pg_user.pw_gid)
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(*cmd):
        r = subprocess.run(as_pg + list(cmd), capture_output=True, text=True, timeout=120)
        if r.returncode:
            pytest.fail("%s failed: %s %s" % (cmd[0], r.stdout[-2000:], r.stderr[-2000:]))

    run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60", "-o",
        "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60" % (port, sock), "start")
    try:
        yield "postgresql://postgres@127.0.0.1:%d" % port
    finally:
        subprocess.run(as_pg + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database on the private cluster for one test."""
    import asyncpg

    name = "console_" + uuid.uuid4().hex[:12]

    async def create():
        conn = await asyncpg.connect(postgres_server + "/postgres")
        await conn.execute("CREATE DATABASE %s" % name)
        await conn.close()

    asyncio.run(create())
    return postgres_server + "/" + name
