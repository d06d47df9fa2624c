"""The activation store (DESIGN.md 3.11, 5): detection of both types for K languages with and
without the store, forward passes per distinct sentence, and memory vs sentence count.

    python benchmarks/bench_store.py [--model tiny|gemma-3-270m|smollm2-135m|FOLDER] [-n 50]
        [--langs ja,ko,nl,it,de,fr,zh] [--study] [--memory] [--authors-seconds S]

Prints, measured in one process on the same model and sentences (the first -n UDHR pairs of each
language), repeats interleaved:
- the 2K detections (Type-1 and Type-2 per language) by per-detection forward passes, then with a
  fresh store in a temporary folder (then once more from the filled store), their wall and CPU
  time (CPU time is steadier on a shared machine), the ratio,
  and the sentences forwarded (a pre-hook on the decoder counts rows) per distinct sentence;
- with --authors-seconds: the same 2K detections in one fresh whole process (model loading
  included) against K times the authors' scripts' whole-process time for one language's Type-1 +
  Type-2 on the same sentences (measured outside this repository: their code runs one process
  per type and language and shares nothing, so K times one language estimates their K languages);
- with --study: a small study (data, detect, latent, specificity, overlap, neuron pages; ablation
  and downstream tasks off), counting the rows forwarded by captures without an intervention
  against the distinct sentences those captures read;
- with --memory: peak resident memory of a store-backed Type-1 detection on 100 and on 1000
  distinct Tatoeba pairs, each in a fresh process with a fresh store (a fill holds at most one
  shard of rows, `artifacts.store.SHARD_BYTES`, in memory before writing it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_detect import DATA, load_pairs, timed
from transfer_neurons import ParallelData, detect, load_model
from transfer_neurons.data import udhr
from transfer_neurons.hooks import capture as capture_module
from transfer_neurons.model.loading import LoadedModel, attach_store
from transfer_neurons.testing import build_tiny_model

TYPES = ("type1", "type2")


def model_path(name: str) -> str:
    """`name`, or for `tiny` a random 8-layer Llama (d=256, m=1024) with room for UDHR's longest
    units under the test tokenizer (bench_detect's tiny model has 256 positions)."""
    if name != "tiny":
        return name
    folder = Path(tempfile.gettempdir()) / "transfer-neurons-bench-store-tiny"
    if not (folder / "config.json").is_file():
        sizes = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 8, "head_dim": 32}
        heads = {"num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 4096}
        build_tiny_model("llama", folder, **sizes, **heads)
    return str(folder)


class Forwards:
    """Counts the sentences the decoder is run on (rows of every forward pass, any caller)."""

    def __init__(self, lm: LoadedModel) -> None:
        self.rows = 0
        self.handle = lm.model.get_decoder().register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, _module, _args, kwargs) -> None:
        self.rows += int(kwargs["input_ids"].shape[0])

    def close(self) -> None:
        self.handle.remove()


def udhr_pairs(langs: list[str], n: int) -> list[ParallelData]:
    out = []
    for lang in langs:
        pairs = udhr.load_pairs(lang)
        out.append(ParallelData(lang, pairs.en[:n], pairs.l2[:n]))
    return out


def distinct(data: list[ParallelData]) -> tuple[int, int]:
    """(distinct English, distinct L2) sentences over every language."""
    return len({s for d in data for s in d.en}), len({s for d in data for s in d.l2})


def detect_all(lm: LoadedModel, data: list[ParallelData], args) -> list:
    return [
        detect(lm, d, neuron_type, top_n=args.top_n, batch_size=args.batch_size) for d in data for neuron_type in TYPES
    ]


def with_store(lm: LoadedModel, root: str) -> LoadedModel:
    """A copy of `lm` (the same model object) with a store under `root`."""
    return attach_store(dataclasses.replace(lm, store=None), root)


def counted(lm: LoadedModel, fn: Callable[[], list]) -> tuple[float, float, int, list]:
    """(wall seconds, CPU seconds of this process, decoder rows forwarded, result) of `fn()`. CPU
    time (all threads) is less sensitive than wall time to other work on a shared machine."""
    forwards = Forwards(lm)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        forwards.close()
    return seconds, cpu, forwards.rows, result


def compare(reference: list, other: list) -> str:
    """Largest score difference and how many top sets are the same (store vs passes)."""
    diff = max(float((a.scores - b.scores).nan_to_num(0.0).abs().max()) for a, b in zip(reference, other, strict=True))
    same = sum(a.top == b.top for a, b in zip(reference, other, strict=True))
    return f"max |score diff| {diff:.2e}, top-{reference[0].settings['top_n']} identical in {same}/{len(reference)}"


