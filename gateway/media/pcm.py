"""Pure helpers for 16-bit mono PCM (array('h')): tones, mixing, levels, and
the Goertzel detector the self-test and the tests use. No I/O, no clock.

Levels are in dBFS: 0 dBFS is a full-scale sine (peak 32767)."""

import array
import math

FULL_SCALE = 32767.0
SILENCE_DBFS = -120.0


def db_to_amplitude(dbfs):
    return FULL_SCALE * (10.0 ** (dbfs / 20.0))


def tone(freq_hz, n_samples, rate, level_dbfs=-12.0, phase_samples=0):
    """A sine of n_samples starting at sample index phase_samples."""
    amp = db_to_amplitude(level_dbfs)
    w = 2.0 * math.pi * freq_hz / rate
    return array.array("h", (int(amp * math.sin(w * (phase_samples + i))) for i in range(n_samples)))


def silence(n_samples):
    return array.array("h", bytes(2 * n_samples))


def mix(chunks, gains=None):
    """Sum equal-length int16 arrays with optional gains, clipped to int16."""
    chunks = list(chunks)
    if not chunks:
        raise ValueError("mix() needs at least one chunk")
    n = len(chunks[0])
    gains = list(gains) if gains is not None else [1.0] * len(chunks)
    if len(chunks) == 1 and gains[0] == 1.0:
        return array.array("h", chunks[0])
    acc = [0.0] * n
    for chunk, g in zip(chunks, gains):
        if len(chunk) != n:
            raise ValueError("mix() chunks differ in length: %d and %d" % (n, len(chunk)))
        if g == 0.0:
            continue
        for i, s in enumerate(chunk):
            acc[i] += s * g
    return array.array("h", (32767 if v > 32767 else -32768 if v < -32768 else int(v) for v in acc))


def rms_dbfs(samples):
    """RMS level of the whole chunk, in dBFS relative to a full-scale sine."""
    if not samples:
        return SILENCE_DBFS
    ms = sum(s * s for s in samples) / len(samples)
    if ms <= 0:
        return SILENCE_DBFS
    # A full-scale sine has RMS FULL_SCALE/sqrt(2).
    return 20.0 * math.log10(math.sqrt(ms) / (FULL_SCALE / math.sqrt(2.0)))


def goertzel_dbfs(samples, rate, freq_hz):
    """Level of the component at freq_hz, in dBFS of an equivalent sine.

    The Goertzel recurrence gives the DFT bin at freq_hz without a full FFT;
    a Hann window keeps a strong tone elsewhere from leaking into the bin.
    A full-scale sine at freq_hz reads about 0 dBFS, silence SILENCE_DBFS."""
    n = len(samples)
    if n < 16:
        raise ValueError("goertzel needs at least 16 samples, got %d" % n)
    w = 2.0 * math.pi * freq_hz / rate
    coeff = 2.0 * math.cos(w)
    s1 = s2 = 0.0
    twopi_n = 2.0 * math.pi / (n - 1)
    cos = math.cos
    for i, x in enumerate(samples):
        s0 = x * (0.5 - 0.5 * cos(twopi_n * i)) + coeff * s1 - s2
        s2 = s1
        s1 = s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    if power <= 0:
        return SILENCE_DBFS
    # |X| of a sine of amplitude A under a Hann window is A * n / 4.
    amp = math.sqrt(power) * 4.0 / n
    if amp <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(amp / FULL_SCALE))


def dominant_hz(samples, rate, lo_hz=100.0, hi_hz=4000.0, step_hz=10.0):
    """The frequency (to step_hz) with the strongest Goertzel level in
    [lo_hz, hi_hz]. Slow (one Goertzel per step): for tests and self-test
    diagnostics on short chunks, not for the audio path."""
    best_f, best = lo_hz, SILENCE_DBFS - 1
    f = lo_hz
    while f <= hi_hz:
        level = goertzel_dbfs(samples, rate, f)
        if level > best:
            best_f, best = f, level
        f += step_hz
    return best_f, best
