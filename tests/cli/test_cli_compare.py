"""`transfer-neurons compare` refuses bad runs with one line and writes nothing; `demo --models`
runs the built-in study on the models given. (The comparison itself: tests/study/test_compare.py.)"""

from __future__ import annotations

import json

import pytest

from helpers import assert_error, run
from transfer_neurons.cli import study as study_cli


def finished(folder, **manifest):
    """A folder with a manifest.json of the given fields (a study run's by default, no steps)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, "command": "run", **manifest}))
    return folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("one run", "compare needs at least two finished runs; got 1"),
        ("unfinished", "is not a finished study run (no manifest.json)"),
        ("missing", "is not a finished study run (no such folder)"),
        ("not a run", "holds a 'latent' result, not a study run"),
        ("several models", "is a study of several models; give its model folders"),
        ("missing step", "misses its step 'latent' (listed in its manifest.json)"),
        ("nothing compared", "holds none of the compared analyses"),
        ("twice", "is given twice"),
        ("out is a run", "is one of the runs; choose another --out"),
    ],
)
def test_bad_runs_are_one_line_and_nothing_is_written(tmp_path, case, message):
    good = finished(tmp_path / "good")  # read after the bad one: never reached
    (tmp_path / "empty").mkdir()
    bad = {
        "unfinished": tmp_path / "empty",
        "missing": tmp_path / "nowhere",
        "not a run": finished(tmp_path / "latent", command="latent", files={}),
        "several models": finished(tmp_path / "multi", models=[{"name": "m", "run": "m"}]),
        "missing step": finished(tmp_path / "gone", steps={"data/ja": {}, "latent": {}}),
        "nothing compared": finished(tmp_path / "plain", steps={"data/ja": {}}),
    }
    runs = {"one run": [good], "twice": [good, tmp_path / "good"], "out is a run": [tmp_path / "empty", good]}
    out = good if case == "out is a run" else tmp_path / "cmp"
    result = run("compare", *runs.get(case, [bad.get(case), good]), "--out", out)
    assert_error(result, message, tmp_path / "cmp")
    assert [p.name for p in good.iterdir()] == ["manifest.json"]


def test_compare_without_runs_is_a_usage_error(tmp_path):
    assert_error(run("compare", "--out", tmp_path / "cmp"), "RUNS", tmp_path / "cmp")


@pytest.fixture
def studied(monkeypatch):
    """The configs `demo` would run (the study itself is replaced)."""
    configs = []

    def fake(config, out, **_):
        configs.append(config)
        return out / "report.html"

    monkeypatch.setattr(study_cli, "run_study", fake)
    return configs


def test_demo_models_runs_the_demo_on_each_model(studied, tmp_path):
    result = run("demo", "--models", "gemma-3-270m, smollm2-135m", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    (config,) = studied
    assert config.model_list() == ["gemma-3-270m", "smollm2-135m"] and config.languages[0] == "ja"
    assert run("demo", "--out", tmp_path / "demo").exit_code == 0
    assert studied[1].models is None and studied[1].model == "gemma-3-270m"  # the default stays one model
    assert run("demo", "--models", "smollm2-135m", "--out", tmp_path / "demo").exit_code == 0
    assert studied[2].models is None and studied[2].model == "smollm2-135m"


@pytest.mark.parametrize(
    "models, message",
    [("a,a", "models: 'a' is listed twice"), (" , ", "--models: give one or more models separated by commas")],
)
def test_demo_bad_models(studied, tmp_path, models, message):
    assert_error(run("demo", "--models", models, "--out", tmp_path / "demo"), message, tmp_path / "demo")
    assert not studied
