"""`callbox bench console`: alarm-visible latency on a real Chromium board
while 1,000 boxes report health (callbox_console.bench)."""

NAME = "console"
HELP = "alarm visible on the console board (p50/p99) with 1,000 boxes reporting health"


def add_arguments(parser):
    parser.add_argument("--alarms", type=int, default=50, help="alarms posted as a gateway (default 50)")
    parser.add_argument("--boxes", type=int, default=1000, help="boxes reporting health (default 1,000)")
    parser.add_argument("--health-period-s", type=float, default=1.0, help="seconds between health posts (default 1 s, 10x the real rate)")
    parser.add_argument("--gap-s", type=float, default=0.2, help="seconds between alarms (default 0.2)")


def run(args):
    from callbox_console import bench

    return bench.run(args)
