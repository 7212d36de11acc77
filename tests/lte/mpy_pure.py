# The LTE link's pure policy on the MicroPython unix port (run by
# test_at_core.py): prints one JSON object that the test compares with the
# hand-computed values and with CPython's results.
import json

import at_modem
import link_lte

ka = link_lte.Keepalive(1000)
ka_trace = [ka.dead(0)]
ka.sent(100)
ka.sent(500)  # the oldest unanswered send counts
ka_trace += [ka.dead(1099), ka.dead(1100)]
ka.answered(1200)
ka_trace += [ka.dead(5000)]

print(json.dumps({
    "delays": [link_lte.next_delay_ms(i) for i in range(9)],
    "delays_jitter": [link_lte.next_delay_ms(i, 1000, 60000, 255) for i in range(9)],
    "csq": [at_modem.csq_to_dbm(r) for r in (0, 1, 15, 31, 99, 100, 191, 199)],
    "reg": [at_modem.parse_reg(x) for x in ("+CREG: 0,1", "+CEREG: 2,5", "+CREG: 3")],
    "civil": [list(link_lte.civil_from_unix(t)) for t in (0, 951782400, 1795000000, 4102444799)],
    "sms": link_lte.format_alarm_sms(42, "Ghantaghar Square", "panic", 7, 1795000000),
    "sms_unsynced": link_lte.format_alarm_sms(3, "IIT Gate Tiraha", "emergency", 1, 93, False),
    "sms_long": link_lte.format_alarm_sms(42, "Hanuman Mandir / Trimurti Mandir Turn Square " * 4, "panic", 7, 1795000000),
    "safe": at_modem.sms_safe("a\x1ab\x1bc"),
    "keepalive": ka_trace,
}))
