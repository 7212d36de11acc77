"""`callbox replace OLD [NEW_PORT]`: put a new box in an old box's place."""

NAME = "replace"
HELP = "move a junction's identity (box id OLD) to the new box on the port; new key, old key revoked"
DESCRIPTION = (
    "For a box that is being swapped: reads box OLD's record from the gateway (junction, place, link, "
    "bus address), provisions the new box connected to NEW_PORT with the same box id, a fresh key "
    "and an event_start above every event number the old box can have used, so the junction's "
    "history continues without duplicate event ids. Re-keying at the gateway revokes the old key "
    "at once: the old box, if it comes back, is rejected. Safe to interrupt and run again."
)


def add_arguments(parser):
    from ._common import add_box_config_arguments, add_gateway_arguments

    parser.add_argument("old", type=int, metavar="OLD", help="box id of the box being replaced")
    parser.add_argument("new", nargs="?", metavar="NEW_PORT", help="serial port of the new box (default: $CALLBOX_PORT, else the only ESP32 connected)")
    add_box_config_arguments(parser, identity=False)
    parser.add_argument("--link", choices=("rs485", "lte", "rs485+lte"), help="the new box's link (default: the old box's as registered)")
    parser.add_argument("--no-reset", action="store_true", help="leave the box in the REPL instead of restarting its firmware")
    add_gateway_arguments(parser)


def run(args):
    from ..board import Board
    from ..deploying import BOARDS_DIR
    from ..errors import EXIT_FAIL, CommandError
    from ..provisioning import build_config, check_board, label, new_key_hex, provision, replacement_event_start
    from ..serial_ports import resolve_port
    from ._common import gateway_from

    admin = gateway_from(args)
    old = admin.box(args.old)
    if old is None:
        raise CommandError(
            "box %d is not registered at the gateway %s; check the id with the control room, or use "
            "`callbox provision` for a new junction" % (args.old, admin.base_url),
            EXIT_FAIL,
        )
    link = args.link or old.get("link", "rs485")
    check_board(args.board, link, BOARDS_DIR)
    cfg = build_config(
        args.old, new_key_hex(), old.get("junction", ""), args.board, link,
        old.get("bus_addr") if "rs485" in link else None,
        args.gateway_host, args.gateway_port, args.apn, args.sms_number, args.heartbeat_s,
        replacement_event_start(old),
    )
    last = old.get("last_event")
    if isinstance(last, int):
        history = "the gateway's last event from box %d is %d" % (args.old, last)
    elif "last_event" in old:
        history = "the gateway has no event from box %d yet" % args.old
    else:
        history = "this gateway does not report box %d's last event" % args.old
    print("%s; the new box numbers its events from %d" % (history, cfg["event_start"]))
    port = resolve_port(args.new)
    with Board.connect(port) as board:
        cfg = provision(board, cfg, admin, old.get("lat"), old.get("lon"), force=True)
        board.reset_on_close = not args.no_reset
    print("box %d replaced: the old box's key is revoked at the gateway" % args.old)
    print(label(cfg))
    return 0
