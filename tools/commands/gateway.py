"""`callbox gateway`: run the junction gateway (docs/gateway.md).

With no --config it runs on embedded defaults: HTTP on 127.0.0.1:8480, LTE
listener on 127.0.0.1:8470, no RS-485 bus, no forwarding sinks, database and
tokens under ~/.local/state/callbox-gateway."""

NAME = "gateway"
HELP = "run the junction gateway (RS-485 master, LTE listener, store-and-forward)"


def add_arguments(parser):
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: embedded demo defaults)")
    parser.add_argument("--data-dir", metavar="DIR", help="override data_dir (database, token files)")
    parser.add_argument("--check", action="store_true", help="validate the configuration, print it (no secrets) and exit")


def run(args):
    import asyncio
    import signal

    from callbox_gateway import config as gwconfig
    from callbox_gateway.app import run_forever
    from callbox_gateway.errors import GatewayError

    from ..errors import EXIT_USAGE, CommandError

    try:
        cfg = gwconfig.load(args.config)
    except GatewayError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if args.data_dir:
        cfg.data_dir = args.data_dir
    if args.check:
        print(repr(cfg))
        return 0

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)

        def ready(gw):
            print("gateway %s: http://%s:%d  lte %s  rs485 %s  data %s" % (
                cfg.gateway_id, cfg.http.host, gw.http_port, ("%s:%d" % (cfg.lte.host, gw.lte.port)) if gw.lte else "off",
                cfg.rs485.url or "off", cfg.data_path()), flush=True)

        try:
            await run_forever(cfg, ready)
        except asyncio.CancelledError:
            return 0

    try:
        return asyncio.run(main()) or 0
    except GatewayError as e:
        raise CommandError(str(e)) from None
