"""qa, mc, output-lang and logit-lens from Python: run, save -> load round trips, the command's defaults."""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from helpers import EXAMPLES
from transfer_neurons.analyses import logit_lens, mc, output_lang, qa
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.cli import app, downstream
from transfer_neurons.data.mc import letter_token_ids, load_mc, mc_prompt, shifted_item
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import next_token_logprobs
from transfer_neurons.metrics.langid import LanguageID

PROMPTS = ["私と踊っていただけませんか。", "寒い。", "時間はいくらでも作れる。"]


@pytest.fixture(scope="module")
def neurons(tiny) -> NeuronSet:
    """12 'ja' Type-2 neurons of the tiny Llama over its last two layers, best first."""
    layers = (2, 3)
    top = tuple((layers[k % 2], 5 * k + 1, 1.0 - 0.01 * k) for k in range(12))
    return NeuronSet(top, "ja", "type2", tiny("llama").name, layers, identity=tiny("llama").identity())


def round_trip(result: Result, cls: type[Result], tmp_path, files: set[str]) -> Result:
    """Save, check the files, load back: the loaded result equals the saved one and prints the same."""
    out = result.save(tmp_path / result.command)
    assert {p.name for p in out.iterdir()} == files | {"manifest.json"}
    loaded = cls.load(out)
    assert loaded == result and loaded.summary_lines() == result.summary_lines()
    return loaded


def test_qa_round_trip(tiny, neurons, tmp_path):
    lm = tiny("llama")
    config = qa.QAConfig(top_k=8, max_new_tokens=2, shots=1, max_questions=3, seed=4)
    result = qa.run(lm, load_qa(None, "ja", config.max_questions), neurons, config)
    assert list(result.conditions) == ["normal", "deactivated", "random"] and result.n_questions == 3
    assert result.deactivated is not None and len(result.deactivated.neurons) == 8
    assert result.deactivated.positions == "prompt" and result.settings["template"] == "ja"
    round_trip(result, qa.QAResult, tmp_path, {"qa.jsonl", "qa.json", "qa.png", "intervention.json", "baseline.json"})
    summary = json.loads((tmp_path / "qa" / "qa.json").read_text())
    assert summary["schema_version"] == 1 and summary["seed"] == 4 and summary["top_k"] == 8
    assert summary["conditions"]["random"] == result.conditions["random"].to_json()
    assert summary["conditions"]["random"]["f1"]["seeds"] == [4, 5, 6, 7, 8]  # every draw on every question
    assert [row["seed"] for row in result.rows if row["condition"] == "random"] == [
        4,
        4,
        4,
        5,
        5,
        5,
        6,
        6,
        6,
        7,
        7,
        7,
        8,
        8,
        8,
    ]


def test_mc_round_trip_without_neurons(tiny, tmp_path):
    lm = tiny("gemma3_text")
    config = mc.MCConfig(max_questions=4)
    items = load_mc(None, "it", config.max_questions)
    with pytest.raises(InputError, match="one language, got en, it"):
        mc.run(lm, [*items, replace(items[0], lang="en")], None, config)
    result = mc.run(lm, items, None, config)
    assert list(result.conditions) == ["normal"] and result.deactivated is None and result.random is None
    assert result.chance == 0.25 and result.settings["top_k"] is None
    correct = [row["correct"] for row in result.rows]
    normal = result.conditions["normal"]
    assert (normal.accuracy.value, normal.n) == (sum(correct) / 4, 4) and sum(normal.letters.values()) == 4
    assert result.settings["scoring"] == "letter" and "scores" not in result.rows[0]
    round_trip(result, mc.MCResult, tmp_path, {"mc.jsonl", "mc.json", "mc.png"})
    with pytest.raises(InputError, match="holds a 'mc' result, not 'qa'"):
        qa.QAResult.load(tmp_path / "mc")


def letter_biased(items, bias=5.0):
    """A fake next_token_logprobs: letter A gets +bias whatever it shows, the question's correct option +1."""
    right = {item.question: item.options[item.answer] for item in items}

    def fake(lm, prompts, token_ids, intervention=None, batch_size=8, bar=None):
        rows = []
        for prompt in prompts:
            lines = prompt.splitlines()  # instruction, blank, question, "A. ..", ..
            shown = [line[3:] for line in lines[3:] if line[:3] in {f"{x}. " for x in "ABCD"}]
            rows.append([bias * (k == 0) + (text == right[lines[2]]) - 3.0 for k, text in enumerate(shown)])
        return torch.tensor(rows)

    return fake


