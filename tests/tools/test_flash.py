"""`callbox flash`: esptool's error paths for real (a missing port, a pty
where a MicroPython REPL answers instead of the ROM bootloader, a port where
nothing answers); the happy path against a recorded chip object, since no
ESP32 or ROM-bootloader emulator exists here."""

import os

import pytest
from esptool.util import FatalError

from callbox_tools.errors import EXIT_FAIL, EXIT_NO_PORT, EXIT_NOT_ESP32, EXIT_USAGE, CommandError
from callbox_tools.flashing import DEFAULT_ADDRESS, ROM_BAUD, check_image, classify_esptool_error, flash_image

from conftest import run_cli


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "ESP32_GENERIC-test.bin"
    path.write_bytes(b"\xe9\x03\x02\x20" + os.urandom(200 * 1024))
    return path


# -- real esptool, real ports ---------------------------------------------


def test_missing_port_exit_code_and_message(image):
    r = run_cli("flash", str(image), "--port", "/dev/ttyUSB-callbox-missing")
    assert r.returncode == EXIT_NO_PORT, r.stderr
    assert "no such serial port" in r.stderr and "callbox ports" in r.stderr
    assert "Traceback" not in r.stderr


def test_micropython_repl_instead_of_rom_bootloader(image, board):
    r = run_cli("flash", str(image), "--port", board.port)
    assert r.returncode == EXIT_NOT_ESP32, r.stderr
    assert "Invalid head of packet" in r.stderr and "hold BOOT" in r.stderr
    assert "Traceback" not in r.stderr
    # The board was not harmed: its REPL still answers.
    from callbox_tools.board import Board

    with Board.connect(board.port) as b:
        assert b.exec("print(6*7)").strip() == b"42"


@pytest.mark.slow
def test_nothing_answers(image, silent_port):
    r = run_cli("flash", str(image), "--port", silent_port, timeout=240)
    assert r.returncode == EXIT_NOT_ESP32, r.stderr
    assert "no ESP32 bootloader answered" in r.stderr and "hold BOOT" in r.stderr


def test_bad_images_are_refused_before_touching_the_board(tmp_path):
    cases = {
        "fw.uf2": b"UF2\n" + bytes(100000),
        "fw.elf": b"\x7fELF" + bytes(100000),
        "notes.txt": b"hello",
        "short.bin": b"\xe9" + bytes(100),
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(CommandError) as e:
            check_image(p)
        assert e.value.exit_code == EXIT_USAGE
    r = run_cli("flash", str(tmp_path / "absent.bin"), "--port", "/dev/null")
    assert r.returncode == EXIT_USAGE and "cannot read the image" in r.stderr


@pytest.mark.parametrize(
    "text,code",
    [
        ("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 16] could not open port /dev/ttyUSB0: [Errno 16] Device or resource busy: '/dev/ttyUSB0')", 5),
        ("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 13] could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0')", 4),
        ("Failed to connect to ESP32: No serial data received.", EXIT_NOT_ESP32),
        ("Unexpected chip magic value 0xdeadbeef. Failed to autodetect chip type.", EXIT_NOT_ESP32),
        ("Timed out waiting for packet header", EXIT_FAIL),
    ],
)
def test_esptool_messages_map_to_exit_codes(text, code):
    assert classify_esptool_error("/dev/ttyUSB0", text).exit_code == code


# -- the happy path against a recorded chip -------------------------------


class RecordedEsp:
    """The parts of esptool's ESP32ROM/ESP32StubLoader that flashing uses,
    recording every call (values as an ESP32-D0WD-V3 reports them)."""

    def __init__(self, calls, chip="ESP32"):
        self.CHIP_NAME = chip
        self.calls = calls
        self._port = self
        self.closed = False

    def get_chip_description(self):
        return "%s-D0WD-V3 (revision v3.1)" % self.CHIP_NAME

    def change_baud(self, baud):
        self.calls.append(("change_baud", baud))

    def close(self):
        self.closed = True


class RecordedApi:
    """esptool.cmds' six functions; write_flash can be told to fail the
    first time (a noisy cable at 460800 baud)."""

    def __init__(self, chip="ESP32", fail_writes=0):
        self.calls = []
        self.chip = chip
        self.fail_writes = fail_writes
        self.flash = {}
        self.esps = []

    def detect_chip(self, port, baud, connect_attempts=3):
        self.calls.append(("detect_chip", port, baud))
        esp = RecordedEsp(self.calls, self.chip)
        self.esps.append(esp)
        return esp

    def run_stub(self, esp):
        self.calls.append(("run_stub",))
        return esp

    def attach_flash(self, esp):
        self.calls.append(("attach_flash",))

    def erase_flash(self, esp):
        self.calls.append(("erase_flash",))
        self.flash.clear()

    def write_flash(self, esp, addr_data, **kw):
        self.calls.append(("write_flash", [(a, len(d)) for a, d in addr_data]))
        if self.fail_writes:
            self.fail_writes -= 1
            raise FatalError("Timed out waiting for packet content")
        for a, d in addr_data:
            self.flash[a] = bytes(d)

    def reset_chip(self, esp, mode):
        self.calls.append(("reset_chip", mode))


def test_happy_path_erases_writes_verifies_and_resets(image):
    api = RecordedApi()
    data = image.read_bytes()
    lines = []
    progress = []
    chip = flash_image("/dev/ttyUSB0", data, progress=lambda d, t: progress.append((d, t)), report=lines.append, api=api)
    names = [c[0] for c in api.calls]
    assert names == ["detect_chip", "run_stub", "change_baud", "attach_flash", "erase_flash", "write_flash", "reset_chip"]
    assert api.calls[0] == ("detect_chip", "/dev/ttyUSB0", ROM_BAUD)
    assert api.flash == {DEFAULT_ADDRESS: data}
    assert api.calls[-1] == ("reset_chip", "hard-reset")
    assert chip.startswith("ESP32-D0WD") and all(e.closed for e in api.esps)
    assert any("erasing" in l for l in lines)


def test_a_failed_transfer_is_retried_once_at_rom_baud(image):
    api = RecordedApi(fail_writes=1)
    lines = []
    flash_image("/dev/ttyUSB0", image.read_bytes(), baud=921600, report=lines.append, api=api)
    assert [c for c in api.calls if c[0] == "change_baud"] == [("change_baud", 921600)]
    assert len([c for c in api.calls if c[0] == "write_flash"]) == 2
    assert any("retrying once at 115200" in l for l in lines)
    assert api.flash  # the second attempt wrote the image


def test_two_failed_transfers_give_up_with_a_clear_error(image):
    api = RecordedApi(fail_writes=2)
    with pytest.raises(CommandError) as e:
        flash_image("/dev/ttyUSB0", image.read_bytes(), report=lambda l: None, api=api)
    assert e.value.exit_code == EXIT_FAIL and "Timed out" in str(e.value)
    assert len([c for c in api.calls if c[0] == "write_flash"]) == 2


def test_not_an_esp32_is_refused_before_erasing(image):
    api = RecordedApi(chip="ESP32-C3")
    with pytest.raises(CommandError) as e:
        flash_image("/dev/ttyUSB0", image.read_bytes(), report=lambda l: None, api=api)
    assert e.value.exit_code == EXIT_NOT_ESP32 and "ESP32-C3" in str(e.value)
    assert "erase_flash" not in [c[0] for c in api.calls]  # nothing was erased
    assert len([c for c in api.calls if c[0] == "detect_chip"]) == 1  # no retry
