"""Neuron pages as HTML (an index and one card per neuron) and a card as text: rendering only.

The pages work from `file://` with no server and no network: CSS and the few lines of JavaScript
that sort and filter the index are inline, each card's box plot is a PNG data URI. A card is the
plain JSON of one neurons.jsonl row:

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

from jinja2 import Environment, Template
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import atomic_path

SHOWN_TOKENS = 5  # promoted tokens in the index
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # shown escaped in tokens

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1150px; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; border-bottom: 2px solid #ddd; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .86rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
#neurons th { cursor: pointer; user-select: none; white-space: nowrap; }
#neurons th[data-dir=up]::after { content: " \\25B2"; } #neurons th[data-dir=down]::after { content: " \\25BC"; }
code { background: #f2f2f2; padding: 0 .2rem; white-space: pre; }
.note { color: #666; font-size: .85rem; } .cols { display: flex; gap: 2rem; flex-wrap: wrap; }
#neurons td { white-space: nowrap; } #neurons td.t { white-space: normal; } table.s { max-width: 48%; }
input { font-size: .95rem; padding: .25rem .4rem; margin: .3rem 0; }
"""

SCRIPT = """
const table = document.getElementById('neurons');
table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const up = th.dataset.dir !== 'up';
  table.querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = up ? 'up' : 'down';
  const key = row => { const v = row.cells[col].dataset.v;
    return v === undefined ? row.cells[col].textContent : v === '' ? null : Number(v); };
  [...table.tBodies[0].rows].sort((a, b) => { const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); }).forEach(r => table.tBodies[0].appendChild(r));
}));
document.getElementById('filter').addEventListener('input', e => { const q = e.target.value.toLowerCase();
  for (const row of table.tBodies[0].rows) row.hidden = !row.textContent.toLowerCase().includes(q); });
"""

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Neuron pages: {{ meta.model }}</title>
<style>{{ css }}</style></head><body>
<h1>Neuron pages: {{ meta.model }}</h1>
<p>The top-{{ meta.top_n }} neurons of {{ meta.sets | join(", ") }}, one row per neuron and set it ranks in;
measured on {{ counts }}. Click a column to sort it, type to filter the rows; a neuron links to its page.</p>
<p class="note">eta&sup2;: correlation ratio of the neuron's last-token activation, the set's language vs the rest.
Massive share: share of its value vector's squared norm in the massive dimensions of its layer (&ndash;: the
layer has none). &Delta;cos: mean change of the last-token state's cosine to the set's centroid when the
neuron alone is deactivated (sentences of the set's language).</p>
<input id="filter" type="search" placeholder="filter: a set, a token, a layer ..." size="40">
<table id="neurons"><thead><tr><th>layer</th><th>neuron</th><th class="l">set</th><th>rank</th><th>score</th>
<th>eta&sup2; target vs rest</th><th>massive share</th><th>&Delta;cos deactivated</th>
<th class="l">top promoted tokens</th></tr></thead><tbody>
{% for r in rows %}<tr><td data-v="{{ r.layer }}">{{ r.layer }}</td>
<td data-v="{{ r.neuron }}"><a href="{{ r.href }}">{{ r.neuron }}</a></td><td class="l">{{ r.set }}</td>
<td data-v="{{ r.rank | v }}">{{ r.rank | n }}</td><td data-v="{{ r.score | v }}">{{ r.score | n }}</td>
<td data-v="{{ r.eta2 | v }}">{{ r.eta2 | n }}</td><td data-v="{{ r.share | v }}">{{ r.share | pct }}</td>
<td data-v="{{ r.cos | v }}">{{ r.cos | n }}</td>
<td class="l t">{% for t in r.tokens %}<code>{{ t }}</code> {% endfor %}</td></tr>
{% endfor %}</tbody></table>
<script>{{ script | safe }}</script>
</body></html>
"""

CARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Layer {{ c.layer }}, neuron {{ c.neuron }}</title>
<style>{{ css }}</style></head><body>
<p><a href="../{{ index }}">&larr; all neurons</a></p>
<h1>Layer {{ c.layer }}, neuron {{ c.neuron }}</h1>
<p>{{ meta.model }}; value vector norm |u| = {{ c.value_norm | n }}.</p>
<h2>In the neuron sets</h2>
<table><tr><th class="l">set</th><th class="l">method</th><th class="l">type</th><th class="l">language</th>
<th>rank</th><th>score</th><th>eta&sup2; language vs rest</th><th>&Delta;cos when deactivated alone [95% CI]</th>
<th>sentences</th></tr>
{% for e in c.sets %}<tr><td class="l">{{ e.set }}</td><td class="l">{{ e.method }}</td>
<td class="l">{{ e.type or "" }}</td>
<td class="l">{{ e.lang or "" }}</td><td>{{ e.rank | n }}</td><td>{{ e.score | n }}</td><td>{{ e.eta2_target | n }}</td>
<td>{{ e.cos_change | est }}</td><td>{{ e.cos_change.n if e.cos_change else "" }}</td></tr>{% endfor %}
</table>
<p class="note">Rank and score: as listed in the set, else from its scores (&ndash;: not ranked). &Delta;cos: the mean
over the set language's sentences of cos(h &minus; a&#7522; u&#7522;, c) &minus; cos(h, c) at this layer, c the set's
centroid (before later layers react; under a post-MLP norm its frozen-norm linearisation).</p>
<h2>Vocabulary projection</h2>
<p class="note">Logits W<sub>U</sub> (g<sub>final</sub> &odot; u) of a unit activation: the tokens its value vector
promotes and suppresses (under a post-MLP norm u = g &odot; v, per unit of a / rms: compare logits within a page).</p>
<div class="cols">{% for title, tokens in (("promotes", c.promoted), ("suppresses", c.suppressed)) %}
<table><tr><th class="l">{{ title }}</th><th>logit</th></tr>
{% for t in tokens %}<tr><td class="l"><code>{{ t | tok }}</code></td><td>{{ t.logit | n }}</td></tr>{% endfor %}
</table>{% endfor %}</div>
<h2>Massive dimensions</h2>
{% if c.massive is none %}<p>Not measured (no sentences).</p>
{% elif c.massive.dims %}<p>Layer {{ c.layer }}'s mean state holds at least half of its squared norm in dimension(s)
{{ c.massive.dims | join(", ") }}; they hold {{ c.massive.share | pct }} of this value vector's squared norm.</p>
{% else %}<p>Layer {{ c.layer }} has no massive dimensions (five dimensions hold less than half of its mean state's
squared norm).</p>{% endif %}
<h2>Activation per language</h2>
{% if c.activation %}<div class="cols"><table><tr><th class="l">language</th><th>sentences</th><th>mean</th><th>sd</th>
<th>median</th></tr>
{% for lang, a in c.activation.items() %}<tr><td class="l">{{ lang }}</td><td>{{ a.n }}</td><td>{{ a.mean | n }}</td>
<td>{{ a.sd | n }}</td><td>{{ a.median | n }}</td></tr>{% endfor %}</table>
<img alt="activation per language" src="{{ plot }}"></div>
<h2>Sentences where it fires most and least</h2>
{% for lang, s in c.sentences.items() %}<h3>{{ lang }}</h3><div class="cols">
{% for title, rows in (("most", s.top), ("least", s.bottom)) %}<table class="s"><tr><th>activation</th>
<th class="l">fires {{ title }}</th></tr>
{% for r in rows %}<tr><td>{{ r.act | n }}</td><td class="l">{{ r.text }}</td></tr>{% endfor %}</table>{% endfor %}
</div>{% endfor %}
{% else %}<p>Not measured (no sentences).</p>{% endif %}
</body></html>
"""


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
def _template(source: str) -> Template:
    """A page template, compiled once (autoescaped)."""
    env = Environment(autoescape=True)
    env.filters.update(n=_num, est=_estimate, pct=_percent, v=lambda x: "" if x is None else x, tok=shown_token)
    return env.from_string(source)


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
    return _template(INDEX).render(
        meta=meta, rows=index_rows(cards), counts=counts + " sentences", css=CSS, script=SCRIPT
    )


def render_card(card: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    plot = box_plot(card["activation"]) if card["activation"] else None
    return _template(CARD).render(c=card, meta=meta, plot=plot, css=CSS, index=names.NEURON_INDEX)


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
