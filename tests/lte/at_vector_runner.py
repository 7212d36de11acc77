# Runs the vectors of at_vectors.json through firmware/at_modem.py's AtCore.
# Written in the subset both interpreters run: test_at_core.py uses it on
# CPython, mpy_at_vectors.py on the MicroPython unix port.


def normalise(at_modem, events):
    """AtCore events -> JSON-comparable lists; consecutive data pieces of
    the same link merged (how the input was split must not matter)."""
    out = []
    for ev in events:
        k = ev[0]
        if k == at_modem.EV_DATA:
            if out and out[-1][0] == "data" and out[-1][1] == ev[1]:
                out[-1][2] = out[-1][2] + ev[2]
            else:
                out.append(["data", ev[1], bytes(ev[2])])
        elif k == at_modem.EV_URC:
            out.append(["urc", ev[1]])
        elif k == at_modem.EV_PROMPT:
            out.append(["prompt"])
        elif k == at_modem.EV_DONE:
            out.append(["done", ev[1], list(ev[2])])
        elif k == at_modem.EV_GARBAGE:
            out.append(["garbage"])
    for e in out:
        if e[0] == "data":
            e[2] = e[2].hex()
    return out


def run(at_modem, vec, cuts):
    """Feed vec's input split at the offsets in `cuts`; return the
    normalised events."""
    core = at_modem.AtCore()
    events = []
    if vec["command"]:
        core.begin(vec["command"], 0, vec["timeout_ms"], vec["prefix"], vec["final"], vec["prompt"])
    data = bytes.fromhex(vec["input_hex"])
    start = 0
    for end in list(cuts) + [len(data)]:
        for ev in core.feed(data[start:end]):
            events.append(ev)
            if ev[0] == at_modem.EV_PROMPT:
                core.payload_sent()  # the shell writes the payload here
        start = end
    for t in vec.get("polls", ()):
        events.extend(core.poll(t))
    return normalise(at_modem, events)


def splits(n):
    """Whole, byte by byte, and every two-piece split."""
    yield []
    yield list(range(1, n))
    for i in range(1, n):
        yield [i]


def check_all(at_modem, vectors):
    """List of failures (empty = all pass)."""
    fails = []
    for vec in vectors:
        n = len(bytes.fromhex(vec["input_hex"]))
        for cuts in splits(n):
            got = run(at_modem, vec, cuts)
            if got != vec["events"]:
                fails.append((vec["name"], cuts[:8], got, vec["events"]))
                break
    return fails
