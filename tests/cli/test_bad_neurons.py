"""Bad neuron-set files on every command that reads one: one `error:` line naming the problem,
exit 2, nothing written; and a language given twice to `latent`, and a study whose mutual kNN
needs more test pairs than it has."""

from __future__ import annotations

import json

import pytest

from helpers import EXAMPLES, assert_error, run, write_study

DEV = ["--device", "cpu", "--quiet"]
BAD = {  # the `top` list (or the whole file) -> the expected message
    "strings": ({"lang": "ja", "top": [["1", "2", "0.5"]]}, "needs a non-negative integer layer and neuron"),
    "two fields": ({"lang": "ja", "top": [[1, 2]]}, "must be [layer, neuron, score]"),
    "empty": ({"lang": "ja", "top": []}, "lists no neurons"),
    "float index": ({"lang": "ja", "top": [[1.5, 2, 0.5]]}, "needs a non-negative integer layer and neuron"),
    "negative neuron": ({"lang": "ja", "top": [[1, -2, 0.5]]}, "needs a non-negative integer layer and neuron"),
    "nan score": ({"lang": "ja", "top": [[1, 2, float("nan")]]}, "needs a finite number as score"),
    "repeated neuron": ({"lang": "ja", "top": [[1, 2, 0.5], [1, 2, 0.4]]}, "lists the same (layer, neuron) twice"),
    "no top": ({"lang": "ja"}, "has no 'top' list"),
    "not JSON": ("{oops", "is not valid JSON"),
    "layer outside the model": ({"lang": "ja", "top": [[99, 2, 0.5]]}, "lies outside the model's 4 layers"),
    "neuron outside the model": ({"lang": "ja", "top": [[1, 999, 0.5]]}, "lies outside the model's 4 layers"),
}


def commands(model, neurons, out):
    return {
        "ablate": [
            "ablate",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "1",
            "--data",
            EXAMPLES,
            "--max-sentences",
            "12",
            "--k",
            "3",
            "--out",
            out,
            *DEV,
        ],
        "specificity": [
            "specificity",
            "--model",
            model,
            "--neurons",
            neurons,
            "--data",
            EXAMPLES,
            "--data",
            EXAMPLES,
            "--langs",
            "ja,en",
            "--top-n",
            "1",
            "--out",
            out,
            *DEV,
        ],
        "qa": [
            "qa",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "1",
            "--max-questions",
            "2",
            "--out",
            out,
            *DEV,
        ],
        "logit-lens": [
            "logit-lens",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "1",
            "--data",
            EXAMPLES,
            "--out",
            out,
            *DEV,
        ],
        "generate": [
            "generate",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "1",
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "2",
            "--device",
            "cpu",
        ],
    }


@pytest.mark.parametrize("command", ["ablate", "specificity", "qa", "logit-lens", "generate"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_neuron_file(model_folder, tmp_path, command, case):
    content, message = BAD[case]
    if command == "specificity" and case == "neuron outside the model":
        message = "lies outside the model's"
    path = tmp_path / "neurons.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    out = tmp_path / "out"
    assert_error(run(*commands(model_folder("llama"), path, out)[command]), message, out)


def test_overlap_and_export_steering_refuse_bad_files(detected, tmp_path):
    path = tmp_path / "neurons.json"
    path.write_text(json.dumps({"lang": "ja", "top": [[1, 2]]}), encoding="utf-8")
    out = tmp_path / "out"
    assert_error(run("overlap", detected["type1"], path, "--out", out), "must be [layer, neuron, score]", out)
    result = run("export-steering", "--neurons", path, "--out", out / "s.pt")
    assert_error(result, "must be [layer, neuron, score]", out)


def test_latent_refuses_a_language_twice(model_folder, tmp_path):
    out = tmp_path / "out"
    result = run(
        "latent",
        "--model",
        model_folder("llama"),
        "--data",
        EXAMPLES,
        "--data",
        EXAMPLES,
        "--max-sentences",
        "12",
        "--k",
        "3",
        "--out",
        out,
        *DEV,
    )
    assert_error(result, "each language may have one --data file", out)


def test_study_refuses_k_above_its_test_pairs(model_folder, tmp_path):
    """The standalone latent refuses mutual kNN with k >= the number of pairs; so does the study
    (it used to lower k silently, giving mutual kNN 1.0 at every layer)."""
    config = write_study(tmp_path, model_folder("llama"))
    config.write_text(config.read_text().replace("latent: {k: 3}", "latent: {k: 25}"), encoding="utf-8")
    result = run("run", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert result.exit_code == 2
    assert "mutual kNN with k = 25 needs more than 25" in result.stderr
    assert not (tmp_path / "run" / "latent" / "latent.json").exists()
