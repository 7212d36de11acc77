"""Test parts for the LTE link: a minimal gateway that ACKs box frames (the
real CPython wire codec), and the MicroPython tiny host as a subprocess whose
JSON events can be awaited."""

import asyncio
import json
import os
import pathlib
import tempfile

from callbox_firmware import wire
from callbox_tools.mpy import FIRMWARE_DIR, micropython_path

HERE = pathlib.Path(__file__).resolve().parent
KEY_BYTES = bytes(range(1, 33))
KEY = wire.BoxKey(KEY_BYTES)
BOX_ID = 42


class Receiver:
    """A TCP server that decodes box frames and answers each with an ACK
    (unless `ack` is False)."""

    def __init__(self, box_id=BOX_ID, key=KEY):
        self.box_id = box_id
        self.key = key
        self.ack = True
        self.frames = []
        self.errors = []
        self.connections = 0
        self.counter = 0
        self.port = None
        self._server = None
        self._writers = []
        self._changed = asyncio.Condition()

    async def start(self):
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self):
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _client(self, reader, writer):
        self.connections += 1
        self._writers.append(writer)
        fr = wire.FrameReader()
        try:
            while True:
                data = await reader.read(1024)
                if not data:
                    break
                for piece in fr.feed(data):
                    try:
                        frame = wire.decode_frame(piece, lambda b: self.key if b == self.box_id else None, expect_down=False)
                    except wire.WireError as e:
                        self.errors.append(e.reason)
                        continue
                    self.frames.append(frame)
                    if self.ack:
                        self.counter += 1
                        ack = {"type": "ACK", "acked_type": frame.type_name, "acked_counter": frame.counter, "event": frame.msg.get("event", 0), "status": "stored"}
                        writer.write(wire.encode_message(self.key, ack, self.box_id, self.counter))
                    async with self._changed:
                        self._changed.notify_all()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def alarms(self):
        return [f.msg["event"] for f in self.frames if f.msg["type"] == "ALARM"]

    async def wait(self, pred, timeout=30.0):
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(pred), timeout)


DEFAULT_CFG = {
    "answer_timeout_ms": 1500,
    "probe_interval_ms": 1000,
    "backoff_base_ms": 200,
    "backoff_cap_ms": 1600,
    "register_timeout_ms": 60000,
    "retry_ms": 1000,
    "hb_ms": 300,
    "sms_after_ms": 1500,
    "sms_number": "+919876543210",
    "junction": "Ghantaghar Square",
}


class MpHost:
    """tests/lte/mpy_lte_host.py on the MicroPython unix port."""

    def __init__(self, sim_port, gw_port, cfg=None, heapsize="256k"):
        self.sim_port = sim_port
        self.gw_port = gw_port
        self.cfg = dict(DEFAULT_CFG)
        self.cfg.update(cfg or {})
        self.heapsize = heapsize
        self.events = []
        self.stderr = b""
        self.proc = None
        self._changed = asyncio.Condition()
        self._reader_task = None

    async def start(self):
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(FIRMWARE_DIR), ".frozen"])
        # A plain pipe for stdin: asyncio would hand the child a socketpair,
        # on which the unix port's stdin stream crashes at start-up.
        rfd, self._stdin_fd = os.pipe()
        self.proc = await asyncio.create_subprocess_exec(
            micropython_path(), "-X", "heapsize=%s" % self.heapsize, str(HERE / "mpy_lte_host.py"),
            str(self.sim_port), str(self.gw_port), str(BOX_ID), KEY_BYTES.hex(), self._cfg_file(),
            stdin=rfd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        os.close(rfd)
        self._reader_task = asyncio.ensure_future(self._read())
        return self

    def _cfg_file(self):
        # The config goes in a file: this unix port dies ("FATAL: uncaught
        # NLR") on any command-line argument of 256 characters or more.
        fd, path = tempfile.mkstemp(prefix="lte-host-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.cfg, f)
        self._cfg_path = path
        return path

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "text", "text": line.decode(errors="replace")}
            self.events.append(ev)
            async with self._changed:
                self._changed.notify_all()
        self.stderr = await self.proc.stderr.read()
        async with self._changed:
            self._changed.notify_all()

    def send(self, line):
        os.write(self._stdin_fd, line.encode() + b"\n")

    def find(self, start=0, **match):
        for i in range(start, len(self.events)):
            ev = self.events[i]
            if all(ev.get(k) == v for k, v in match.items()):
                return i
        return None

    async def wait(self, start=0, timeout=30.0, **match):
        """Index of the first event at or after `start` matching all fields."""

        def found():
            return self.find(start, **match) is not None or self.proc.returncode is not None or self._reader_task.done()

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(found), timeout)
            except asyncio.TimeoutError:
                raise AssertionError("no event %r within %.0f s; events: %s; stderr: %s" % (match, timeout, self.events[-15:], self.stderr[-2000:]))
        i = self.find(start, **match)
        if i is None:
            raise AssertionError("micropython ended before %r: %s; stderr: %s" % (match, self.events[-15:], self.stderr.decode(errors="replace")[-2000:]))
        return i

    async def close(self):
        if self.proc is None:
            return
        if self.proc.returncode is None:
            try:
                self.send("quit")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, OSError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader_task is not None:
            await asyncio.wait_for(self._reader_task, 10)
        os.close(self._stdin_fd)
        os.unlink(self._cfg_path)

    def peak_heap(self):
        peaks = [ev["peak"] for ev in self.events if ev.get("ev") == "mem"]
        return max(peaks) if peaks else 0
