"""qa, mc, output-lang and logit-lens from Python: run, save -> load round trips, the command's defaults."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLES
from transfer_neurons.analyses import logit_lens, mc, output_lang, qa
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.cli import app, downstream
from transfer_neurons.data.mc import load_mc
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa
from transfer_neurons.errors import InputError
from transfer_neurons.metrics.langid import LanguageID

PROMPTS = ["私と踊っていただけませんか。", "寒い。", "時間はいくらでも作れる。"]


@pytest.fixture(scope="module")
def neurons(tiny) -> NeuronSet:
    """12 'ja' Type-2 neurons of the tiny Llama over its last two layers, best first."""
    layers = (2, 3)
    top = tuple((layers[k % 2], 5 * k + 1, 1.0 - 0.01 * k) for k in range(12))
    return NeuronSet(top, "ja", "type2", tiny("llama").name, layers)


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
    assert summary["conditions"]["random"] == {
        "n": 3,
        "f1": result.conditions["random"].f1,
        "em": result.conditions["random"].em,
    }


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
    assert result.conditions["normal"] == mc.MCScores(sum(correct) / 4, 4)
    round_trip(result, mc.MCResult, tmp_path, {"mc.jsonl", "mc.json", "mc.png"})
    with pytest.raises(InputError, match="holds a 'mc' result, not 'qa'"):
        qa.QAResult.load(tmp_path / "mc")


def test_output_lang_round_trip(tiny, neurons, tmp_path):
    lm = tiny("llama")
    config = output_lang.OutputLangConfig(top_k=6, max_new_tokens=3, langid_langs=("ko",), baseline=Baseline.uniform)
    result = output_lang.run(lm, PROMPTS, neurons, config, "ja")
    assert result.settings["langid"]["langs"] == ["ko", "ja", "en"] and result.n_prompts == 3
    for shares in result.conditions.values():
        assert set(shares) == {"ja", "en", "none", "other"} and sum(shares.values()) == pytest.approx(1.0)
    assert result.random is not None and {layer for layer, _, _ in result.random.neurons} <= {2, 3}
    files = {"output_lang.jsonl", "output_lang.json", "output_lang.png", "intervention.json", "baseline.json"}
    round_trip(result, output_lang.OutputLangResult, tmp_path, files)


def test_logit_lens_round_trip_and_checks(tiny, neurons, tmp_path):
    lm = tiny("llama")
    config = logit_lens.LogitLensConfig(top_k=10, tokens=3, positions=Positions.all, langid_langs=None)
    result = logit_lens.run(lm, PROMPTS, neurons, config, "ja")
    assert result.settings["langid"]["langs"] == ["all"] and result.settings["positions"] == "all"
    for curves in result.conditions.values():
        assert set(curves) == {"ja", "en", "none", "other"} and all(len(c) == lm.num_layers for c in curves.values())
    files = {"logit_lens.json", "logit_lens.png", "intervention.json", "baseline.json"}
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
    defaults = {name: p.default for name, p in inspect.signature(command).parameters.items()}
    for name, field in config.model_fields.items():
        if name == "langid_langs":
            assert ",".join(field.default) == defaults[name]
        else:
            assert field.default == defaults[name], name
