"""Calibration of every interval and test at full sizes (docs/method.md section 8).

Coverage of each 95 % interval, size of each 5 % test, false 'holds' when the random draws differ, and
the power of 'holds' for a mutual-kNN drop beside the ideal test's, on simulated data with a known
answer (`transfer_neurons.calibration`), at n = 25, 100 and 300. Prints one row per cell and writes
them to a JSON file. The full run takes hours on 2 cores; `--quick` a few minutes.

    python benchmarks/bench_calibration.py --out runs/calibration.json
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
    """Every check at one n, each as soon as it is measured (the mutual-kNN ones with fewer
    repetitions at n = 300, where one repetition of the swap test costs seconds)."""
    heavy = reps if n < 300 else max(reps // 4, 50)
    yield from c.mknn_interval(n, heavy)
    yield from c.middle_peak(n, heavy)
    yield from c.mean_intervals(n, 4 * reps)
    for binary in (True, False):
        for draw_sd in (0.0, 0.2):
            yield from c.means_versus_random(n, 2 * reps, draws, draw_sd, binary)
    yield from c.mknn_versus_random(n, heavy, draws)
    for draw_sd in (0.1, 0.2):
        yield from c.mknn_versus_random(n, heavy, draws, draw_sd=draw_sd)
    yield from c.mknn_versus_random(n, heavy, draws, shift=0.4 if n < 300 else 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=500, help="repetitions per cell (mutual kNN at n = 300: a quarter)")
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
