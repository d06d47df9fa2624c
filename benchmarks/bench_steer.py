"""Steering the output language with every neuron set, measured (docs/method.md sections 4 and 7).

    python benchmarks/bench_steer.py --out runs/bench-steer [--quick] [--model gemma-3-270m]
        [--targets ja,ko,nl,it] [--sets tn-type2,tn-type1,tn-centred-type2,lape,ap] [--train 300]
        [--dev 50] [--test 100] [--top-k 100,1000] [--methods add,set,diffmean,scale]
        [--alphas 0.5,1,2,4] [--max-new-tokens 24] [--threads 1]

For each target language T (prompts: English Tatoeba test sentences, `--dev` + `--test` of them):
the sets of T from `--train` training pairs (tn Type-2, Type-1, tn-centred Type-2, LAPE, AP; the
pool of the centred score, LAPE and AP: the training sentences of every language), the per-language
mean activations from the same sentences (one pass through an activation store that keeps the
token sums), then `steer` per top-k with a random set of each set's per-layer shape. Writes one
steer folder per target and top-k, prints a table of the chosen conditions (test split) and the
wall time. Data: /work/shared/data/tatoeba (see its README).

`--quick` (any flag given with it still wins): ja only, top-k 100, tn Type-2 and LAPE (and the
random sets), set and diffmean at alpha 1, 2 and 4, 100 training pairs, 20 dev and 30 test prompts,
16-token continuations: 20 x 25 + 30 x 9 = 770 continuations; 11 min 9 s measured with one torch
thread on a 2-core machine shared with other jobs (peak memory 3.2 GB).

Cost: a steer run generates dev x (1 + 2 x sets x methods x alphas) + test x (1 + 2 x sets x
methods) continuations (each condition and its random set), plus one scoring pass over them. The
full setting (4 targets, 5 sets, 4 methods, 4 alphas, k = 100 and 1000, 50 + 100 prompts, 24
tokens) is 2 x 4 x (50 x 161 + 100 x 41) = 97,200 continuations: the quick run's 0.79 s per
16-token continuation (generation and scoring) makes that about 30 hours on one CPU core at 24
tokens, plus SmolLM2-135M's en -> nl/it; on a GPU, with larger batches, minutes per target.

It runs for a long time without printing when progress is off, so it says what it does: a line
per phase, the steer command's estimate after its first batch, and on SIGTERM/SIGINT which phase
it was in (a process killed from outside otherwise ends without a word); a native crash prints
its Python stack (faulthandler).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import torch

from transfer_neurons import load_model
from transfer_neurons.analyses import steer
from transfer_neurons.analyses.detect import DetectConfig
from transfer_neurons.analyses.means import STORE_GROUP, language_means
from transfer_neurons.analyses.methods import detect_method
from transfer_neurons.analyses.pool import Sentences
from transfer_neurons.choices import Method
from transfer_neurons.data.pairs import read_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba"
LANGS = ("ja", "ko", "nl", "it")
SETS = {  # name: (method, type)
    "tn-type2": (Method.tn, "type2"),
    "tn-type1": (Method.tn, "type1"),
    "tn-centred-type2": (Method.tn_centred, "type2"),
    "lape": (Method.lape, "type2"),
    "ap": (Method.ap, "type2"),
}
QUICK = {
    "targets": "ja",
    "sets": "tn-type2,lape",
    "top_k": "100",
    "methods": "set,diffmean",
    "alphas": "1,2,4",
    "train": 100,
    "dev": 20,
    "test": 30,
    "max_new_tokens": 16,
}
START = time.perf_counter()
PHASE = ["loading the model"]


def say(text: str) -> None:
    print(f"[{time.perf_counter() - START:6.0f} s] {text}", flush=True)


def stopped(signum: int, frame: FrameType | None) -> None:
    say(f"stopped by signal {signum} ({signal.Signals(signum).name}) during: {PHASE[0]}")
    sys.exit(128 + signum)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="A reduced run (see above).")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--targets", default=",".join(LANGS))
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--dev", type=int, default=50)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--top-k", default="100,1000")
    parser.add_argument("--methods", default="add,set,diffmean,scale")
    parser.add_argument("--alphas", default="0.5,1,2,4")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: leave cores to others).")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(**QUICK)
    args = parser.parse_args()
    unknown = [name for name in args.sets.split(",") if name not in SETS]
    if unknown:
        parser.error(f"--sets: unknown {', '.join(unknown)}; choose among {', '.join(SETS)}")
    return args


def table(result: steer.SteerResult) -> list[str]:
    """The chosen conditions on the test split, one line each, after the unsteered model."""
    header = f"{'set':>18} {'method':>8} {'alpha':>5}  {'target share':<22} {'random':<22} "
    header += f"{'steered - random':<24} {'p':>6}  {'blank':<22} {'log-likelihood':<25}"
    normal = result.normal["test"]
    lines = [header, f"{'normal':>18} {'':>8} {'':>5}  {normal['target'].text():<22} {'':<22} {'':<24} {'':>6}  "]
    lines[-1] += f"{normal['blank'].text():<22} {normal['loglik'].text():<25}"
    for cell in result.chosen:
        s, key = cell.steered, cell.key
        effect, p = s["target"].effect_vs_random, s["target"].p_vs_random
        lines.append(
            f"{key['set']:>18} {key['method']:>8} {key['alpha']:>5g}  {s['target'].text():<22} "
            f"{cell.random['target'].text():<22} {'' if effect is None else effect.text():<24} "
            f"{'' if p is None else f'{p:.3g}':>6}  {s['blank'].text():<22} {s['loglik'].text():<25}"
        )
    return lines


def main() -> None:
    args = parse()
    faulthandler.enable()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopped)
    torch.set_num_threads(args.threads)
    say(f"{'quick' if args.quick else 'full'} run: {vars(args)}")
    lm = load_model(args.model, device="cpu", progress=False, store=args.out / "store", store_groups=("last", "tokens"))
    assert lm.store is not None
    lm.store.groups = ("last", "tokens", STORE_GROUP)  # one pass keeps every part the sets and means read
    pairs = {lang: read_pairs(DATA / f"en-{lang}.train.jsonl", lang, args.train) for lang in LANGS}
    pool = [Sentences(lang, pairs[lang].l2, f"en-{lang}.train.jsonl") for lang in LANGS]
    PHASE[0] = "the per-language means"
    means = language_means(lm, {"en": pairs["ja"].en, **{lang: pairs[lang].l2 for lang in LANGS}}, args.batch_size)
    say(f"means of {', '.join(means.languages)} from {args.train} sentences each")
    for target in args.targets.split(","):
        test_rows = [json.loads(line) for line in (DATA / f"en-{target}.test.jsonl").read_text().splitlines()]
        prompts = [row["en"] for row in test_rows[: args.dev + args.test]]
        reference = [s for s in pool if s.lang != target]
        top_n = max(int(k) for k in args.top_k.split(","))
        sets = []
        for name in args.sets.split(","):
            PHASE[0] = f"detecting {target} {name}"
            method, neuron_type = SETS[name]
            detection = detect_method(lm, method, pairs[target], reference, DetectConfig(top_n=top_n), neuron_type)
            sets.append(detection.neuron_set)
            say(f"{target} {name} (set '{detection.neuron_set.name}')")
        for k in (int(k) for k in args.top_k.split(",")):
            PHASE[0] = f"steering en -> {target}, top-{k}"
            config = steer.SteerConfig(
                top_k=k,
                methods=tuple(args.methods.split(",")),
                alphas=tuple(float(a) for a in args.alphas.split(",")),
                dev_fraction=args.dev / (args.dev + args.test),
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
            )
            began = time.perf_counter()
            say(f"{PHASE[0]}: {len(sets)} sets x {len(config.methods)} methods x {len(config.alphas)} alphas")
            result = steer.run(lm, prompts, sets, means, config, "en", target, progress=True)
            result.save(args.out / f"{target}-k{k}")
            say(f"en -> {target} top-{k}: {time.perf_counter() - began:.0f} s; {steer.SPLIT_NOTE}")
            print(f"  n = {result.settings['n_prompts']}; seed {result.seed}", flush=True)
            for line in table(result):
                print("  " + line, flush=True)
    PHASE[0] = "done"
    say(f"wall time {time.perf_counter() - START:.0f} s ({'reduced: --quick' if args.quick else 'full'})")


if __name__ == "__main__":
    main()
