"""Hugging Face dataset loaders, run through `datasets.load_dataset` on small local folders laid out like
the hub datasets (the hub itself is not reachable in tests), and the one-line error when it fails."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from transfer_neurons.cli import app
from transfer_neurons.data import hub
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.errors import InputError

datasets = pytest.importorskip("datasets")
runner = CliRunner()


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Offline, with a throw-away datasets cache: only local folders can load."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_dataset(root, configs: dict[str, dict[str, list[dict]]]):
    """A dataset folder like a hub repo: one parquet file per config and split, configs in README.md."""
    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            path = root / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")
    return root


@pytest.fixture
def tatoeba_dir(tmp_path):
    rows = [
        {"english": "I am here.", "non_english": "私はここにいる。"},
        {"english": "It is cold.", "non_english": "寒い。"},
        {"english": "  ", "non_english": "空。"},  # an empty side: dropped
        {"english": "Thank you.", "non_english": "ありがとう。"},
    ]
    return write_dataset(tmp_path / "tatoeba", {"en-ja": {"train": rows}})


@pytest.fixture
def flores_dir(tmp_path):
    english = [{"id": i, "iso_639_3": "eng", "text": f"Sentence {i}."} for i in range(1, 5)]
    japanese = [{"id": i, "iso_639_3": "jpn", "text": f"文{i}。"} for i in (3, 1, 2)]  # other order, one missing
    return write_dataset(
        tmp_path / "flores",
        {"eng_Latn": {"dev": english, "devtest": english}, "jpn_Jpan": {"dev": japanese, "devtest": japanese}},
    )


def test_tatoeba(tatoeba_dir):
    pairs = hub.tatoeba("ja", path=str(tatoeba_dir))
    assert pairs.lang == "ja"
    assert pairs.en == ["I am here.", "It is cold.", "Thank you."] and pairs.l2[-1] == "ありがとう。"
    assert len(hub.tatoeba("ja", max_sentences=2, path=str(tatoeba_dir))) == 2


def test_flores_pairs_by_id(flores_dir):
    pairs = hub.flores("ja", split="dev", path=str(flores_dir))
    assert pairs.en == ["Sentence 1.", "Sentence 2.", "Sentence 3."]
    assert pairs.l2 == ["文1。", "文2。", "文3。"]
    assert hub.flores("jpn_Jpan", path=str(flores_dir)).lang == "jpn_Jpan"  # a FLORES+ config directly


def test_translation_column(tmp_path):
    rows = [{"id": "0", "translation": {"en": "Hello.", "ko": "안녕하세요."}}]
    folder = write_dataset(tmp_path / "opus", {"en-ko": {"train": rows}})
    pairs = hub.hub_pairs(str(folder), "ko", name="en-ko")
    assert (pairs.en, pairs.l2) == (["Hello."], ["안녕하세요."])


def test_cli_tatoeba_writes_pairs(tatoeba_dir, tmp_path):
    out = tmp_path / "en-ja.jsonl"
    result = runner.invoke(app, ["data", "tatoeba", "--lang", "ja", "--out", str(out), "--dataset", str(tatoeba_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0]) == {"en": "I am here.", "ja": "私はここにいる。"}
    assert len(read_pairs(out, "ja")) == 3


def test_cli_flores_writes_pairs(flores_dir, tmp_path):
    out = tmp_path / "en-ja.jsonl"
    args = ["data", "flores", "--lang", "ja", "--out", str(out), "--dataset", str(flores_dir), "--split", "dev"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(read_pairs(out, "ja")) == 3


def assert_one_line(result, message):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_unreachable_hub_is_one_line(tmp_path):
    result = runner.invoke(app, ["data", "tatoeba", "--lang", "ja", "--out", str(tmp_path / "x.jsonl")])
    assert_one_line(result, f"could not load '{hub.TATOEBA}' config 'en-ja' from the Hugging Face hub")
    assert "data udhr" in result.stderr and not (tmp_path / "x.jsonl").exists()
    result = runner.invoke(app, ["data", "flores", "--lang", "ja", "--out", str(tmp_path / "x.jsonl")])
    assert_one_line(result, f"could not load '{hub.FLORES}'")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: hub.tatoeba("ko", path=d["tatoeba"]), "config 'en-ko'"),  # no such config
        (lambda d: hub.tatoeba("ja", split="test", path=d["tatoeba"]), "split 'test'"),
        (lambda d: hub.flores("xx", path=d["flores"]), r"no FLORES\+ config known for 'xx'"),
        (lambda d: hub.tatoeba("en", path=d["tatoeba"]), "must not be 'en'"),
        (lambda d: hub.hub_pairs(d["tatoeba"], "ja", name="en-ja"), "cannot find the English and 'ja' sentences"),
    ],
)
def test_errors(tatoeba_dir, flores_dir, call, message):
    with pytest.raises(InputError, match=message):
        call({"tatoeba": str(tatoeba_dir), "flores": str(flores_dir)})
