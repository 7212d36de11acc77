"""`callbox bench NAME`: benchmarks that print figures (JSON with --json).

Each module in callbox_tools/bench/ is one benchmark with NAME, HELP,
add_arguments(parser) and run(args) -> dict of figures."""

import importlib
import json
import pkgutil

NAME = "bench"
HELP = "run a benchmark and print its figures (codec, gateway, call, latency, console)"


def _bench_modules():
    from .. import bench

    out = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            out.append(importlib.import_module(bench.__name__ + "." + info.name))
    return out


def add_arguments(parser):
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    sub.required = True
    for mod in _bench_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        mod.add_arguments(p)
        p.set_defaults(_bench=mod.run)


def run(args):
    figures = args._bench(args)
    if args.json:
        print(json.dumps(figures))
    else:
        print(json.dumps(figures, indent=2))
    return 0
