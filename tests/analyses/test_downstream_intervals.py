"""The uncertainty of qa, mc, output-lang and logit-lens: the multi-seed random baseline runs each unit
under its own draw in one pass (checked against running each unit alone under that draw), and every
summary number is an estimate whose value, paired difference from random, p-value, per-seed means and
interval equal naive computations over the per-unit rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import EXAMPLES
from transfer_neurons.analyses import logit_lens, mc, output_lang, qa, units
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.data.mc import letter_token_ids, load_mc, mc_prompt, shifted_item
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa, qa_prompt
from transfer_neurons.hooks.generation import generate, next_token_logprobs
from transfer_neurons.hooks.interventions import Intervention, RandomBaseline
from transfer_neurons.metrics.mc import cyclic_scores
from transfer_neurons.metrics.uncertainty import Estimate, paired_permutation_p

SEEDS = 3
BOOT = 200


@pytest.fixture(scope="module")
def neurons(tiny) -> NeuronSet:
    """80 'ja' neurons over all four layers of the tiny Llama: enough that the random draws disagree."""
    top = tuple((k % 4, k // 4 * 3 + 1, 1.0 - 0.001 * k) for k in range(80))
    return NeuronSet(top, "ja", "type1", tiny("llama").name, (0, 1, 2, 3))


def draw_of(random: RandomBaseline | None, row: dict) -> Intervention:
    """The draw a random-condition row ran under, from the seed it records."""
    assert random is not None
    return random.draws[random.seeds.index(row["seed"])]


def random_rows(rows: list[dict]) -> list[dict]:
    chosen = [row for row in rows if row["condition"] == "random"]
    assert chosen and all("seed" in row for row in chosen)
    assert all("seed" not in row for row in rows if row["condition"] != "random")
    return chosen


def naive_interval(values: np.ndarray, seed: int, n_boot: int = BOOT) -> tuple[float, float]:
    """Percentile 95 % interval of the mean over n_boot resamples of the units (numpy's own rng)."""
    index = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    low, high = np.percentile(values[index].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def check_estimates(estimates: dict[str, Estimate], values: dict[str, np.ndarray], seeds: list[int], seed: int) -> None:
    """Each condition's estimate against its per-unit values (units in the same order under every condition)."""
    for name, estimate in estimates.items():
        assert estimate.value == pytest.approx(values[name].mean())
        assert estimate.ci == pytest.approx(naive_interval(values[name], seed))
    difference = values["deactivated"] - values["random"]
    effect = estimates["deactivated"].effect_vs_random
    assert effect is not None and effect.value == pytest.approx(difference.mean())
    assert effect.ci == pytest.approx(naive_interval(difference, seed))
    assert estimates["deactivated"].p_vs_random == paired_permutation_p(difference, seed)
    random = estimates["random"]
    assert random.seeds == tuple(sorted(set(seeds)))
    per_seed = [values["random"][[s == chosen for s in seeds]].mean() for chosen in sorted(set(seeds))]
    assert random.per_seed == pytest.approx(per_seed)
    assert estimates["normal"].effect_vs_random is None and random.effect_vs_random is None


def per_condition(rows: list[dict], key: str) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for row in rows:
        out.setdefault(row["condition"], []).append(float(row[key]))
    return {name: np.array(v) for name, v in out.items()}


def test_the_timed_first_batch_keeps_each_prompts_intervention():
    """`in_parts` splits off a first batch for the time estimate: the per-prompt interventions are
    sliced with the prompts, so every prompt still runs under its own draw."""
    baseline = RandomBaseline(tuple(Intervention(((0, i, 0.0),)) for i in range(3)), (7, 8, 9))
    prompts = [f"p{i}" for i in range(8)]
    said: list[str] = []
    parts = units.in_parts(
        lambda chosen, intervention: list(zip(chosen, intervention, strict=True)),
        prompts,
        baseline.per_unit(8),
        3,
        1,
        said.append,
    )
    assert len(parts) == 2 and len(said) == 1
    assert [pair for part in parts for pair in part] == list(zip(prompts, baseline.per_unit(8), strict=True))
    seeds = [field["seed"] for field in units.seed_fields(baseline, 8)]
    assert seeds == [baseline.seeds[baseline.draws.index(iv)] for iv in baseline.per_unit(8)]
    assert units.seed_fields(None, 2) == [{}, {}] and units.seed_fields(baseline.draws[0], 1) == [{}]


def test_qa_random_rows_are_their_draws_alone(tiny, neurons):
    lm = tiny("llama")
    items = load_qa(None, "ja", 8)
    config = qa.QAConfig(top_k=80, max_new_tokens=4, shots=1, baseline_seeds=SEEDS, batch_size=3)
    said: list[str] = []
    result = qa.run(lm, items, neurons, config, said.append)  # the timed first batch is split off
    assert len(said) == 1 and result.random is not None and result.random.seeds == (0, 1, 2)
    rows = random_rows(result.rows)
    assert {row["seed"] for row in rows} == {0, 1, 2}
    prompts = {item.id: qa_prompt(item.question, item.lang, 1) for item in items}
    differs = False
    for row in rows:
        alone = [generate(lm, [prompts[row["id"]]], d, 4, stop_strings=["\n"])[0] for d in result.random.draws]
        assert row["output"] == alone[result.random.seeds.index(row["seed"])]
        differs |= len(set(alone)) > 1
    assert differs, "degenerate: every draw gives the same answers"


def fake_answers(items):
    """A fake `generate`: normal answers every question; under an intervention, question k is answered
    when k + the intervention's first neuron is a multiple of 3 (so conditions and draws differ)."""
    gold = {qa_prompt(item.question, item.lang, 1): (k, item.answers[0]) for k, item in enumerate(items)}

    def fake(lm, prompts, intervention=None, max_new_tokens=16, batch_size=8, stop_strings=None):
        per_row = intervention if isinstance(intervention, list) else [intervention] * len(prompts)
        out = []
        for prompt, iv in zip(prompts, per_row, strict=True):
            k, answer = gold[prompt]
            right = iv is None or (k + iv.neurons[0][1]) % 3 == 0
            out.append(answer if right else "nothing")
        return out

    return fake


def test_qa_estimates_are_the_rows_means_and_paired_differences(tiny, neurons, monkeypatch, tmp_path):
    items = load_qa(None, "ja", 12)
    monkeypatch.setattr(qa, "generate", fake_answers(items))
    config = qa.QAConfig(top_k=80, shots=1, baseline_seeds=SEEDS, bootstrap=BOOT, seed=3)
    result = qa.run(tiny("llama"), items, neurons, config)
    ids = [[row["id"] for row in result.rows if row["condition"] == name] for name in result.conditions]
    assert all(order == ids[0] for order in ids)  # paired by question
    seeds = [row["seed"] for row in random_rows(result.rows)]
    for metric in ("f1", "em"):
        values = per_condition(result.rows, metric)
        assert 0 < values["random"].mean() < 1, "degenerate: the draws all answer alike"
        check_estimates({name: getattr(s, metric) for name, s in result.conditions.items()}, values, seeds, 3)
    assert qa.run(tiny("llama"), items, neurons, config).conditions == result.conditions  # same seed, same intervals
    line = result.summary_lines()[1]
    f1 = result.conditions["deactivated"].f1
    assert f1.effect_vs_random is not None
    assert line.startswith(f"deactivated: F1 {f1.text()}, vs random {f1.effect_vs_random.text()} (p = ")
    assert line.endswith("(12 questions)")

    plain = qa.run(tiny("llama"), items, neurons, config.model_copy(update={"bootstrap": 0}))
    plain.save(tmp_path / "qa")
    summary = json.loads((tmp_path / "qa" / "qa.json").read_text())
    deactivated = summary["conditions"]["deactivated"]["f1"]
    assert deactivated["ci"] is None and deactivated["effect_vs_random"]["ci"] is None
    assert summary["bootstrap"] == 0 and summary["baseline_seeds"] == SEEDS
    assert qa.QAResult.load(tmp_path / "qa") == plain


@pytest.mark.parametrize("scoring", list(mc.Scoring))
def test_mc_random_rows_are_their_draws_alone(tiny, neurons, scoring, tmp_path):
    lm = tiny("llama")
    items = load_mc(None, "ja", 8)
    config = mc.MCConfig(top_k=80, baseline_seeds=SEEDS, batch_size=3, scoring=scoring, bootstrap=BOOT, seed=5)
    result = mc.run(lm, items, neurons, config, lambda line: None)
    token_ids, _ = letter_token_ids(lm.tokenizer, 4)
    rows = random_rows(result.rows)
    for item, row in zip(items, rows, strict=True):
        shifts = 4 if scoring is mc.Scoring.cyclic else 1
        shifted = next_token_logprobs(
            lm, [mc_prompt(shifted_item(item, s)) for s in range(shifts)], token_ids, draw_of(result.random, row)
        )
        assert row["logprobs"] == pytest.approx(shifted[0].tolist(), abs=1e-4)
        if scoring is mc.Scoring.cyclic:
            assert row["scores"] == pytest.approx(cyclic_scores(shifted).tolist(), abs=1e-4)
    others = [next_token_logprobs(lm, [mc_prompt(items[0])], token_ids, d)[0] for d in result.random.draws]
    assert max(float((a - b).abs().max()) for a in others for b in others) > 1e-3, "degenerate draws"
    correct = per_condition(result.rows, "correct")
    check_estimates({n: s.accuracy for n, s in result.conditions.items()}, correct, [r["seed"] for r in rows], 5)
    assert mc.MCResult.load(result.save(tmp_path / "mc")) == result
    summary = json.loads((tmp_path / "mc" / "mc.json").read_text())["conditions"]["deactivated"]
    assert set(summary) == {"accuracy", "n", "wilson", "near_chance", "letters"}
    assert set(summary["accuracy"]) == {"value", "ci", "effect_vs_random", "p_vs_random"}


def test_output_lang_random_rows_are_their_draws_alone(tiny, neurons, tmp_path):
    lm = tiny("llama")
    prompts = read_sentences(EXAMPLES, "ja", 8)
    config = output_lang.OutputLangConfig(
        top_k=80, max_new_tokens=4, baseline_seeds=SEEDS, batch_size=3, bootstrap=BOOT, seed=2
    )
    result = output_lang.run(lm, prompts, neurons, config, "ja", lambda line: None)
    rows = random_rows(result.rows)
    differs = False
    for prompt, row in zip(prompts, rows, strict=True):
        alone = [generate(lm, [prompt], d, 4)[0] for d in result.random.draws]
        assert row["prompt"] == prompt and row["output"] == alone[result.random.seeds.index(row["seed"])]
        differs |= len(set(alone)) > 1
    assert differs, "degenerate: every draw continues alike"
    seeds = [row["seed"] for row in rows]
    known = {"ja", "en", "none", "undecodable"}
    for row in result.rows:
        row["category"] = row["language"] if row["language"] in known else "other"
    for label in (*known, "other"):
        values = {
            name: np.array([float(r["category"] == label) for r in result.rows if r["condition"] == name])
            for name in result.conditions
        }
        check_estimates({name: v[label] for name, v in result.conditions.items()}, values, seeds, 2)
    for row in result.rows:
        del row["category"]
    assert result.n_prompts == 8
    loaded = output_lang.OutputLangResult.load(result.save(tmp_path / "ol"))
    assert loaded == result
    summary = json.loads((tmp_path / "ol" / "output_lang.json").read_text())
    assert (
        summary["n_prompts"] == 8
        and summary["conditions"]["deactivated"]["ja"] == result.conditions["deactivated"]["ja"].to_json()
    )
    assert summary["conditions"]["random"]["ja"]["seeds"] == [2, 3, 4]


def test_logit_lens_rows_curves_and_last_layer(tiny, neurons, tmp_path):
    lm = tiny("llama")
    sentences = read_sentences(EXAMPLES, "ja", 6)
    config = logit_lens.LogitLensConfig(top_k=80, tokens=3, baseline_seeds=SEEDS, batch_size=4, bootstrap=BOOT, seed=1)
    result = logit_lens.run(lm, sentences, neurons, config, "ja")
    identifier = output_lang.identifier_for(config.langid_langs, "ja")
    for row in random_rows(result.rows):
        top = logit_lens.logit_lens_tokens(lm, [row["sentence"]], 3, draw_of(result.random, row), progress=False)
        alone = logit_lens.token_language_shares(lm.tokenizer, top, identifier, "ja")
        assert row["shares"] == {label: v[0].tolist() for label, v in alone.items()}
    for name, curves in result.conditions.items():
        chosen = [row for row in result.rows if row["condition"] == name]
        for label, curve in curves.items():
            shares = np.array([row["shares"][label] for row in chosen])  # [sentences, layers]
            assert curve.values == pytest.approx(shares.mean(axis=0).tolist())
            low, high = zip(*(naive_interval(shares[:, layer], 1) for layer in range(lm.num_layers)), strict=True)
            assert curve.ci_low == pytest.approx(low) and curve.ci_high == pytest.approx(high)
    last = {
        name: np.array([row["shares"]["ja"][-1] for row in result.rows if row["condition"] == name])
        for name in result.conditions
    }
    seeds = [row["seed"] for row in random_rows(result.rows)]
    check_estimates({name: v["ja"] for name, v in result.last_layer.items()}, last, seeds, 1)
    assert logit_lens.LogitLensResult.load(result.save(tmp_path / "ll")) == result
    summary = json.loads((tmp_path / "ll" / "logit_lens.json").read_text())
    assert set(summary["conditions"]["normal"]["ja"]) == {"values", "ci_low", "ci_high"}
    assert summary["last_layer"]["deactivated"]["ja"] == result.last_layer["deactivated"]["ja"].to_json()
