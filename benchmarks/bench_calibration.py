"""Calibration of every interval and test at full sizes (docs/method.md section 8).

Coverage of each 95 % interval, size of each 5 % test, false 'holds' when the random draws differ, and
the power of 'holds' for a mutual-kNN drop beside the ideal test's, on simulated data with a known
answer (`transfer_neurons.calibration`), at n = 25, 100 and 300. Prints one row per cell and writes
them to a JSON file. `--reps 200` takes about an hour on one core; `--quick` a few minutes.

    python benchmarks/bench_calibration.py --out runs/calibration.json
    python benchmarks/bench_calibration.py --draws 20 --sizes 300   # the large-n rows (docs/method.md 8)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from transfer_neurons import calibration as c


def cells(n: int, reps: int, draws: int) -> Iterator[c.Cell]:
    """Every check at one n, each as soon as it is measured. The power check's shift, 0.12, is the
    one at which the ideal test finds the drop 8 / 34 / 73 % of the time at n = 25 / 100 / 300 (the
    audit's 7 / 34 / 72 %)."""
    yield from c.mknn_interval(n, reps)
    yield from c.middle_peak(n, reps)
    yield from c.mean_intervals(n, 4 * reps)
    for binary in (True, False):
        for draw_sd in (0.0, 0.2):
            yield from c.means_versus_random(n, 10 * reps, draws, draw_sd, binary)
    yield from c.mknn_versus_random(n, reps, draws)
    for draw_sd in (0.1, 0.2):
        yield from c.mknn_versus_random(n, reps, draws, draw_sd=draw_sd)
    yield from c.mknn_versus_random(n, reps, draws, shift=0.12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=500, help="repetitions per cell (means: 4-10x)")
    parser.add_argument("--draws", type=int, default=10, help="random baseline draws")
    parser.add_argument("--sizes", default="25,100,300")
    parser.add_argument("--quick", action="store_true", help="100 repetitions, n = 25 and 100")
    parser.add_argument("--out", type=Path, default=None, help="write the cells as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reps, sizes = (100, [25, 100]) if args.quick else (args.reps, [int(n) for n in args.sizes.split(",")])
    rows: list[dict] = []
    start = time.perf_counter()
    for n in sizes:
        for cell in cells(n, reps, args.draws):
            print(("  " if cell.ok else "! ") + cell.row(), flush=True)
            rows.append({**asdict(cell), "ok": cell.ok})
    table = c.findings(reps, rows=32, n=25, draws=args.draws)
    print(("  " if table.ok else "! ") + table.row(), flush=True)
    rows.append({**asdict(table), "ok": table.ok})
    elapsed = time.perf_counter() - start
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} cells within their band; {elapsed / 60:.1f} min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"draws": args.draws, "reps": reps, "cells": rows}, indent=1))


if __name__ == "__main__":
    main()
