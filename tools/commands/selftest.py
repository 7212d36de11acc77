"""`callbox selftest`: run the box's self-test, pass or fail per item."""

NAME = "selftest"
HELP = "run the box's self-test (inputs, light, flash, link round trip) and print pass/fail per item; exit 1 on any fail"
DESCRIPTION = (
    "Stops the box's firmware (Ctrl-C), runs its self-test from the REPL: each input read, the "
    "light switched, a round trip over its link to the gateway; prints PASS or FAIL per item and "
    "soft-resets the box so the firmware runs again. Exit code 0 if every item passed, 1 if any failed."
)


def add_arguments(parser):
    from ._common import add_port_argument

    add_port_argument(parser)
    parser.add_argument(
        "--link-timeout",
        type=float,
        metavar="S",
        help="seconds to wait for the gateway's answer in the link item (default: the box's own, 45 s); "
        "shorter for a quick check at a box whose link you know is down",
    )


def run(args):
    from ..board import Board
    from ..errors import EXIT_FAIL
    from ..selftesting import format_report, run_selftest
    from ._common import port_from

    port = port_from(args)
    with Board.connect(port) as board:
        board.reset_on_close = True
        items = run_selftest(board, args.link_timeout)
    print(format_report(items))
    return EXIT_FAIL if any(not ok for _, ok, _ in items) else 0
