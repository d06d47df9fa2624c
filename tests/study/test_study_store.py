"""A study reads everything that does not intervene from its activation store: its
non-interventional captures forward each distinct sentence once, and a second study sharing the
store (`store:`) forwards none of them again."""

from __future__ import annotations

import pytest

from helpers import write_study
from transfer_neurons.hooks import capture as capture_module
from transfer_neurons.study.config import load_config
from transfer_neurons.study.runner import run_study

NO_DOWNSTREAM = "downstream: {qa: false, mc: false, output_lang: false}\n"


@pytest.fixture
def counted(monkeypatch):
    """Sentences forwarded without an intervention (rows), and every distinct sentence captured."""
    seen: dict = {"rows": 0, "texts": set()}
    forward, stored = capture_module._forward, capture_module._stored

    def counting_forward(lm, sentences, parts, layers, batch_size, stop_early, desc, progress, intervention):
        for batch in forward(lm, sentences, parts, layers, batch_size, stop_early, desc, progress, intervention):
            if intervention is None:
                seen["rows"] += len(batch.index)
            yield batch

    def recording_stored(lm, store, sentences, *args):
        seen["texts"].update(sentences)
        return stored(lm, store, sentences, *args)

    monkeypatch.setattr(capture_module, "_forward", counting_forward)
    monkeypatch.setattr(capture_module, "_stored", recording_stored)
    return seen


def test_each_distinct_sentence_is_forwarded_once_and_a_shared_store_is_reused(model_folder, tmp_path, counted):
    path = write_study(
        tmp_path,
        model_folder("llama"),
        "store: shared-store\nmethods: {enabled: true, languages: [ja], methods: [tn, tn-centred, ap]}\n",
    )
    path.write_text(path.read_text().replace("downstream: {max_questions: 3, top_k: 8}\n", NO_DOWNSTREAM))
    config = load_config(path)
    assert config.store == tmp_path / "shared-store"
    run_study(config, tmp_path / "run1", progress=False, log=lambda _: None)
    assert counted["texts"] and counted["rows"] == len(counted["texts"])
    assert not (tmp_path / "run1" / "store").exists() and (tmp_path / "shared-store").is_dir()

    counted["rows"] = 0
    run_study(config, tmp_path / "run2", progress=False, log=lambda _: None)
    assert counted["rows"] == 0  # every state read from the shared store
