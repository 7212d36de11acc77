"""Flash a MicroPython image onto an ESP32 through esptool's Python API
(esptool 5.x `esptool.cmds`: detect_chip, run_stub, attach_flash,
erase_flash, write_flash (which verifies what it wrote), reset_chip).

    check_image(path)            pure: is this an ESP32 application image?
    classify_esptool_error(...)  pure: esptool's FatalError -> CommandError
    flash_image(...)             the sequence, with one retry at a lower baud

`api` is injectable: tests pass an object with the same six functions and
a recorded chip object, since no ESP32 or ROM-bootloader emulator exists on
the bench laptop's test machine; the error paths run against real esptool.
"""

import logging
import re

from .errors import EXIT_FAIL, EXIT_NOT_ESP32, EXIT_USAGE, CommandError
from .serial_ports import classify_open_error, probe_open

log = logging.getLogger(__name__)

ROM_BAUD = 115200  # the ESP32 ROM bootloader always starts at 115200
DEFAULT_BAUD = 460800  # esptool's usual fast rate for USB bridges
# Where the MicroPython "ESP32_GENERIC" .bin goes: it holds the second-stage
# bootloader (at 0x1000 on the original ESP32), partition table and app.
DEFAULT_ADDRESS = 0x1000
# esptool tries this many resets+syncs before giving up on a silent port.
CONNECT_ATTEMPTS = 3
ESP_IMAGE_MAGIC = 0xE9
EXPECTED_CHIP = "ESP32"
# A MicroPython ESP32 image is 1.5-2 MiB; anything under this is not one.
MIN_IMAGE_BYTES = 64 * 1024


class _Errno:
    """Enough of an OSError for classify_open_error."""

    def __init__(self, errno, text):
        self.errno = errno
        self.text = text

    def __str__(self):
        return self.text


def check_image(path):
    """The image bytes, or CommandError(EXIT_USAGE) saying what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CommandError("cannot read the image %s (%s)" % (path, e.strerror), EXIT_USAGE) from None
    if data[:4] == b"UF2\n":
        raise CommandError("%s is a UF2 file (for USB drag-and-drop boards); use the .bin MicroPython image for ESP32" % path, EXIT_USAGE)
    if data[:4] == b"\x7fELF":
        raise CommandError("%s is an ELF file; use the .bin MicroPython image for ESP32" % path, EXIT_USAGE)
    if not data or data[0] != ESP_IMAGE_MAGIC:
        raise CommandError(
            "%s is not an ESP32 firmware image (first byte %s, expected 0xE9); download ESP32_GENERIC-*.bin from micropython.org/download/ESP32_GENERIC"
            % (path, ("0x%02X" % data[0]) if data else "missing"),
            EXIT_USAGE,
        )
    if len(data) < MIN_IMAGE_BYTES:
        raise CommandError("%s is only %d bytes: not a whole MicroPython image (about 1.5 MiB); download it again" % (path, len(data)), EXIT_USAGE)
    return data


_BOOTLOADER_HINT = (
    "put the board in its bootloader: hold BOOT, tap EN (RESET), release BOOT, then retry; "
    "if it still fails, check that this port is the box (`callbox ports`)"
)


def classify_esptool_error(port, text):
    """A CommandError for an esptool FatalError message."""
    if text.startswith("Could not open") or "could not open port" in text:
        m = re.search(r"\[Errno (\d+)\]", text)
        code = int(m.group(1)) if m else None
        return classify_open_error(port, _Errno(code, text))
    if "Invalid head of packet" in text:
        return CommandError(
            "%s: something other than the ESP32 ROM bootloader answered (\"Invalid head of packet\": "
            "usually MicroPython's REPL, i.e. the board did not reset into its bootloader); %s" % (port, _BOOTLOADER_HINT),
            EXIT_NOT_ESP32,
        )
    if "No serial data received" in text or "Failed to connect" in text or "Wrong boot mode" in text:
        return CommandError("%s: no ESP32 bootloader answered (%s); %s" % (port, text.splitlines()[0], _BOOTLOADER_HINT), EXIT_NOT_ESP32)
    if "autodetect" in text or "Unexpected chip" in text:
        return CommandError("%s: the chip is not one esptool knows (%s); the box needs an ESP32" % (port, text.splitlines()[0]), EXIT_NOT_ESP32)
    return CommandError("%s: esptool failed: %s" % (port, text.strip().splitlines()[0] if text.strip() else "unknown error"), EXIT_FAIL)


def _default_api():
    from esptool import cmds

    return cmds


def _is_fatal(exc):
    try:
        from esptool.util import FatalError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, FatalError)


class _ProgressLogger:
    """Routes esptool's output to logging, its progress bar to a callback."""

    def __init__(self, progress):
        self.progress = progress

    def make(self):
        from esptool.logger import TemplateLogger

        outer = self

        class Logger(TemplateLogger):
            def print(self, *args, **kwargs):
                msg = " ".join(str(a) for a in args).strip()
                if msg:
                    log.debug("esptool: %s", msg)

            def note(self, message):
                log.debug("esptool note: %s", message)

            def warning(self, message):
                log.debug("esptool warning: %s", message)

            def error(self, message):
                log.debug("esptool error: %s", message)

            def stage(self, finish=False):
                pass

            def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
                if outer.progress:
                    outer.progress(cur_iter, total_iters)

            def set_verbosity(self, verbosity):
                pass

        return Logger()


