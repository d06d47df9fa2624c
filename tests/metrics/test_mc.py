"""Multiple-choice scoring against direct unbatched log-likelihoods; data parsing."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

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
