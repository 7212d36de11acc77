# Runs on the MicroPython unix port (callbox bench codec): encode and
# decode+verify rates of the same codec file the box runs. Prints JSON.
import json
import time
import sys

import wire

KEY = wire.BoxKey(bytes(range(32)))
ALARM = {"type": "ALARM", "event": 42, "kind": "panic", "time_s": 1790000000, "time_ms": 123}


def rate(fn, seconds):
    n = 0
    t0 = time.ticks_ms()
    while True:
        for _ in range(100):
            fn()
        n += 100
        dt = time.ticks_diff(time.ticks_ms(), t0)
        if dt >= seconds * 1000:
            return n * 1000 / dt


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
frame = wire.encode_message(KEY, ALARM, 0x1234, 7, 3)
piece = frame[1:-1]


def key_for(box_id):
    return KEY


enc = rate(lambda: wire.encode_message(KEY, ALARM, 0x1234, 7, 3), seconds)
dec = rate(lambda: wire.decode_frame(piece, key_for), seconds)
print(json.dumps({"encode_per_s": enc, "decode_verify_per_s": dec}))
