"""Neuron pages as HTML (an index and one card per neuron) and a card as text: rendering only.

The pages work from `file://` with no server and no network: CSS and the few lines of JavaScript
that sort and filter the index are inline (`templates/neuron_*.html`, the shared `style.css`), each
card's box plot is a PNG data URI. A card is the plain JSON of one neurons.jsonl row:

    {"layer", "neuron", "value_norm",
     "sets": [{"set", "method", "type", "lang", "rank", "score", "in_top", "eta2_target",
               "cos_change": {"value", "ci", "n"} | null}, ...],
     "promoted" / "suppressed": [{"id", "token", "piece", "logit"}, ...],  (token: decoded; piece: as stored)
     "massive": {"dims", "share"} | null,
     "activation": {lang: {"n", "mean", "sd", "q1", "median", "q3", "low", "high"}},
     "sentences": {lang: {"top": [{"text", "act"}, ...], "bottom": [...]}}}
"""

from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Template
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from transfer_neurons.artifacts import names, templates
from transfer_neurons.artifacts.io import atomic_path

SHOWN_TOKENS = 5  # promoted tokens in the index
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # shown escaped in tokens


def _num(x: float | int | None) -> str:
    """A number in 4 significant digits (integers as they are); an en dash for None."""
    if x is None:
        return "\u2013"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


def _estimate(e: Mapping[str, Any] | None) -> str:
    """'-0.0012 [-0.0015, -0.0009]' (the interval when there is one)."""
    if e is None:
        return "\u2013"
    ci = e.get("ci")
    return _num(e["value"]) + ("" if ci is None else f" [{_num(ci[0])}, {_num(ci[1])}]")


def _percent(x: float | None) -> str:
    return "\u2013" if x is None else f"{x:.1%}"


@functools.cache
def _template(name: str) -> Template:
    """A page template (`artifacts.templates`) with the pages' number filters."""
    env = templates.environment().overlay()
    env.filters.update(n=_num, est=_estimate, pct=_percent, v=lambda x: "" if x is None else x, tok=shown_token)
    return env.get_template(name)