def measure_detection(args) -> float:
    """Section (1); returns the best in-process time with a fresh store."""
    lm = load_model(model_path(args.model), device=args.device, dtype=args.dtype, progress=False)
    data = udhr_pairs(args.langs, args.n)
    n_en, n_l2 = distinct(data)
    total = n_en + n_l2
    warm = [ParallelData(d.lang, d.en[:8], d.l2[:8]) for d in data[:1]]
    detect_all(lm, warm, args)  # warm-up
    plain, fresh, filled = [], [], []
    for _ in range(args.repeats):  # interleaved, so that machine noise hits both alike
        plain.append(counted(lm, lambda: detect_all(lm, data, args)))
        with tempfile.TemporaryDirectory(prefix="bench-store-") as root:
            stored = with_store(lm, root)
            fresh.append(counted(stored, lambda stored=stored: detect_all(stored, data, args)))
            filled.append(counted(stored, lambda stored=stored: detect_all(stored, data, args)))
    k = len(data)
    print(
        f"model={args.model} languages={','.join(args.langs)} sentences/language={args.n} batch={args.batch_size}"
        f" dtype={args.dtype} top_n={args.top_n} repeats={args.repeats} (best of the repeats)"
    )
    print(f"{2 * k} detections (Type-1 + Type-2 x {k} languages); distinct sentences {total} ({n_en} en + {n_l2} L2)")
    rows = (
        ("per-detection forward passes", plain),
        ("with a fresh store", fresh),
        ("from the filled store", filled),
    )
    for label, runs in rows:
        times = ", ".join(f"{r[0]:.1f}" for r in runs)
        forwarded = runs[0][2]
        print(
            f"  {label:<30} {min(r[0] for r in runs):8.2f} s wall [{times}], {min(r[1] for r in runs):8.2f} s CPU;"
            f"  forwarded {forwarded:5d} sentences = {forwarded / total:.2f} x distinct"
        )
    wall = min(r[0] for r in plain) / min(r[0] for r in fresh)
    cpu = min(r[1] for r in plain) / min(r[1] for r in fresh)
    print(f"  speed-up, fresh store vs per-detection passes: {wall:.2f}x wall, {cpu:.2f}x CPU (target >= 3x)")
    print(f"  scores, fresh store vs passes: {compare(plain[0][3], fresh[0][3])}")
    return min(r[0] for r in fresh)


def child_detect(args) -> None:
    """In a fresh process: load the model with a fresh store and run the 2K detections."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as root:
        lm = load_model(model_path(args.model), device=args.device, dtype=args.dtype, progress=False, store=root)
        detect_all(lm, udhr_pairs(args.langs, args.n), args)


def measure_authors(args, in_process: float) -> None:
    """Whole-process time of this package against K times the authors' one-language time."""
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(child_command(args, "--child-detect"), check=True)
    ours, used = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    ours_cpu = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    k = len(args.langs)
    theirs = k * args.authors_seconds
    print(
        f"authors' scripts, Type-1 + Type-2 of one language on {args.n} sentences (whole processes, measured"
        f" outside this repository): {args.authors_seconds:.1f} s; x {k} languages = {theirs:.1f} s"
    )
    print(
        "  (an estimate of their cost for the same workload: they run one process per type and language"
        " and share nothing between them)"
    )
    print(f"this package, one whole process (model loading included), fresh store: {ours:.1f} s ({ours_cpu:.1f} s CPU)")
    print(f"  ratio authors / this package: {theirs / ours:.1f}x whole process (target >= 10x)")
    print(f"  ratio authors / in-process detection time with a fresh store: {theirs / in_process:.1f}x")
    if args.authors_cpu_seconds:
        print(
            f"  CPU time: authors {args.authors_cpu_seconds:.1f} s x {k} = {k * args.authors_cpu_seconds:.1f} s,"
            f" this package {ours_cpu:.1f} s: {k * args.authors_cpu_seconds / ours_cpu:.1f}x"
        )


