"""The steps a study runs (see study.plan): each reads its inputs and writes into its folder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from transfer_neurons.analyses.detect import default_layers, detect
from transfer_neurons.analyses.experiments import latent_study, run_ablation
from transfer_neurons.artifacts import plots
from transfer_neurons.artifacts.io import read_json, write_jsonl
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.study.runner import Study, split_pairs

StepFn = Callable[[Study, Path], dict]


def _rows(pairs: ParallelData) -> list[dict]:
    return [{"en": en, pairs.lang: l2} for en, l2 in zip(pairs.en, pairs.l2, strict=True)]


def _cap(pairs: ParallelData, limit: int | None) -> ParallelData:
    return pairs if limit is None else ParallelData(pairs.lang, pairs.en[:limit], pairs.l2[:limit])


def data_step(lang: str) -> StepFn:
    """Materialise train/test (and non-parallel) pair files for `lang` from the configured source."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config.data
        files = cfg.files.get(lang)
        if cfg.source == "udhr":
            from transfer_neurons.data.udhr import load_pairs

            loaded = load_pairs(lang)  # a code like "jpn" resolves to "ja": keep the config's name
            all_pairs = _cap(ParallelData(lang, loaded.en, loaded.l2), cfg.max_sentences)
            train, test = split_pairs(all_pairs, cfg.holdout, study.config.seed)
            nonparallel = None
        else:
            train = read_pairs(files.train, lang, cfg.max_sentences)
            if files.test is None:
                train, test = split_pairs(train, cfg.holdout, study.config.seed)
            else:
                test = read_pairs(files.test, lang, cfg.max_sentences)
            nonparallel = None if files.nonparallel is None else read_pairs(files.nonparallel, lang, cfg.max_sentences)
        write_jsonl(folder / "train.jsonl", _rows(train))
        write_jsonl(folder / "test.jsonl", _rows(test))
        if nonparallel is not None:
            write_jsonl(folder / "nonparallel.jsonl", _rows(nonparallel))
        return {"source": cfg.source, "train": len(train), "test": len(test),
                "nonparallel": None if nonparallel is None else len(nonparallel)}  # fmt: skip

    return compute


def detect_step(lang: str, kind: str) -> StepFn:
    """Type-1 or Type-2 detection on the train split; the layer distribution figure."""

    def compute(study: Study, folder: Path) -> dict:
        lm, cfg = study.lm, study.config
        pairs = study.pairs(lang, "train")
        top_n = min(cfg.detect.top_n, len(default_layers(lm.num_layers, kind)) * lm.mlp_width)
        result = detect(lm, pairs, kind, top_n=top_n, batch_size=cfg.batch_size,
                        paper_compat=cfg.detect.paper_compat, progress=study.progress)  # fmt: skip
        result.save(folder, {"model": cfg.model, "data": str(study.out / "data" / lang / "train.jsonl")})
        counts = Counter(layer for layer, _, _ in result.top)
        per_layer = [counts.get(layer, 0) for layer in range(lm.num_layers)]
        plots.layer_histograms({f"{kind} {lang}": per_layer}, folder / "layers.png",
                               f"Layers of the top-{top_n} {kind} neurons, {lang}")  # fmt: skip
        return {"top": [list(t) for t in result.top[:10]], "per_layer": per_layer, "top_n": top_n,
                "sentences": len(pairs)}  # fmt: skip

    return compute


def latent_step(study: Study, folder: Path) -> dict:
    """Latent-space analyses over every language's test split."""
    cfg = study.config
    datasets = [study.pairs(lang, "test") for lang in cfg.languages]
    nonparallel = {lang: study.pairs(lang, "nonparallel") for lang in cfg.languages
                   if study.has_split(lang, "nonparallel")}  # fmt: skip
    k = min(cfg.latent.k, min(len(d) for d in datasets) - 1)
    result = latent_study(study.lm, datasets, nonparallel, folder, k, cfg.latent.clamp, cfg.batch_size, cfg.seed,
                          study.progress)  # fmt: skip
    peaks = {lang: max(range(len(c["mknn"])), key=c["mknn"].__getitem__) for lang, c in result["pairs"].items()}
    return {"k": k, "mknn_peak_layer": peaks}


