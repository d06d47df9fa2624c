"""Detection from the activation store: the same scores as forward passes, every method and type,
and both types for K languages cost one pass over English and one over each L2 set."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from transfer_neurons import ParallelData
from transfer_neurons.analyses.detect import DetectConfig
from transfer_neurons.analyses.methods import detect_method
from transfer_neurons.analyses.pool import Sentences
from transfer_neurons.hooks.capture import capture
from transfer_neurons.model.loading import attach_store
from transfer_neurons.testing import example_pairs

ROWS = example_pairs(16)


def pairs(lang: str, rows: list[dict], flip: bool = False) -> ParallelData:
    return ParallelData(lang=lang, en=[r["en"] for r in rows], l2=[r["ja"][::-1] if flip else r["ja"] for r in rows])


def forwarded(lm) -> tuple[list[int], object]:
    rows = [0]

    def count(_module, _args, kwargs):
        rows[0] += int(kwargs["input_ids"].shape[0])

    return rows, lm.model.get_decoder().register_forward_pre_hook(count, with_kwargs=True)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
@pytest.mark.parametrize(
    ("method", "neuron_type", "paper_compat"),
    [
        ("tn", "type1", False),
        ("tn", "type2", True),
        ("tn-centred", "type1", False),
        ("lape", None, False),
        ("ap", None, False),
    ],
)
def test_scores_from_the_store_equal_forward_passes(tiny, tmp_path, model_type, method, neuron_type, paper_compat):
    lm = tiny(model_type)
    data = pairs("ja", ROWS[:8])
    korean = [Sentences("ko", [r["ja"][::-1] for r in ROWS[8:14]], "ko.txt")]
    config = DetectConfig(top_n=20, batch_size=3, paper_compat=paper_compat)
    direct = detect_method(lm, method, data, korean, config, neuron_type or "type1")
    with_store = attach_store(dataclasses.replace(lm, store=None), tmp_path, groups=("last", "tokens"))
    first = detect_method(with_store, method, data, korean, config, neuron_type or "type1")  # fills
    again = detect_method(with_store, method, data, korean, config, neuron_type or "type1")  # reads only
    for result in (first, again):
        assert torch.equal(result.scores.nan_to_num(-9.0), direct.scores.nan_to_num(-9.0))
        assert result.top == direct.top  # bit for bit: the fill ran the detection's own batches
    if method.startswith("tn"):
        assert torch.equal(first.centroids, direct.centroids)


def test_both_types_for_two_languages_forward_each_sentence_once(tiny, tmp_path):
    lm = attach_store(dataclasses.replace(tiny("llama"), store=None), tmp_path)
    ja, ko = pairs("ja", ROWS[:8]), pairs("ko", ROWS[:8], flip=True)  # English shared by both
    rows, handle = forwarded(lm)
    try:
        for data in (ja, ko):
            for neuron_type in ("type1", "type2"):
                detect_method(lm, "tn", data, [], DetectConfig(top_n=10, batch_size=4), neuron_type)
    finally:
        handle.remove()
    distinct = len(set(ja.en) | set(ja.l2) | set(ko.l2))
    assert rows[0] == distinct  # K + 1 sentence sets, not 5K


def test_states_filled_in_other_batches_agree_to_float_rounding(tiny, tmp_path):
    """Sentences stored by an earlier capture with other batch-mates (other padding) differ from a
    fresh forward pass only by float32 rounding of the padded matrix products."""
    lm = tiny("gemma3_text")
    data = pairs("ja", ROWS[:8])
    direct = detect_method(lm, "tn", data, [], DetectConfig(top_n=20, batch_size=3), "type1")
    with_store = attach_store(dataclasses.replace(lm, store=None), tmp_path)
    mixed = [*data.l2[::-1], *data.en]
    list(capture(with_store, mixed, ("h",), batch_size=16))  # one padded batch of all 16
    result = detect_method(with_store, "tn", data, [], DetectConfig(top_n=20, batch_size=3), "type1")
    scale = direct.scores.nan_to_num(0).abs().max()
    diff = (result.scores - direct.scores).nan_to_num(0).abs().max()
    assert diff <= 1e-5 * scale, float(diff / scale)
