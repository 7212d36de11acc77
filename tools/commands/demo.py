"""`callbox demo`: the whole system on embedded defaults, no hardware.

It grows with the project: today it shows the wire codec end to end (a box
frame encoded, split into bytes, and decoded by the gateway side)."""

NAME = "demo"
HELP = "run the whole system on embedded defaults (virtual boxes, gateway, console)"


def add_arguments(parser):
    pass


def run(args):
    from callbox_firmware import wire

    key = wire.BoxKey(bytes(range(32)))
    frame = wire.encode_message(key, {"type": "ALARM", "event": 1, "kind": "panic", "time_s": 1790000000}, 42, 1, 3)
    reader = wire.FrameReader()
    pieces = []
    for b in frame:
        pieces += reader.feed(bytes([b]))
    decoded = wire.decode_frame(pieces[0], lambda box_id: key)
    print("box 42 sent %d bytes: %s" % (len(frame), frame.hex()))
    print("gateway decoded: %r" % (decoded,))
    return 0
