"""`steer` end to end on the tiny Llama: the files, the dev/test split, a result that loads back, the
per-row measures, and means reused from a previous run (bad input: test_probe.py)."""

from __future__ import annotations

import json

from helpers import EXAMPLES, run
from transfer_neurons.analyses.steer import SteerResult
from transfer_neurons.analyses.steer_grid import METRICS


def test_steer_writes_every_file_and_loads_back(model_folder, detected, tmp_path):
    out = tmp_path / "steer"
    args = [
        "steer", "--model", model_folder("llama"), "--neurons", detected["type2"], "--neurons", detected["type1"],
        "--source-neurons", detected["type1"], "--source-neurons", detected["type2"], "--deactivate-source",
        "--source", "en", "--data", EXAMPLES, "--stats", f"ja={EXAMPLES}", "--stats", f"en={EXAMPLES}",
        "--methods", "add,set,diffmean,scale", "--alphas", "0.5,2", "--top-k", "6", "--max-items", "6",
        "--max-stats", "8", "--max-new-tokens", "3", "--baseline-seeds", "2", "--bootstrap", "50",
        "--device", "cpu", "--quiet", "--out", out,
    ]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "alpha chosen on the dev prompts" in result.output
    files = set(json.loads((out / "manifest.json").read_text())["files"])
    assert files == {"steer.json", "steer.jsonl", "steer.png", "means.json", "means.safetensors"}
    loaded = SteerResult.load(out)
    assert loaded.settings["n_prompts"] == {"dev": 2, "test": 4}
    assert len(loaded.grid) == 2 * 4 * 2 * 2  # sets x methods x source deactivation x alphas
    assert len(loaded.chosen) == 2 * 4 * 2
    cell = loaded.chosen[0]
    assert set(cell.steered) == set(METRICS) and cell.steered["target"].effect_vs_random is not None
    assert cell.random["target"].per_seed is not None and len(cell.random["target"].per_seed) == 2
    summary = json.loads((out / "steer.json").read_text())
    assert summary["split_note"].startswith("alpha chosen on the dev prompts")
    assert set(summary["chosen"][0]["steered"]["target"]) >= {"value", "ci", "effect_vs_random", "p_vs_random"}
    rows = loaded.rows
    per_split = {"dev": 2 * (1 + 2 * 4 * 2 * 2 * 3), "test": 4 * (1 + 2 * 4 * 2 * 3)}  # normal + (steered, 2 draws)
    assert {s: sum(r["split"] == s for r in rows) for s in per_split} == per_split
    assert {r["category"] for r in rows} <= {"target", "source", "other", "blank"}
    chosen_alphas = {(c.key["set"], c.key["method"], c.key["deactivate_source"]): c.key["alpha"] for c in loaded.chosen}
    assert set(chosen_alphas.values()) <= {0.5, 2.0}

    again = tmp_path / "again"  # the means of the first run, no --stats
    reused = [*args[: args.index("--stats")], *args[args.index("--methods") :]]
    result = run(*[a if a != out else again for a in reused], "--means", out)
    assert result.exit_code == 0, result.output
    assert SteerResult.load(again).means.means.equal(loaded.means.means)
