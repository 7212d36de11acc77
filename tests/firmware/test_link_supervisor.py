"""App.run_link, the supervisor that restarts a crashed link, on the real
MicroPython unix port: a link must come back even when the heap is so full
that the crash report itself raises MemoryError (found on an LTE box in a
64 KiB heap: the report failed, the supervisor task died, and the box never
reconnected)."""

SCRIPT = r"""
import asyncio, app, log

runs = []
reports = []


class Link:
    name = "lte"

    async def run(self):
        runs.append(1)
        if len(runs) < 3:
            raise OSError(5)  # the link crashed
        await asyncio.sleep_ms(60000)  # third time: up


def full_heap_log(lvl, msg):
    reports.append(msg)
    raise MemoryError("memory allocation failed, allocating 640 bytes")


log.log = full_heap_log


async def main():
    t = asyncio.create_task(app.App.run_link(None, Link()))
    await asyncio.sleep_ms(3600)  # restarts after 1 s, then after 2 s more
    print("RUNS", len(runs), "REPORTS", len(reports), "ALIVE", not t.done())


asyncio.run(main())
"""


def test_a_link_restarts_even_when_its_crash_report_runs_out_of_memory(run_mpy, tmp_path):
    script = tmp_path / "supervisor.py"
    script.write_text(SCRIPT)
    proc = run_mpy(str(script), heapsize="1m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RUNS 3 REPORTS 2 ALIVE True" in proc.stdout, proc.stdout + proc.stderr
