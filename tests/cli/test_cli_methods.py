"""`detect --center / --method lape|ap` end to end: the files, the method in neurons.json and the
pool in the manifest; every method's neurons.json through `ablate` and `specificity`; and each bad
input's one-line error (exit 2, nothing written)."""

from __future__ import annotations

import json

import pytest
from test_bad_neurons import commands

from helpers import EXAMPLES, assert_error, detect_args, run
from transfer_neurons.testing import example_pairs

METHODS = {  # method -> its detect options
    "tn": [],
    "tn-centred": ["--center"],
    "lape": ["--method", "lape"],
    "ap": ["--method", "ap"],
}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """A ko pair file and an nl .txt (stand-ins: the example sentences reversed)."""
    folder = tmp_path_factory.mktemp("references")
    rows = example_pairs(30)[12:]
    ko = folder / "en-ko.jsonl"
    ko.write_text("".join(json.dumps({"en": r["en"], "ko": r["ja"][::-1]}) + "\n" for r in rows), encoding="utf-8")
    nl = folder / "udhr-nl.txt"
    nl.write_text("".join(r["en"][::-1] + "\n\n" for r in rows), encoding="utf-8")
    return [ko, nl]


@pytest.fixture(scope="module")
def detected_by(model_folder, references, tmp_path_factory):
    """Each method's detect folder on the tiny Llama."""
    out = {}
    for method, options in METHODS.items():
        folder = tmp_path_factory.mktemp(method)
        refs = [] if method == "tn" else ["--reference", references[0], "--reference", references[1]]
        result = run(*detect_args(model_folder("llama"), EXAMPLES, folder, "--top-n", "10", *options, *refs))
        assert result.exit_code == 0, result.output
        assert f"(method {method}" in result.output
        out[method] = folder
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_detect_writes_the_method_and_pool(detected_by, references, method):
    folder = detected_by[method]
    neurons = json.loads((folder / "neurons.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert neurons["method"] == manifest["method"] == method and neurons["lang"] == "ja"
    assert neurons["type"] == (None if method in ("lape", "ap") else "type1")
    assert 1 <= len(neurons["top"]) <= 10
    assert (folder / "centroids.safetensors").exists() == method.startswith("tn")
    if method == "tn":
        assert manifest["pool"] is None and manifest["settings"]["center"] is False
        return
    assert manifest["pool"] == {
        "files": [str(EXAMPLES), str(references[0]), str(references[1])],
        "sizes": {"en": 12, "ja": 12, "ko": 18, "nl": 18},
        "langs": ["en", "ja", "ko", "nl"],
    }
    assert set(manifest["inputs"]) == {"model", "data", "reference_0", "reference_1"}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("command", ["ablate", "specificity"])
def test_every_method_feeds_ablate_and_specificity(detected_by, model_folder, tmp_path, method, command):
    out = tmp_path / "out"
    args = commands(model_folder("llama"), detected_by[method] / "neurons.json", out)[command]
    result = run(*args, "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").exists()


def _bad(model_folder, tmp_path, *options):
    return run(*detect_args(model_folder("llama"), EXAMPLES, tmp_path / "out", *options))


BAD_OPTIONS = {  # options (KO: a ko reference) -> message
    "lape without references": (["--method", "lape"], "--method lape needs sentences of at least 3 languages"),
    "center without references": (["--center"], "the centred score (--center) needs sentences of at least 3"),
    "center with ap": (["--center", "--method", "ap", "KO"], "--center centres the TN score"),
    "type with lape": (["--method", "lape", "--type", "type2", "KO"], "--type is for the TN methods"),
    "paper-compat with ap": (["--method", "ap", "--paper-compat", "KO"], "--paper-compat is for the TN methods"),
    "reference with tn": (["KO"], "--reference is for --center"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_method_options(model_folder, tmp_path, references, case):
    options, message = BAD_OPTIONS[case]
    options = [x for option in options for x in (["--reference", references[0]] if option == "KO" else [option])]
    assert_error(_bad(model_folder, tmp_path, *options), message, tmp_path / "out")


BAD_REFERENCES = {  # file name, content (None: no file) -> message
    "missing": ("en-ko.jsonl", None, "reference file"),
    "empty pair file": ("en-ko.jsonl", "", "holds no sentences"),
    "blank txt": ("ko.txt", "\n  \n", "holds no 'ko' sentences"),
    "unnamed txt": ("sentences.txt", "Hallo.\n", "cannot tell the language of"),
    "two languages": ("three.jsonl", '{"en": "a", "ko": "b", "nl": "c"}\n', "name it as LANG=FILE"),
    "bad JSON": ("en-ko.jsonl", '{"en": "a", "ko": "b"}\nnot json\n', "line 2 is not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_bad_reference(model_folder, tmp_path, references, case):
    name, content, message = BAD_REFERENCES[case]
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = _bad(model_folder, tmp_path, "--center", "--reference", references[1], "--reference", path)
    assert_error(result, message, tmp_path / "out")


def test_reference_named_lang_equals_file(model_folder, references, tmp_path):
    """LANG=FILE takes that field of a pair file: the en side of the ko file joins as English."""
    out = tmp_path / "out"
    refs = ["--reference", f"en={references[0]}", "--reference", f"xx={references[1]}"]
    result = run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10", "--method", "ap", *refs))
    assert result.exit_code == 0, result.output
    pool = json.loads((out / "manifest.json").read_text())["pool"]
    assert pool["sizes"] == {"en": 30, "ja": 12, "xx": 18}
