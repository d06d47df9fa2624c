"""A study's bad inputs are found before any step runs (one `error:` line, exit 2, no step folder);
one results folder is written by one command at a time; a killed rerun never leaves a manifest or
report of the old settings."""

from __future__ import annotations

import json

import pytest

from helpers import EXAMPLES, assert_error, run, write_study
from transfer_neurons.artifacts.io import LOCK, locked
from transfer_neurons.errors import InputError
from transfer_neurons.study import data_steps, steps
from transfer_neurons.study.config import load_config
from transfer_neurons.study.runner import run_study


def write_pairs(path, lang: str, count: int) -> None:
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:count]]
    path.write_text("".join(json.dumps({"en": r["en"], lang: r["ja"]}) + "\n" for r in rows), encoding="utf-8")


def edit(config, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new), encoding="utf-8")


# ---------------------------------------------------------------- checks before any step


def test_missing_model_is_reported_before_any_step(tmp_path):
    config = write_study(tmp_path, tmp_path / "no-such-model")
    out = tmp_path / "run"
    assert_error(run("run", config, "--out", out), "model: model '", out)
    assert not out.exists()


def test_missing_relative_model_under_an_existing_folder(model_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    config = write_study(tmp_path, "m/trunc")
    out = tmp_path / "run"
    assert_error(run("run", config, "--out", out), "model: model 'm/trunc' not found", out)
    assert not out.exists()


def test_unreachable_hub_model_is_reported_before_any_step(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network: nothing to retry
    config = write_study(tmp_path, "someorg/no-such-model")
    out = tmp_path / "run"
    result = run("run", config, "--out", out)
    assert_error(result, "model: could not load model 'someorg/no-such-model': the Hugging Face hub cannot", out)
    assert not out.exists()


def test_unknown_udhr_language_before_a_missing_model(tmp_path, monkeypatch):
    from transfer_neurons.data import udhr

    def resolve(code):
        if code != "ja":
            raise InputError("unknown")
        return code, None

    monkeypatch.setattr(udhr, "resolve", resolve)
    config = tmp_path / "study.yaml"
    config.write_text(f"model: {tmp_path / 'no-such-model'}\nlanguages: [ja, qq]\n")
    out = tmp_path / "run"
    assert_error(run("run", config, "--out", out), "languages.1: 'qq' is not in the UDHR corpus", out)
    assert not out.exists()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("latent: {k: 3}", "latent: {k: 3}\nlatent: {k: 4}", "latent: the key is given twice (line 12)"),
        ("detect: {top_n: 30}", "detect:\n  top_n: 30\n  top_n: 20", "detect.top_n: the key is given twice"),
        ("    ja: {train: ja.jsonl}", "    ja: {train: ja.jsonl}\n    ja: {train: ko.jsonl}", "data.files.ja: the"),
        (
            "    ja: {train: ja.jsonl}",
            "    ja: {train: ja.jsonl}\n    nl: {train: ja.jsonl}",
            "data.files.nl: 'nl' is not in languages",
        ),
    ],
    ids=["top-level", "nested", "data file", "file of an unlisted language"],
)
def test_config_errors(model_folder, tmp_path, old, new, message):
    config = write_study(tmp_path, model_folder("llama"))
    edit(config, old, new)
    out = tmp_path / "run"
    assert_error(run("run", config, "--out", out), message, out)
    assert not out.exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "{train: ko.jsonl, test: test.jsonl, nonparallel: np.jsonl}",
            "data.files.ko.nonparallel: file '{np}', beside data.files.ko.test, has 7 en-ko pairs but the "
            "parallel pairs number 12",
        ),
        (
            "{train: ko.jsonl, nonparallel: np.jsonl}",
            "data.files.ko.nonparallel: file '{np}', split like data.files.ko.train as there is no test file, "
            "has 7 en-ko pairs but the parallel pairs number 40",
        ),
    ],
    ids=["beside a test file", "split like train"],
)
def test_nonparallel_of_another_size(model_folder, tmp_path, entry, message):
    config = write_study(tmp_path, model_folder("llama"))
    write_pairs(tmp_path / "test.jsonl", "ko", 12)
    write_pairs(tmp_path / "np.jsonl", "ko", 7)
    edit(config, "{train: ko.jsonl, nonparallel: ko.jsonl}", entry)
    out = tmp_path / "run"
    assert_error(run("run", config, "--out", out), message.format(np=tmp_path / "np.jsonl"), out)
    assert not out.exists()