def shown_token(t: Mapping[str, Any]) -> str:
    """A token as text, or as the tokenizer's piece when it decodes to no whole character (a byte of
    one); control characters escaped (a line break as \\n)."""
    text = t["piece"] if "\ufffd" in t["token"] and t.get("piece") else t["token"]
    return CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def index_rows(cards: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One index row per card and set whose top-n it is in (a card in none: one row for its first set)."""
    rows = []
    for card in cards:
        entries = [e for e in card["sets"] if e["in_top"]] or card["sets"][:1]
        for e in entries:
            rows.append(
                {
                    "layer": card["layer"],
                    "neuron": card["neuron"],
                    "href": names.neuron_card(card["layer"], card["neuron"]),
                    "set": e["set"],
                    "rank": e["rank"],
                    "score": e["score"],
                    "eta2": e["eta2_target"],
                    "share": (card["massive"] or {}).get("share"),
                    "cos": (e["cos_change"] or {}).get("value"),
                    "tokens": [shown_token(t) for t in card["promoted"][:SHOWN_TOKENS]],
                }
            )
    return rows


def box_plot(activation: Mapping[str, Mapping[str, float]]) -> str:
    """A horizontal box plot of the activation per language (quartiles, Tukey whiskers, mean as a
    dot), as a PNG data URI."""
    height = 0.8 + 0.32 * len(activation)
    fig = Figure(figsize=(4.8, height))
    ax = fig.subplots()
    stats = [
        {"label": lang, "med": a["median"], "q1": a["q1"], "q3": a["q3"], "whislo": a["low"], "whishi": a["high"]}
        | {"mean": a["mean"], "fliers": []}
        for lang, a in activation.items()
    ]
    ax.bxp(stats, orientation="horizontal", showmeans=True, showfliers=False)
    ax.invert_yaxis()  # first language on top, as in the table
    ax.axvline(0, color="#bbb", lw=0.8, zorder=0)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("last-token activation")
    fig.subplots_adjust(left=0.14, right=0.97, top=1 - 0.15 / height, bottom=0.45 / height)  # tight_layout is slow
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no URL in the page
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_index(cards: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{n} {lang}" for lang, n in meta["n_sentences"].items()) or "no sentences"
    return _template("neuron_index.html").render(meta=meta, rows=index_rows(cards), counts=counts + " sentences")


def render_card(card: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    plot = box_plot(card["activation"]) if card["activation"] else None
    return _template("neuron_card.html").render(c=card, meta=meta, plot=plot, index=names.NEURON_INDEX)


def write_pages(out: Path, cards: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> list[str]:
    """Write the index and every card under `out` (removing the cards of an earlier run that this one
    has not); return their file names (relative to `out`)."""
    cards_written = {names.neuron_card(card["layer"], card["neuron"]): card for card in cards}
    for old in (out / names.NEURON_CARDS).glob("*.html"):
        if f"{names.NEURON_CARDS}/{old.name}" not in cards_written:
            old.unlink()
    _write(out / names.NEURON_INDEX, render_index(cards, meta))
    for name, card in cards_written.items():
        _write(out / name, render_card(card, meta))
    return [names.NEURON_INDEX, *cards_written]


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def _token(t: Mapping[str, Any]) -> str:
    return f'"{shown_token(t)}"'


def card_headline(card: Mapping[str, Any], set_name: str) -> str:
    """'layer 3 neuron 14: promotes "a", "b", "c"; eta^2 ja vs rest 0.41; cos change ...' for one set."""
    e = next(e for e in card["sets"] if e["set"] == set_name)
    tokens = ", ".join(_token(t) for t in card["promoted"][:3])
    parts = [f"layer {card['layer']} neuron {card['neuron']}: promotes {tokens}"]
    if e["eta2_target"] is not None:
        parts.append(f"eta^2 {e['lang']} vs rest {_num(e['eta2_target'])}")
    if e["cos_change"] is not None:
        parts.append(f"cos change when deactivated alone {_estimate(e['cos_change'])}")
    return "; ".join(parts)


def card_text(card: Mapping[str, Any]) -> list[str]:
    """The card as console lines: sets, tokens, massive dimensions, activation per language, sentences."""
    lines = [f"layer {card['layer']}, neuron {card['neuron']} (value vector norm {_num(card['value_norm'])})"]
    for e in card["sets"]:
        lines.append(
            f"  {e['set']} ({e['method']}): rank {_num(e['rank'])}, score {_num(e['score'])}, "
            f"eta^2 {e['lang']} vs rest {_num(e['eta2_target'])}, "
            f"cos change when deactivated alone {_estimate(e['cos_change'])}"
        )
    for title in ("promoted", "suppressed"):
        lines.append(f"{title}: " + ", ".join(f"{_token(t)} {_num(t['logit'])}" for t in card[title]))
    massive = card["massive"]
    if massive is not None:
        dims = ", ".join(map(str, massive["dims"])) or "none"
        share = _percent(massive["share"])
        lines.append(f"massive dimensions of layer {card['layer']}: {dims} (share of |u|^2: {share})")
    if card["activation"]:
        lines.append(f"{'language':>10} {'n':>6} {'mean':>10} {'sd':>10} {'median':>10}")
        for lang, a in card["activation"].items():
            lines.append(f"{lang:>10} {a['n']:>6} {_num(a['mean']):>10} {_num(a['sd']):>10} {_num(a['median']):>10}")
    for lang, s in card["sentences"].items():
        for which, title in (("top", "fires most"), ("bottom", "fires least")):
            lines.append(f"{lang}, {title}:")
            lines += [f"  {_num(r['act']):>10}  {r['text']}" for r in s[which]]
    return lines
