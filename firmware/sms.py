"""SMS fallback for a box with a modem (link "lte" or "rs485+lte"): an
alarm the gateway has not acknowledged within cfg["sms_after_s"] goes out
once (per boot) as an SMS to cfg["sms_number"], with link_lte's
format_alarm_sms text. A failed SMS (no network service, modem busy or gone)
is tried again after _RETRY_MS. Restores (door closed, button released) are
not sent: they are not calls for help. The time counts from when this task
first sees the alarm pending: within _CHECK_MS of the press, or of boot for
an alarm from flash.

Imported by bringup.py only on an LTE box, so an RS-485 box carries none
of this code (its state lives here too, not in app.App). It also holds the
LTE link's UART opener (open_modem)."""

import time
import asyncio

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


import wire
import log
import hw
from link_lte import format_alarm_sms

_CHECK_MS = const(1000)  # how often unacknowledged alarms are looked at
_RETRY_MS = const(30000)  # a failed SMS is tried again this much later


def open_modem():
    """The LTE link's UART (link_lte.LteLink's open_uart). A function of a
    module that stays loaded on an LTE box: a lambda made in bringup.py
    would keep all of bringup.py in RAM."""
    return hw.open_uart("modem")


async def fallback(app):
    seen = {}  # event -> ticks when first seen pending; None once sent by SMS
    retry_at = None
    while True:
        await asyncio.sleep_ms(_CHECK_MS)
        now = time.ticks_ms()
        pending = list(app.outbox.pending)
        events = [a[0] for a in pending]
        for ev in list(seen):
            if ev not in events:  # acknowledged: event ids never come back
                del seen[ev]
        for ev in events:
            if ev not in seen:
                seen[ev] = now
        if retry_at is not None and time.ticks_diff(now, retry_at) < 0:
            continue
        retry_at = None
        after_ms = app.cfg["sms_after_s"] * 1000
        for a in pending:
            ev = a[0]
            if a[2] & wire.ALARM_FLAG_RESTORE or seen[ev] is None or time.ticks_diff(now, seen[ev]) < after_ms:
                continue
            kind = wire.ALARM_KINDS.get(a[1], a[1])
            text = format_alarm_sms(app.box_id, app.cfg["junction"], kind, ev, a[3], bool(a[2] & wire.ALARM_FLAG_TIME_SYNCED))
            try:
                mr = await app.lte.send_sms(text)
            except Exception as e:  # ModemError, or the modem gone mid-command
                log.warning("SMS for alarm %d failed: %s; trying again in %d s" % (ev, e, _RETRY_MS // 1000))
                retry_at = time.ticks_add(now, _RETRY_MS)
                break
            seen[ev] = None
            log.warning("alarm %d not acknowledged after %d s: sent by SMS (ref %d)" % (ev, after_ms // 1000, mr))
