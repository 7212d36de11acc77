# The box's entry point (runs after boot.py). A crash is logged and followed
# by a hard reset: a box in the street must come back by itself. Ctrl-C
# (KeyboardInterrupt, from mpremote or a technician) stops it at the REPL.
import sys
import time

try:
    import app

    app.main()
except KeyboardInterrupt:
    print("main: stopped by Ctrl-C; the REPL is yours")
except Exception as e:
    print("main: firmware crashed, resetting in 5 s:")
    sys.print_exception(e)
    time.sleep(5)
    import hw

    hw.reset()
