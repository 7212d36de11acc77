"""`callbox press BOX emergency|panic|tamper`: press (or release, or play a
bounce trace on) a button of a virtual box started by `callbox sim`, from
another shell. Prints the light the box shows afterwards."""

NAME = "press"
HELP = "press, release or play a trace on a virtual box's button"


def add_arguments(parser):
    parser.add_argument("box", type=int, help="box id (see `callbox sim` output)")
    parser.add_argument("button", choices=["emergency", "panic", "tamper"])
    parser.add_argument("--release", action="store_true", help="release instead of press (tamper: close the door)")
    parser.add_argument("--trace", metavar="FILE", help="JSON list of [pressed 0|1, ms] steps to play")
    parser.add_argument("--state", default=".callbox-sim", help="the sim's state directory")


def run(args):
    import json
    import pathlib
    import socket

    from ..errors import CommandError, EXIT_NO_PORT, EXIT_USAGE

    sock = pathlib.Path(args.state) / ("box-%d.sock" % args.box)
    req = {"op": "release" if args.release else "press", "button": args.button}
    if args.trace:
        try:
            req = {"op": "trace", "button": args.button, "trace": json.loads(pathlib.Path(args.trace).read_text())}
        except (OSError, ValueError) as e:
            raise CommandError("cannot read trace %s: %s (a JSON list of [level, ms])" % (args.trace, e), EXIT_USAGE)
    if req["op"] == "press" and args.button != "tamper":
        req["wait"] = "sending"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(str(sock))
    except OSError:
        raise CommandError("box %d: no virtual box control socket at %s; is `callbox sim` running with --state %s?" % (args.box, sock, args.state), EXIT_NO_PORT)
    with s:
        s.sendall((json.dumps(req) + "\n").encode())
        reply = json.loads(s.makefile().readline() or "{}")
    if not reply.get("ok"):
        raise CommandError("box %d: %s" % (args.box, reply.get("error", "no answer")))
    print("box %d: %s %s; light %s" % (args.box, args.button, req["op"], reply.get("light")))
    return 0
