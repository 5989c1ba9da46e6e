#!/usr/bin/env python3
"""Golden-file generator for the indicator crate.

How to run (from the repository root):

    pip install TA-Lib==0.8.2 numpy && python3 scripts/golden/generate.py

It writes, for every series, a pair of files into crates/indicators/tests/golden/:

    <name>.candles.csv   open_time_ms,open,high,low,close,volume
    <name>.expected.csv  open_time_ms,<SPEC.Component>,...   (TA-Lib reference values)

The two long series (btc_1h, alt_5m) have 15,000 bars each (override with the
environment variable GOLDEN_LONG_BARS). The output is deterministic: every
series is built from a numpy random Generator (PCG64) with a fixed seed, floats
are written with Python repr() (shortest round-trip form), and NaN (TA-Lib "no
value yet") is written as an empty cell. SPEC names that contain commas, such
as MACD(12,26,9), are quoted in the header ("MACD(12,26,9).MACD"), as RFC 4180
requires; data rows never need quoting.
Generated with TA-Lib 0.8.2 (python) and numpy 2.x; other numpy major versions
could in principle change the random streams.

The Rust tests read these files; they never need Python.
"""

import csv
import datetime as dt
import math
import os
import struct
import sys

import numpy as np
import talib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "crates", "indicators", "tests", "golden")

MIN_MS = 60_000
H_MS = 60 * MIN_MS
D_MS = 24 * H_MS


def utc_ms(y, m, d):
    return int(dt.datetime(y, m, d, tzinfo=dt.timezone.utc).timestamp()) * 1000


# --------------------------------------------------------------------------
# Candle series
# --------------------------------------------------------------------------


class Series:
    def __init__(self, name, tf_ms, t, o, h, l, c, v):
        self.name = name
        self.tf_ms = tf_ms
        self.t = [int(x) for x in t]
        self.o = [float(x) for x in o]
        self.h = [float(x) for x in h]
        self.l = [float(x) for x in l]
        self.c = [float(x) for x in c]
        self.v = [float(x) for x in v]

    def __len__(self):
        return len(self.t)

    def validate(self):
        n = len(self.t)
        assert n > 0
        assert all(len(a) == n for a in (self.o, self.h, self.l, self.c, self.v))
        for i in range(n):
            o, h, l, c, v = self.o[i], self.h[i], self.l[i], self.c[i], self.v[i]
            assert all(math.isfinite(x) for x in (o, h, l, c, v)), (self.name, i)
            assert h >= max(o, c) and l <= min(o, c) and h >= l, (self.name, i, o, h, l, c)
            assert v >= 0.0, (self.name, i)
            assert self.t[i] % self.tf_ms == 0, (self.name, i)
            if i:
                assert self.t[i] > self.t[i - 1], (self.name, i)


def rnd(x, nd):
    """Round to a decimal tick; Python's round() gives the float nearest the
    decimal value, so repr() stays short (no 0.30000000000000004 noise)."""
    return round(float(x), nd)


