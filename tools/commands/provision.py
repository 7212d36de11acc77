"""`callbox provision`: give a box its identity and register it."""

NAME = "provision"
HELP = "give the box its id, junction, link and a fresh key; register it at the gateway; write config.json"
DESCRIPTION = (
    "Makes a fresh 32-byte key for the box (from the OS's random source), writes the box's "
    "config.json (box id, junction, board, link, bus address or gateway address, key) and registers "
    "the box with the gateway's admin API. Stops the running firmware while it works. The new config "
    "is staged and checked by hash on the box, the gateway is told, and only then does one rename on "
    "the box switch it in: interrupted at any point, the box keeps its old config, and running the "
    "same command again finishes the job. Prints a label for the inside of the box door. "
    "The key is never printed or logged."
)


def add_arguments(parser):
    from ._common import add_box_config_arguments, add_gateway_arguments, add_port_argument

    add_port_argument(parser)
    add_box_config_arguments(parser)
    parser.add_argument("--event-start", type=int, default=1, help="first event number (default 1; `replace` sets it for you)")
    parser.add_argument("--force", action="store_true", help="re-key a box id the gateway already has on another box")
    parser.add_argument("--no-reset", action="store_true", help="leave the box in the REPL instead of restarting its firmware")
    add_gateway_arguments(parser)


def run(args):
    from ..board import Board
    from ..deploying import BOARDS_DIR
    from ..provisioning import build_config, check_board, default_link, label, new_key_hex, provision
    from ._common import gateway_from, port_from

    if args.link is None:
        args.link = default_link(args.board, BOARDS_DIR)
    check_board(args.board, args.link, BOARDS_DIR)
    cfg = build_config(
        args.box_id, new_key_hex(), args.junction, args.board, args.link, args.bus_addr,
        args.gateway_host, args.gateway_port, args.apn, args.sms_number, args.heartbeat_s, args.event_start,
    )
    admin = gateway_from(args)
    port = port_from(args)
    with Board.connect(port) as board:
        cfg = provision(board, cfg, admin, args.lat, args.lon, force=args.force)
        board.reset_on_close = not args.no_reset
    print(label(cfg))
    return 0
