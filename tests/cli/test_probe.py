"""The probe: every command of the command line, run on tiny models with one input made bad at a time
(an option value, a data file, a model folder, a neuron set of another model), must answer with its
one-line error: exit status 2, one `error:` line holding the expected words, nothing written.

`good()` gives a valid invocation of every command, `CASES` the (command, bad input, expected error)
table; a case changes one option of the good invocation. `test_every_command_is_probed` fails for a
command that has no case yet, so the next command added is probed the same way. An input that must be
*accepted*, a detect folder for `--neurons`, is at the end (the same model at another path or name:
test_identity.py; a full disk, simulated: test_rewrite.py; hostile text in JSONL: test_jsonl.py).
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from helpers import EXAMPLES, assert_error, run, write_study
from transfer_neurons.artifacts.io import file_digest
from transfer_neurons.cli import app
from transfer_neurons.model.loading import load_model

DEV = ["--device", "cpu", "--quiet"]
MODEL_COMMANDS = [  # every command that loads a model (and takes --model)
    "detect", "latent", "ablate", "specificity", "compare-methods", "finetune", "qa", "mc", "output-lang",
    "logit-lens", "neurons", "neuron", "sweep", "generate",
]  # fmt: skip
SET_COMMANDS = [  # every command that reads a neuron set and loads a model
    "ablate", "specificity", "finetune", "qa", "mc", "output-lang", "logit-lens", "neurons", "neuron", "sweep",
    "generate", "steer",
]  # fmt: skip
SEED_COMMANDS = [
    "latent", "ablate", "specificity", "compare-methods", "finetune", "qa", "mc", "output-lang", "logit-lens",
    "neurons", "neuron",
]  # fmt: skip
OUT_COMMANDS = [
    "detect", "latent", "ablate", "specificity", "overlap", "compare-methods", "finetune", "compare", "qa", "mc",
    "output-lang", "logit-lens", "neurons", "sweep", "export-steering", "run", "demo", "data udhr", "data tatoeba",
    "data flores", "steer",
]  # fmt: skip
STORE_COMMANDS = ["detect", "latent", "ablate", "specificity", "compare-methods", "logit-lens", "neurons", "neuron"]
PAIR_COMMANDS = {  # command -> the option of a file of pairs or sentences it reads
    "detect": "--data", "latent": "--data", "ablate": "--data", "specificity": "--data", "compare-methods": "--train",
    "finetune": "--train", "output-lang": "--data", "logit-lens": "--data", "neurons": "--data", "sweep": "--data",
}  # fmt: skip


@dataclass
class Probe:
    """The inputs of the probe: the tiny Llama (`model`), another of the same shape (`other`), their
    identities, its detect folders, data files (good and bad) and model folders (bad)."""

    root: Path
    model: str
    other: str
    key: str
    other_key: str
    type1: Path
    type2: Path
    files: dict[str, Path]
    study: Path

    def path(self, name: str) -> str:
        return str(self.files[name])


@pytest.fixture(scope="module")
def probe(model_folder, detected, tmp_path_factory) -> Probe:
    root = tmp_path_factory.mktemp("probe")
    model, other = str(model_folder("llama")), str(model_folder("llama", seed=1))
    files: dict[str, Path] = {}

    def write(name: str, content: bytes | str) -> None:
        files[name] = root / name
        if isinstance(content, str):
            files[name].write_text(content, encoding="utf-8")
        else:
            files[name].write_bytes(content)

    write("latin1.tsv", "en\tja\nhello\t\u00e9t\u00e9\n".encode("latin-1"))
    write("binary.tsv", bytes(range(128, 256)) * 4)
    write("huge.tsv", "en\tja\n" + "a" * 140_000 + "\tb\n")
    write("cut.jsonl.gz", gzip.compress(EXAMPLES.read_bytes())[:200])
    write("surrogate-answer.jsonl", '{"question": "日本の首都は？", "answers": ["\\ud800"], "lang": "ja"}\n')
    write("number-answer.jsonl", '{"queries": {"ja": "日本の首都は？"}, "answers": {"ja": [7]}}\n')
    write("text.txt", "これはペンです。\n")
    info = json.loads((detected["type2"] / "neurons.json").read_text(encoding="utf-8"))
    write("other-model.json", json.dumps({**info, "model_identity": {**info["model_identity"], "key": "0" * 24}}))
    for name, damage in (("no-tokenizer", "no tokenizer"), ("bad-tokenizer", "bad tokenizer"), ("shape", "shape")):
        folder = root / name
        shutil.copytree(model, folder)
        if damage == "no tokenizer":
            for file in ("tokenizer.json", "tokenizer_config.json"):
                (folder / file).unlink()
        elif damage == "bad tokenizer":
            (folder / "tokenizer.json").write_text("{oops", encoding="utf-8")
        else:
            config = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
        files[name] = folder
    study = write_study(root, model)
    keys = [load_model(name, device="cpu").identity().key for name in (model, other)]
    return Probe(root, model, other, keys[0], keys[1], detected["type1"], detected["type2"], files, study)


def good(p: Probe) -> dict[str, list[str]]:
    """A valid invocation of every command (each case below changes one input of it)."""
    m, n1, n2, data = p.model, str(p.type1), str(p.type2), str(EXAMPLES)
    return {
        "detect": ["detect", "--model", m, "--lang", "ja", "--data", data, "--max-items", "12", "--top-n", "10", *DEV],
        "latent": ["latent", "--model", m, "--data", data, "--max-items", "12", "--k", "3", *DEV],
        "ablate": ["ablate", "--model", m, "--neurons", n1, "--data", data, "--top-k", "5", "--k", "3", *DEV],
        "specificity": [
            "specificity", "--model", m, "--neurons", n1, "--data", data, "--data", data, "--langs", "ja,en",
            "--top-n", "5", *DEV,
        ],
        "overlap": ["overlap", n1, n2],
        "compare-methods": [
            "compare-methods", "--model", m, "--lang", "ja", "--train", data, "--test", data, "--methods", "tn",
            "--top-k", "5", "--k", "3", "--no-qa", "--no-output-lang", *DEV,
        ],
        "finetune": [
            "finetune", "--model", m, "--neurons", n1, "--train", data, "--eval", data, "--top-k", "5", "--steps", "1",
            "--k", "3", *DEV,
        ],
        "compare": ["compare", str(p.root / "run-a"), str(p.root / "run-b")],  # its cases name the runs
        "qa": ["qa", "--model", m, "--neurons", n1, "--top-k", "5", "--max-items", "2", *DEV],
        "mc": ["mc", "--model", m, "--neurons", n1, "--top-k", "5", "--max-items", "2", *DEV],
        "output-lang": ["output-lang", "--model", m, "--neurons", n2, "--data", data, "--top-k", "5", *DEV],
        "logit-lens": ["logit-lens", "--model", m, "--neurons", n2, "--data", data, "--top-k", "5", *DEV],
        "neurons": ["neurons", "--model", m, "--neurons", n1, "--data", data, "--top-n", "3", *DEV],
        "neuron": ["neuron", "--model", m, "--neurons", n1, "0:1", *DEV],
        "sweep": [
            "sweep", "--model", m, "--neurons", n2, "--data", data, "--factor", "0", "--top-k", "5", *DEV,
        ],
        "generate": ["generate", "--model", m, "--neurons", n1, "--top-k", "5", "--prompt", "Hi", "--device", "cpu"],
        "steer": [
            "steer", "--model", m, "--neurons", n2, "--source", "en", "--target", "ja", "--data", data, "--stats",
            f"ja={data}", "--stats", f"en={data}", "--alphas", "1", "--top-k", "5", "--max-items", "4",
            "--max-stats", "6", "--max-new-tokens", "2", "--bootstrap", "0", *DEV,
        ],
        "export-steering": ["export-steering", "--neurons", n1, "--top-k", "5"],
        "harness": ["harness", "run", "--model", "transfer-neurons", "--tasks", "arc_easy"],
        "run": ["run", str(p.study), "--quiet"],
        "demo": ["demo", "--quiet"],
        "models list": ["models", "list"],
        "models pull": ["models", "pull", "smollm2-135m"],
        "data udhr": ["data", "udhr", "--lang", "ja"],
        "data tatoeba": ["data", "tatoeba", "--lang", "ja"],
        "data flores": ["data", "flores", "--lang", "ja"],
    }  # fmt: skip


@dataclass(frozen=True)
class Case:
    """`command` run with `option` set to `value` (added when the good invocation lacks it); with
    `option` None, `value` lists the arguments that replace the good ones. The error must hold
    `message`; {model}, {other}, {key}, {other_key}, {root} and the names of `Probe.files` are filled
    in both. `--out` is added (a fresh folder) to the commands that write one."""

    command: str
    what: str
    option: str | None
    value: str | list[str]
    message: str

    def args(self, p: Probe, out: Path) -> list[str]:
        args = list(good(p)[self.command])
        value = [v.format(**fields(p)) for v in ([self.value] if isinstance(self.value, str) else self.value)]
        writes = self.command in OUT_COMMANDS and not self.command.startswith("data ")
        target = out / "steer.pt" if self.command == "export-steering" else out
        extra = ["--out", str(target)] if writes and self.option != "--out" else []
        if self.option is None:
            return [*self.command.split(), *value, *extra]
        if self.option in args:
            args[args.index(self.option) + 1] = value[0]
            return [*args, *extra]
        return [*args, self.option, *value, *extra]


def fields(p: Probe) -> dict[str, str]:
    return {
        "model": p.model, "other": p.other, "key": p.key, "other_key": p.other_key, "root": str(p.root),
        "type1": str(p.type1), "type2": str(p.type2),
        **{name.replace("-", "_").replace(".", "_"): str(path) for name, path in p.files.items()},
    }  # fmt: skip


ANOTHER_MODEL = "belongs to model '{model}' (identity {key}), not to '{other}' (identity {other_key})"
CASES: list[Case] = [
    *[Case(c, "--out ''", "--out", "", "--out: must not be empty") for c in OUT_COMMANDS],
    *[Case(c, "--store ''", "--store", "", "--store: must not be empty") for c in STORE_COMMANDS],
    *[
        Case(c, "--seed -1", "--seed", "-1", "--seed: Input should be greater than or equal to 0")
        for c in SEED_COMMANDS
    ],
    *[
        Case(c, "--seed 2**80", "--seed", str(2**80), "--seed: Input should be less than or equal to 4294967295")
        for c in SEED_COMMANDS
    ],
    *[Case(c, "a neuron set of another model", "--model", "{other}", ANOTHER_MODEL) for c in SET_COMMANDS],
    *[
        Case(c, "a model folder without a tokenizer", "--model", "{no_tokenizer}", "could not load the tokenizer of")
        for c in MODEL_COMMANDS
    ],
    *[
        Case(c, "a damaged tokenizer", "--model", "{bad_tokenizer}", "could not load the tokenizer of model")
        for c in MODEL_COMMANDS
    ],
    *[
        Case(c, "config and weights of other shapes", "--model", "{shape}", "does not fit its config: model.layers.0")
        for c in MODEL_COMMANDS
    ],
    *[Case(c, "a Latin-1 TSV", o, "{latin1_tsv}", "is not UTF-8 text") for c, o in PAIR_COMMANDS.items()],
    *[Case(c, "a binary TSV", o, "{binary_tsv}", "is not UTF-8 text") for c, o in PAIR_COMMANDS.items()],
    *[
        Case(c, "a TSV field over 131072 characters", o, "{huge_tsv}", "line 2 cannot be read as TSV (field larger")
        for c, o in PAIR_COMMANDS.items()
    ],
    *[Case(c, "a cut .jsonl.gz", o, "{cut_jsonl_gz}", "it is cut short") for c, o in PAIR_COMMANDS.items()],
    *[Case(c, "--neurons missing", "--neurons", "{root}/none", "does not exist") for c in SET_COMMANDS],
    Case("overlap", "a set of another model", None, ["{type1}", "{other_model_json}"], "come from different models"),
    Case("overlap", "one set", None, ["{type1}"], "overlap needs at least two neuron sets"),
    Case("qa", "an answer with a lone surrogate", "--data", "{surrogate_answer_jsonl}", "holds invalid Unicode"),
    Case("qa", "an answer that is a number", "--data", "{number_answer_jsonl}", "an answer must be a text or a"),
    Case("qa", "--shots 3", "--shots", "3", "--shots: Input should be less than or equal to 2"),
    Case("mc", "a file that is not JSONL", "--data", "{text_txt}", "line 1 is not valid JSON"),
    Case("compare", "runs that are not finished", None, ["{root}/a", "{root}/b"], "is not a finished study run"),
    Case(
        "neuron",
        "a malformed neuron",
        None,
        ["--model", "{model}", "--neurons", "{type1}", "3-1414"],
        "'3-1414' is not a neuron",
    ),
    Case("generate", "--factor nan", "--factor", "nan", "--factor: must be a finite number, not nan"),
    Case("steer", "--alphas nan", "--alphas", "1,nan", "--alphas: every alpha must be a finite number, not nan"),
    Case("steer", "--alphas inf", "--alphas", "inf", "--alphas: every alpha must be a finite number, not inf"),
    Case("steer", "an empty grid", "--alphas", ",", "--alphas is empty; give at least one alpha"),
    Case("steer", "no statistics of the target", "--target", "ko", "'mean:ko': no --stats sentences of 'ko'"),
    Case("steer", "an unknown method", "--methods", "add,push", "--methods 'add,push': use one or more of"),
    Case("export-steering", "--top-k beyond the set", "--top-k", "999", "--top-k 999 must be between 1 and the 40"),
    Case("harness", "no model arguments", "--model_args", "pretrained={model}", "--model_args needs pretrained=MODEL"),
    Case("run", "a config that does not exist", None, ["{root}/none.yaml"], "none.yaml"),
    Case("demo", "--models ,", "--models", ",", "--models: give one or more models separated by commas"),
    Case("models list", "an unknown option", "--bogus", "1", "--bogus: no such option"),
    Case("models pull", "an unknown model", None, ["no-such-model"], "unknown built-in model 'no-such-model'"),
    Case("data udhr", "no --out", "--lang", "ja", "give --lang CODE and --out FILE"),
    Case("data tatoeba", "a .csv --out", "--out", "{root}/en-ja.csv", "must end in .jsonl or .tsv"),
    Case("data flores", "a .csv --out", "--out", "{root}/en-ja.csv", "must end in .jsonl or .tsv"),
]


def command_paths() -> set[str]:
    """Every command of the app, as `detect` or `models pull`."""
    group = typer.main.get_command(app)
    paths = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        paths |= {f"{name} {sub}" for sub in subcommands} if subcommands else {name}
    return paths


def test_every_command_is_probed():
    """A command added to the app needs its cases here (and a good invocation in `good`)."""
    assert command_paths() == {case.command for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.command}: {case.what}")
def test_bad_input_is_one_line(probe, tmp_path, monkeypatch, case):
    if case.command == "harness":
        pytest.importorskip("lm_eval")
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))  # a pull or a corpus never runs
    out = tmp_path / "out"
    result = run(*case.args(probe, out))
    assert_error(result, case.message.format(**fields(probe)), out)
    assert "Traceback" not in result.output


# --- what must be accepted ----------------------------------------------------------------------------

FASTER = {  # options that keep the accepted runs short
    "ablate": ["--bootstrap", "0", "--max-items", "12"],
    "qa": ["--bootstrap", "0"],
    "mc": ["--bootstrap", "0"],
    "output-lang": ["--bootstrap", "0", "--max-items", "2", "--max-new-tokens", "2"],
    "logit-lens": ["--bootstrap", "0", "--max-items", "4"],
    "sweep": ["--max-items", "2", "--max-new-tokens", "2"],
    "export-steering": [],
    "generate": ["--max-new-tokens", "2"],
}


@pytest.mark.parametrize("command", FASTER)
def test_neurons_may_be_a_detect_folder(probe, tmp_path, command):
    """`--neurons` takes the folder `detect --out` wrote (the good invocations give the folder); the
    manifest records the neurons.json read, with its digest."""
    args = [*good(probe)[command], *FASTER[command]]
    out = tmp_path / "out"
    if command in OUT_COMMANDS:
        args += ["--out", str(out / "steer.pt" if command == "export-steering" else out)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    if command not in ("export-steering", "generate"):
        folder = Path(args[args.index("--neurons") + 1])
        recorded = json.loads((out / "manifest.json").read_text())["inputs"]["neurons"]
        assert recorded == {"path": str(folder / "neurons.json"), "sha256": file_digest(folder / "neurons.json")}


def test_neurons_folder_of_a_study_step(probe, tmp_path):
    """A study's detect step folder is a detect folder; a folder holding several names them."""
    step = tmp_path / "run" / "detect" / "ja"
    for neuron_type, folder in (("type1", probe.type1), ("type2", probe.type2)):
        shutil.copytree(folder, step / neuron_type)
    args = ["qa", "--model", probe.model, "--top-k", "5", "--max-items", "2", "--bootstrap", "0", *DEV]
    assert run(*args, "--neurons", step / "type1", "--out", tmp_path / "out").exit_code == 0
    out = tmp_path / "o2"
    assert_error(
        run(*args, "--neurons", step, "--out", out),
        f"folder '{step}' holds no neurons.json, but its sub-folders type1, type2 do",
        out,
    )
