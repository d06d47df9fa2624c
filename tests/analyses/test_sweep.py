"""Steering sweep on a tiny model: files, shares, factor 1 equals normal, round trip, bad lists."""

from __future__ import annotations

import json

import pytest

from helpers import assert_error, run
from transfer_neurons.analyses import sweep
from transfer_neurons.artifacts.neurons import NeuronSet

PROMPTS = ["私と踊っていただけませんか。", "寒い。", "時間はいくらでも作れる。"]
FILES = {"sweep.json", "sweep.jsonl", "sweep.png", "manifest.json"}


@pytest.fixture(scope="module")
def neurons(tiny) -> NeuronSet:
    """12 'ja' Type-2 neurons of the tiny Llama over its last two layers, best first."""
    layers = (2, 3)
    top = tuple((layers[k % 2], 5 * k + 1, 1.0 - 0.01 * k) for k in range(12))
    return NeuronSet(top, "ja", "type2", tiny("llama").name, layers)


def test_sweep_shares_and_round_trip(tiny, neurons, tmp_path):
    config = sweep.SweepConfig(factors=(0, 1, 50), top_k=(4, 12), max_new_tokens=4)
    result = sweep.run(tiny("llama"), PROMPTS, neurons, config, "ja")
    assert len(result.rows) == len(PROMPTS) * (1 + 3 * 2)
    assert set(result.cells) == {(f, k) for f in (0.0, 1.0, 50.0) for k in (4, 12)}
    for shares in [result.normal, *result.cells.values()]:
        assert {"ja", "en", "none", "other"} <= set(shares) and sum(shares.values()) == pytest.approx(1.0)
    outputs = {(r["factor"], r["top_k"]): [] for r in result.rows}
    for row in result.rows:
        outputs[(row["factor"], row["top_k"])].append(row["output"])
    for k in (4, 12):  # scaling by 1 changes nothing
        assert outputs[(1.0, k)] == outputs[(None, None)] and result.cells[(1.0, k)] == result.normal
    assert outputs[(50.0, 12)] != outputs[(None, None)], "degenerate: amplification changes nothing"

    out = result.save(tmp_path / "sweep")
    assert {p.name for p in out.iterdir()} == FILES
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["schema_version"] == 1 and len(summary["cells"]) == 6
    loaded = sweep.SweepResult.load(out)
    assert loaded == result and loaded.summary_lines() == result.summary_lines()
    lines = result.summary_lines()
    assert "top-4" in lines[1] and "top-12" in lines[1] and len(lines) == 2 + 3


def cli_args(model, neurons_file, data, out, *extra):
    quick = ["--device", "cpu", "--quiet", "--max-new-tokens", "3", "--max-items", "2"]
    return ["sweep", "--model", model, "--neurons", neurons_file, "--data", data, "--out", out, *quick, *extra]


@pytest.fixture()
def inputs(model_folder, neurons, tmp_path):
    neurons_file = tmp_path / "neurons.json"
    neurons.save(neurons_file)
    data = tmp_path / "prompts.txt"
    data.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return model_folder("llama"), neurons_file, data


def test_sweep_command(inputs, tmp_path):
    out = tmp_path / "out"
    result = run(*cli_args(*inputs, out, "--factor", "0,2", "--top-k", "3,12"))
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == FILES
    assert "share of outputs in ja" in result.output and "top-12" in result.output
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * (1 + 2 * 2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "sweep" and manifest["settings"]["factors"] == [0.0, 2.0]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--factor", "nan", "--factor 'nan': nan is out of range"),
        ("--factor", "1,inf", "inf is out of range"),
        ("--factor", "1,,2", "'' is not a number"),
        ("--factor", "x", "'x' is not a number"),
        ("--top-k", "0", "0 is out of range"),
        ("--top-k", "2.5", "'2.5' is not a number"),
        ("--top-k", "4,13", "--top-k 13 must be between 1 and the 12 neurons"),
    ],
)
def test_sweep_bad_lists(inputs, tmp_path, option, value, message):
    out = tmp_path / "out"
    assert_error(run(*cli_args(*inputs, out, option, value)), message, out)