@pytest.mark.parametrize("scoring", list(mc.Scoring))
def test_mc_with_a_forced_letter_bias(tiny, neurons, monkeypatch, tmp_path, scoring):
    """Letter scoring follows the bias to A everywhere, and says so; cyclic scoring cancels it."""
    items = load_mc(None, "ja", 8)  # answers C D C B C D D A
    monkeypatch.setattr(mc, "next_token_logprobs", letter_biased(items))
    result = mc.run(tiny("llama"), items, neurons, mc.MCConfig(top_k=4, scoring=scoring))
    assert result.settings["scoring"] == scoring.value and result.chance == 0.25
    for name, s in result.conditions.items():
        draws = 5 if name == "random" else 1  # the random baseline's letters over every draw
        assert s.n == 8
        if scoring is mc.Scoring.letter:
            assert s.letters == {"A": 8 * draws, "B": 0, "C": 0, "D": 0} and s.accuracy.value == 1 / 8
            assert s.near_chance and s.wilson == pytest.approx((0.0224, 0.4709), abs=1e-4)
        else:
            assert s.letters == {"A": draws, "B": draws, "C": 3 * draws, "D": 3 * draws}
            assert s.accuracy.value == 1.0 and not s.near_chance
    lines = result.summary_lines()
    assert lines[0] == (
        "     normal: accuracy 0.125 [0.022, 0.471] (Wilson 95% interval 0.022-0.471, 8 questions, chance 0.250); "
        "letters chosen: A 8, B 0, C 0, D 0"
        if scoring is mc.Scoring.letter
        else "     normal: accuracy 1.000 [0.676, 1.000] (Wilson 95% interval 0.676-1.000, 8 questions, chance 0.250); "
        "letters chosen: A 1, B 1, C 3, D 3"
    )
    assert lines[1].startswith("deactivated: accuracy ") and ", vs random 0.000 [0.000, 0.000] (p = 1)" in lines[1]
    flagged = [line for line in lines if "within noise of chance" in line]
    assert len(flagged) == (3 if scoring is mc.Scoring.letter else 0)
    if scoring is mc.Scoring.cyclic:  # option scores in the original order: the answer's is 1 above the rest
        row = result.rows[0]
        assert row["scores"][items[0].answer] == pytest.approx(max(row["scores"])) and row["logprobs"][0] == 2.0
        assert sorted(row["scores"]) == pytest.approx([-1.75, -1.75, -1.75, -0.75])
    loaded = round_trip(
        result, mc.MCResult, tmp_path, {"mc.jsonl", "mc.json", "mc.png", "intervention.json", "baseline.json"}
    )
    assert loaded.conditions["normal"].letters == result.conditions["normal"].letters


def test_mc_cyclic_scores_on_a_model(tiny):
    """Cyclic scoring on a real model: each option's score is the mean of its letter log-probabilities
    over the shifted prompts, computed here directly."""
    lm = tiny("gemma3_text")
    items = load_mc(None, "it", 2)
    result = mc.run(lm, items, None, mc.MCConfig(scoring=mc.Scoring.cyclic))
    token_ids, _ = letter_token_ids(lm.tokenizer, 4)
    for item, row in zip(items, result.rows, strict=True):
        prompts = [mc_prompt(shifted_item(item, s)) for s in range(4)]
        shifted = next_token_logprobs(lm, prompts, token_ids)
        expected = [float(sum(shifted[s, (o - s) % 4] for s in range(4)) / 4) for o in range(4)]
        assert row["scores"] == pytest.approx(expected, abs=1e-4)
        assert row["predicted"] == "ABCD"[max(range(4), key=expected.__getitem__)]


def test_output_lang_round_trip(tiny, neurons, tmp_path):
    lm = tiny("llama")
    config = output_lang.OutputLangConfig(top_k=6, max_new_tokens=3, langid_langs=("ko",), baseline=Baseline.uniform)
    result = output_lang.run(lm, PROMPTS, neurons, config, "ja")
    assert result.settings["langid"]["langs"] == ["ko", "ja", "en"] and result.n_prompts == 3
    for shares in result.conditions.values():
        assert set(shares) == {"ja", "en", "none", "undecodable", "other"}
        assert sum(e.value for e in shares.values()) == pytest.approx(1.0)
    assert result.random is not None
    assert {layer for draw in result.random.draws for layer, _, _ in draw.neurons} <= {2, 3}
    files = {"output_lang.jsonl", "output_lang.json", "output_lang.png", "intervention.json", "baseline.json"}
    round_trip(result, output_lang.OutputLangResult, tmp_path, files)


def test_output_lang_counts_undecodable_outputs(tiny, monkeypatch):
    """Outputs of bytes that do not decode (U+FFFD) are their own category, not 'none'."""
    outputs = iter(["\ufffd\ufffd", "日本語です\ufffd", "12 \ufffd 34", " 寒いです。"])

    def fake_generate(lm, prompts, intervention, max_new_tokens, batch_size, bar=None):
        return [next(outputs) for _ in prompts]

    monkeypatch.setattr(output_lang, "generate", fake_generate)
    config = output_lang.OutputLangConfig(max_new_tokens=2)
    result = output_lang.run(tiny("llama"), [*PROMPTS, "寒い。"], None, config, "ja")
    assert [row["language"] for row in result.rows] == ["undecodable", "ja", "undecodable", "ja"]
    shares = {label: e.value for label, e in result.conditions["normal"].items()}
    assert shares == {"ja": 0.5, "en": 0.0, "none": 0.0, "undecodable": 0.5, "other": 0.0}
    assert result.summary_lines()[0].startswith("     normal: ja 0.500 [0.150, 0.850]; en 0.000 [0.000, 0.490]; ")
    assert result.summary_lines()[0].endswith("; other 0.000 [0.000, 0.490] (4 prompts)")  # Wilson intervals


