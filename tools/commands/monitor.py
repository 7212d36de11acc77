"""`callbox monitor`: the box's log, each line stamped with the time."""

NAME = "monitor"
HELP = "show the box's log (its console output) with a timestamp per line; sends nothing unless --restart"
DESCRIPTION = (
    "Opens the box's USB serial port without touching DTR/RTS (which would reset an ESP32 dev "
    "board) and prints every line the firmware logs, prefixed with the laptop's time "
    "(HH:MM:SS.mmm). The box's own lines start with its uptime in ms, level letter and box id. "
    "Read-only: the firmware keeps running. --restart soft-resets the box first to see its boot. "
    "Stop with Ctrl-C, or --seconds/--lines."
)

# Seconds one read waits for bytes: short enough to notice --seconds and
# Ctrl-C promptly.
_READ_TIMEOUT_S = 0.2


def add_arguments(parser):
    from ._common import add_port_argument

    add_port_argument(parser)
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--lines", type=int, help="stop after this many lines")
    parser.add_argument("--restart", action="store_true", help="soft-reset the box first (Ctrl-C, Ctrl-B, Ctrl-D) to watch it boot")
    parser.add_argument("--baud", type=int, default=115200, help="console baud rate (default 115200)")


def run(args):
    import sys
    import time

    import serial

    from ..monitoring import LineStamper
    from ..serial_ports import classify_open_error
    from ._common import port_from

    port = port_from(args)
    s = serial.Serial()
    s.port = port
    s.baudrate = args.baud
    s.timeout = _READ_TIMEOUT_S
    s.dtr = False
    s.rts = False
    s.exclusive = True
    try:
        s.open()
    except (OSError, serial.SerialException) as e:
        raise classify_open_error(port, e) from None
    stamper = LineStamper()
    start = time.monotonic()
    shown = 0
    print("monitoring %s (Ctrl-C to stop)" % port, file=sys.stderr)
    try:
        if args.restart:
            s.write(b"\r\x03\x03\x02\x04")
        while True:
            if args.seconds is not None and time.monotonic() - start >= args.seconds:
                break
            data = s.read(4096)
            if not data:
                continue
            for line in stamper.feed(data, time.time()):
                print(line, flush=True)
                shown += 1
                if args.lines is not None and shown >= args.lines:
                    return 0
    except KeyboardInterrupt:
        pass
    except (OSError, serial.SerialException) as e:
        from ..errors import EXIT_NO_PORT, CommandError

        raise CommandError("%s: the port went away (%s); check the cable" % (port, e), EXIT_NO_PORT) from None
    finally:
        for line in stamper.flush(time.time()):
            print(line, flush=True)
        s.close()
    return 0
