"""`callbox ports`: the laptop's serial ports, likely boxes first."""

NAME = "ports"
HELP = "list serial ports with VID:PID and description, likely ESP32 boxes first (touches no board)"
DESCRIPTION = (
    "Lists the serial ports pyserial sees, with USB VID:PID and description. Ports behind the USB "
    "bridges used on ESP32 boards (Espressif, Silicon Labs CP210x, WCH CH340/CH9102, FTDI) come first, "
    "marked BOX? yes; when exactly one is connected, the other commands pick it without --port. "
    "Opens no port."
)


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def run(args):
    import json

    from ..serial_ports import format_table, list_ports

    ports = list_ports()
    if args.json:
        print(json.dumps([
            {"device": p.device, "vid": p.vid, "pid": p.pid, "description": p.description, "likely_box": p.likely_box}
            for p in ports
        ]))
        return 0
    if not ports:
        print("no serial ports found; plug the box in with a data USB cable")
        return 0
    print(format_table(ports))
    return 0
