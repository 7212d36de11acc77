"""`callbox selftest`'s core: run the box's self-test and read its report.

The box side (firmware/selftest.py, docs/firmware.md) provides `selftest.cli()`:
it runs every item (each input read, the light, a link round trip to the
gateway) and prints one line per item in the RESULT format of
docs/protocol.md: `item=pass` or `item=fail[:detail]`. The CLI runs it from
the raw REPL (the firmware's main loop is stopped meanwhile) and soft-resets
the box afterwards so the firmware runs again."""

from .errors import EXIT_FAIL, CommandError

# Seconds the whole self-test may take beyond its link round trip: the
# inputs, light and flash items take well under a second on a box.
SELFTEST_SLACK_S = 15
# The box's own bound on the link round trip (firmware/selftest.py,
# LINK_TIMEOUT_MS): an LTE box may have to attach and connect first.
BOX_LINK_TIMEOUT_S = 45
# A technician's shorter bound must still leave one RS-485 poll cycle (about
# 0.1 s for 32 boxes) or one TCP round trip.
MIN_LINK_TIMEOUT_S = 1


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


def selftest_code(link_timeout_s=None):
    """What runs on the box: selftest.cli() with the box's own link timeout,
    or the one given (whole seconds are what the firmware reports)."""
    if link_timeout_s is None:
        return "import selftest\nselftest.cli()\n"
    return "import selftest\nselftest.cli(%d)\n" % int(link_timeout_s * 1000)


def run_selftest(board, link_timeout_s=None):
    from .errors import EXIT_NO_MICROPYTHON, EXIT_USAGE

    if link_timeout_s is not None and link_timeout_s < MIN_LINK_TIMEOUT_S:
        raise CommandError("--link-timeout %g s is too short for any link; use %d s or more" % (link_timeout_s, MIN_LINK_TIMEOUT_S), EXIT_USAGE)

    has = board.exec("try:\n import selftest\n print(hasattr(selftest,'cli'))\nexcept ImportError:\n print(False)\n").decode().strip()
    if has != "True":
        raise CommandError(
            "%s: the firmware on the box has no self-test (selftest.cli); deploy the current firmware with `callbox deploy`" % board.port,
            EXIT_NO_MICROPYTHON,
        )
    budget = (BOX_LINK_TIMEOUT_S if link_timeout_s is None else link_timeout_s) + SELFTEST_SLACK_S
    out = board.exec(selftest_code(link_timeout_s), timeout_s=budget)
    return parse_report(out.decode("utf-8", "replace"))
