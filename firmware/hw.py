"""The hardware layer: one interface, two implementations.

On the ESP32 (sys.platform == "esp32") it is hw_esp32 (machine.Pin, UART,
WDT, ADC); on the MicroPython unix port it is hw_sim, which takes its pins,
UARTs and watchdog from the virtual box supervisor (hil_tests/rig/
virtual_box.py) through a small control channel. Both provide:

    init(board)                   configure pins and UARTs from a board dict
    async start()                 connect whatever needs the event loop
    input_level(name) -> 0|1      electrical level of an input (no polarity)
    output(name, on)              drive an output; polarity from the board
    output_level(name) -> 0|1     read an output's electrical level back (self-test)
    light_state(name)             report the beacon state (the sim shows it)
    async open_uart(name) -> (reader, writer)   asyncio streams
    async uart_tx_done(name)      wait until the UART has sent its last bit
    wdt_start(timeout_ms), wdt_feed()
    wdt_hold(ms)                  keep an armed watchdog fed for ms (REPL session)
    reset()                       hard reset (never returns)
    reset_cause() -> name         a wire.BOOT_REASONS name
    power() -> (state, battery_mv)
    flash_write(f, data)          write to a file on flash
"""

import sys

if sys.platform == "esp32":
    import hw_esp32 as _impl
else:
    import hw_sim as _impl


def __getattr__(name):
    # hw.X is looked up in the implementation (a module-level __getattr__,
    # PEP 562: one small call per access). `from hw_sim import *` would copy
    # its ~20 names into a second dict here: about 250 bytes of RAM.
    return getattr(_impl, name)
