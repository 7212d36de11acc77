"""`callbox deploy`: compile the firmware and copy it to the box."""

NAME = "deploy"
HELP = "compile the box firmware (mpy-cross, xtensawin) and copy what changed to the box over USB"
DESCRIPTION = (
    "Compiles every firmware module with mpy-cross -march=xtensawin and copies it to the box's flash "
    "through mpremote's transport. Stops the running firmware (Ctrl-C) while it works; files whose "
    "SHA-256 on the box already matches are not copied. New files are written beside the old ones, "
    "verified by hash on the box, then switched in together, so an interrupted deploy leaves the box "
    "as it was. Does not touch config.json. Soft-resets the box at the end so the new firmware runs. "
    "With --romfs the modules go into the box's ROMFS partition as one image (written header last and "
    "verified by hash before the filesystem is switched), and the module files on the filesystem are removed."
)


def add_arguments(parser):
    from ._common import add_port_argument

    add_port_argument(parser)
    parser.add_argument("--source", action="store_true", help="copy .py sources instead of .mpy (readable tracebacks, more RAM)")
    parser.add_argument("--no-reset", action="store_true", help="leave the box in the REPL instead of restarting its firmware")
    parser.add_argument("--romfs", action="store_true",
                        help="put the modules in the box's ROMFS partition, run in place from flash (a MicroPython build with ROMFS; "
                             "docs/firmware.md, Memory)")


def run(args):
    from ..board import Board
    from ..deploying import build_bundle, deploy, deploy_romfs
    from ..errors import EXIT_USAGE, CommandError
    from ._common import port_from

    if args.romfs and args.source:
        raise CommandError("--romfs runs compiled modules in place: it cannot be combined with --source", EXIT_USAGE)
    port = port_from(args)  # a missing or ambiguous port is said before compiling
    bundle = build_bundle(source=args.source, root="/rom/" if args.romfs else "")
    print("built %d files (build %s)%s" % (len(bundle.files), bundle.build_id, " for the ROMFS partition" if args.romfs else ""))
    with Board.connect(port) as board:
        if args.romfs:
            deploy_romfs(board, bundle)
        else:
            deploy(board, bundle)
        board.reset_on_close = not args.no_reset
    return 0
