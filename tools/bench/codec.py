"""`callbox bench codec`: frames per second through the wire codec on CPython
and on the MicroPython unix port, and wire sizes of ALARM and HEARTBEAT."""

import json
import time

from callbox_firmware import wire

NAME = "codec"
HELP = "wire codec: encode and decode+verify rates on both interpreters, frame sizes"

KEY = wire.BoxKey(bytes(range(32)))
ALARM = {"type": "ALARM", "event": 42, "kind": "panic", "time_s": 1790000000, "time_ms": 123}
HEARTBEAT = {
    "type": "HEARTBEAT", "uptime_s": 86400, "power": "mains", "battery_mv": 12800, "tamper": False,
    "link": "rs485", "rssi_dbm": -70, "fw": "1.0.0", "outbox": 0, "boot_reason": "power_on",
    "faults": [], "time_s": 1790000000,
}


def add_arguments(parser):
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1 s)")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure; the median is printed")


def _rate(fn, seconds):
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run(args):
    from ..mpy import FIRMWARE_DIR, run_micropython
    import pathlib

    frame = wire.encode_message(KEY, ALARM, 0x1234, 7, 3)
    piece = frame[1:-1]

    def key_for(box_id):
        return KEY

    enc, dec, mp_enc, mp_dec = [], [], [], []
    script = pathlib.Path(__file__).with_name("_mpy_codec_bench.py")
    for _ in range(args.repeat):
        enc.append(_rate(lambda: wire.encode_message(KEY, ALARM, 0x1234, 7, 3), args.seconds))
        dec.append(_rate(lambda: wire.decode_frame(piece, key_for), args.seconds))
        proc = run_micropython(script, args.seconds)
        if proc.returncode != 0:
            raise RuntimeError("micropython bench failed: %s" % proc.stderr.strip())
        mp = json.loads(proc.stdout)
        mp_enc.append(mp["encode_per_s"])
        mp_dec.append(mp["decode_verify_per_s"])
    return {
        "cpython": {"encode_per_s": round(_median(enc)), "decode_verify_per_s": round(_median(dec)),
                    "decode_verify_min_per_s": round(min(dec))},
        "micropython": {"encode_per_s": round(_median(mp_enc)), "decode_verify_per_s": round(_median(mp_dec))},
        "alarm_bytes": len(frame),
        "heartbeat_bytes": len(wire.encode_message(KEY, HEARTBEAT, 0x1234, 8, 3)),
        "repeat": args.repeat,
        "firmware_dir": str(FIRMWARE_DIR),
    }
