"""Bad input to every command gives one `error:` line, exit status 2, no traceback and nothing written:
typer's own usage errors, non-finite numbers, the harness, the cache folder, output paths, leftovers
of killed runs and damaged detect folders."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest
import torch

from helpers import EXAMPLES, assert_error, run
from transfer_neurons.artifacts.io import file_digest, write_json, write_tensors
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.interventions import Intervention
from transfer_neurons.model import gguf, loading
from transfer_neurons.model.builtin import BUILTIN_MODELS, BuiltinModel

# --- typer's own usage errors -------------------------------------------------------------------


def _model_args(model_folder, out):
    return ["--model", model_folder("llama"), "--out", out, "--device", "cpu"]


def _below(option: str, value: str) -> tuple[str, ...]:
    """typer's words for a value below `min=1`: pydantic's since typer 0.29, click's before."""
    return (f"{option}: Input should be greater than or equal to 1", f"{option}: {value} is not in the range x>=1")


USAGE_ERRORS = {
    "batch size 0": (["detect", "--lang", "ja", "--data", EXAMPLES, "--batch-size", "0"], _below("--batch-size", "0")),
    "top-k -1": (["ablate", "--neurons", "n.json", "--data", EXAMPLES, "--top-k", "-1"], _below("--top-k", "-1")),
    "k 0": (["latent", "--data", EXAMPLES, "--k", "0"], _below("--k", "0")),
    "clamp nan": (["latent", "--data", EXAMPLES, "--clamp", "nan"], "--clamp: must be a finite number, not nan"),
    "clamp inf": (["ablate", "--neurons", "n.json", "--data", EXAMPLES, "--clamp", "inf"], "--clamp: must be a finite"),
    "clamp below range": (["latent", "--data", EXAMPLES, "--clamp", "0.2"], "--clamp: must be between 0.5 and 1"),
    "unknown choice": (["detect", "--lang", "ja", "--data", EXAMPLES, "--type", "type3"], "--type: 'type3' is not one"),
    "unknown option": (["latent", "--data", EXAMPLES, "--bogus", "1"], "--bogus: no such option"),
    "misspelt option": (
        ["latent", "--data", EXAMPLES, "--clmap", "1"],
        "--clmap: no such option; did you mean --clamp",
    ),
    "missing option": (["detect", "--lang", "ja"], "--data: missing; this option is required"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_typer_usage_errors_are_one_line(model_folder, tmp_path, case):
    args, message = USAGE_ERRORS[case]
    out = tmp_path / "out"
    result = run(args[0], *_model_args(model_folder, out), *args[1:])
    messages = (message,) if isinstance(message, str) else message
    assert_error(result, "", out)  # one `error:` line, exit 2, nothing written
    assert any(m in result.stderr for m in messages), result.stderr
    assert "Traceback" not in result.output and "Usage:" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-command"], "No such command 'no-such-command' (see '"),
        (["models", "pull"], "NAMES: missing; this argument is required"),
        (["export-steering", "--out", "{tmp}/s.pt"], "--neurons: missing"),
        (["detect", "--model", "m", "--lang"], "Option '--lang' requires an argument"),
    ],
)
def test_usage_errors_of_commands_and_groups(tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert_error(result, message, tmp_path / "s.pt")


def test_help_still_works():
    for args in (["--help"], ["latent", "--help"], ["models", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output and not result.stderr, args
    result = run()  # no command: the help, as before
    assert "Usage:" in result.output and "detect" in result.output and not result.stderr
    text = " ".join(run("generate", "--help").output.replace("│", " ").split())
    assert "negative flips the neuron's contribution" in text


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_factor(model_folder, detected, tmp_path, value):
    out = tmp_path / "s.pt"
    neurons = detected["type1"] / "neurons.json"
    assert_error(run("export-steering", "--neurons", neurons, "--out", out, "--factor", value), "--factor", out)
    result = run("generate", "--model", model_folder("llama"), "--prompt", "Hi", "--factor", value, "--device", "cpu")
    assert_error(result, "--factor: must be a finite number", out)


def test_negative_factor_is_allowed(detected, tmp_path):
    out = tmp_path / "s.pt"
    neurons = detected["type1"] / "neurons.json"
    result = run("export-steering", "--neurons", neurons, "--out", out, "--top-k", "10", "--factor", "-1")
    assert result.exit_code == 0, result.output
    vectors = [entry["steering_vector"] for entry in torch.load(out, weights_only=True).values()]
    assert sum(int((v == -1).sum()) for v in vectors) == 10


# --- harness ------------------------------------------------------------------------------------


@pytest.fixture
def harness_run(monkeypatch, tmp_path):
    """`transfer-neurons harness run --model transfer-neurons ...` with sys.argv restored afterwards."""
    pytest.importorskip("lm_eval")
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def invoke(pretrained, steer_path, task="arc_easy", *extra):
        model_args = f"pretrained={pretrained},steer_path={steer_path}"
        args = ["--model", "transfer-neurons", "--model_args", model_args, "--tasks", task, *extra]
        return run("harness", "run", *args, "--output_path", tmp_path / "results", "--device", "cpu")

    return invoke


def _steering(path, neurons, width=64):
    Intervention.of(neurons, 0.0, "all").export_steering(path, width)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing steering file", "steering file '{tmp}/none.pt' does not exist"),
        ("corrupt steering file", "is damaged or not a torch file"),
        ("truncated steering file", "is damaged or not a torch file"),
        ("hookpoint beyond the model", "steers layers.9.mlp.act_fn, but '{model}' has 4 layers (0-3)"),
        ("another MLP width", "has 128 factors at layers.1.mlp.act_fn, but the MLP of '{model}' has 64 neurons"),
        ("missing model", "model '{tmp}/no-model' is neither a folder here nor a model on the hub"),
    ],
)
def test_harness_bad_input(harness_run, model_folder, tmp_path, case, message):
    model = model_folder("llama")
    steer = _steering(tmp_path / "steer.pt", [(0, 5), (1, 9)])
    if case == "missing steering file":
        steer = tmp_path / "none.pt"
    elif case == "corrupt steering file":
        steer.write_bytes(b"not a torch file")
    elif case == "truncated steering file":
        steer.write_bytes(steer.read_bytes()[:200])
    elif case == "hookpoint beyond the model":
        _steering(steer, [(9, 5)])
    elif case == "another MLP width":
        _steering(steer, [(1, 5)], width=128)
    elif case == "missing model":
        model = tmp_path / "no-model"
    result = harness_run(model, steer)
    assert_error(result, message.format(tmp=tmp_path, model=model), tmp_path / "results")


def test_harness_bad_delta_and_missing_args(harness_run, model_folder, tmp_path):
    """A missing delta, or neither a steering file nor a delta: one line before lm-eval loads anything."""
    model = model_folder("llama")
    args = ["--model", "transfer-neurons", "--tasks", "arc_easy", "--output_path", tmp_path / "results"]
    missing = run("harness", "run", *args, "--model_args", f"pretrained={model},delta={tmp_path / 'none'}")
    assert_error(missing, f"delta '{tmp_path / 'none'}' does not exist", tmp_path / "results")
    neither = run("harness", "run", *args, "--model_args", f"pretrained={model}")
    assert_error(
        neither, "--model_args needs pretrained=MODEL and steer_path=FILE, delta=DIR or both", tmp_path / "results"
    )


TINY_TASK = """task: tiny_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: {docs}}}, cache_dir: {cache}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list: [{{metric: acc}}]
"""


def test_harness_runs_a_builtin_name(harness_run, model_folder, tmp_path, monkeypatch):
    """A built-in name runs a (local, two-question) task on its converted folder: here the tiny Llama."""
    monkeypatch.setitem(BUILTIN_MODELS, "fake-model", BuiltinModel("fake-model", "fake-dist", "a fake model"))
    monkeypatch.setattr(loading, "pull", lambda name, progress=True: model_folder("llama"))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    docs = [{"question": "Two plus two is", "choices": ["four", "five"], "answer": 0}] * 2
    (tasks / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    (tasks / "tiny_mc.yaml").write_text(TINY_TASK.format(docs=tasks / "docs.jsonl", cache=tmp_path / "datasets"))
    steer = _steering(tmp_path / "steer.pt", [(0, 5), (1, 9)])
    result = harness_run("fake-model", steer, "tiny_mc", "--include_path", tasks)
    assert result.exit_code == 0, result.output
    assert "|tiny_mc|" in result.output and list((tmp_path / "results").rglob("results_*.json"))


def test_harness_unknown_task(harness_run, model_folder, tmp_path):
    """lm-eval's own error for a task name it does not know (after indexing its tasks: slow)."""
    steer = _steering(tmp_path / "steer.pt", [(0, 5)])
    result = harness_run(model_folder("llama"), steer, task="no_such_task")
    assert_error(result, "Tasks not found: no_such_task; list the tasks with", tmp_path / "results")


def test_harness_hookpoint_not_in_the_model(model_folder, tmp_path):
    """GPT-2's MLP modules have other names: the model refuses the file as soon as it is loaded."""
    pytest.importorskip("lm_eval")
    from transfer_neurons.hooks.harness import NeuronSteeredModel

    steer = _steering(tmp_path / "steer.pt", [(0, 5)])
    with pytest.raises(InputError, match="no module layers.0.mlp.act_fn in"):
        NeuronSteeredModel(pretrained=str(model_folder("gpt2")), steer_path=str(steer), device="cpu")


# --- the cache folder ---------------------------------------------------------------------------


CACHE_COMMANDS = {
    "detect": ["detect", "--model", "smollm2-135m", "--lang", "ja", "--data", EXAMPLES, "--out", "{out}"],
    "models pull": ["models", "pull", "smollm2-135m"],
    "data udhr": ["data", "udhr", "--lang", "ja", "--out", "{out}/en-ja.jsonl"],
}


@pytest.mark.parametrize("command", CACHE_COMMANDS)
def test_cache_is_a_file(tmp_path, monkeypatch, command):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(cache))
    out = tmp_path / "out"
    result = run(*[str(a).format(out=out) for a in CACHE_COMMANDS[command]])
    assert_error(result, f"TRANSFER_NEURONS_CACHE='{cache}': '{cache}' is a file, not a folder", out)
    assert "point TRANSFER_NEURONS_CACHE at a writable folder" in result.stderr


def test_cache_under_a_file(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "file" / "cache"))
    assert_error(run("models", "pull", "smollm2-135m"), "is a file, not a folder", tmp_path / "out")


@pytest.mark.parametrize("command", CACHE_COMMANDS)
def test_cache_is_read_only(tmp_path, monkeypatch, command):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(cache))
    _read_only(monkeypatch, cache)
    out = tmp_path / "out"
    result = run(*[str(a).format(out=out) for a in CACHE_COMMANDS[command]])
    assert_error(result, f"TRANSFER_NEURONS_CACHE='{cache}': cannot write under '{cache}'", out)
    assert list(cache.iterdir()) == []


