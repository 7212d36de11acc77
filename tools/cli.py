"""`callbox`: one console script, a table of subcommands.

Each module in callbox_tools/commands/ is one subcommand (mpremote's shape):

    NAME = "press"                      # the subcommand
    HELP = "press a virtual button"     # one line for `callbox --help`
    def add_arguments(parser): ...      # its own argparse parser
    def run(args) -> int: ...           # the handler; raise CommandError

Modules import their heavy dependencies inside run(), so `callbox --help`
stays fast and a broken optional part cannot break the whole tool.
"""

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import EXIT_INTERRUPTED, CommandError


def _command_modules():
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(commands.__name__ + "." + info.name))
    return mods


def build_parser():
    parser = argparse.ArgumentParser(prog="callbox", description="Emergency call boxes: box firmware, junction gateway, control-room console, technician tools.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = args._run(args)
    except CommandError as e:
        print("callbox: %s" % e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("callbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
