"""A model run in bf16 ranks neurons like the same model in fp32 (accumulation is fp32/fp64 either way)."""

from __future__ import annotations

import pytest
import torch

from transfer_neurons import ParallelData, detect, load_model
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.testing import example_pairs

# 4 layers x 256 neurons: the top 5 % is 51 neurons, enough for the overlap to mean something
SIZES = {"hidden_size": 64, "intermediate_size": 256, "head_dim": 16}


@pytest.fixture(scope="module")
def pairs() -> ParallelData:
    rows = example_pairs(40)
    return ParallelData(lang="ja", en=[r["en"] for r in rows], l2=[r["ja"] for r in rows])


def top_share(lm, pairs, share: float = 0.05):
    layers = list(range(lm.num_layers))
    top_n = round(share * len(layers) * lm.mlp_width)
    return detect(lm, pairs, "type1", layers=layers, top_n=top_n, batch_size=8, progress=False)


@pytest.mark.parametrize("model_type", supported_model_types())
def test_bf16_ranks_top_neurons_like_fp32(model_folder, pairs, model_type):
    folder = str(model_folder(model_type, **SIZES))
    full = top_share(load_model(folder, device="cpu", dtype="float32", progress=False), pairs)
    half = top_share(load_model(folder, device="cpu", dtype="bfloat16", progress=False), pairs)
    assert half.settings["dtype"] == "bfloat16"
    assert half.scores.dtype == half.centroids.dtype == torch.float32
    ref, got = ({(l, i) for l, i, _ in r.top} for r in (full, half))
    assert len(ref) >= 50
    assert len(ref & got) / len(ref) >= 0.9