def test_output_lang_and_mc_say_one_estimate_and_answer_the_same(tiny, neurons, capsys):
    lm = tiny("llama")
    config = output_lang.OutputLangConfig(top_k=6, max_new_tokens=3, batch_size=2)
    quiet = output_lang.run(lm, PROMPTS, neurons, config, "ja")
    assert "estimated" not in capsys.readouterr().err
    told = output_lang.run(lm, PROMPTS, neurons, config, "ja", progress=True)
    said = [line for line in capsys.readouterr().err.splitlines() if "estimated" in line]
    assert (
        told.rows == quiet.rows
        and len(said) == 1
        and re.search(
            r"about 3 prompts x 3 conditions; estimated \d+ s on this machine \(from the first batch of 2: ", said[0]
        )
    ), said
    items = load_mc(None, "ja", 3)
    mc_config = mc.MCConfig(top_k=6, batch_size=2)
    assert mc.run(lm, items, neurons, mc_config, progress=True).rows == mc.run(lm, items, neurons, mc_config).rows
    said = [line for line in capsys.readouterr().err.splitlines() if "estimated" in line]
    assert len(said) == 1 and "about 3 prompts x 3 conditions; estimated " in said[0]


def test_logit_lens_round_trip_and_checks(tiny, neurons, tmp_path):
    lm = tiny("llama")
    config = logit_lens.LogitLensConfig(top_k=10, tokens=3, positions=Positions.all, langid_langs=None)
    result = logit_lens.run(lm, PROMPTS, neurons, config, "ja")
    assert result.settings["langid"]["langs"] == ["all"] and result.settings["positions"] == "all"
    for curves in result.conditions.values():
        assert set(curves) == {"ja", "en", "none", "other"}
        assert all(len(c.values) == len(c.ci_low or ()) == lm.num_layers for c in curves.values())
    files = {"logit_lens.jsonl", "logit_lens.json", "logit_lens.png", "intervention.json", "baseline.json"}
    round_trip(result, logit_lens.LogitLensResult, tmp_path, files)
    with pytest.raises(InputError, match="--tokens 100000 exceeds the vocabulary"):
        logit_lens.run(lm, PROMPTS, None, config.model_copy(update={"tokens": 100000}), "ja")
    with pytest.raises(InputError, match="--top-k 13"):
        logit_lens.run(lm, PROMPTS, neurons, config.model_copy(update={"top_k": 13}), "ja")


def test_logit_lens_command_and_python_agree(tiny, model_folder, neurons, tmp_path):
    """The command is `run` with the config of its options: the same curves from both."""
    neurons.save(tmp_path / "neurons.json")
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            str(a)
            for a in (
                "logit-lens",
                "--model",
                model_folder("llama"),
                "--neurons",
                tmp_path / "neurons.json",
                "--top-k",
                "5",
                "--data",
                EXAMPLES,
                "--max-sentences",
                "4",
                "--tokens",
                "3",
                "--out",
                out,
                "--device",
                "cpu",
                "--quiet",
            )
        ],
    )
    assert result.exit_code == 0, result.output
    from_cli = logit_lens.LogitLensResult.load(out)
    config = logit_lens.LogitLensConfig(top_k=5, tokens=3, max_sentences=4, langid_langs=LanguageID().langs)
    from_python = logit_lens.run(tiny("llama"), read_sentences(EXAMPLES, "ja", 4), neurons, config, "ja")
    assert from_cli.conditions == from_python.conditions and from_cli.settings == from_python.settings
    assert from_cli.last_layer == from_python.last_layer and from_cli.rows == from_python.rows
    assert result.output.splitlines()[:3] == from_python.summary_lines()


@pytest.mark.parametrize(
    ("command", "config"),
    [
        (downstream.qa, qa.QAConfig),
        (downstream.mc, mc.MCConfig),
        (downstream.output_lang, output_lang.OutputLangConfig),
        (downstream.logit_lens, logit_lens.LogitLensConfig),
    ],
)
def test_config_defaults_are_the_commands(command, config):
    """The options are generated from the config's fields; what can still part their defaults: a
    `defaults=` override on the command, or a list default the option writes otherwise than the field."""
    defaults = {name: p.default for name, p in inspect.signature(command).parameters.items()}
    for name, field in config.model_fields.items():
        if name == "langid_langs":
            assert ",".join(field.default) == defaults[name]
        else:
            assert field.default == defaults[name], name
