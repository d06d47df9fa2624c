"""Detection cost vs the plain forward passes it needs, and peak memory vs sentence count.

    python benchmarks/bench_detect.py [--model tiny|gemma-3-270m|FOLDER] [--type type1] [-n 300]

Prints, measured in one run on the same sentences, batch size and dtype:
- detect time / time of the plain batched decoder forward passes detection needs
  (Type-1: en + L2 for the centroids, L2 again for scoring; Type-2: L2 twice), best of --repeats;
- peak resident memory of a detection on 100 and on 1000 sentences (each in a fresh process;
  the 1000 cycle through the same 100 pairs, so that only the count differs, not the lengths).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from transfer_neurons import ParallelData, detect, load_model
from transfer_neurons.testing import build_tiny_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba" / "en-ja.train.jsonl"


def load_pairs(path: Path, n: int, distinct: int | None = None) -> ParallelData:
    """`n` pairs from `path`, cycling through its first `distinct` pairs (all by default)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:distinct]
    rows = (rows * (n // len(rows) + 1))[:n]
    return ParallelData(lang="ja", en=[r["en"] for r in rows], l2=[r["ja"] for r in rows])


def model_path(name: str) -> str:
    if name != "tiny":
        return name
    folder = Path(tempfile.gettempdir()) / "transfer-neurons-bench-tiny"
    if not (folder / "config.json").is_file():  # a small Llama: 8 layers, d=256, m=1024
        build_tiny_model(
            "llama",
            folder,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=32,
        )
    return str(folder)


def plain_forward(lm, sentences: list[str], batch_size: int) -> None:
    """The decoder's own batched forward passes, no hooks, same length-sorted left-padded batches."""
    encoded = lm.tokenizer(sentences)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda k: (len(encoded[k]), k))
    decoder = lm.model.get_decoder()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = lm.tokenizer.pad(
                {"input_ids": [encoded[k] for k in order[start : start + batch_size]]}, return_tensors="pt"
            )
            mask = batch["attention_mask"].to(lm.device)
            decoder(
                input_ids=batch["input_ids"].to(lm.device),
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=False,
            )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_ratio(args) -> None:
    lm = load_model(model_path(args.model), device=args.device, dtype=args.dtype, progress=False)
    pairs = load_pairs(args.data, args.n)
    passes = [pairs.en, pairs.l2, pairs.l2] if args.neuron_type == "type1" else [pairs.l2, pairs.l2]

    def run_plain():
        for sentences in passes:
            plain_forward(lm, sentences, args.batch_size)

    def run_detect():
        detect(lm, pairs, args.neuron_type, top_n=100, batch_size=args.batch_size, progress=False)

    run_plain(), run_detect()  # warm-up
    plain, full = [], []
    for _ in range(args.repeats):  # interleaved, so that machine noise hits both alike
        plain.append(timed(run_plain))
        full.append(timed(run_detect))
    p, d = min(plain), min(full)
    print(f"model={args.model} type={args.neuron_type} sentences={args.n} batch={args.batch_size} dtype={args.dtype}")
    print(
        f"plain forward passes: {p:.3f} s   detect: {d:.3f} s   ratio detect/plain: {d / p:.3f}"
        f"   ({len(pairs) / d:.1f} L2 sentences/s)"
    )


def child_memory(args) -> None:
    """In a fresh process: peak RSS after loading + one tiny detection, then after the real one."""
    lm = load_model(model_path(args.model), device=args.device, dtype=args.dtype, progress=False)
    detect(lm, load_pairs(args.data, 8), args.neuron_type, top_n=10, batch_size=args.batch_size, progress=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the same 100 distinct pairs for every size, so that batch shapes (padding) match and only
    # the sentence count differs
    pairs = load_pairs(args.data, args.n, distinct=100)
    detect(lm, pairs, args.neuron_type, top_n=100, batch_size=args.batch_size, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after}))


def measure_memory(args) -> None:
    for n in (100, 1000):
        cmd = [
            sys.executable,
            __file__,
            "--child-memory",
            "--model",
            args.model,
            "--type",
            args.neuron_type,
            "-n",
            str(n),
            "--batch-size",
            str(args.batch_size),
            "--dtype",
            args.dtype,
            "--device",
            args.device,
            "--data",
            str(args.data),
        ]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        growth = (result["after_kib"] - result["before_kib"]) / 1024
        print(
            f"peak RSS, {n:>4} sentences: {result['after_kib'] / 1024:8.1f} MiB"
            f"  (+{growth:.1f} MiB over a detection on 8 sentences)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (random 8-layer Llama), a folder, or gemma-3-270m")
    parser.add_argument("--type", dest="neuron_type", default="type1", choices=["type1", "type2"])
    parser.add_argument("-n", type=int, default=300, help="sentence pairs for the ratio")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        return child_memory(args)
    measure_ratio(args)
    if not args.skip_memory:
        measure_memory(args)


if __name__ == "__main__":
    main()