def _read_only(monkeypatch, folder):
    """Make `folder` read-only for os.access (a chmod does not stop root, who runs these tests in CI)."""
    access = os.access

    def fake(path, mode, *args, **kwargs):
        return os.path.abspath(path) != str(folder) and access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", fake)


# --- output paths -------------------------------------------------------------------------------


def test_export_steering_into_read_only_folder(detected, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    _read_only(monkeypatch, folder)
    out = folder / "s.pt"
    assert_error(
        run("export-steering", "--neurons", detected["type1"] / "neurons.json", "--out", out), "cannot write", out
    )
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder")
def test_export_steering_into_chmod_555_folder(detected, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    out = folder / "s.pt"
    assert_error(
        run("export-steering", "--neurons", detected["type1"] / "neurons.json", "--out", out), "cannot write", out
    )


def test_export_steering_refuses_to_overwrite(detected, tmp_path):
    neurons = detected["type1"] / "neurons.json"
    out = tmp_path / "s.pt"
    out.write_bytes(b"keep me")
    result = run("export-steering", "--neurons", neurons, "--out", out, "--top-k", "5")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: steering file '{out}' exists; add --force to overwrite it"
    ]
    assert out.read_bytes() == b"keep me"
    result = run("export-steering", "--neurons", neurons, "--out", out, "--top-k", "5", "--force")
    assert result.exit_code == 0, result.output
    assert sum(int((e["steering_vector"] == 0).sum()) for e in torch.load(out, weights_only=True).values()) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary file left


def test_export_steering_out_is_a_folder(detected, tmp_path):
    out = tmp_path / "folder.pt"
    out.mkdir()
    result = run("export-steering", "--neurons", detected["type1"] / "neurons.json", "--out", out)
    assert_error(result, "is a folder; give a file name", out)


@pytest.mark.parametrize("command", ["udhr", "tatoeba", "flores"])
@pytest.mark.parametrize("name", ["en-ja.csv", "en-ja", "en-ja.jsonl.gz"])
def test_pair_files_need_jsonl_or_tsv(tmp_path, monkeypatch, command, name):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / name
    result = run("data", command, "--lang", "ja", "--out", out)
    assert_error(result, f"pair file '{out}' must end in .jsonl or .tsv", out)
    assert not (tmp_path / "cache").exists()  # refused before anything was fetched


# --- leftovers of killed runs -------------------------------------------------------------------


def test_stale_conversion_folders_are_removed(model_folder, tmp_path, monkeypatch):
    """A conversion killed midway leaves `.convert-*` in the cache: the next conversion removes it
    once it has not changed for an hour, and leaves a running one alone."""
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    models = tmp_path / "cache" / "models"
    stale, running = models / ".convert-stale", models / ".convert-running"
    for folder in (stale, running):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    for path in (stale / "model.safetensors", stale):
        os.utime(path, (hours_ago, hours_ago))
    tiny = model_folder("llama")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    load_model, load_tokenizer = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained
    monkeypatch.setattr(gguf.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: load_model(tiny))
    monkeypatch.setattr(gguf.AutoTokenizer, "from_pretrained", lambda *a, **k: load_tokenizer(tiny))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF")
    target = gguf.convert_gguf(source)
    assert (target / "config.json").is_file()
    assert sorted(p.name for p in models.iterdir()) == sorted([".convert-running", target.name])


def test_result_files_get_the_users_mode(detected, tmp_path):
    """mkstemp makes 0600 files; every result file, safetensors included, gets the umask's mode."""
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    write_tensors(tmp_path / "t.safetensors", {"x": torch.ones(2)})
    write_json(tmp_path / "t.json", {"x": 1})
    for path in [*tmp_path.iterdir(), *detected["type1"].iterdir()]:
        if path.is_file() and not path.name.startswith("."):
            assert path.stat().st_mode & 0o777 == expected, path


# --- damaged detect folders ---------------------------------------------------------------------


@pytest.fixture
def detect_copy(detected, tmp_path):
    folder = tmp_path / "detect"
    shutil.copytree(detected["type1"], folder)
    return folder


def _rewrite_manifest(folder):
    """Make the manifest match the files again, so that export-steering itself must find the damage."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: file_digest(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("manifest", ["stale", "rewritten"])
def test_export_steering_scores_of_another_model(detect_copy, tmp_path, manifest):
    scores = detect_copy / "scores.safetensors"
    write_tensors(scores, {"scores": torch.zeros(2, 8)})
    if manifest == "rewritten":
        _rewrite_manifest(detect_copy)
    out = tmp_path / "s.pt"
    result = run("export-steering", "--neurons", detect_copy / "neurons.json", "--out", out, "--top-k", "5")
    assert_error(result, f"error: '{scores}'", out)
    if manifest == "rewritten":
        assert "([2 layers, 8 neurons]) does not fit" in result.stderr and "different models" in result.stderr


@pytest.mark.parametrize("manifest", ["stale", "rewritten"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "no scores tensor"])
def test_export_steering_damaged_scores(detect_copy, tmp_path, damage, manifest):
    scores = detect_copy / "scores.safetensors"
    if damage == "truncated":
        scores.write_bytes(scores.read_bytes()[: scores.stat().st_size // 2])
    elif damage == "empty":
        scores.write_bytes(b"")
    else:
        write_tensors(scores, {"other": torch.zeros(4, 64)})
    if manifest == "rewritten":
        _rewrite_manifest(detect_copy)
    out = tmp_path / "s.pt"
    result = run("export-steering", "--neurons", detect_copy / "neurons.json", "--out", out, "--top-k", "5")
    assert_error(result, f"error: '{scores}'", out)
    if manifest == "rewritten":
        assert "is damaged or not a detect scores file" in result.stderr
