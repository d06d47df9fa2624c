"""report.html: one self-contained page (figures embedded as data URIs) over a study's run directory."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, select_autoescape

from transfer_neurons.artifacts.io import atomic_path
from transfer_neurons.study.config import StudyConfig

METRICS = {"qa": ("f1", "em"), "mc": ("accuracy",), "output_lang": None}  # output_lang: its language shares

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Transfer neurons: {{ config.model }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.45; }
 h1 { font-size: 1.6rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
 table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
 th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
 th { background: #f3f3f3; } td.l, th.l { text-align: left; }
 img { max-width: 100%; border: 1px solid #eee; margin: .4rem 0; }
 .grid { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
 .note { color: #666; font-size: .85rem; }
 nav a { margin-right: 1rem; }
</style></head><body>
<h1>Transfer neurons in {{ config.model }}</h1>
<nav>{% for id, title in sections %}<a href="#{{ id }}">{{ title }}</a>{% endfor %}</nav>

<h2 id="summary">Model and data</h2>
<table>
 <tr><th class="l">model</th><td class="l">{{ config.model }} ({{ config.dtype }}, device {{ config.device }})</td></tr>
 <tr><th class="l">languages</th><td class="l">en + {{ config.languages | join(", ") }}</td></tr>
 <tr><th class="l">data source</th><td class="l">{{ config.data.source }}</td></tr>
 <tr><th class="l">seed</th><td class="l">{{ config.seed }}</td></tr>
</table>
<table><tr><th class="l">language</th><th>train pairs</th><th>test pairs</th><th>non-parallel</th></tr>
{% for lang in config.languages %}{% set d = summary("data/" ~ lang) %}
 <tr><td class="l">{{ lang }}</td><td>{{ d.train }}</td><td>{{ d.test }}</td>
 <td>{{ d.nonparallel if d.nonparallel is not none else "shifted" }}</td></tr>{% endfor %}
</table>

{% if latent %}
<h2 id="latent">Latent-space dynamics</h2>
<p>Per layer, on each language's test pairs. Mutual k-NN (k = {{ latent.k }}) peaks at:
{% for lang, layer in latent.mknn_peak_layer.items() %}{{ lang }} layer {{ layer }}{% if not loop.last %}, {% endif %}{% endfor %}.
Similarities are centred on the per-layer mean (raw cosines are near 1 in models with massive dimensions).</p>
<div class="grid">
 <img alt="mutual kNN" src="{{ image('latent/mknn.png') }}">
 <img alt="parallel vs non-parallel similarity" src="{{ image('latent/similarity.png') }}">
 <img alt="MLP activation similarity" src="{{ image('latent/act_similarity.png') }}">
 <img alt="centroid similarity" src="{{ image('latent/centroid_similarity.png') }}">
</div>
<img alt="PCA per layer" src="{{ image('latent/pca.png') }}">
{% endif %}

<h2 id="detect">Transfer neurons</h2>
{% for lang in config.languages %}{% for kind in config.detect.types %}{% set d = summary("detect/" ~ lang ~ "/" ~ kind) %}
<h3>{{ kind }}, {{ lang }} <span class="note">({{ d.sentences }} sentences, top {{ d.top_n }})</span></h3>
<div class="grid"><div>
<table><tr><th>rank</th><th>layer</th><th>neuron</th><th>score</th></tr>
{% for layer, neuron, score in d.top %}<tr><td>{{ loop.index }}</td><td>{{ layer }}</td><td>{{ neuron }}</td><td>{{ "%+.5f" | format(score) }}</td></tr>{% endfor %}
</table></div>
<img alt="layer distribution" src="{{ image('detect/' ~ lang ~ '/' ~ kind ~ '/layers.png') }}"></div>
{% endfor %}{% endfor %}

{% if ablations %}
<h2 id="ablate">Deactivation vs random baseline</h2>
<p>The top Type-1 neurons of each language deactivated at the last token of its L2 inputs (English untouched),
against a random baseline of the same size ({{ config.ablate.baseline }}, seed {{ config.seed }}).</p>
<table><tr><th class="l">language</th><th>neurons</th><th>mean mutual kNN: normal</th><th>deactivated</th><th>random</th>
<th>middle-layer similarity gap: normal</th><th>deactivated</th><th>random</th></tr>
{% for lang, a in ablations.items() %}<tr><td class="l">{{ lang }}</td><td>{{ a.top_k }}</td>
{% for c in ("normal", "deactivated", "random") %}<td>{{ "%.3f" | format(a[c].mean_mknn) }}</td>{% endfor %}
{% for c in ("normal", "deactivated", "random") %}<td>{{ "%+.3f" | format(a[c].middle_gap) }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for lang in ablations %}<h3>{{ lang }}</h3><div class="grid">
 <img alt="ablation mutual kNN" src="{{ image('ablate/' ~ lang ~ '/ablation_mknn.png') }}">
 <img alt="ablation similarity gap" src="{{ image('ablate/' ~ lang ~ '/ablation_similarity_gap.png') }}">
</div>{% endfor %}
{% endif %}

{% if specificity or overlap %}
<h2 id="characterise">Language specificity and overlap</h2>
{% if specificity %}
<p>Correlation ratio eta&sup2; of each neuron's last-token activation with the label "the set's language vs the rest",
over the test sentences of every language (one-way ANOVA p &lt; 0.05), for the top neurons of each set and a random
baseline of the same layers.</p>
<table><tr><th class="l">set</th><th>top: eta&sup2; &gt; 0.1</th><th>&gt; 0.25</th><th>mean eta&sup2;</th>
<th>random: eta&sup2; &gt; 0.1</th><th>&gt; 0.25</th><th>mean eta&sup2;</th></tr>
{% for name, r in specificity.items() %}<tr><td class="l">{{ name }}</td>
{% for which in ("top", "random") %}<td>{{ "%.1f%%" | format(100 * r[which]["share_eta2_gt_0.1"]) }}</td>
<td>{{ "%.1f%%" | format(100 * r[which]["share_eta2_gt_0.25"]) }}</td><td>{{ "%.3f" | format(r[which].mean_eta2) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<img alt="specificity" src="{{ image('specificity/specificity.png') }}">
{% endif %}
{% if overlap %}
<img alt="Jaccard overlap" src="{{ image('overlap/overlap.png') }}">
<img alt="layer distributions" src="{{ image('overlap/layers.png') }}">
{% endif %}
{% endif %}

{% if downstream %}
<h2 id="downstream">Downstream effects</h2>
<p>Normal, the top neurons deactivated (Type-1 for QA and multiple choice, at the prompt; Type-2 for the output
language, at every position) and a random baseline of the same shape.</p>
<table><tr><th class="l">task</th><th class="l">language</th><th class="l">metric</th><th>normal</th><th>deactivated</th><th>random</th></tr>
{% for name, d in downstream.items() %}{% set task, lang = name.split("/") %}
{% for metric in (metrics[task] or (d.conditions.normal.keys() | list)) %}<tr><td class="l">{{ task }}</td><td class="l">{{ lang }}</td><td class="l">{{ metric if metrics[task] else "share in " ~ metric }}</td>
{% for c in ("normal", "deactivated", "random") %}<td>{{ "%.3f" | format(d.conditions[c][metric]) }}</td>{% endfor %}</tr>{% endfor %}
{% endfor %}</table>
{% endif %}

<h2 id="timings">Steps and timings</h2>
<table><tr><th class="l">step</th><th class="l">status</th><th>seconds</th></tr>
{% for name, r in records.items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ r.status }}</td><td>{{ "%.1f" | format(r.seconds) }}</td></tr>{% endfor %}
</table>
<p class="note">Versions: {% for k, v in versions.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.
Every artifact is in the run directory (manifest.json lists inputs with hashes, seeds and timings).</p>
</body></html>
"""


