"""Database adaptors: one small interface over SQLite (stdlib, default) and
PostgreSQL (asyncpg), so the store writes its SQL once.

SQL is written with `?` placeholders (rewritten to `$1..` for PostgreSQL) and
only the portable subset both speak: ON CONFLICT DO NOTHING/UPDATE, RETURNING,
INTEGER booleans, DOUBLE PRECISION epoch seconds. Live updates between console
instances go over PostgreSQL LISTEN/NOTIFY; with SQLite there is one instance
and they go straight to its own listeners."""

import asyncio
import concurrent.futures
import json
import logging
import re
import sqlite3

from .errors import ConfigError

log = logging.getLogger(__name__)

CHANNEL = "callbox_console"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
MAX_NOTIFY_BYTES = 7900


def connect(url):
    if url.startswith("sqlite:///") or url.startswith("sqlite://"):
        # sqlite:///abs/path.db (three slashes: absolute), sqlite://rel.db (relative)
        path = url.split("sqlite://", 1)[1]
        return SqliteDB(path or ":memory:")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return PostgresDB(url)
    raise ConfigError("database URL %r: use sqlite:///path/to/console.db or postgresql://user@host/db" % url)


class SqliteDB:
    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path):
        self.path = path
        # One thread owns the connection: sqlite3 calls never block the loop,
        # and statements run one at a time, in order.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-sqlite")
        self._conn = None
        self._listener = None

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self):
        def _open():
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, no fsync per event
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        try:
            self._conn = await self._run(_open)
        except sqlite3.Error as e:
            raise ConfigError("cannot open SQLite database %s: %s (check the directory exists and is writable)"
                              % (self.path, e))

    async def close(self):
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._pool.shutdown(wait=True)

    async def script(self, sql):
        await self._run(self._conn.executescript, sql)

    async def execute(self, sql, *args):
        return await self._run(lambda: self._conn.execute(sql, args).rowcount)

    async def executemany(self, sql, rows):
        def _many():
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

        await self._run(_many)

    async def fetch(self, sql, *args):
        return await self._run(lambda: [dict(r) for r in self._conn.execute(sql, args).fetchall()])

    async def fetchrow(self, sql, *args):
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def listen(self, callback):
        self._listener = callback

    async def notify(self, msg):
        if self._listener is not None:
            self._listener(msg)


_QMARK = re.compile(r"\?")


def _pg_sql(sql):
    n = [0]

    def sub(_m):
        n[0] += 1
        return "$%d" % n[0]

    return _QMARK.sub(sub, sql)


class PostgresDB:
    dialect = "postgres"
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url):
        self.url = url
        self._pool = None
        self._listen_conn = None
        self._listener = None

    async def open(self):
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=8)
        except (OSError, asyncpg.PostgresError) as e:
            raise ConfigError("cannot connect to PostgreSQL (%s): %s; check the server runs and the URL's "
                              "user, host, port and database" % (_redact(self.url), e))

    async def close(self):
        if self._listen_conn is not None:
            await self._listen_conn.close()
            self._listen_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def script(self, sql):
        async with self._pool.acquire() as c:
            await c.execute(sql)

    async def execute(self, sql, *args):
        async with self._pool.acquire() as c:
            status = await c.execute(_pg_sql(sql), *args)
        try:
            return int(status.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            return 0

    async def executemany(self, sql, rows):
        async with self._pool.acquire() as c:
            async with c.transaction():
                await c.executemany(_pg_sql(sql), rows)

    async def fetch(self, sql, *args):
        async with self._pool.acquire() as c:
            return [dict(r) for r in await c.fetch(_pg_sql(sql), *args)]

    async def fetchrow(self, sql, *args):
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def listen(self, callback):
        import asyncpg

        self._listener = callback
        self._listen_conn = await asyncpg.connect(self.url)

        def on_notify(_conn, _pid, _channel, payload):
            try:
                msg = json.loads(payload)
            except ValueError:
                log.warning("ignoring a malformed notification on %s", CHANNEL)
                return
            self._listener(msg)

        await self._listen_conn.add_listener(CHANNEL, on_notify)

    async def notify(self, msg):
        payload = json.dumps(msg, separators=(",", ":"))
        if len(payload.encode()) > MAX_NOTIFY_BYTES:
            raise ValueError("notification of %d bytes is over PostgreSQL's limit" % len(payload))
        async with self._pool.acquire() as c:
            await c.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


def _redact(url):
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
