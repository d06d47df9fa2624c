"""`compare-methods` end to end through a local app (the command's registration in `cli/__init__`
is one line): the files, each set's detect folder read by `ablate`, and each bad input's one-line
error (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from helpers import assert_error
from helpers import run as run_app
from transfer_neurons.analyses.detect import DetectConfig
from transfer_neurons.analyses.methods import detect_method
from transfer_neurons.analyses.pool import read_reference
from transfer_neurons.cli.common import OneLineErrorsGroup
from transfer_neurons.cli.compare_methods import compare_methods
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.model.loading import load_model

TATOEBA = Path(__file__).parents[1] / "data" / "tatoeba"
app = typer.Typer(cls=OneLineErrorsGroup, pretty_exceptions_enable=False, add_completion=False)
app.command("compare-methods")(compare_methods)


@app.callback()
def _group() -> None:
    """A group, so that the command is called by its name as under the real app."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small train / test / non-parallel ja files and two reference files (ko pairs, nl .txt)."""
    folder = tmp_path_factory.mktemp("data")
    sizes = {"ja.train": 24, "ja.test": 16, "ja.nonparallel": 16, "ko.train": 16}
    out = {}
    for name, n in sizes.items():
        lines = (TATOEBA / f"en-{name}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        out[name] = folder / f"en-{name}.jsonl"
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    nl = [json.loads(line)["nl"] for line in (TATOEBA / "en-nl.train.jsonl").read_text().splitlines()[:16]]
    out["nl"] = folder / "udhr-nl.txt"
    out["nl"].write_text("\n".join(nl) + "\n", encoding="utf-8")
    return out


def compare(model, files, out, *extra):
    args = [
        "compare-methods",
        "--model",
        model,
        "--lang",
        "ja",
        "--train",
        files["ja.train"],
        "--test",
        files["ja.test"],
        "--nonparallel",
        files["ja.nonparallel"],
        "--reference",
        files["ko.train"],
        "--reference",
        files["nl"],
        "--out",
        out,
        "--k",
        "3",
        "--bootstrap",
        "20",
        "--baseline-seeds",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def wide(model_folder):
    return model_folder("llama", intermediate_size=256)


def test_compare_methods_writes_its_files(wide, files, tmp_path):
    out = tmp_path / "out"
    result = compare(wide, files, out, "--methods", "tn,lape", "--top-k", "6", "--no-output-lang", "--max-items", "2")
    assert result.exit_code == 0, result.output
    assert result.output.count("mutual kNN vs random") == 2
    saved = json.loads((out / "methods.json").read_text())
    assert list(saved["methods"]) == ["tn", "lape"] and saved["top_k"] == 6
    assert saved["methods"]["lape"]["output_lang"] is None and saved["methods"]["lape"]["qa"]["normal"]["n"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "compare-methods" and manifest["settings"]["methods"] == ["tn", "lape"]
    assert set(manifest["inputs"]) == {"model", "train", "test", "nonparallel", "reference_0", "reference_1"}
    assert {"methods.json", "methods.png", "lape/neurons.json", "type2/manifest.json"} <= set(manifest["files"])
    ablated = tmp_path / "ablate"
    later = run_app(
        "ablate",
        "--model",
        wide,
        "--neurons",
        out / "lape" / "neurons.json",
        "--data",
        files["ja.test"],
        "--out",
        ablated,
        "--top-k",
        "6",
        "--k",
        "3",
        "--bootstrap",
        "0",
        "--device",
        "cpu",
        "--quiet",
    )
    assert later.exit_code == 0, later.output


def test_top_k_above_a_method_list_names_the_method(wide, files, tmp_path):
    lm = load_model(str(wide), device="cpu", progress=False)
    train = read_pairs(files["ja.train"], "ja")
    references = [read_reference(files["ko.train"]), read_reference(files["nl"])]
    listed = len(detect_method(lm, "lape", train, references, DetectConfig(top_n=200, batch_size=8)).top)
    assert listed < 200, "degenerate test: LAPE lists every neuron"
    out = tmp_path / "out"
    result = compare(wide, files, out, "--methods", "lape", "--top-k", str(listed + 1))
    assert_error(result, f"method lape lists {listed} neurons for 'ja', fewer than --top-k {listed + 1}", out)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--methods", "tn,xyz"], "--methods: unknown method 'xyz'; choose among tn, tn-centred, lape, ap"),
        (["--methods", "tn,tn"], "--methods: Value error, name each method once"),
        (["--top-k", "0"], "--top-k"),
        (["--train", "missing.jsonl"], "data file 'missing.jsonl' does not exist"),
        (["--reference", "nowhere.txt"], "reference file 'nowhere.txt' does not exist"),
        (["--lang", "ko"], "has no 'ko'"),
    ],
)
def test_bad_input_is_one_line(model_folder, files, tmp_path, options, message):
    out = tmp_path / "out"
    result = compare(model_folder("llama"), files, out, *options)
    assert_error(result, message, out)


def test_a_pool_too_small_fails_before_the_model_loads(files, tmp_path):
    out = tmp_path / "out"
    japanese = {**files, "ko.train": files["ja.train"], "nl": files["ja.train"]}  # the pool: en and ja only
    result = compare("no-such-model", japanese, out, "--methods", "lape")
    assert_error(result, "--method lape needs sentences of at least 3 languages", out)
