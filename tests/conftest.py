"""Tiny random-weight models built in-process (no downloads), saved as local model folders."""

from __future__ import annotations

import pytest
import torch

from transfer_neurons import load_model
from transfer_neurons.data.examples import example_data

EXAMPLES = example_data()

# Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP thread handoffs
# make each small op milliseconds slow: one thread keeps the suite fast whatever else runs.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    """Factory: the folder of a tiny model of a given type and sizes (built once per session)."""
    from transfer_neurons.testing import build_tiny_model

    cache: dict = {}

    def get(model_type: str, **sizes):
        key = (model_type, tuple(sorted(sizes.items())))
        if key not in cache:
            cache[key] = build_tiny_model(model_type, tmp_path_factory.mktemp(model_type), **sizes)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def tiny(model_folder):
    """Factory: a loaded tiny model (float32, CPU) of a given type."""
    loaded: dict = {}

    def get(model_type: str):
        if model_type not in loaded:
            loaded[model_type] = load_model(str(model_folder(model_type)), device="cpu", progress=False)
        return loaded[model_type]

    return get