def gen_market(name, seed, n, tf_ms, start_ms, p0, lo, hi, price_nd, vol_base,
               vol_nd, sigma_scale, n_time_gaps, max_gap_bars, n_flat, anchors):
    """Regime-switching geometric random walk with gaps, spikes, flat stretches,
    missing bars and volume correlated with |return|. The walk is weakly pulled
    towards a piecewise log-linear macro path through `anchors`
    [(fraction_of_series, price), ...] so the series spans a realistic range."""
    rng = np.random.default_rng(seed)
    ax = [a for a, _ in anchors]
    ay = [math.log(b) for _, b in anchors]
    # (drift, volatility) per bar, in units of sigma_scale
    regimes = [
        (0.0, 0.6),     # calm
        (0.0, 1.0),     # normal
        (0.06, 1.1),    # bull
        (-0.06, 1.2),   # bear
        (-0.08, 2.6),   # panic / high volatility
        (0.05, 2.0),    # euphoric rally
    ]
    regime_p = np.array([0.25, 0.3, 0.15, 0.15, 0.07, 0.08])

    # pre-drawn event positions
    time_gap_at = set(int(x) for x in rng.choice(np.arange(100, n - 100), n_time_gaps, replace=False))
    flat_runs = {}
    starts = np.sort(rng.choice(np.arange(300, n - 300), n_flat, replace=False))
    for s in starts:
        length = int(rng.integers(30, 90))
        mode = "zero" if rng.random() < 0.5 else "small"
        flat_runs[int(s)] = (length, mode)

    lo_l, hi_l = math.log(lo), math.log(hi)
    t = []
    O, H, L, C, V = [], [], [], [], []
    time = start_ms
    prev_c = rnd(p0, price_nd)
    regime = 1
    flat_left, flat_mode = 0, None
    tick = 10.0 ** (-price_nd)
    for i in range(n):
        if i in time_gap_at:
            time += tf_ms * int(rng.integers(1, max_gap_bars + 1))
        t.append(time)
        time += tf_ms

        if i in flat_runs and flat_left == 0:
            flat_left, flat_mode = flat_runs[i]
        if flat_left > 0:
            flat_left -= 1
            p = prev_c
            O.append(p); H.append(p); L.append(p); C.append(p)
            if flat_mode == "zero":
                V.append(0.0)
            else:
                V.append(rnd(vol_base * 1e-4 * rng.random(), vol_nd))
            continue

        if rng.random() < 1.0 / 250.0:
            regime = int(rng.choice(len(regimes), p=regime_p))
        mu, sg = regimes[regime]
        sigma = sg * sigma_scale
        lp = math.log(prev_c)
        frac = i / (n - 1)
        target = float(np.interp(frac, ax, ay))
        slope = float(np.interp(frac + 1.0 / n, ax, ay)) - target
        # follow the macro path loosely; soft barrier keeps the walk inside [lo, hi]
        mu_eff = (mu * sigma_scale + slope + 0.004 * (target - lp)
                  + 0.01 * (min(max(lp, lo_l + 0.15), hi_l - 0.15) - lp))

        # open: usually previous close, sometimes gapped
        u = rng.random()
        if u < 0.0015:
            g = float(rng.uniform(0.02, 0.07)) * (1 if rng.random() < 0.5 else -1)
            o = rnd(prev_c * math.exp(g), price_nd)
        elif u < 0.015:
            o = rnd(prev_c * math.exp(rng.normal(0.0, 1.5 * sigma)), price_nd)
        else:
            o = prev_c
        o = max(o, tick)

        r = mu_eff + sigma * float(rng.standard_t(4)) / math.sqrt(2.0)
        c = max(rnd(o * math.exp(r), price_nd), tick)
        up = max(o, c) * math.exp(abs(rng.normal(0.0, 0.6 * sigma)))
        dn = min(o, c) * math.exp(-abs(rng.normal(0.0, 0.6 * sigma)))
        if rng.random() < 0.0015:  # spike: one wick of 5-15 %
            k = float(rng.uniform(0.05, 0.15))
            if rng.random() < 0.5:
                up = max(o, c) * (1.0 + k)
            else:
                dn = min(o, c) * (1.0 - k)
        h = max(rnd(up, price_nd), o, c)
        l = max(min(rnd(dn, price_nd), o, c), tick)
        l = min(l, o, c)

        # volume: lognormal, grows with |return|, intraday seasonality
        hour = (t[-1] // H_MS) % 24
        season = 1.0 + 0.35 * math.sin(2 * math.pi * (hour - 8) / 24.0)
        z = abs(math.log(c / o)) / sigma if sigma > 0 else 0.0
        vol = vol_base * season * math.exp(0.45 * min(z, 8.0) + rng.normal(0.0, 0.55))
        if rng.random() < 0.003:
            vol = 0.0
            if rng.random() < 0.6:  # most zero-volume bars are also flat
                o = h = l = c = prev_c
        O.append(o); H.append(h); L.append(l); C.append(c)
        V.append(rnd(vol, vol_nd))
        prev_c = c
    return Series(name, tf_ms, t, O, H, L, C, V)


def gen_walk(name, seed, n, tf_ms, start_ms, p0, sigma, price_sig, vol_base, vol_sig):
    """Plain random walk (no special events), rounded to significant digits."""
    rng = np.random.default_rng(seed)

    def sig(x, s):
        return float(f"{x:.{s - 1}e}")

    t, O, H, L, C, V = [], [], [], [], [], []
    prev = sig(p0, price_sig)
    for i in range(n):
        t.append(start_ms + i * tf_ms)
        o = prev
        c = sig(o * math.exp(rng.normal(0.0, sigma)), price_sig)
        h = max(sig(max(o, c) * math.exp(abs(rng.normal(0.0, 0.5 * sigma))), price_sig), o, c)
        l = min(sig(min(o, c) * math.exp(-abs(rng.normal(0.0, 0.5 * sigma))), price_sig), o, c)
        O.append(o); H.append(h); L.append(l); C.append(c)
        V.append(sig(vol_base * math.exp(rng.normal(0.0, 0.6)), vol_sig) if vol_base > 0 else 0.0)
        prev = c
    return Series(name, tf_ms, t, O, H, L, C, V)


def gen_const(name, n, tf_ms, start_ms, price, volumes):
    t = [start_ms + i * tf_ms for i in range(n)]
    p = [price] * n
    return Series(name, tf_ms, t, p, p, p, p, volumes)


def gen_single_spike(n=300):
    start = utc_ms(2024, 1, 1)
    s = gen_const("single_spike", n, H_MS, start, 100.0, [5.0] * n)
    k = 150
    s.o[k], s.h[k], s.l[k], s.c[k], s.v[k] = 100.0, 300.0, 100.0, 250.0, 1000.0
    # next bar gaps back down to 100 and the series stays flat at 100 afterwards
    return s


def gen_steps():
    start = utc_ms(2024, 1, 1)
    o, c = [], []
    p = 100.0
    moves = [0.5] * 60 + [-0.5] * 60 + [1.0 if i % 2 == 0 else -1.0 for i in range(60)]
    # staircase: 4 flat bars then a +2 jump, repeated
    moves += [2.0 if i % 5 == 4 else 0.0 for i in range(60)]
    for m in moves:
        o.append(p)
        p = p + m
        c.append(p)
    n = len(moves)
    h = [max(a, b) for a, b in zip(o, c)]
    l = [min(a, b) for a, b in zip(o, c)]
    v = [10.0 + (i % 7) for i in range(n)]
    t = [start + i * H_MS for i in range(n)]
    return Series("steps", H_MS, t, o, h, l, c, v)


def build_series(long_bars):
    out = []
    out.append(gen_market(
        "btc_1h", seed=20200101, n=long_bars, tf_ms=H_MS, start_ms=utc_ms(2020, 1, 1),
        p0=7200.0, lo=7000.0, hi=70000.0, price_nd=2, vol_base=900.0, vol_nd=5,
        sigma_scale=0.007, n_time_gaps=6, max_gap_bars=12, n_flat=4,
        anchors=[(0.0, 7200), (0.1, 9800), (0.15, 7100), (0.35, 11500), (0.5, 19000),
                 (0.65, 60000), (0.78, 31000), (0.9, 50000), (1.0, 42000)]))
    out.append(gen_market(
        "alt_5m", seed=5005, n=long_bars, tf_ms=5 * MIN_MS, start_ms=utc_ms(2023, 3, 1),
        p0=0.4321, lo=0.05, hi=2.0, price_nd=5, vol_base=60000.0, vol_nd=1,
        sigma_scale=0.004, n_time_gaps=6, max_gap_bars=36, n_flat=5,
        anchors=[(0.0, 0.4321), (0.3, 0.09), (0.5, 0.6), (0.7, 1.7), (0.85, 0.8), (1.0, 1.1)]))
    start = utc_ms(2024, 1, 1)
    out.append(gen_const("flat", 300, H_MS, start, 100.0, [10.0] * 300))
    rng = np.random.default_rng(43210)
    out.append(gen_const("flat_btc", 300, H_MS, start, 43210.5,
                         [rnd(500.0 * math.exp(rng.normal(0, 0.7)), 5) for _ in range(300)]))
    out.append(gen_single_spike())
    out.append(gen_walk("zero_volume", 777, 300, H_MS, start, 100.0, 0.01, 6, 0.0, 0))
    out.append(gen_walk("huge", 1_000_000_000, 400, D_MS, utc_ms(2021, 1, 1),
                        1.5e9, 0.03, 9, 2.0e12, 9))
    out.append(gen_walk("tiny", 1, 400, 15 * MIN_MS, utc_ms(2024, 6, 1),
                        2.5e-6, 0.01, 5, 1.5e-3, 5))
    out.append(gen_walk("short", 10, 10, H_MS, start, 100.0, 0.01, 6, 50.0, 6))
    out.append(gen_steps())
    return out


# --------------------------------------------------------------------------
# Indicators
# --------------------------------------------------------------------------


def vwap_utc_day(t, h, l, c, v):
    out = np.full(len(t), np.nan)
    day = None
    cum_pv = 0.0
    cum_v = 0.0
    for i in range(len(t)):
        d = t[i] // D_MS
        if d != day:
            day, cum_pv, cum_v = d, 0.0, 0.0
        hlc3 = (h[i] + l[i] + c[i]) / 3.0
        cum_pv += hlc3 * v[i]
        cum_v += v[i]
        if cum_v != 0.0:
            out[i] = cum_pv / cum_v
    return out


def compute(s):
    f = lambda a: np.ascontiguousarray(a, dtype=np.float64)
    o, h, l, c, v = f(s.o), f(s.h), f(s.l), f(s.c), f(s.v)
    hlc3 = f((h + l + c) / 3.0)
    cols = []

    def add(name, arr):
        cols.append((name, np.asarray(arr, dtype=np.float64)))

    for n in (20, 1, 200):
        add(f"SMA({n}).SMA", talib.SMA(c, timeperiod=n))
    for n in (20, 9, 1):
        add(f"EMA({n}).EMA", talib.EMA(c, timeperiod=n))
    for n in (20, 2):
        add(f"WMA({n}).WMA", talib.WMA(c, timeperiod=n))
    for n in (14, 2):
        add(f"RSI({n}).RSI", talib.RSI(c, timeperiod=n))
    for fa, sl, sg in ((12, 26, 9), (5, 35, 5), (26, 12, 9)):
        m, ms, mh = talib.MACD(c, fastperiod=fa, slowperiod=sl, signalperiod=sg)
        add(f"MACD({fa},{sl},{sg}).MACD", m)
        add(f"MACD({fa},{sl},{sg}).Signal", ms)
        add(f"MACD({fa},{sl},{sg}).Histogram", mh)
    for n, k, ks in ((20, 2.0, "2"), (10, 1.5, "1.5")):
        u, m, lo = talib.BBANDS(c, timeperiod=n, nbdevup=k, nbdevdn=k, matype=0)
        add(f"BBANDS({n},{ks}).Upper", u)
        add(f"BBANDS({n},{ks}).Middle", m)
        add(f"BBANDS({n},{ks}).Lower", lo)
    for fk, sk, sd in ((14, 3, 3), (5, 3, 3), (5, 1, 1)):
        k_, d_ = talib.STOCH(h, l, c, fastk_period=fk, slowk_period=sk, slowk_matype=0,
                             slowd_period=sd, slowd_matype=0)
        add(f"STOCH({fk},{sk},{sd}).K", k_)
        add(f"STOCH({fk},{sk},{sd}).D", d_)
    for n in (14, 1):
        add(f"ATR({n}).ATR", talib.ATR(h, l, c, timeperiod=n))
    add("VOLUME_SMA(20).VOLUME_SMA", talib.SMA(v, timeperiod=20))
    for n in (14, 5):
        add(f"ADX({n}).ADX", talib.ADX(h, l, c, timeperiod=n))
        add(f"ADX({n}).PlusDI", talib.PLUS_DI(h, l, c, timeperiod=n))
        add(f"ADX({n}).MinusDI", talib.MINUS_DI(h, l, c, timeperiod=n))
    for n in (20, 5):
        add(f"CCI({n}).CCI", talib.CCI(h, l, c, timeperiod=n))
    add("MFI(14).MFI", talib.MFI(h, l, c, v, timeperiod=14))
    for n in (10, 1):
        add(f"ROC({n}).ROC", talib.ROC(c, timeperiod=n))
    add("WILLR(14).WILLR", talib.WILLR(h, l, c, timeperiod=14))
    add("OBV.OBV", talib.OBV(c, v))
    add("VWAP.VWAP", vwap_utc_day(s.t, s.h, s.l, s.c, s.v))
    add("SMA(20,open).SMA", talib.SMA(o, timeperiod=20))
    add("EMA(10,hlc3).EMA", talib.EMA(hlc3, timeperiod=10))

    for name, arr in cols:
        assert len(arr) == len(s), name
        bad = np.isinf(arr)
        assert not bad.any(), f"{s.name}: {name} has infinities at {np.nonzero(bad)[0][:5]}"
    return cols


# --------------------------------------------------------------------------
# Output + checks
# --------------------------------------------------------------------------


def fmt(x):
    x = float(x)
    return "" if math.isnan(x) else repr(x)


def write_series(s, cols):
    cpath = os.path.join(OUT_DIR, f"{s.name}.candles.csv")
    epath = os.path.join(OUT_DIR, f"{s.name}.expected.csv")
    with open(cpath, "w", newline="") as fh:
        fh.write("open_time_ms,open,high,low,close,volume\n")
        for i in range(len(s)):
            fh.write(f"{s.t[i]},{fmt(s.o[i])},{fmt(s.h[i])},{fmt(s.l[i])},{fmt(s.c[i])},{fmt(s.v[i])}\n")
    with open(epath, "w", newline="") as fh:
        # SPEC names such as MACD(12,26,9) contain commas, so header fields are
        # quoted RFC 4180-style when needed ("MACD(12,26,9).MACD"). Data rows
        # never need quoting.
        csv.writer(fh, lineterminator="\n").writerow(["open_time_ms"] + [n for n, _ in cols])
        arrays = [a for _, a in cols]
        for i in range(len(s)):
            fh.write(str(s.t[i]) + "," + ",".join(fmt(a[i]) for a in arrays) + "\n")
    return cpath, epath


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def check_series(s, cols, cpath, epath):
    with open(cpath, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["open_time_ms", "open", "high", "low", "close", "volume"]
    rows = rows[1:]
    assert len(rows) == len(s)
    for i, r in enumerate(rows):
        assert int(r[0]) == s.t[i]
        for j, a in enumerate((s.o, s.h, s.l, s.c, s.v)):
            assert bits(float(r[j + 1])) == bits(a[i]), (cpath, i, j)
    with open(epath, newline="") as fh:
        erows = list(csv.reader(fh))
    header = erows[0]
    assert header == ["open_time_ms"] + [n for n, _ in cols]
    erows = erows[1:]
    assert len(erows) == len(rows), (epath, len(erows), len(rows))
    for i, r in enumerate(erows):
        assert len(r) == len(header)
        assert int(r[0]) == s.t[i]
        for j, (name, a) in enumerate(cols):
            cell = r[j + 1]
            if math.isnan(a[i]):
                assert cell == "", (epath, i, name)
            else:
                assert bits(float(cell)) == bits(a[i]), (epath, i, name, cell)


def main():
    if talib.__version__ != "0.8.2":
        print(f"WARNING: TA-Lib {talib.__version__} (C library {talib.__ta_version__!r}); the golden "
              "files were produced with TA-Lib 0.8.2 and other versions differ in the last bits "
              "(and in some edge cases)", file=sys.stderr)
    # ~20,000 bars per long series would make the output ~41 MB; 15,000 keeps it ~31 MB.
    long_bars = int(os.environ.get("GOLDEN_LONG_BARS", "15000"))
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for s in build_series(long_bars):
        s.validate()
        cols = compute(s)
        cpath, epath = write_series(s, cols)
        check_series(s, cols, cpath, epath)
        size = os.path.getsize(cpath) + os.path.getsize(epath)
        total += size
        print(f"== {s.name}: {len(s)} rows, {len(cols)} indicator columns, "
              f"close {min(s.c):.6g}..{max(s.c):.6g}, {size / 1e6:.2f} MB")
        print("   non-empty: " + ", ".join(
            f"{name}={int(np.count_nonzero(~np.isnan(a)))}" for name, a in cols))
    print(f"total {total / 1e6:.2f} MB in {OUT_DIR}; all files re-read and verified bit-exact")


if __name__ == "__main__":
    sys.exit(main())
