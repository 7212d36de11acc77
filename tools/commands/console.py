"""`callbox console`: the control-room console (docs/console.md).

With no flags it starts on 127.0.0.1:8490 with SQLite in a state directory
and one demo gateway, `gw-kanpur-01`, whose token is kept in
<state-dir>/gw-kanpur-01.token (created on first start, mode 0600). On the
very first start it prints the one-time admin password, once."""

import os

NAME = "console"
HELP = "run the control-room console (live alarm board, map, box health, operators)"

DEFAULT_GATEWAY = "gw-kanpur-01"


def default_state_dir():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "callbox", "console")


def add_arguments(parser):
    parser.add_argument("--config", help="TOML configuration file (see docs/console.md)")
    parser.add_argument("--listen", default=None, help="HOST:PORT to listen on (default 127.0.0.1:8490)")
    parser.add_argument("--state-dir", default=None,
                        help="where the SQLite database and demo token live (default %s; env CALLBOX_CONSOLE_STATE)"
                        % default_state_dir())
    parser.add_argument("--database", default=None, help="sqlite:///path/console.db or postgresql://user@host/db")
    parser.add_argument("--gateway", default=None,
                        help="gateway id allowed to post (default %s when the config names none)" % DEFAULT_GATEWAY)
    parser.add_argument("--gateway-url", default=None, help="that gateway's base URL, for media and video calls")
    parser.add_argument("--gateway-token-file", default=None,
                        help="file holding that gateway's token (default: env CALLBOX_GATEWAY_TOKEN, else "
                        "<state-dir>/<gateway>.token, created if missing)")
    parser.add_argument("--escalation-s", type=float, default=None, help="seconds before an unacknowledged alarm "
                        "rolls over to another operator (default 30)")


def _gateway_token(state_dir, gw_id, token_file):
    import secrets

    from callbox_tools.errors import CommandError

    if token_file:
        try:
            return open(token_file).read().strip(), token_file
        except OSError as e:
            raise CommandError("cannot read --gateway-token-file %s: %s" % (token_file, e.strerror))
    if os.environ.get("CALLBOX_GATEWAY_TOKEN"):
        return os.environ["CALLBOX_GATEWAY_TOKEN"].strip(), "env CALLBOX_GATEWAY_TOKEN"
    path = os.path.join(state_dir, gw_id + ".token")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return open(path).read().strip(), path


def run(args):
    import asyncio

    from aiohttp import web

    from callbox_console import config as cfgmod
    from callbox_console.errors import ConsoleError
    from callbox_console.server import Console, make_app
    from callbox_tools.errors import EXIT_USAGE, CommandError

    try:
        cfg = cfgmod.load(args.config)
        if args.listen:
            host, _, port = args.listen.rpartition(":")
            cfg.host, cfg.port = host or "127.0.0.1", int(port)
        cfg.state_dir = args.state_dir or os.environ.get("CALLBOX_CONSOLE_STATE") or cfg.state_dir or \
            default_state_dir()
        os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
        if args.database:
            cfg.database = args.database
        if args.escalation_s is not None:
            cfg.escalation_s = args.escalation_s
        token_from = None
        if args.gateway or not cfg.gateways:
            gw_id = args.gateway or DEFAULT_GATEWAY
            token, token_from = _gateway_token(cfg.state_dir, gw_id, args.gateway_token_file)
            cfg.gateways[gw_id] = cfgmod.GatewayConfig(gw_id, token, args.gateway_url or "")
        elif args.gateway_url:
            raise CommandError("--gateway-url needs --gateway when the config names gateways", EXIT_USAGE)
    except (ConsoleError, ValueError) as e:
        raise CommandError(str(e), EXIT_USAGE)

    async def main():
        console = Console(cfg)
        app = make_app(console)
        runner = web.AppRunner(app, access_log=None)
        try:
            await runner.setup()
        except ConsoleError as e:
            raise CommandError(str(e))
        site = web.TCPSite(runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise CommandError("cannot listen on %s:%d: %s (another console running? use --listen)"
                               % (cfg.host, cfg.port, e.strerror))
        port = runner.addresses[0][1]
        print("console: http://%s:%d/  (database %s)" % (cfg.host, port, cfg.db_url().split("@")[-1]), flush=True)
        for gw in cfg.gateways.values():
            print("console: gateway %s may post%s" % (gw.gateway_id, (" (token from %s)" % token_from)
                                                      if token_from and gw.gateway_id in (args.gateway, DEFAULT_GATEWAY)
                                                      else ""), flush=True)
        if console.initial_admin_password:
            print("console: first start: log in as 'admin' with the one-time password %s "
                  "(shown only now; you must change it at first login)" % console.initial_admin_password, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return 0
