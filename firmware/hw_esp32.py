"""The ESP32 hardware layer: machine.Pin, UART, WDT, ADC (see hw.py)."""

import time
import asyncio
import machine

_board = None
_ins = {}
_outs = {}
_uarts = {}
_wdt = None
_mains = None
_adc = None

_CAUSES = {}


def init(board):
    global _board, _mains, _adc
    _board = board
    for name in board["inputs"]:
        p = board["inputs"][name]
        pull = machine.Pin.PULL_UP if p.get("pull") == "up" else (machine.Pin.PULL_DOWN if p.get("pull") == "down" else None)
        _ins[name] = machine.Pin(p["pin"], machine.Pin.IN, pull)
    for name in board["outputs"]:
        p = board["outputs"][name]
        pin = machine.Pin(p["pin"], machine.Pin.OUT)
        pin.value(1 - p.get("active", 1))
        _outs[name] = (pin, p.get("active", 1))
    pw = board.get("power", {})
    if "mains_pin" in pw:
        _mains = (machine.Pin(pw["mains_pin"], machine.Pin.IN), pw.get("mains_active", 1))
    if "battery_adc" in pw:
        _adc = (machine.ADC(machine.Pin(pw["battery_adc"])), pw.get("battery_divider", 1.0))
        _adc[0].atten(machine.ADC.ATTN_11DB)
    for attr, name in (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard_reset"), ("WDT_RESET", "watchdog"), ("SOFT_RESET", "soft_reset"), ("DEEPSLEEP_RESET", "deep_sleep")):
        if hasattr(machine, attr):
            _CAUSES[getattr(machine, attr)] = name


async def start():
    pass


def input_level(name):
    return _ins[name].value()


def output(name, on):
    o = _outs.get(name)
    if o is not None:
        o[0].value(o[1] if on else 1 - o[1])


def output_level(name):
    # Pin.OUT on the ESP32 keeps the input buffer on: value() reads the pad.
    # A KeyError for an output the board does not have.
    return _outs[name][0].value()


def light_state(name):
    pass


async def open_uart(name):
    u = _board["uarts"][name]
    uart = _uarts.get(name)
    if uart is None:
        uart = machine.UART(u["id"], baudrate=u["baud"], tx=u["tx"], rx=u["rx"], rxbuf=512, txbuf=256)
        _uarts[name] = uart
    return asyncio.StreamReader(uart), asyncio.StreamWriter(uart, {})


async def uart_tx_done(name):
    uart = _uarts[name]
    while not uart.txdone():
        await asyncio.sleep_ms(0)


def wdt_start(timeout_ms):
    global _wdt
    _wdt = machine.WDT(timeout=timeout_ms)


def wdt_feed():
    if _wdt is not None:
        _wdt.feed()


_hold_timer = None


def wdt_hold(ms):
    # machine.WDT cannot be stopped: while a technician has the firmware
    # stopped at the REPL, a timer feeds it for at most `ms`, then stops, so
    # a box left at the REPL resets itself back into its firmware.
    global _hold_timer
    if _wdt is None:
        return
    end = time.ticks_add(time.ticks_ms(), ms)

    def feed(t):
        if time.ticks_diff(end, time.ticks_ms()) > 0:
            _wdt.feed()
        else:
            t.deinit()

    _hold_timer = machine.Timer(0)
    _hold_timer.init(period=1000, mode=machine.Timer.PERIODIC, callback=feed)


def reset():
    machine.reset()


def reset_cause():
    return _CAUSES.get(machine.reset_cause(), "none")


def power():
    state = "unknown"
    if _mains is not None:
        state = "mains" if _mains[0].value() == _mains[1] else "battery"
    mv = 0
    if _adc is not None:
        mv = int(_adc[0].read_uv() // 1000 * _adc[1])
    return (state, mv)


def flash_write(f, data):
    f.write(data)
