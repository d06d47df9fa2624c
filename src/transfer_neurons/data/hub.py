"""Parallel pairs from Hugging Face datasets, for users with a network (needs the `hub` extra).

- `tatoeba(lang)`: Tatoeba en-X pairs from `sentence-transformers/parallel-sentences-tatoeba`
  (parquet, one config per pair `en-ja`, columns `english`/`non_english`). The older
  `Helsinki-NLP/tatoeba` and `Helsinki-NLP/tatoeba_mt` are loading-script datasets, which the
  `datasets` library no longer runs (version 4 on).
- `flores(lang)`: FLORES+ from `openlanguagedata/flores_plus` (one config per language variety,
  `jpn_Jpan`; splits `dev` 997 and `devtest` 1012 sentences; gated: accept its terms on the hub
  and log in with `hf auth login` or `HF_TOKEN`). English and L2 are paired by sentence `id`.
- `hub_pairs(path, lang, ...)`: any dataset with a `translation` column (`{"en": ..., "ja": ...}`)
  or one column per language.

Every loader takes `path`: a hub id, a local folder, or a mirror with the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from huggingface_hub.utils import logging as hub_logging

from transfer_neurons.artifacts import hub
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError

TATOEBA = "sentence-transformers/parallel-sentences-tatoeba"
FLORES = "openlanguagedata/flores_plus"
# ISO 639-1 -> FLORES+ config (ISO 639-3 + ISO 15924 script); other varieties: pass the config itself
FLORES_CODES = {
    "en": "eng_Latn",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "zh": "cmn_Hans",
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "it": "ita_Latn",
    "nl": "nld_Latn",
    "es": "spa_Latn",
    "pt": "por_Latn",
    "ru": "rus_Cyrl",
    "uk": "ukr_Cyrl",
    "pl": "pol_Latn",
    "cs": "ces_Latn",
    "sv": "swe_Latn",
    "da": "dan_Latn",
    "fi": "fin_Latn",
    "hu": "hun_Latn",
    "ro": "ron_Latn",
    "bg": "bul_Cyrl",
    "el": "ell_Grek",
    "tr": "tur_Latn",
    "ar": "arb_Arab",
    "he": "heb_Hebr",
    "fa": "pes_Arab",
    "hi": "hin_Deva",
    "bn": "ben_Beng",
    "th": "tha_Thai",
    "vi": "vie_Latn",
    "id": "ind_Latn",
    "sw": "swh_Latn",
}
LOCAL_SUFFIXES = {".json", ".jsonl", ".gz", ".tsv", ".txt", ".csv", ".parquet"}


def tatoeba(lang: str, split: str = "train", max_sentences: int | None = None, path: str = TATOEBA) -> ParallelData:
    """Tatoeba en-`lang` pairs (config `en-<lang>`, columns `english` and `non_english`)."""
    _check_lang(lang)
    rows = load_split(path, f"en-{lang}", split)
    return _pairs(rows, lang, _columns(rows, lang, "english", "non_english"), max_sentences, path)


def flores(lang: str, split: str = "devtest", max_sentences: int | None = None, path: str = FLORES) -> ParallelData:
    """FLORES+ en-`lang` pairs: `lang` is an ISO 639-1 code from FLORES_CODES or a FLORES+ config (jpn_Jpan)."""
    _check_lang(lang)
    config = FLORES_CODES.get(lang, lang)
    if "_" not in config:
        raise InputError(
            f"no FLORES+ config known for '{lang}'; give the config itself, e.g. --lang jpn_Jpan "
            f"(known codes: {', '.join(sorted(FLORES_CODES))})"
        )
    english, other = load_split(path, FLORES_CODES["en"], split), load_split(path, config, split)
    column = next((c for c in ("text", "sentence") if c in other.column_names), None)
    if column is None or column not in english.column_names:
        raise InputError(f"'{path}' has no 'text' or 'sentence' column (columns: {', '.join(other.column_names)})")
    if "id" in english.column_names and "id" in other.column_names:
        by_id = dict(zip(other["id"], other[column], strict=True))
        joined = [(en, by_id[i]) for i, en in zip(english["id"], english[column], strict=True) if i in by_id]
    elif len(english) == len(other):
        joined = list(zip(english[column], other[column], strict=True))
    else:
        raise InputError(f"'{path}' {config} and eng_Latn differ in length and have no 'id' to pair them by")
    return _from_tuples(joined, lang, max_sentences, path)


def hub_pairs(
    path: str,
    lang: str,
    name: str | None = None,
    split: str = "train",
    max_sentences: int | None = None,
) -> ParallelData:
    """Pairs from any dataset with a `translation` column or `en` and `lang` columns."""
    _check_lang(lang)
    rows = load_split(path, name, split)
    return _pairs(rows, lang, _columns(rows, lang, "en", lang), max_sentences, path)


def load_split(path: str, name: str | None, split: str):
    """`datasets.load_dataset(path, name, split=split)`, every failure as a one-line InputError."""
    if looks_local(path) and not Path(path).expanduser().exists():
        raise InputError(f"dataset folder '{path}' does not exist; give an existing folder or a hub id (org/name)")
    try:
        import datasets
    except ImportError as exc:
        raise InputError(
            "loading from the Hugging Face hub needs 'datasets': pip install 'transfer-neurons[hub]'"
        ) from exc
    where = f"'{path}'" + (f" config '{name}'" if name else "")
    try:
        with hub_access(path):
            return datasets.load_dataset(path, name, split=split)
    except ValueError as exc:  # unknown config or split
        raise InputError(f"could not load {where} split '{split}': {_first_line(exc)}") from exc
    except (OSError, RuntimeError, ImportError) as exc:  # ConnectionError, DatasetNotFoundError, gated, scripts
        raise InputError(
            f"could not load {where} from the Hugging Face hub: {_first_line(exc)}; without a network, "
            "use the built-in corpus (transfer-neurons data udhr) or your own --data FILE"
        ) from exc


def looks_local(name: str) -> bool:
    """Whether a dataset `name` is meant as a local path (see `artifacts.hub.looks_local`)."""
    return hub.looks_local(name, LOCAL_SUFFIXES)


@contextmanager
def hub_access(path: str) -> Iterator[None]:
    """Around `datasets.load_dataset(path, ...)`: when the hub cannot be reached, `datasets` reads
    its local cache only (offline mode) and fails at once without it, instead of retrying for half
    a minute; the hub's retry warnings are silenced, so that a failure stays one line."""
    unreachable = not Path(path).expanduser().exists() and not hub.hub_reachable()
    reason = hub.unreachable_reason()
    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        with hub.offline() if unreachable else nullcontext():
            yield
    except ConnectionError as exc:
        if not unreachable:
            raise
        raise ConnectionError(
            f"{_first_line(exc)}; the hub cannot be reached ({reason}) and the local cache has no copy"
        ) from exc
    finally:
        hub_logging.set_verbosity(level)


