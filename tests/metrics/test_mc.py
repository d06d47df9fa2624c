"""Multiple-choice scoring against direct unbatched log-likelihoods; data parsing."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from scipy.stats import binomtest

from transfer_neurons.data import mc
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import next_token_logprobs
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics import mc as mm

ITEMS = [
    mc.MCItem("1", "en", "What is the capital of France?", ("Bangkok", "Paris", "Tokyo"), 1),
    mc.MCItem("2", "ja", "フランスの首都はどこですか？", ("バンコク", "パリ", "東京", "ソウル"), 1),
    mc.MCItem("3", "en", "How many legs does a spider have?", ("6", "8"), 1),
]


def direct_logprobs(lm, prompt, token_ids):
    """One prompt alone, no padding: log-softmax of the last position's logits."""
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.log_softmax(lm.model(ids).logits[0, -1].float(), -1)[token_ids]


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_scoring_equals_direct_computation(tiny, model_type):
    lm = tiny(model_type)
    token_ids, _ = mc.letter_token_ids(lm.tokenizer, 4)
    prompts = [mc.mc_prompt(item) for item in ITEMS]
    intervention = Intervention.of([(0, 3), (1, 7), (2, 11)], 0.0, "prompt")
    for iv in (None, intervention):
        got = next_token_logprobs(lm, prompts, token_ids, iv, batch_size=2)  # left-padded batches
        with apply_intervention(lm, iv):
            expected = torch.stack([direct_logprobs(lm, p, token_ids) for p in prompts])
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        direct_choice = [int(expected[q, : len(item.options)].argmax()) for q, item in enumerate(ITEMS)]
        assert mm.choose(got, [len(item.options) for item in ITEMS]) == direct_choice
    assert not torch.equal(next_token_logprobs(lm, prompts, token_ids), got), "the intervention does nothing"


def test_choose_ignores_letters_beyond_the_options():
    logprobs = torch.tensor([[-3.0, -2.0, -0.1, -5.0], [-1.0, -2.0, -3.0, -4.0]])
    assert mm.choose(logprobs, [2, 4]) == [1, 0]


def test_prompt_layout():
    assert mc.mc_prompt(ITEMS[0]) == (
        "Choose the correct answer.\n\nWhat is the capital of France?\nA. Bangkok\nB. Paris\nC. Tokyo\nAnswer:"
    )
    assert mc.mc_prompt(ITEMS[1]).endswith("D. ソウル\n答え:")


def test_item_parsing():
    row = {"question": "Q", "option_0": "a", "option_1": "N/A", "option_2": "c", "answer": "C", "question_id": 9}
    item = mc.mc_item(row, "ja", "row")
    assert item.options == ("a", "c") and item.answer == 1 and item.id == "9"
    assert mc.mc_item({"question": "Q", "options": ["x", "y"], "answer": 1}, "en", "row").answer == 1
    assert mc.mc_item({"question": "Q", "options": ["x", "y"], "answer_index": 0}, "en", "row").answer == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "Q", "options": ["x"], "answer": "A"}, "between 2 and 10 options"),
        ({"question": "Q", "options": ["x", "y"], "answer": "E"}, "points to no option"),
        ({"question": "Q", "options": ["x", "y"], "answer": "yes"}, "option letter"),
        ({"question": "Q", "options": ["x", ""], "answer": "A"}, "empty or non-text option"),
        ({"options": ["x", "y"], "answer": "A"}, "no 'question'"),
    ],
)
def test_item_errors(row, message):
    with pytest.raises(InputError, match=message):
        mc.mc_item(row, "en", "row")


def test_builtin_and_local_files(tmp_path):
    items = mc.load_mc(None, "it")
    assert len(items) == 86 and all(len(i.options) == 4 for i in items)
    assert items[0].question == "Qual è la capitale della Francia?" and items[0].options[items[0].answer] == "Parigi"
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "Q", "options": ["a", "b"], "answer": "B", "lang": "nl"}) + "\n")
    assert mc.read_mc(path, "nl")[0].answer == 1
    with pytest.raises(InputError, match="holds no questions in 'ja'"):
        mc.read_mc(path, "ja")


def test_hub_loading_through_datasets(monkeypatch):
    rows = [
        {
            "question_id": 1,
            "question": "Q",
            **{f"option_{k}": f"o{k}" for k in range(10)},
            "answer": "J",
            "answer_index": 9,
        }
    ]
    calls = []
    fake = types.SimpleNamespace(load_dataset=lambda name, config, split: calls.append((name, config, split)) or rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    items = mc.load_mc("li-lab/MMLU-ProX", "ja")
    assert calls == [("li-lab/MMLU-ProX", "ja", "test")]
    assert len(items[0].options) == 10 and items[0].answer == 9


def test_letter_tokens(tiny):
    ids, form = mc.letter_token_ids(tiny("llama").tokenizer, 4)
    assert len(set(ids)) == 4 and form in {" A", "A"}


def test_cyclic_scores_cancel_a_letter_bias():
    """Option 1 has the highest true score; letter A gets +10 whatever it shows."""
    true, bias = torch.tensor([1.0, 3.0, 0.0, 2.0]), torch.tensor([10.0, 0.0, 0.0, 0.0])
    n = 4
    for start in range(n):  # any presented order: rotate which option comes first
        order = [(k + start) % n for k in range(n)]
        shown = true[order]  # position k shows option order[k]
        shifted = torch.stack([shown[[(k + s) % n for k in range(n)]] + bias for s in range(n)])
        assert mm.choose(shifted[:1], [n]) == [0]  # letter scoring: A, wherever the best option is
        scores = mm.cyclic_scores(shifted)
        torch.testing.assert_close(scores, shown + bias.mean())  # each option's own score, plus mean bias
        assert order[mm.choose([scores], [n])[0]] == 1


def test_shifted_items_show_each_option_at_every_letter():
    item = ITEMS[1]
    shifted = [mc.shifted_item(item, s) for s in range(4)]
    assert shifted[0] == item and shifted[1].options == ("パリ", "東京", "ソウル", "バンコク")
    assert all(s.options[s.answer] == "パリ" for s in shifted)
    assert all(sorted(s.options[k] for s in shifted) == sorted(item.options) for k in range(4))


def test_letter_counts_and_chance_interval():
    assert mm.letter_counts(["A", "A", "C"], "ABCD") == {"A": 2, "B": 0, "C": 1, "D": 0}
    for hits, n in [(22, 86), (26, 86), (0, 5), (5, 5), (60, 86)]:
        expected = binomtest(hits, n).proportion_ci(method="wilson")
        assert mm.wilson_interval(hits, n) == pytest.approx((expected.low, expected.high))
    # 26 / 86 = 0.302: its interval 0.215-0.406 holds 0.25, so it is no finding; 60 / 86 is
    assert mm.near_chance(26, 86, 0.25) and mm.near_chance(22, 86, 0.25) and not mm.near_chance(60, 86, 0.25)
    assert mm.wilson_interval(0, 0) == (0.0, 1.0)
