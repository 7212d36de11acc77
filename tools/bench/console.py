"""`callbox bench console`: alarm-visible latency on a real Chromium board
while 1,000 boxes report health (callbox_console.bench, docs/console.md)."""

NAME = "console"
HELP = "alarm visible on the console board (p50/p99) with 1,000 boxes reporting health"


def add_arguments(parser):
    from callbox_console import bench

    bench.add_arguments(parser)


def run(args):
    from callbox_console import bench

    return bench.run(args)