def _columns(rows, lang: str, en_column: str, l2_column: str):
    names = rows.column_names
    if "translation" in names:
        return "translation"
    if en_column in names and l2_column in names:
        return en_column, l2_column
    if "en" in names and lang in names:
        return "en", lang
    raise InputError(
        f"cannot find the English and '{lang}' sentences among the columns {', '.join(names)}; "
        f"expected 'translation', '{en_column}'/'{l2_column}' or 'en'/'{lang}'"
    )


def _pairs(rows, lang: str, columns, max_sentences: int | None, path: str) -> ParallelData:
    tuples: Iterable[tuple[Any, Any]]
    if columns == "translation":
        tuples = ((t.get("en"), t.get(lang)) for t in rows["translation"])
    else:
        tuples = zip(rows[columns[0]], rows[columns[1]], strict=True)
    return _from_tuples(tuples, lang, max_sentences, path)


def _from_tuples(tuples, lang: str, max_sentences: int | None, path: str) -> ParallelData:
    en: list[str] = []
    l2: list[str] = []
    for a, b in tuples:
        if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip():
            en.append(a.strip())
            l2.append(b.strip())
            if max_sentences is not None and len(l2) >= max_sentences:
                break
    if not l2:
        raise InputError(f"'{path}' holds no non-empty en-{lang} pairs")
    return ParallelData(lang=lang, en=en, l2=l2)


def _check_lang(lang: str) -> None:
    if lang in {"en", "eng_Latn"}:
        raise InputError("the L2 language must not be 'en': English is the other side of every pair")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
