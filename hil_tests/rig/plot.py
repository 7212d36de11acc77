"""Latency histograms as PNG, without a plotting library (the rig must not
pull matplotlib and its stack into the project for one picture).

histogram_png([(label, values_ms), ...]) -> PNG bytes: one panel per series,
stacked; 40 bins from 0 to the series' maximum; the axis ends and the
tallest bar are labelled with a 3x5 pixel digit font. The labels themselves
are in the benchmark's JSON; the picture shows the shape (a tail, two humps
from retries)."""

import struct
import zlib

W, PANEL_H, MARGIN = 640, 200, 24
BINS = 40
_COLORS = ((0x1f, 0x77, 0xb4), (0xd6, 0x27, 0x28), (0x2c, 0xa0, 0x2c))
# 3x5 digits, rows top to bottom, 3 bits each (MSB left).
_DIGITS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "m": (0, 0, 7, 7, 5), "s": (0, 3, 6, 3, 6), "n": (0, 0, 6, 5, 5), "=": (0, 7, 0, 7, 0),
}
_SCALE = 2


class _Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def rect(self, x0, y0, x1, y1, rgb):
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x, y, s, rgb=(0, 0, 0)):
        for ch in s:
            glyph = _DIGITS.get(ch)
            if glyph is not None:
                for r, bits in enumerate(glyph):
                    for c in range(3):
                        if bits >> (2 - c) & 1:
                            self.rect(x + c * _SCALE, y + r * _SCALE, x + (c + 1) * _SCALE, y + (r + 1) * _SCALE, rgb)
            x += 4 * _SCALE

    def png(self):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bins(values, n=BINS):
    """Counts in n equal bins from 0 to max(values); (counts, bin width)."""
    if not values:
        return [0] * n, 1.0
    top = max(values) or 1.0
    width = top / n
    counts = [0] * n
    for v in values:
        counts[min(n - 1, int(v / width))] += 1
    return counts, width


def histogram_png(series, title=""):
    c = _Canvas(W, PANEL_H * len(series))
    for k, (label, values) in enumerate(series):
        y0 = k * PANEL_H
        base = y0 + PANEL_H - MARGIN
        c.rect(MARGIN, base, W - MARGIN, base + 1, (0, 0, 0))  # x axis
        c.rect(MARGIN, y0 + MARGIN // 2, MARGIN + 1, base, (0, 0, 0))  # y axis
        counts, width = bins(values)
        tallest = max(counts) or 1
        bar_w = (W - 2 * MARGIN) // BINS
        for i, n in enumerate(counts):
            h = int((PANEL_H - 2 * MARGIN) * n / tallest)
            x = MARGIN + 1 + i * bar_w
            c.rect(x, base - h, x + bar_w - 1, base, _COLORS[k % len(_COLORS)])
        c.text(MARGIN, base + 6, "0")
        c.text(W - MARGIN - 60, base + 6, "%dms" % round(width * BINS) if values else "0ms")
        c.text(MARGIN + 6, y0 + 4, "n=%d" % len(values))
        c.text(W - MARGIN - 60, y0 + 4, "%d" % tallest)
    return c.png()