def measure_study(args) -> None:
    """Rows forwarded by captures without an intervention per distinct sentence they read."""
    from transfer_neurons.study import steps
    from transfer_neurons.study.config import StudyConfig
    from transfer_neurons.study.runner import run_study

    langs = args.langs[: args.study_languages]
    config = StudyConfig.model_validate(
        {
            "model": model_path(args.model),
            "languages": langs,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
            "bootstrap": 100,
            "data": {"source": "udhr", "max_sentences": args.n},
            "detect": {"top_n": 100},
            "latent": {"k": 5},
            "characterise": {"top_n": 100, "pages_top_n": 5},
            "ablate": {"enabled": False},
            "downstream": {"qa": False, "mc": False, "output_lang": False},
        }
    )
    texts: set[str] = set()
    plain_rows = [0]
    forward, stored, loader = capture_module._forward, capture_module._stored, steps.load_model
    decoders: list[Forwards] = []

    def counting_forward(lm, sentences, parts, layers, batch_size, stop_early, desc, progress, intervention):
        if intervention is None:
            plain_rows[0] += len(sentences)
            texts.update(sentences)
        return forward(lm, sentences, parts, layers, batch_size, stop_early, desc, progress, intervention)

    def reading_stored(lm, store, sentences, *rest):
        texts.update(sentences)
        return stored(lm, store, sentences, *rest)

    def counting_load(*a, **kw):
        lm = loader(*a, **kw)
        decoders.append(Forwards(lm))
        return lm

    capture_module._forward, capture_module._stored, steps.load_model = counting_forward, reading_stored, counting_load
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-study-") as out:
            seconds = timed(lambda: run_study(config, Path(out), progress=False, log=lambda line: None))
            store_used = (Path(out) / "store").is_dir()
    finally:
        capture_module._forward, capture_module._stored, steps.load_model = forward, stored, loader
        for counter in decoders:
            counter.close()
    print(
        f"study on {','.join(langs)} ({args.n} UDHR pairs per language; data, detect both types, latent, specificity,"
        f" overlap, neuron pages; ablation and downstream off): {seconds:.1f} s, store at RUN/store: {store_used}"
    )
    print(f"  distinct sentences read by captures without an intervention: {len(texts)}")
    print(
        f"  rows forwarded by captures without an intervention: {plain_rows[0]}"
        f" = {plain_rows[0] / len(texts):.3f} x distinct (target <= 1.1)"
    )
    print(f"  rows forwarded by the decoder in all (any caller): {sum(c.rows for c in decoders)}")


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def child_memory(args) -> None:
    """In a fresh process with a fresh store: load the model and run a detection on 8 pairs, reset the
    peak (Linux clear_refs), then a Type-1 detection on `n` distinct pairs (every (1000 / n)-th of
    the first 1000): resident memory before it and its peak."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as root:
        lm = load_model(model_path(args.model), device=args.device, dtype=args.dtype, progress=False, store=root)
        detect(lm, load_pairs(args.data, 8), "type1", top_n=10, batch_size=args.batch_size)
        pairs = load_pairs(args.data, 1000, distinct=1000)
        step = max(1, 1000 // args.n)
        pairs = ParallelData(pairs.lang, pairs.en[::step][: args.n], pairs.l2[::step][: args.n])
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current RSS
        before = status_kib("VmRSS")
        detect(lm, pairs, "type1", top_n=100, batch_size=args.batch_size)
        peak = status_kib("VmHWM")
        disk = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "peak_kib": peak, "process_peak_kib": process_peak, "store_bytes": disk}))


def measure_memory(args) -> None:
    for n in (100, 1000):
        out = subprocess.run(
            child_command(args, "--child-memory", n), check=True, capture_output=True, text=True
        ).stdout
        result = json.loads(out.splitlines()[-1])
        growth = (result["peak_kib"] - result["before_kib"]) / 1024
        print(
            f"store-backed Type-1 detection, {n:>4} distinct pairs: peak RSS during it {result['peak_kib'] / 1024:7.1f}"
            f" MiB (+{growth:.1f} MiB over the RSS before it), process peak incl. loading"
            f" {result['process_peak_kib'] / 1024:7.1f} MiB; store on disk {result['store_bytes'] / 2**20:.1f} MiB"
        )


def child_command(args, mode: str, n: int | None = None) -> list[str]:
    return [
        sys.executable,
        __file__,
        mode,
        *("--model", args.model, "-n", str(args.n if n is None else n), "--langs", ",".join(args.langs)),
        *("--batch-size", str(args.batch_size), "--dtype", args.dtype, "--device", args.device),
        *("--top-n", str(args.top_n), "--data", str(args.data)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (random 8-layer Llama), a folder, or a built-in name")
    parser.add_argument("-n", type=int, default=50, help="UDHR pairs per language (it has about 50)")
    parser.add_argument("--langs", type=lambda s: s.split(","), default="ja,ko,nl,it,de,fr,zh".split(","))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top-n", type=int, default=1000)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--authors-seconds", type=float, help="authors' Type-1 + Type-2 time for one language")
    parser.add_argument("--authors-cpu-seconds", type=float, help="the same, CPU time of those processes")
    parser.add_argument("--study", action="store_true", help="forward passes per distinct sentence of a study")
    parser.add_argument("--study-languages", type=int, default=3, help="the first this many of --langs")
    parser.add_argument("--memory", action="store_true", help="peak RSS on 100 vs 1000 pairs")
    parser.add_argument("--data", type=Path, default=DATA, help="pairs for --memory (1000+ lines)")
    parser.add_argument("--skip-detection", action="store_true", help="only --study / --memory")
    parser.add_argument("--child-detect", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_detect:
        return child_detect(args)
    if args.child_memory:
        return child_memory(args)
    if not args.skip_detection:
        in_process = measure_detection(args)
        if args.authors_seconds:
            measure_authors(args, in_process)
    if args.study:
        measure_study(args)
    if args.memory:
        measure_memory(args)


if __name__ == "__main__":
    main()
