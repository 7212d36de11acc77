"""Arguments and helpers shared by the bench subcommands (not a subcommand:
the leading underscore keeps it out of `callbox --help`)."""

import sys

from ..serial_ports import PORT_ENV


def add_port_argument(parser):
    parser.add_argument(
        "-p",
        "--port",
        help="serial port of the box (default: $%s, else the only ESP32 board connected; see `callbox ports`)" % PORT_ENV,
    )


def port_from(args):
    from ..serial_ports import resolve_port

    return resolve_port(getattr(args, "port", None))


def progress_printer(label, stream=None):
    """A progress callback drawing a bar on a terminal, nothing otherwise
    (a log file or a CI job gets the final lines only)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    width = 30

    def progress(done, total):
        frac = (done / total) if total else 1.0
        filled = int(width * frac)
        stream.write("\r%s [%s%s] %3d%%" % (label, "#" * filled, "." * (width - filled), int(100 * frac)))
        if done >= total:
            stream.write("\n")
        stream.flush()

    return progress


GATEWAY_URL_ENV = "CALLBOX_GATEWAY_URL"
GATEWAY_TOKEN_ENV = "CALLBOX_GATEWAY_TOKEN"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8480"


def add_gateway_arguments(parser):
    g = parser.add_argument_group("gateway admin API")
    g.add_argument(
        "--gateway-url",
        help="base URL of the junction gateway's HTTP API (default: $%s, else %s)" % (GATEWAY_URL_ENV, DEFAULT_GATEWAY_URL),
    )
    g.add_argument(
        "--gateway-token-file",
        metavar="FILE",
        help="file holding the gateway's admin token (the gateway's data_dir/admin.token); "
        "default: $%s. Never given on the command line, where `ps` would show it" % GATEWAY_TOKEN_ENV,
    )


def gateway_from(args):
    import os

    from ..errors import EXIT_USAGE, CommandError
    from ..provisioning import GatewayAdmin

    url = args.gateway_url or os.environ.get(GATEWAY_URL_ENV) or DEFAULT_GATEWAY_URL
    token = None
    if args.gateway_token_file:
        try:
            with open(args.gateway_token_file) as f:
                token = f.read().strip()
        except OSError as e:
            raise CommandError("cannot read the admin token file %s (%s)" % (args.gateway_token_file, e.strerror), EXIT_USAGE) from None
    else:
        token = os.environ.get(GATEWAY_TOKEN_ENV)
    if not token:
        raise CommandError(
            "no gateway admin token: pass --gateway-token-file (the gateway's data_dir/admin.token) or set $%s" % GATEWAY_TOKEN_ENV,
            EXIT_USAGE,
        )
    return GatewayAdmin(url, token)


def add_box_config_arguments(parser, identity=True):
    """The settings written to the box's config.json."""
    g = parser.add_argument_group("box configuration (config.json)")
    if identity:
        g.add_argument("--box-id", type=int, required=True, help="the box's id, 1..4294967295 (unique in the city)")
        g.add_argument("--junction", required=True, help='junction name as the control room sees it, e.g. "Ghantaghar Square"')
        g.add_argument("--lat", type=float, help="latitude of the junction (for the console map)")
        g.add_argument("--lon", type=float, help="longitude of the junction")
        g.add_argument("--link", choices=("rs485", "lte", "rs485+lte"), help="how the box reaches the gateway (default: the board's)")
        g.add_argument("--bus-addr", type=int, help="RS-485 bus address 1..247 (needed for rs485 links)")
    g.add_argument("--board", required=True, help="board definition in boards/ (e.g. devkit_rs485, esp32_sim7600)")
    g.add_argument("--gateway-host", default="", help="gateway address the box dials over LTE")
    g.add_argument("--gateway-port", type=int, default=0, help="gateway TCP port for LTE boxes")
    g.add_argument("--apn", default="", help="the SIM's APN (LTE)")
    g.add_argument("--sms-number", default="", help="number that gets an SMS when an alarm cannot be delivered (LTE)")
    g.add_argument("--heartbeat-s", type=int, default=60, help="seconds between heartbeats (default 60)")
