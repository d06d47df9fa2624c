"""The study's `finetune:` section: one step per set and baseline, the same files and numbers as the
`finetune` command on the same splits, the report section, and the config's one-line errors."""

from __future__ import annotations

import json
import re

import pytest
from safetensors.torch import load_file
from test_same_files import assert_same_folder

import transfer_neurons as tn
from helpers import run, write_study
from transfer_neurons.errors import InputError
from transfer_neurons.study.config import describe, load_config
from transfer_neurons.study.runner import plan

OFF = """latent: {enabled: false, k: 3}
ablate: {enabled: false}
characterise: {specificity: false, overlap: false, pages: false}
downstream: {qa: false, mc: false, output_lang: false}
"""
TUNE = "finetune: {enabled: true, top_k: 6, steps: 3, lr: 0.05, baselines: [random, lora]}\n"


def tuned_study(tmp_path, model_folder, finetune: str = TUNE):
    config = write_study(tmp_path, model_folder("llama"), finetune)
    text = config.read_text()
    for key in ("latent", "ablate", "downstream", "characterise"):
        text = re.sub(rf"^{key}: .*\n", "", text, flags=re.M)
    config.write_text(text + OFF)
    return config


@pytest.fixture(scope="module")
def study(model_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuned")
    result = run("run", tuned_study(folder, model_folder), "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_steps_write_one_result_per_condition(study):
    conditions = sorted(p.name for p in (study / "finetune" / "ja").iterdir())
    assert conditions == ["type1", "type1-lora", "type1-random"] and not (study / "finetune" / "ko").exists()
    data = {c: json.loads((study / "finetune" / "ja" / c / "finetune.json").read_text()) for c in conditions}
    methods = {c: d["method"] for c, d in data.items()}
    assert methods == {"type1": "neurons", "type1-lora": "lora", "type1-random": "random"}
    assert len({d["parameters"]["target"] for d in data.values()}) == 1  # every condition targets one count
    assert data["type1"]["parameters"]["trainable"] == data["type1-random"]["parameters"]["trainable"]
    for d in data.values():  # the same base model measured before each condition
        assert d["measures"]["before"] == data["type1"]["measures"]["before"] and len(d["loss"]) == 3
        assert d["batch_size"] == 8 and d["k"] == 3 and d["save_every"] == 0  # inherited from the study
    neurons = json.loads((study / "detect" / "ja" / "type1" / "neurons.json").read_text())
    top = sorted([n[0], n[1]] for n in neurons["top"][:6])
    assert data["type1"]["neurons"] == top and set(load_file(study / "finetune/ja/type1/delta.safetensors"))
    summary = json.loads((study / "manifest.json").read_text())["steps"]["finetune/ja/type1-lora"]["summary"]
    assert summary["method"] == "lora" and "l2_perplexity" in summary["change"]


def test_the_command_writes_the_same_files(study, model_folder, tmp_path):
    data = study / "data" / "ja"
    for condition, extra in (("type1", []), ("type1-random", ["--baseline", "random"])):
        out = tmp_path / condition
        result = run(
            "finetune",
            "--model",
            model_folder("llama"),
            "--neurons",
            study / "detect" / "ja" / "type1" / "neurons.json",
            "--top-k",
            "6",
            "--train",
            data / "train.jsonl",
            "--eval",
            data / "test.jsonl",
            "--steps",
            "3",
            "--lr",
            "0.05",
            "--batch-size",
            "8",
            "--k",
            "3",
            "--save-every",
            "0",
            "--out",
            out,
            "--device",
            "cpu",
            "--quiet",
            *extra,
        )
        assert result.exit_code == 0, result.output
        assert_same_folder(study / "finetune" / "ja" / condition, out)


def test_report_shows_every_condition(study):
    html = (study / "report.html").read_text(encoding="utf-8")
    section = html[html.index('id="finetune"') : html.index('id="timings"')]
    for condition in ("type1", "type1-random", "type1-lora"):
        assert f'href="finetune/ja/{condition}/"' in section
    assert "L2 perplexity" in section and "English perplexity" in section and "mean mutual kNN" in section
    assert section.count("&Delta;") == 3 * 5 and section.count("data:image/png;base64,") == 1
    assert '<a href="#finetune">' in html


def test_off_by_default_and_in_the_help(model_folder, tmp_path):
    config = load_config(write_study(tmp_path, model_folder("llama")))
    assert not config.finetune.enabled and not [s for s in plan(config) if s.name.startswith("finetune")]
    text = describe()
    assert re.search(r"^finetune.baselines  \(default: \['random', 'lora'\]\)", text, re.M)
    assert re.search(r"^finetune.k  \(default: latent.k\)", text, re.M) and "finetune.baseline " not in text
    assert "finetune.save_every" not in text


BAD = {
    "type not detected": (
        "finetune: {enabled: true, types: [type2]}\ndetect: {top_n: 30, types: [type1]}\n",
        "finetune.types: type2 not in detect.types",
    ),
    "unknown language": ("finetune: {enabled: true, languages: [fr]}\n", "finetune.languages: fr not in languages"),
    "single baseline key": ("finetune: {baseline: lora}\n", "finetune: list the baselines in `finetune.baselines`"),
    "checkpoints": ("finetune: {save_every: 5}\n", "finetune: `finetune.save_every` is the command's"),
    "top_k above top_n": ("finetune: {top_k: 31}\n", "finetune.top_k 31 exceeds detect.top_n 30"),
}


@pytest.mark.parametrize("case", BAD)
def test_config_errors(model_folder, tmp_path, case):
    extra, message = BAD[case]
    config = write_study(tmp_path, model_folder("llama"), extra)
    if "detect:" in extra:  # replace write_study's own detect line
        config.write_text(config.read_text().replace("detect: {top_n: 30}\n", "", 1))
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(config)


def test_load_run_reads_the_finetune_steps(study):
    table = tn.load_run(study)
    tuned = table[table["analysis"] == "finetune"]
    assert set(tuned["step"]) == {"finetune/ja/type1", "finetune/ja/type1-random", "finetune/ja/type1-lora"}
    assert set(tuned["set"]) == {"neurons", "random", "lora"}
    ppl = tuned[(tuned["metric"] == "l2_perplexity") & (tuned["set"] == "lora")]
    assert set(ppl["condition"]) == {"before", "after", "change"} and ppl["ci_low"].notna().all()
    data = json.loads((study / "finetune" / "ja" / "type1" / "finetune.json").read_text())
    loss = tuned[(tuned["metric"] == "loss") & (tuned["set"] == "neurons")].sort_values("layer")
    assert loss["value"].tolist() == pytest.approx(data["loss"]) and loss["layer"].tolist() == [1, 2, 3]
    change = tuned[(tuned["metric"] == "mean_mknn") & (tuned["condition"] == "change") & (tuned["set"] == "random")]
    random = json.loads((study / "finetune" / "ja" / "type1-random" / "finetune.json").read_text())
    assert change["value"].item() == pytest.approx(random["measures"]["change"]["mean_mknn"]["value"])


def test_the_base_model_is_measured_once_per_language(model_folder, tmp_path, monkeypatch):
    from transfer_neurons.study import steps

    calls = []
    original = steps.measure
    monkeypatch.setattr(steps, "measure", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    result = run("run", tuned_study(tmp_path, model_folder), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and len(list((tmp_path / "run" / "finetune" / "ja").iterdir())) == 3
