#!/usr/bin/env python3
"""Checks `alert-runner indicators` against TA-Lib on REAL market data, without committing it.

The data comes from the `backtesting` package's test files (EURUSD hourly, GOOG daily,
BTCUSD monthly). They are AGPL-3.0, so they are downloaded into a temporary directory at run
time and never committed.

    pip install TA-Lib==0.8.2 numpy
    cargo build --release -p alert-runner
    python3 scripts/realdata/check_talib.py [path/to/alert-runner]

Prints, per series and column, how many values were compared and the largest relative
difference; exits 1 if any value differs by more than 1e-9 (relative to the larger of the two
values and the column's mean magnitude) or if the first valid bar differs.
"""
import csv
import io
import math
import subprocess
import sys
import tempfile

import numpy as np
import talib

from fetch_candles import fetch  # this script's directory is on sys.path

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/alert-runner"

SPECS = {
    "SMA(20)": lambda o, h, l, c, v: {"SMA": talib.SMA(c, 20)},
    "EMA(20)": lambda o, h, l, c, v: {"EMA": talib.EMA(c, 20)},
    "WMA(20)": lambda o, h, l, c, v: {"WMA": talib.WMA(c, 20)},
    "RSI(14)": lambda o, h, l, c, v: {"RSI": talib.RSI(c, 14)},
    "MACD(12,26,9)": lambda o, h, l, c, v: dict(zip(["MACD", "Signal", "Histogram"], talib.MACD(c, 12, 26, 9))),
    "BBANDS(20,2)": lambda o, h, l, c, v: dict(zip(["Upper", "Middle", "Lower"], talib.BBANDS(c, 20, 2, 2, 0))),
    "STOCH(14,3,3)": lambda o, h, l, c, v: dict(zip(["K", "D"], talib.STOCH(h, l, c, 14, 3, 0, 3, 0))),
    "ATR(14)": lambda o, h, l, c, v: {"ATR": talib.ATR(h, l, c, 14)},
    "VOLUME_SMA(20)": lambda o, h, l, c, v: {"VOLUME_SMA": talib.SMA(v, 20)},
    "ADX(14)": lambda o, h, l, c, v: {"ADX": talib.ADX(h, l, c, 14), "PlusDI": talib.PLUS_DI(h, l, c, 14),
                                       "MinusDI": talib.MINUS_DI(h, l, c, 14)},
    "CCI(20)": lambda o, h, l, c, v: {"CCI": talib.CCI(h, l, c, 20)},
    "MFI(14)": lambda o, h, l, c, v: {"MFI": talib.MFI(h, l, c, v, 14)},
    "ROC(10)": lambda o, h, l, c, v: {"ROC": talib.ROC(c, 10)},
    "WILLR(14)": lambda o, h, l, c, v: {"WILLR": talib.WILLR(h, l, c, 14)},
    "OBV": lambda o, h, l, c, v: {"OBV": talib.OBV(c, v)},
}


def main():
    failed = False
    for name, path in fetch(tempfile.mkdtemp(prefix="ar-realdata-")).items():
        data = np.genfromtxt(path, delimiter=",", skip_header=1)
        o, h, l, c, v = (np.ascontiguousarray(data[:, i]) for i in range(1, 6))
        args = [BIN, "indicators", "--candles", path]
        for spec in SPECS:
            args += ["--indicator", spec]
        run = subprocess.run(args, capture_output=True, text=True, check=True)
        ours = list(csv.reader(io.StringIO(run.stdout)))
        header, rows = ours[0], ours[1:]
        print(f"{name}: {len(rows)} bars")
        for spec, fn in SPECS.items():
            for comp, expected in fn(o, h, l, c, v).items():
                col = header.index(f"{spec}.{comp}")
                got = [float(r[col]) if r[col] else math.nan for r in rows]
                scale = np.nanmean(np.abs(expected)) if np.any(~np.isnan(expected)) else 1.0
                worst, n, bad = 0.0, 0, 0
                for g, e in zip(got, expected):
                    if math.isnan(g) != math.isnan(e):
                        bad += 1
                        continue
                    if math.isnan(e):
                        continue
                    n += 1
                    rel = abs(g - e) / max(abs(g), abs(e), scale)
                    worst = max(worst, rel)
                    bad += rel > 1e-9
                failed |= bad > 0
                print(f"  {spec}.{comp:<11} compared {n:>5}  max rel diff {worst:.2e}  {'FAIL' if bad else 'ok'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
