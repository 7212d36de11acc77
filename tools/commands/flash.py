"""`callbox flash IMAGE`: put MicroPython on a new ESP32."""

NAME = "flash"
HELP = "ERASE the ESP32's whole flash and write a MicroPython image (.bin) with esptool; verifies"
DESCRIPTION = (
    "Connects to the ESP32's ROM bootloader with esptool, checks that the chip is an ESP32, ERASES "
    "THE WHOLE FLASH (firmware, config.json, stored alarms: everything) and writes the MicroPython "
    "image given as a file at 0x1000, verifying it; then hard-resets the board. If the transfer fails "
    "at the fast baud rate it retries once at 115200. Afterwards: `callbox deploy`, then "
    "`callbox provision`."
)


def add_arguments(parser):
    from ..flashing import DEFAULT_ADDRESS, DEFAULT_BAUD
    from ._common import add_port_argument

    parser.add_argument("image", help="MicroPython firmware for ESP32 (ESP32_GENERIC-*.bin from micropython.org)")
    add_port_argument(parser)
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="transfer baud rate (default %d; retries at 115200)" % DEFAULT_BAUD)
    parser.add_argument("--address", type=lambda s: int(s, 0), default=DEFAULT_ADDRESS, help="flash offset (default 0x%X for ESP32)" % DEFAULT_ADDRESS)
    parser.add_argument("--no-erase", action="store_true", help="do not erase the whole flash first (keeps the filesystem; not for a new board)")


def run(args):
    from ..flashing import check_image, flash_image
    from ._common import port_from, progress_printer

    image = check_image(args.image)
    port = port_from(args)
    chip = flash_image(port, image, baud=args.baud, address=args.address, erase=not args.no_erase, progress=progress_printer("writing"))
    print("flashed and verified %s (%d bytes) on %s (%s); next: callbox deploy --port %s" % (args.image, len(image), port, chip, port))
    return 0
