"""Runs the rig controller's protocol vectors (rigctl_vectors.json) against
rigctl.RigCore with a fake clock, on MicroPython or CPython:
    micropython rigctl_check.py VECTORS RIGCTL_DIR   -> prints PASS n, or FAIL lines and exits 1
The fake light: channel 0 is always lit; channel 1 is lit when
(t // 1000) % 5 is 1 or 2. SAMPLE 1 10 samples t = 1000..10000 us:
on,on,off,off,off,on,on,off,off,off -> 4 ms on, 3 edges."""

import sys
import json

sys.path.insert(0, sys.argv[2])
from rigctl import RigCore  # noqa: E402


class FakeIO:
    def __init__(self):
        self.t = 1000
        self.out = []

    def line(self, ch, active):
        self.out.append([self.t, "line", ch, 1 if active else 0])

    def power(self, ch, on):
        self.out.append([self.t, "power", ch, 1 if on else 0])

    def light(self, ch):
        if ch == 0:
            return 1
        return 1 if (self.t // 1000) % 5 in (1, 2) else 0

    def ticks_us(self):
        return self.t

    def ticks_add(self, t, d):
        return t + d

    def wait_until_us(self, t):
        if t > self.t:
            self.t = t


def main():
    with open(sys.argv[1]) as f:
        vectors = json.loads(f.read())["vectors"]
    bad = 0
    for v in vectors:
        io = FakeIO()
        core = RigCore(io, 8, 4, 3)
        reply = core.handle(v["cmd"])
        if reply != v["reply"] or io.out != v["outputs"]:
            bad += 1
            print("FAIL %r: got %r %r, want %r %r" % (v["cmd"], reply, io.out, v["reply"], v["outputs"]))
    if bad:
        sys.exit(1)
    print("PASS %d" % len(vectors))


main()
