"""Helpers for the gateway tests: a gateway in-process on free ports, LTE box
clients speaking the real codec over real TCP."""

import asyncio

from callbox_firmware import wire
from callbox_gateway.app import Gateway
from callbox_gateway.config import from_dict
from callbox_gateway.sim import SimBox

T = 10.0  # generous timeout for one awaited step on a loaded machine


def box_rec(box, link="lte", junction=None):
    return {"box_id": box.box_id, "key": box.secret.hex(), "link": link, "bus_addr": box.addr,
            "junction": junction or "Junction %d" % box.box_id, "lat": 26.45, "lon": 80.35}


def config(tmp_path, boxes=(), **sections):
    d = {"data_dir": str(tmp_path / "gw"), "http": {"port": 0, "admin_token": "admintok", "console_token": "consoletok"},
         "lte": {"port": 0}, "boxes": [box_rec(b, "rs485" if b.addr else "lte") for b in boxes]}
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k].update(v)
        else:
            d[k] = v
    return from_dict(d)


async def start(cfg, **kw):
    gw = Gateway(cfg, **kw)
    await gw.start()
    return gw


class LteBox:
    """A SimBox on a real TCP connection to the gateway's LTE listener."""

    def __init__(self, box, reader, writer):
        self.box = box
        self.r = reader
        self.w = writer
        self.fr = wire.FrameReader()
        self.frames = []

    @classmethod
    async def connect(cls, gw, box):
        r, w = await asyncio.open_connection("127.0.0.1", gw.lte.port)
        return cls(box, r, w)

    async def send(self, frame):
        self.w.write(frame)
        await self.w.drain()

    async def recv(self, timeout=T):
        """The next downlink frame, decoded and verified as the box would."""
        while not self.frames:
            data = await asyncio.wait_for(self.r.read(4096), timeout)
            if not data:
                raise ConnectionError("gateway closed the connection")
            for p in self.fr.feed(data):
                self.frames.append(self.box.decode_down(p))
        return self.frames.pop(0)

    async def closed(self, timeout=T):
        """True once the gateway closed the connection."""
        try:
            while True:
                data = await asyncio.wait_for(self.r.read(4096), timeout)
                if not data:
                    return True
        except (ConnectionError, OSError):
            return True

    def close(self):
        self.w.close()


async def wait_for(pred, timeout=T, step=0.02):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met within %.0f s" % timeout)
        await asyncio.sleep(step)
