"""Steering the output language with every neuron set, measured (docs/method.md sections 4 and 7).

    python benchmarks/bench_steer.py --out runs/bench-steer [--model gemma-3-270m] [--targets ja,ko,nl,it]
        [--train 300] [--dev 50] [--test 100] [--top-k 100,1000] [--methods add,set,diffmean,scale]

For each target language T (prompts: English Tatoeba test sentences, 50 dev + 100 test by default):
the sets of T from 300 training pairs (tn Type-2, Type-1, tn-centred Type-2, LAPE, AP; the pool of
the centred score, LAPE and AP: the training sentences of every language), the per-language mean
activations from the same sentences (one pass through an activation store that keeps the token
sums), then `steer` per top-k with a random set of each set's per-layer shape. Writes one steer
folder per target and top-k and prints one line per chosen condition (test split) plus the wall
time. Data: /work/shared/data/tatoeba (see its README). `--quick` runs one target, top-k 100,
12 + 24 prompts, 60 training pairs and two alphas: a reduced run, for a first look only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
SETS = (  # name, method, type
    ("tn-type2", Method.tn, "type2"),
    ("tn-type1", Method.tn, "type1"),
    ("tn-centred-type2", Method.tn_centred, "type2"),
    ("lape", Method.lape, "type2"),
    ("ap", Method.ap, "type2"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--targets", default=",".join(LANGS))
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--dev", type=int, default=50)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--top-k", default="100,1000")
    parser.add_argument("--methods", default="add,set,diffmean,scale")
    parser.add_argument("--alphas", default="0.5,1,2,4")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="A reduced run (see above).")
    args = parser.parse_args()
    if args.quick:
        args.targets, args.top_k, args.train, args.dev, args.test, args.alphas = "ja", "100", 60, 12, 24, "1,4"
    start = time.perf_counter()
    lm = load_model(args.model, device="cpu", progress=False, store=args.out / "store", store_groups=("last", "tokens"))
    assert lm.store is not None
    lm.store.groups = ("last", "tokens", STORE_GROUP)  # one pass keeps every part the sets and means read
    pairs = {lang: read_pairs(DATA / f"en-{lang}.train.jsonl", lang, args.train) for lang in LANGS}
    pool = [Sentences(lang, pairs[lang].l2, f"en-{lang}.train.jsonl") for lang in LANGS]
    means = language_means(lm, {"en": pairs["ja"].en, **{lang: pairs[lang].l2 for lang in LANGS}})
    print(f"means of {', '.join(means.languages)}: {time.perf_counter() - start:.0f} s", flush=True)
    for target in args.targets.split(","):
        test_rows = [json.loads(line) for line in (DATA / f"en-{target}.test.jsonl").read_text().splitlines()]
        prompts = [row["en"] for row in test_rows[: args.dev + args.test]]
        reference = [s for s in pool if s.lang != target]
        top_n = max(int(k) for k in args.top_k.split(","))
        sets = []
        for name, method, kind in SETS:
            began = time.perf_counter()
            detection = detect_method(lm, method, pairs[target], reference, DetectConfig(top_n=top_n), kind)
            sets.append(detection.neuron_set)
            print(f"{target} {name}: {time.perf_counter() - began:.0f} s", flush=True)
        for k in (int(k) for k in args.top_k.split(",")):
            config = steer.SteerConfig(
                top_k=k,
                methods=tuple(args.methods.split(",")),
                alphas=tuple(float(a) for a in args.alphas.split(",")),
                dev_fraction=args.dev / (args.dev + args.test),
                max_new_tokens=args.max_new_tokens,
                batch_size=16,
            )
            began = time.perf_counter()
            result = steer.run(lm, prompts, sets, means, config, "en", target)
            result.save(args.out / f"{target}-k{k}")
            print(f"{target} top-{k}: {time.perf_counter() - began:.0f} s", flush=True)
            for line in result.summary_lines():
                print("  " + line, flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s ({'reduced: --quick' if args.quick else 'full'})")


if __name__ == "__main__":
    main()
