"""Clocks injected into the gateway's cores and shells.

`Clock` is the real one. `FakeClock` lets a test compress a ten-minute
console outage into milliseconds: sleep() advances the fake time at once and
yields to the event loop, so every task still runs in order."""

import asyncio
import time


class Clock:
    def monotonic(self):
        """Seconds, for intervals and timeouts."""
        return time.monotonic()

    def wall(self):
        """Seconds since the epoch, for timestamps that leave the gateway."""
        return time.time()

    async def sleep(self, seconds):
        await asyncio.sleep(max(0.0, seconds))


class FakeClock(Clock):
    def __init__(self, start_wall=1_790_000_000.0):
        self._t = 0.0
        self._wall0 = start_wall
        self.slept = []  # every sleep asked for, in order

    def monotonic(self):
        return self._t

    def wall(self):
        return self._wall0 + self._t

    def advance(self, seconds):
        self._t += seconds

    async def sleep(self, seconds):
        self.slept.append(seconds)
        self._t += max(0.0, seconds)
        await asyncio.sleep(0)
