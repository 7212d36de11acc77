"""`callbox deploy`: compile the firmware and copy it to the box."""

NAME = "deploy"
HELP = "compile the box firmware (mpy-cross, xtensawin) and copy what changed to the box over USB"
DESCRIPTION = (
    "Compiles every firmware module with mpy-cross -march=xtensawin and copies it to the box's flash "
    "through mpremote's transport. Stops the running firmware (Ctrl-C) while it works; files whose "
    "SHA-256 on the box already matches are not copied. New files are written beside the old ones, "
    "verified by hash on the box, then switched in together, so an interrupted deploy leaves the box "
    "as it was. Does not touch config.json. Soft-resets the box at the end so the new firmware runs."
)


def add_arguments(parser):
    from ._common import add_port_argument

    add_port_argument(parser)
    parser.add_argument("--source", action="store_true", help="copy .py sources instead of .mpy (readable tracebacks, more RAM)")
    parser.add_argument("--no-reset", action="store_true", help="leave the box in the REPL instead of restarting its firmware")


def run(args):
    from ..board import Board
    from ..deploying import build_bundle, deploy
    from ._common import port_from

    port = port_from(args)  # a missing or ambiguous port is said before compiling
    bundle = build_bundle(source=args.source)
    print("built %d files (build %s)" % (len(bundle.files), bundle.build_id))
    with Board.connect(port) as board:
        deploy(board, bundle)
        board.reset_on_close = not args.no_reset
    return 0
