"""One exception for the CLI, with documented exit codes (docs/technician.md).

A command raises CommandError("what went wrong; what to do"); main() prints it
as `callbox: message` and exits with its code, as mpremote does."""

# Exit codes. 0 = success, 1 = a check failed (self-test, verify), the rest
# name what the technician has to fix.
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NO_PORT = 3
EXIT_PERMISSION = 4
EXIT_PORT_BUSY = 5
EXIT_NOT_ESP32 = 6
EXIT_NO_MICROPYTHON = 7
EXIT_WRONG_BOARD = 8
EXIT_GATEWAY_UNREACHABLE = 9
EXIT_TIMEOUT = 10
EXIT_GATEWAY_REFUSED = 11  # the gateway answered 400/401: wrong token or bad request
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    def __init__(self, message, exit_code=EXIT_FAIL):
        super().__init__(message)
        self.exit_code = exit_code
