"""qa / mc / output-lang / logit-lens end to end on a tiny model, and their bad inputs."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from helpers import EXAMPLES, assert_error, detect_args, run
from transfer_neurons.analyses.logit_lens import logit_lens_tokens

DEV = ["--device", "cpu", "--quiet"]


def assert_downstream_files(out, name, command):
    """Every downstream command writes the same set: per-item rows, both interventions, summary, manifest."""
    expected = {f"{name}.jsonl", f"{name}.json", f"{name}.png", "intervention.json", "baseline.json", "manifest.json"}
    assert expected == {p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == command and manifest["settings"]["top_k"] == 20
    assert json.loads((out / f"{name}.json").read_text())["schema_version"] == 1
    assert set(manifest["files"]) == expected - {"manifest.json"}


def test_qa_three_conditions(model_folder, detected, tmp_path):
    out = tmp_path / "qa"
    result = run(
        "qa",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type1"] / "neurons.json",
        "--top-k",
        "20",
        "--max-questions",
        "5",
        "--max-new-tokens",
        "3",
        "--out",
        out,
        *DEV,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    assert len(rows) == 35 and [r["condition"] for r in rows[::5]] == ["normal", "deactivated", *["random"] * 5]
    assert rows[0]["lang"] == "ja" and rows[0]["answers"] == ["パリ"]
    summary = json.loads((out / "qa.json").read_text())
    assert summary["positions"] == "prompt" and summary["conditions"]["normal"]["n"] == 5
    assert json.loads((out / "intervention.json").read_text())["positions"] == "prompt"
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["seeds"] == [0, 1, 2, 3, 4] and all(len(draw) == 20 for draw in baseline["draws"])
    assert {r["seed"] for r in rows if r["condition"] == "random"} <= {0, 1, 2, 3, 4}
    assert summary["conditions"]["deactivated"]["f1"]["p_vs_random"] is not None and summary["bootstrap"] == 1000
    assert_downstream_files(out, "qa", "qa")


def test_qa_errors(model_folder, detected, tmp_path):
    out = tmp_path / "out"
    model = model_folder("llama")
    assert_error(run("qa", "--model", model, "--out", out, *DEV), "give --lang", out)
    assert_error(
        run("qa", "--model", model, "--lang", "ja", "--data", tmp_path / "no.jsonl", "--out", out, *DEV),
        "does not exist",
        out,
    )
    assert_error(
        run("qa", "--model", model, "--lang", "fr", "--out", out, *DEV), "no answerable questions in 'fr'", out
    )
    assert_error(
        run(
            "qa", "--model", model, "--neurons", detected["type1"] / "neurons.json", "--top-k", "41", "--out", out, *DEV
        ),
        "--top-k 41",
        out,
    )


def test_mc_three_conditions(model_folder, tmp_path):
    gemma, neurons = model_folder("gemma3_text"), tmp_path / "type1"
    assert run(*detect_args(gemma, EXAMPLES, neurons, "--top-n", "30")).exit_code == 0  # a set of this model
    out = tmp_path / "mc"
    result = run(
        "mc",
        "--model",
        gemma,
        "--neurons",
        neurons / "neurons.json",
        "--top-k",
        "20",
        "--lang",
        "nl",
        "--max-questions",
        "6",
        "--out",
        out,
        *DEV,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "mc.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 6 + 5 * 6 and all(len(r["logprobs"]) == 4 for r in rows)  # every draw on every question
    for row in rows:
        assert row["predicted"] == "ABCD"[max(range(4), key=row["logprobs"].__getitem__)]
    summary = json.loads((out / "mc.json").read_text())
    assert summary["chance"] == 0.25 and summary["lang"] == "nl"
    normal = [r["correct"] for r in rows if r["condition"] == "normal"]
    assert summary["conditions"]["normal"]["accuracy"]["value"] == pytest.approx(sum(normal) / 6)
    letters = [r["predicted"] for r in rows if r["condition"] == "normal"]
    assert summary["conditions"]["normal"]["letters"] == {x: letters.count(x) for x in "ABCD"}
    assert summary["scoring"] == "letter" and isinstance(summary["conditions"]["normal"]["near_chance"], bool)
    assert "letters chosen: A " in result.output
    assert_downstream_files(out, "mc", "mc")


def test_mc_cyclic_scoring(model_folder, tmp_path):
    out = tmp_path / "mc"
    args = ["mc", "--model", model_folder("gemma3_text"), "--lang", "it", "--max-questions", "3", "--out", out]
    result = run(*args, "--scoring", "cyclic", *DEV)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "mc.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["predicted"] == "ABCD"[max(range(4), key=r["scores"].__getitem__)] for r in rows)
    assert json.loads((out / "mc.json").read_text())["scoring"] == "cyclic"
    bad = tmp_path / "bad"
    assert_error(run(*args[:-1], bad, "--scoring", "word", *DEV), "word", bad)


def test_mc_errors(model_folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    bad = tmp_path / "mc.jsonl"
    bad.write_text('{"question": "Q", "options": ["a", "b"], "answer": "Z"}\n')
    assert_error(
        run("mc", "--model", model_folder("llama"), "--lang", "en", "--data", bad, "--out", out, *DEV),
        "line 1 needs 'answer'",
        out,
    )

    def offline(name, config, split):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    result = run("mc", "--model", model_folder("llama"), "--lang", "en", "--data", "org/mmlu-like", "--out", out, *DEV)
    assert_error(result, "could not load hub dataset 'org/mmlu-like' (en, test): no network", out)


def test_output_lang(model_folder, detected, tmp_path):
    out = tmp_path / "ol"
    result = run(
        "output-lang",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type2"] / "neurons.json",
        "--top-k",
        "20",
        "--data",
        EXAMPLES,
        "--max-prompts",
        "4",
        "--max-new-tokens",
        "4",
        "--bootstrap",
        "0",
        "--baseline-seeds",
        "2",
        "--out",
        out,
        *DEV,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "output_lang.json").read_text())
    assert list(summary["conditions"]) == ["normal", "deactivated", "random"] and summary["positions"] == "all"
    for shares in summary["conditions"].values():
        assert set(shares) == {"ja", "en", "none", "undecodable", "other"}
        assert sum(e["value"] for e in shares.values()) == pytest.approx(1.0)
        assert all(e["ci"] is None for e in shares.values())
    assert summary["conditions"]["random"]["ja"]["seeds"] == [0, 1] and summary["baseline_seeds"] == 2
    rows = [json.loads(line) for line in (out / "output_lang.jsonl").read_text().splitlines()]
    assert len(rows) == 4 + 4 + 2 * 4 and rows[0]["prompt"] == "私と踊っていただけませんか。"
    assert summary["langid"]["langs"] == ["en", "ja", "ko", "nl", "it"]
    assert_downstream_files(out, "output_lang", "output-lang")


def test_output_lang_errors(model_folder, tmp_path):
    out = tmp_path / "out"
    model = model_folder("llama")
    assert_error(
        run(
            "output-lang",
            "--model",
            model,
            "--data",
            EXAMPLES,
            "--lang",
            "ja",
            "--langid-langs",
            "en,qq",
            "--out",
            out,
            *DEV,
        ),
        "does not know qq",
        out,
    )
    assert_error(
        run("output-lang", "--model", model, "--data", EXAMPLES, "--lang", "ko", "--out", out, *DEV),
        "no 'ko' field",
        out,
    )


def test_logit_lens(model_folder, detected, tmp_path):
    out = tmp_path / "ll"
    result = run(
        "logit-lens",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type2"] / "neurons.json",
        "--top-k",
        "20",
        "--data",
        EXAMPLES,
        "--max-sentences",
        "5",
        "--tokens",
        "4",
        "--out",
        out,
        *DEV,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "logit_lens.json").read_text())
    for curves in data["conditions"].values():
        assert len(curves["ja"]["values"]) == len(curves["ja"]["ci_low"]) == 4
        assert all(sum(c["values"][layer] for c in curves.values()) == pytest.approx(1.0) for layer in range(4))
    assert "p_vs_random" in data["last_layer"]["deactivated"]["ja"]
    assert_downstream_files(out, "logit_lens", "logit-lens")
    bad = tmp_path / "x"
    result = run(
        "logit-lens",
        "--model",
        model_folder("llama"),
        "--lang",
        "ja",
        "--data",
        EXAMPLES,
        "--tokens",
        "100000",
        "--out",
        bad,
        *DEV,
    )
    assert_error(result, "exceeds the vocabulary", bad)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_logit_lens_last_layer_is_the_models_prediction(tiny, model_type):
    lm = tiny(model_type)
    sentences = ["Would you like to dance with me?", "寒い。"]
    top = logit_lens_tokens(lm, sentences, k=3, batch_size=2, progress=False)
    for n, sentence in enumerate(sentences):
        with torch.no_grad():
            logits = lm.model(lm.tokenizer(sentence, return_tensors="pt").input_ids).logits[0, -1]
        assert top[-1, n].tolist() == logits.topk(3).indices.tolist()


def test_estimate_on_stderr_unless_quiet(model_folder, tmp_path):
    args = ["qa", "--model", model_folder("llama"), "--lang", "ja", "--max-items", "3", "--max-new-tokens", "2"]
    args += ["--batch-size", "2", "--device", "cpu"]
    told = run(*args, "--out", tmp_path / "told")
    assert told.exit_code == 0, told.output
    assert "about 3 prompts x 1 condition; estimated " in told.stderr and "from the first batch" in told.stderr
    quiet = run(*args, "--out", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0 and "estimated" not in quiet.stderr


def test_qa_stops_with_one_line_when_generation_makes_unexpected_passes(model_folder, detected, tmp_path, monkeypatch):
    """The runtime guard: a library whose generate made one forward pass more than it generated
    tokens would leave the `prompt` policy's meaning in doubt; qa stops before writing anything."""
    from transformers import GenerationMixin

    original = GenerationMixin.generate

    def one_pass_more(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        self(input_ids=output[:, -1:], use_cache=False)
        return output

    monkeypatch.setattr(GenerationMixin, "generate", one_pass_more)
    out = tmp_path / "qa"
    neurons = detected["type1"] / "neurons.json"
    args = ["--neurons", neurons, "--top-k", "20", "--max-questions", "2", "--max-new-tokens", "3"]
    result = run("qa", "--model", model_folder("llama"), *args, "--out", out, *DEV)
    assert_error(result, "the 'prompt' position policy may not have been applied as named", out)
