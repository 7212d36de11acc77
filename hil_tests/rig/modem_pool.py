"""Modem simulators (callbox_rig.modem_sim) for several virtual boxes, on one
asyncio loop in a background thread, so synchronous tests can use them.

    pool = ModemPool().start()
    m = pool.add("box4097")        # m.url = socket://127.0.0.1:PORT (the box's modem UART)
    pool.call(m.sim.blackout, 30)  # any simulator method, run on its loop
    pool.stop()
"""

import asyncio
import threading

from .modem_sim import ModemSim


class PooledModem:
    def __init__(self, pool, sim):
        self.pool = pool
        self.sim = sim
        self.url = sim.url
        self.port = sim.port

    def call(self, fn, *args):
        return self.pool.call(fn, *args)


class ModemPool:
    def __init__(self, connect_timeout_s=10.0):
        self.connect_timeout_s = connect_timeout_s
        self.loop = None
        self._thread = None
        self._ready = threading.Event()
        self.modems = {}

    def start(self):
        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self._ready.set()
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="modem-pool", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def add(self, name):
        async def make():
            return await ModemSim(name=name, connect_timeout_s=self.connect_timeout_s).start()

        sim = asyncio.run_coroutine_threadsafe(make(), self.loop).result(20)
        m = PooledModem(self, sim)
        self.modems[name] = m
        return m

    def call(self, fn, *args):
        """Run fn(*args) on the pool's loop (awaited if it is a coroutine)."""
        async def run():
            r = fn(*args)
            if asyncio.iscoroutine(r):
                r = await r
            return r

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self):
        if self.loop is None:
            return
        for m in self.modems.values():
            stop = getattr(m.sim, "stop", None) or getattr(m.sim, "close", None)
            if stop is not None:
                try:
                    self.call(stop)
                except Exception:
                    pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