def ablate_step(lang: str) -> StepFn:
    """Deactivate the language's top Type-1 neurons vs a random baseline on its test split."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config
        neurons = study.out / "detect" / lang / "type1" / "neurons.json"
        top_k = min(cfg.ablate.top_k, len(read_json(neurons)["top"]))
        pairs = study.pairs(lang, "test")
        nonparallel = study.pairs(lang, "nonparallel") if study.has_split(lang, "nonparallel") else None
        k = min(cfg.latent.k, len(pairs) - 1)
        result = run_ablation(study.lm, neurons, top_k, pairs, nonparallel, folder, cfg.ablate.baseline, cfg.seed,
                              k, cfg.latent.clamp, cfg.batch_size, study.progress)  # fmt: skip
        return {"top_k": top_k, **result["summary"]}

    return compute


def _detected(study: Study) -> dict[str, Path]:
    """`<lang>-<type>` -> neurons.json of every detection step of the study."""
    cfg = study.config
    return {f"{lang}-{kind}": study.out / "detect" / lang / kind / "neurons.json"
            for lang in cfg.languages for kind in cfg.detect.types}  # fmt: skip


def specificity_step(study: Study, folder: Path) -> dict:
    """eta^2 of each detected set's top-n vs a random baseline, over the test-split sentences."""
    from transfer_neurons.analyses.specificity import activation_stats, specificity_report
    from transfer_neurons.artifacts.io import write_json, write_tensors
    from transfer_neurons.hooks.interventions import Intervention, random_baseline
    from transfer_neurons.metrics import specificity as spec

    cfg, lm = study.config, study.lm
    sentences = {"en": study.pairs(cfg.languages[0], "test").en}
    sentences |= {lang: study.pairs(lang, "test").l2 for lang in cfg.languages}
    langs = list(sentences)
    families = spec.families_for(langs)
    sets = {}
    for name, path in _detected(study).items():
        info = read_json(path)
        top = Intervention.of([(layer, neuron) for layer, neuron, _ in info["top"][: cfg.characterise.top_n]])
        random = random_baseline(top, lm.mlp_width, cfg.ablate.baseline, info["layers"], cfg.seed)
        sets[name] = {"lang": info["lang"], "type": info["type"], "top_n": len(top.neurons),
                      "top": top.pairs(), "random": random.pairs()}  # fmt: skip
    stats = activation_stats(lm, sentences, cfg.batch_size, study.progress)
    summary, tensors = specificity_report(stats, langs, families, sets)
    write_tensors(folder / "specificity.safetensors", tensors, {"langs": ",".join(langs)})
    write_json(folder / "specificity.json", {"langs": langs, "families": dict(zip(langs, families, strict=True)),
                                             "alpha": 0.05, "sets": summary})  # fmt: skip
    bars = {name: {f"{which} eta2>0.1": result["target"][which]["share_eta2_gt_0.1"] for which in ("top", "random")}
            for name, result in summary.items()}  # fmt: skip
    plots.grouped_bars(bars, "Share of neurons specific to their language (eta2 > 0.1, p < 0.05)", "share",
                       folder / "specificity.png", (0, 1))  # fmt: skip
    return {name: {which: result["target"][which] for which in ("top", "random")} for name, result in summary.items()}


def overlap_step(study: Study, folder: Path) -> dict:
    """Jaccard overlap between every pair of detected sets, and their layer distributions."""
    from transfer_neurons.artifacts.io import write_json
    from transfer_neurons.metrics import overlap as ov

    top_n = study.config.characterise.top_n
    sets = {name: [tuple(t[:2]) for t in read_json(path)["top"][:top_n]] for name, path in _detected(study).items()}
    names = list(sets)
    matrix = ov.jaccard_matrix([sets[name] for name in names])
    num_layers = _layer_count(study)
    counts = {name: ov.layer_counts(sets[name], num_layers) for name in names}
    plots.annotated_heatmap(matrix, names, f"Jaccard overlap of the top-{top_n} neurons", folder / "overlap.png")
    plots.layer_histograms(counts, folder / "layers.png", f"Layers of the top-{top_n} neurons")
    write_json(folder / "overlap.json", {"sets": names, "jaccard": matrix.tolist(), "layer_counts": counts})
    return {"sets": names, "jaccard": [[round(float(x), 3) for x in row] for row in matrix]}


def _layer_count(study: Study) -> int:
    from transfer_neurons.artifacts.io import read_tensors

    lang, kind = study.config.languages[0], study.config.detect.types[0]
    return read_tensors(study.out / "detect" / lang / kind / "scores.safetensors")["scores"].shape[0]


TASK_LANGS = {"qa": ("en", "ja", "ko", "nl", "it"), "mc": ("en", "ja", "ko", "nl", "it")}


def task_languages(task: str, languages: list[str]) -> list[str]:
    """The study's languages a downstream task has built-in data for (output_lang: all)."""
    return [lang for lang in languages if task not in TASK_LANGS or lang in TASK_LANGS[task]]


def downstream_step(task: str, lang: str, kind: str) -> StepFn:
    """QA, multiple choice or output language of `lang`: normal, top-k `kind` neurons deactivated
    at the prompt, and a random baseline."""

    def compute(study: Study, folder: Path) -> dict:
        from transfer_neurons.analyses.base import summarize_rows
        from transfer_neurons.analyses.mc import mc_study
        from transfer_neurons.analyses.output_lang import output_language_study
        from transfer_neurons.analyses.qa import qa_study
        from transfer_neurons.artifacts.io import write_json
        from transfer_neurons.hooks.interventions import deactivation_conditions

        cfg, lm = study.config, study.lm
        down = cfg.downstream
        neurons = study.out / "detect" / lang / kind / "neurons.json"
        top_k = min(down.top_k, len(read_json(neurons)["top"]))
        positions = "all" if task == "output_lang" else "prompt"
        conditions = deactivation_conditions(neurons, top_k, lm.num_layers, lm.mlp_width, positions,
                                             cfg.ablate.baseline, cfg.seed)  # fmt: skip
        if task == "qa":
            from transfer_neurons.data.qa import load_qa

            rows = qa_study(lm, load_qa(None, lang, down.max_questions), conditions, batch_size=cfg.batch_size)
            summary = summarize_rows(rows, ["f1", "em"])
        elif task == "mc":
            from transfer_neurons.data.mc import load_mc

            rows = mc_study(lm, load_mc(None, lang, down.max_questions), conditions, cfg.batch_size)
            summary = summarize_rows(rows, ["correct"])
        else:
            from transfer_neurons.metrics.langid import LanguageID

            prompts = study.pairs(lang, "test").l2[: down.max_questions]
            identifier = LanguageID(sorted({"en", lang, *cfg.languages}))
            rows, summary = output_language_study(lm, prompts, conditions, identifier, lang,
                                                  batch_size=cfg.batch_size)  # fmt: skip
        write_jsonl(folder / "rows.jsonl", rows)
        write_json(folder / "summary.json", {"task": task, "lang": lang, "neurons": kind, "top_k": top_k,
                                             "positions": positions, "conditions": summary})  # fmt: skip
        return {"top_k": top_k, "neurons": kind, "conditions": summary}

    return compute
