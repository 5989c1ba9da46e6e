#!/usr/bin/env python3
"""Fetches REAL market data into candle files that `alert-runner` reads, without committing it.

The data comes from the `backtesting` package's test files (EURUSD hourly, GOOG daily,
BTCUSD monthly). They are AGPL-3.0, so they are downloaded at run time (pip, from PyPI) and
never committed.

    python3 scripts/realdata/fetch_candles.py OUTDIR

writes OUTDIR/EURUSD.csv, OUTDIR/GOOG.csv and OUTDIR/BTCUSD.csv in the header format
`open_time_ms,open,high,low,close,volume` (times in UTC) and prints their paths.
Python 3 standard library only (and pip, to download the wheel).
"""
import csv
import datetime as dt
import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

NAMES = ["EURUSD", "GOOG", "BTCUSD"]
HEADER = "open_time_ms,open,high,low,close,volume\n"


def convert(text, path):
    """Writes the `backtesting` CSV `text` (ISO time, Open, High, Low, Close, Volume) to `path`."""
    rows = list(csv.reader(io.StringIO(text)))[1:]
    with open(path, "w") as f:
        f.write(HEADER)
        for r in rows:
            t = dt.datetime.fromisoformat(r[0]).replace(tzinfo=dt.timezone.utc)
            o, h, l, c, v = (float(x) for x in r[1:6])
            h, l = max(h, o, c), min(l, o, c)  # a few source rows have close outside [low, high]
            f.write(f"{int(t.timestamp() * 1000)},{o!r},{h!r},{l!r},{c!r},{v!r}\n")


def fetch(outdir):
    """Downloads the `backtesting` wheel and writes its test series into `outdir`.

    Returns {name: path} for EURUSD, GOOG and BTCUSD."""
    os.makedirs(outdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ar-realdata-wheel-")
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "backtesting"],
            check=True,
        )
        wheels = glob.glob(os.path.join(tmp, "backtesting-*.whl"))
        if not wheels:
            raise SystemExit(f"pip downloaded no backtesting wheel into {tmp}")
        out = {}
        with zipfile.ZipFile(wheels[0]) as z:
            for name in NAMES:
                path = os.path.join(outdir, f"{name}.csv")
                convert(z.read(f"backtesting/test/{name}.csv").decode(), path)
                out[name] = path
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} OUTDIR")
    for path in fetch(sys.argv[1]).values():
        print(path)


if __name__ == "__main__":
    main()
