"""SMS fallback for a box with a modem (link "lte" or "rs485+lte"): an
alarm the gateway has not acknowledged within cfg["sms_after_s"] goes out
once (per boot) as an SMS to cfg["sms_number"], with link_lte's
format_alarm_sms text. A failed SMS (no network service, modem busy or gone)
is tried again after RETRY_MS. Restores (door closed, button released) are
not sent: they are not calls for help.

Imported by app.App.run only on an LTE box, so an RS-485 box carries none
of this code."""

import time
import asyncio

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


import wire
import log
from link_lte import format_alarm_sms

CHECK_MS = const(1000)  # how often unacknowledged alarms are looked at
RETRY_MS = const(30000)  # a failed SMS is tried again this much later


async def fallback(app):
    retry_at = None
    while True:
        await asyncio.sleep_ms(CHECK_MS)
        now = time.ticks_ms()
        if retry_at is not None and time.ticks_diff(now, retry_at) < 0:
            continue
        retry_at = None
        after_ms = app.cfg["sms_after_s"] * 1000
        for a in list(app.outbox.pending):
            ev = a[0]
            if a[2] & wire.ALARM_FLAG_RESTORE or ev in app.sms_sent:
                continue
            born = app.born.get(ev)
            if born is None:
                app.born[ev] = now
                continue
            if time.ticks_diff(now, born) < after_ms:
                continue
            kind = wire.ALARM_KINDS.get(a[1], a[1])
            text = format_alarm_sms(app.box_id, app.cfg["junction"], kind, ev, a[3], bool(a[2] & wire.ALARM_FLAG_TIME_SYNCED))
            try:
                mr = await app.lte.send_sms(text)
            except Exception as e:  # ModemError, or the modem gone mid-command
                log.warning("SMS for alarm %d failed: %s; trying again in %d s" % (ev, e, RETRY_MS // 1000))
                retry_at = time.ticks_add(now, RETRY_MS)
                break
            if [p for p in app.outbox.pending if p[0] == ev]:  # not ACKed meanwhile
                app.sms_sent.append(ev)
            log.warning("alarm %d not acknowledged after %d s: sent by SMS (ref %d)" % (ev, after_ms // 1000, mr))
