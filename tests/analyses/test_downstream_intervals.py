"""The uncertainty of qa, mc, output-lang and logit-lens: the multi-seed random baseline runs every unit
under every draw in shared passes (checked against running each unit alone under that draw), and every
summary number is an estimate whose value, interval (Wilson for shares, BCa for other means),
difference from the random draws with its p-value (the draws a random effect) and per-seed means equal
naive computations over the per-unit rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from helpers import EXAMPLES
from transfer_neurons.analyses import logit_lens, mc, output_lang, qa, units
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.data.mc import letter_token_ids, load_mc, mc_prompt, shifted_item
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa, qa_prompt
from transfer_neurons.hooks.generation import generate, next_token_logprobs
from transfer_neurons.hooks.interventions import Intervention, RandomBaseline
from transfer_neurons.metrics.mc import cyclic_scores
from transfer_neurons.metrics.uncertainty import Estimate, seeded

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
    """Wilson's interval written out for 0/1 values; else scipy's BCa bootstrap of the mean."""
    n = len(values)
    if np.isin(values, (0.0, 1.0)).all():
        z, share = 1.959963984540054, values.mean()
        centre = (share + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return float(centre - half), float(centre + half)
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    found = stats.bootstrap((values,), np.mean, n_resamples=n_boot, method="BCa", **seeded(seed)).confidence_interval
    return float(found.low), float(found.high)


def naive_contrast(compared: np.ndarray, table: np.ndarray) -> tuple[float, tuple[float, float], float]:
    """The compared condition minus the draws [S, n], the draws a random effect, written out:
    (difference, interval, p)."""
    s, n = table.shape
    d = compared - table.mean(axis=0)
    unit = d.var(ddof=1) / n
    residual = table - table.mean(1, keepdims=True) - table.mean(0) + table.mean()
    noise = (residual**2).sum() / ((s - 1) * (n - 1)) / n
    spread = table.mean(1).var(ddof=1) if s > 1 else 0.0
    draw = max(0.0, spread - noise) * (1 + 1 / s)
    df = (unit + draw) ** 2 / (unit**2 / (n - 1) + (spread * (1 + 1 / s)) ** 2 / (s - 1)) if draw > 0 else n - 1
    df = max(df, min(n - 1, s - 1)) if draw > 0 else df
    se = np.sqrt(unit + draw)
    half = stats.t(df).ppf(0.975) * se
    p = 1.0 if se == 0 else float(2 * stats.t(df).sf(abs(d.mean()) / se))
    return float(d.mean()), (float(d.mean() - half), float(d.mean() + half)), p


def check_estimates(estimates: dict[str, Estimate], values: dict[str, np.ndarray], seeds: list[int], seed: int) -> None:
    """Each condition's estimate against its per-unit values (units in the same order under every
    condition; the random baseline's every draw on every unit, draw by draw)."""
    n = len(values["normal"])
    table = values["random"].reshape(-1, n)
    for name in ("normal", "deactivated"):
        assert estimates[name].value == pytest.approx(values[name].mean())
        assert estimates[name].ci == pytest.approx(naive_interval(values[name], seed))
    difference, interval, p = naive_contrast(values["deactivated"], table)
    effect = estimates["deactivated"].effect_vs_random
    assert effect is not None and effect.value == pytest.approx(difference)
    assert effect.ci == pytest.approx(interval) and estimates["deactivated"].p_vs_random == pytest.approx(p)
    random = estimates["random"]
    assert random.seeds == tuple(dict.fromkeys(seeds)) and len(seeds) == table.size
    assert random.per_seed == pytest.approx(table.mean(axis=1).tolist())
    assert random.value == pytest.approx(table.mean())
    assert estimates["normal"].effect_vs_random is None and random.effect_vs_random is None


def per_condition(rows: list[dict], key: str) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for row in rows:
        out.setdefault(row["condition"], []).append(float(row[key]))
    return {name: np.array(v) for name, v in out.items()}


def test_seed_fields_follow_each_prompts_draw():
    """Every prompt of a random baseline runs under its own draw (one per unit, draw after draw), and
    its row records that draw's seed."""
    baseline = RandomBaseline(tuple(Intervention(((0, i, 0.0),)) for i in range(3)), (7, 8, 9))
    seeds = [field["seed"] for field in units.seed_fields(baseline, 8)]
    assert seeds == [baseline.seeds[baseline.draws.index(iv)] for iv in baseline.per_unit(8)]
    assert seeds == [7] * 8 + [8] * 8 + [9] * 8
    assert units.seed_fields(None, 2) == [{}, {}] and units.seed_fields(baseline.draws[0], 1) == [{}]


def test_qa_random_rows_are_their_draws_alone(tiny, neurons):
    lm = tiny("llama")
    items = load_qa(None, "ja", 8)
    config = qa.QAConfig(top_k=80, max_new_tokens=4, shots=1, baseline_seeds=SEEDS, batch_size=3)
    result = qa.run(lm, items, neurons, config, progress=True)  # the bar advances batch by batch
    assert result.random is not None and result.random.seeds == (0, 1, 2)
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

    def fake(lm, prompts, intervention=None, max_new_tokens=16, batch_size=8, stop_strings=None, bar=None):
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
    assert ids[0] == ids[1] and ids[2] == ids[0] * SEEDS  # paired by question; every draw on every question
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
    for item, row in zip(items * SEEDS, rows, strict=True):
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
    for prompt, row in zip(prompts * SEEDS, rows, strict=True):
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
            shares = np.array([row["shares"][label] for row in chosen])  # [draws x sentences, layers]
            shares = shares.reshape(-1, len(sentences), lm.num_layers).mean(axis=0)  # per sentence
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