def _with_logger(progress, fn):
    try:
        from esp_pylib.logger import EspLog
        from esptool.logger import log as esplog
    except ImportError:  # pragma: no cover
        return fn()
    saved = EspLog.instance
    esplog.set_logger(_ProgressLogger(progress).make())
    try:
        return fn()
    finally:
        EspLog.instance = saved


def flash_image(port, image, baud=DEFAULT_BAUD, address=DEFAULT_ADDRESS, erase=True, progress=None, report=print, api=None):
    """Erase the ESP32 on `port` and write `image` (bytes) at `address`,
    verified by esptool. Retries once at ROM_BAUD if the transfer fails
    after the chip answered. Returns the chip description."""
    if api is None:
        api = _default_api()
        probe_open(port)
    rates = [baud] if baud <= ROM_BAUD else [baud, ROM_BAUD]
    for attempt, rate in enumerate(rates):
        try:
            return _with_logger(progress, lambda: _flash_once(api, port, image, rate, address, erase, report))
        except CommandError:
            raise
        except Exception as e:  # esptool's FatalError and serial errors
            if not (_is_fatal(e) or isinstance(e, OSError)):
                raise
            connected = getattr(e, "_callbox_connected", False)
            if connected and attempt + 1 < len(rates):
                report("flashing at %d baud failed (%s); retrying once at %d baud" % (rate, str(e).splitlines()[0], rates[attempt + 1]))
                continue
            raise classify_esptool_error(port, str(e)) from None


def _flash_once(api, port, image, rate, address, erase, report):
    esp = api.detect_chip(port, ROM_BAUD, connect_attempts=CONNECT_ATTEMPTS)
    try:
        try:
            chip = esp.CHIP_NAME
            if chip != EXPECTED_CHIP:
                raise CommandError(
                    "%s: the board is an %s, not an %s; the call box firmware needs an ESP32 (Xtensa, xtensawin)" % (port, chip, EXPECTED_CHIP),
                    EXIT_NOT_ESP32,
                )
            desc = chip
            try:
                desc = esp.get_chip_description()
            except Exception:  # a description is nice to have, not needed
                pass
            report("found %s on %s" % (desc, port))
            esp = api.run_stub(esp)
            if rate != ROM_BAUD:
                esp.change_baud(rate)
            api.attach_flash(esp)
            if erase:
                report("erasing flash...")
                api.erase_flash(esp)
            report("writing %d bytes at 0x%X (%d baud), then verifying..." % (len(image), address, rate))
            api.write_flash(esp, [(address, image)])
            api.reset_chip(esp, "hard-reset")
            return desc
        except CommandError:
            raise
        except Exception as e:
            e._callbox_connected = True
            raise
    finally:
        try:
            esp._port.close()
        except Exception:  # closing a port that already failed
            pass