def test_nonparallel_split_like_train(model_folder, tmp_path):
    """Without a test file, the non-parallel pairs (one per train pair) are split like train, so
    the test split and its non-parallel pairs pair up one to one."""
    config = write_study(tmp_path, model_folder("llama"))
    splits = data_steps.file_splits(load_config(config), "ko")
    assert len(splits["nonparallel.jsonl"]) == len(splits["test.jsonl"]) == 20
    assert splits["nonparallel.jsonl"].en == splits["test.jsonl"].en  # ko.jsonl is both files


@pytest.mark.parametrize("command", ["latent", "ablate"])
def test_standalone_nonparallel_of_another_size(model_folder, tmp_path, command):
    data, short = tmp_path / "ja.jsonl", tmp_path / "np.jsonl"
    write_pairs(data, "ja", 12)
    write_pairs(short, "ja", 7)
    neurons = tmp_path / "neurons.json"
    neurons.write_text(json.dumps({"lang": "ja", "type": "type1", "layers": [0], "top": [[0, 1, 0.5]]}))
    extra = ["--neurons", neurons, "--top-k", "1"] if command == "ablate" else []
    out = tmp_path / "out"
    args = [command, "--model", model_folder("llama"), "--data", data, "--nonparallel", short, "--k", "3"]
    result = run(*args, *extra, "--out", out, "--device", "cpu", "--quiet")
    assert_error(result, f"non-parallel file '{short}' has 7 en-ja pairs but the parallel pairs number 12", out)


# ---------------------------------------------------------------- one command per results folder


def test_study_into_a_busy_folder(model_folder, tmp_path):
    config = write_study(tmp_path, model_folder("llama"))
    out = tmp_path / "run"
    with locked(out):
        result = run("run", config, "--out", out)
        assert_error(result, f"output folder '{out}' is busy", tmp_path / "nothing")
        assert [p.name for p in out.iterdir()] == [LOCK]  # no step began
    assert not out.exists()  # the lock left nothing behind


def test_detect_into_a_busy_folder(model_folder, tmp_path):
    out = tmp_path / "out"
    args = [
        "detect",
        "--model",
        model_folder("llama"),
        "--lang",
        "ja",
        "--data",
        EXAMPLES,
        "--out",
        out,
        "--top-n",
        "20",
    ]
    with locked(out):
        result = run(*args, "--device", "cpu", "--quiet", "--max-sentences", "12")
        assert_error(result, f"output folder '{out}' is busy: another transfer-neurons command", tmp_path / "x")
        assert [p.name for p in out.iterdir()] == [LOCK]
    result = run(*args, "--device", "cpu", "--quiet", "--max-sentences", "12")  # free again
    assert result.exit_code == 0, result.output
    assert LOCK not in {p.name for p in out.iterdir()}


def test_two_processes_on_one_folder(tmp_path):
    """The lock is taken across processes: a second process finds the folder busy while the first
    holds it, and takes it once the first has ended."""
    import subprocess
    import sys

    out = tmp_path / "out"
    hold = (
        "import sys, time; from transfer_neurons.artifacts.io import locked\n"
        f"with locked({str(out)!r}):\n    print('held', flush=True); sys.stdin.readline()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="is busy"), locked(out):
            pass
    finally:
        holder.communicate("\n", timeout=60)
    with locked(out):
        assert (out / LOCK).is_file()
    assert not out.exists()


def test_lock_keeps_existing_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("{}")
    with locked(out):
        pass
    assert [p.name for p in out.iterdir()] == ["result.json"]


# ---------------------------------------------------------------- a killed rerun


def test_killed_rerun_leaves_no_manifest_of_old_settings(model_folder, tmp_path, monkeypatch):
    config = write_study(tmp_path, model_folder("llama"))
    edit(config, "downstream: {max_questions: 3, top_k: 8}", "downstream: {qa: false, mc: false, output_lang: false}")
    edit(config, "characterise: {top_n: 20}", "characterise: {specificity: false, overlap: false, top_n: 20}")
    out = tmp_path / "run"
    run_study(load_config(config), out, progress=False, log=lambda line: None)
    assert (out / "manifest.json").is_file() and (out / "report.html").is_file()

    def killed(study, folder):
        raise RuntimeError("killed")  # the run dies inside the recomputed step

    monkeypatch.setattr(steps, "latent_step", killed)
    edit(config, "latent: {k: 3}", "latent: {k: 4}")
    with pytest.raises(RuntimeError, match="killed"):
        run_study(load_config(config), out, progress=False, log=lambda line: None)
    assert not (out / "manifest.json").exists() and not (out / "report.html").exists()
    assert not (out / "latent" / "step.json").exists()  # the old latent result is gone with its key
    assert not (out / LOCK).exists()

    monkeypatch.undo()
    run_study(load_config(config), out, progress=False, log=lambda line: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["latent"]["k"] == 4 and manifest["steps"]["latent"]["status"] == "computed"