def write_report(out: Path, config: StudyConfig, records: dict[str, dict], versions: dict[str, str]) -> Path:
    """Render report.html from the step records and artifacts in `out`."""

    def image(relative: str) -> str:
        path = out / relative
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""

    def summary(name: str) -> dict:
        return records.get(name, {}).get("summary") or {}

    latent = summary("latent") if "latent" in records else None
    ablations = {lang: summary(f"ablate/{lang}") for lang in config.languages if f"ablate/{lang}" in records}
    sections = [("summary", "Model and data")]
    sections += [("latent", "Latent space")] if latent else []
    sections += [("detect", "Transfer neurons")]
    sections += [("ablate", "Ablations")] if ablations else []
    specificity = summary("specificity") if "specificity" in records else None
    overlap = summary("overlap") if "overlap" in records else None
    sections += [("characterise", "Specificity and overlap")] if specificity or overlap else []
    downstream = {name: summary(name) for name in records if name.split("/")[0] in METRICS}
    sections += [("downstream", "Downstream")] if downstream else []
    sections += [("timings", "Timings")]
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE).render(
        config=config,
        records=records,
        versions=versions,
        latent=latent,
        ablations=ablations,
        sections=sections,
        image=image,
        summary=summary,
        specificity=specificity,
        overlap=overlap,
        downstream=downstream,
        metrics=METRICS,
    )
    path = out / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return path
