"""`callbox selftest`'s core: run the box's self-test and read its report.

The box side (firmware/selftest.py, docs/firmware.md) provides `selftest.cli()`:
it runs every item (each input read, the light, a link round trip to the
gateway) and prints one line per item in the RESULT format of
docs/protocol.md: `item=pass` or `item=fail[:detail]`. The CLI runs it from
the raw REPL (the firmware's main loop is stopped meanwhile) and soft-resets
the box afterwards so the firmware runs again."""

from .errors import EXIT_FAIL, CommandError

SELFTEST_CODE = "import selftest\nselftest.cli()\n"
# Seconds the whole self-test may take: the link round trip waits for the
# gateway's poll (RS-485) or a TCP connect over LTE, bounded on the box.
SELFTEST_TIMEOUT_S = 60


def parse_report(text):
    """[(item, passed, detail)] from `item=pass|fail[:detail]` lines; other
    lines (log output while the test runs) are ignored. Raises
    CommandError if no item line is there."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if "=" not in line or " " in line.split("=", 1)[0]:
            continue
        name, result = line.split("=", 1)
        verdict, _, detail = result.partition(":")
        if verdict not in ("pass", "fail") or not name:
            continue
        items.append((name, verdict == "pass", detail))
    if not items:
        raise CommandError("the box's self-test printed no results:\n%s" % text.strip()[:500], EXIT_FAIL)
    return items


def format_report(items):
    width = max(len(n) for n, _, _ in items)
    lines = []
    for name, ok, detail in items:
        lines.append("%-*s  %s%s" % (width, name, "PASS" if ok else "FAIL", ("  " + detail) if detail else ""))
    failed = [n for n, ok, _ in items if not ok]
    lines.append("self-test %s: %d of %d items passed" % ("FAILED" if failed else "passed", len(items) - len(failed), len(items)))
    return "\n".join(lines)


def run_selftest(board):
    from .errors import EXIT_NO_MICROPYTHON

    has = board.exec("try:\n import selftest\n print(hasattr(selftest,'cli'))\nexcept ImportError:\n print(False)\n").decode().strip()
    if has != "True":
        raise CommandError(
            "%s: the firmware on the box has no self-test (selftest.cli); deploy the current firmware with `callbox deploy`" % board.port,
            EXIT_NO_MICROPYTHON,
        )
    out = board.exec(SELFTEST_CODE, timeout_s=SELFTEST_TIMEOUT_S)
    return parse_report(out.decode("utf-8", "replace"))
