# Runs the box's pure cores over a vector file and prints one JSON object.
# The same file runs on the MicroPython unix port and on CPython (the tests
# compare the two outputs): only the subset both interpreters share.
#   micropython core_runner.py VECTORS.json WORKDIR
import sys
import json
import os

import debounce
import outbox
import sender
import feedback


def run_debounce(vec):
    # vec: {"segments": [[level, ms], ...], "phase": 0..4, "stuck_ms": N}
    d = debounce.Debouncer(stuck_ms=vec.get("stuck_ms", debounce.STUCK_MS))
    # level at time t from the segments (the last level stays)
    bounds = []
    t = 0
    for lv, ms in vec["segments"]:
        bounds.append((t, t + ms, lv))
        t += ms
    total = t + vec.get("tail_ms", 200)
    events = []
    now = vec.get("phase", 0)
    i = 0
    last = bounds[-1][2] if bounds else 0
    while now < total:
        while i < len(bounds) and now >= bounds[i][1]:
            i += 1
        lv = bounds[i][2] if i < len(bounds) else last
        ev = d.update(lv, now)
        if ev:
            events.append([debounce.EVENT_NAMES[ev], now])
        now += debounce.SAMPLE_MS
    return events


def run_outbox(vec, workdir):
    # vec: {"ops": [["add", kind, flags, t] | ["done", ev] | ["ctr", n] | ["reload"]], "cut": bytes or -1}
    path = workdir + "/ob_%d.log" % vec["id"]
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    ob = outbox.Outbox(path, vec.get("event_start", 1), max_alarms=vec.get("max_alarms", outbox.MAX_ALARMS), compact_bytes=vec.get("compact_bytes", outbox.COMPACT_BYTES))
    ob.load()
    got = []
    for op in vec["ops"]:
        if op[0] == "add":
            got.append(ob.add(op[1], op[2], op[3]))
        elif op[0] == "done":
            got.append(ob.done(op[1]))
        elif op[0] == "ctr":
            ob.reserve_counter(op[1])
        elif op[0] == "reload":
            ob = outbox.Outbox(path, vec.get("event_start", 1), max_alarms=vec.get("max_alarms", outbox.MAX_ALARMS), compact_bytes=vec.get("compact_bytes", outbox.COMPACT_BYTES))
            got.append(ob.load())
    size_before = ob.size
    if vec.get("cut", -1) >= 0:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: vec["cut"]] + bytes(vec.get("garbage", [])))
    ob2 = outbox.Outbox(path, vec.get("event_start", 1))
    torn = ob2.load()
    with open(path, "rb") as f:
        clean = outbox.parse_log(f.read())
    return {
        "results": got,
        "size": size_before,
        "torn": torn,
        "pending": [list(a) for a in ob2.pending],
        "next_event": ob2.next_event,
        "ceiling": ob2.counter_ceiling,
        "merged": ob.merged,
        "clean_after_load": not clean[2],
    }


def run_sender(vec):
    s = sender.Sender(vec["hb_ms"], 0)
    pending = [list(a) for a in vec["pending"]]
    out = []
    for step in vec["steps"]:
        op, now = step[0], step[1]
        if op == "next":
            item = s.next(pending, now)
            if item is None:
                out.append(None)
            elif item[0] == "alarm":
                s.sent_alarm(item[1][0], now, step[2] if len(step) > 2 else 0)
                out.append(["alarm", item[1][0], s.tries(item[1][0])])
            else:
                s.sent_hb(now)
                out.append(["hb"])
        elif op == "ack":
            s.acked_alarm(step[2])
            pending = [a for a in pending if a[0] != step[2]]
            out.append(["acked", step[2]])
        elif op == "hback":
            s.got_hb_ack(now, step[2])
            out.append(["hback"])
        elif op == "slot":  # RS-485: polled again with no ACK for step[2]
            s.slot_missed(step[2], now)
            out.append(["slot", step[2]])
        elif op == "wake":
            out.append(["wake", s.wake_in_ms(pending, now, 100000)])
    return {"steps": out, "backoff": [sender.backoff_ms(i) for i in range(12)], "backoff_j": [sender.backoff_ms(i, 777) for i in range(12)]}


def run_beacon(vec):
    b = feedback.Beacon(0)
    out = []
    for step in vec:
        op, now = step[0], step[1]
        if op == "press":
            b.press(step[2], now)
        elif op == "ack":
            b.ack(step[2], now)
        elif op == "call":
            b.call(step[2], step[3], now)
        elif op == "fault":
            b.set_fault(step[2])
        elif op == "tick":
            b.tick(now)
        out.append([b.shown(), list(b.output(now))])
    return out


def main(vec_path, workdir):
    with open(vec_path) as f:
        vecs = json.loads(f.read())
    res = {"debounce": [run_debounce(v) for v in vecs["debounce"]], "outbox": [run_outbox(v, workdir) for v in vecs["outbox"]], "sender": [run_sender(v) for v in vecs["sender"]], "beacon": [run_beacon(v) for v in vecs["beacon"]]}
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
