"""One name and one default for the item limit: --max-items on every analysis command, the old
names kept as aliases, all items by default."""

from __future__ import annotations

import json

import pytest
import typer

from helpers import EXAMPLES, run
from transfer_neurons.cli import app

ALIASES = {
    "detect": "--max-sentences",
    "latent": "--max-sentences",
    "ablate": "--max-sentences",
    "specificity": "--max-sentences",
    "qa": "--max-questions",
    "mc": "--max-questions",
    "output-lang": "--max-prompts",
    "logit-lens": "--max-sentences",
}


@pytest.mark.parametrize(("command", "alias"), ALIASES.items())
def test_every_command_has_max_items_with_its_alias_and_no_default_limit(command, alias):
    params = typer.main.get_command(app).commands[command].params
    (option,) = [p for p in params if "--max-items" in p.opts]
    assert option.opts == ["--max-items", alias] and option.default is None
    assert "default: all" in option.help


def test_alias_and_new_name_give_the_same_result(model_folder, tmp_path):
    args = ["logit-lens", "--model", model_folder("llama"), "--data", EXAMPLES, "--lang", "ja", "--tokens", "3"]
    data = {}
    for name in ("--max-items", "--max-sentences"):
        out = tmp_path / name.strip("-")
        result = run(*args, name, "3", "--out", out, "--device", "cpu", "--quiet")
        assert result.exit_code == 0, result.output
        data[name] = json.loads((out / "logit_lens.json").read_text())
    assert data["--max-items"]["n_sentences"] == 3 and data["--max-items"] == data["--max-sentences"]
