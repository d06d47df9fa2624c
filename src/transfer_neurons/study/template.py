"""The Jinja template of report.html (rendered by study.report from a view of the run's results)."""

STYLE = """ body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.45; }
 h1 { font-size: 1.6rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
 table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .88rem; }
 th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right; vertical-align: top; }
 th { background: #f3f3f3; } td.l, th.l { text-align: left; } td { white-space: nowrap; } td.l { white-space: normal; }
 table.wide { font-size: .78rem; } table.wide td { white-space: normal; }
 tr.claim td { background: #fafafa; font-weight: 600; border-top: 2px solid #bbb; }
 img { max-width: 100%; border: 1px solid #eee; margin: .4rem 0; }
 .grid { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
 .note { color: #666; font-size: .85rem; }
 .holds { background: #dff3df; } .does-not-hold { background: #f8dcdc; } .inconclusive { background: #f4f4f4; color: #555; }
 details { margin: .5rem 0; } summary { cursor: pointer; font-weight: 600; }
 nav a { margin-right: 1rem; }
"""
"""The page style, shared with the comparison of several models (`study.compare_template`)."""

TEMPLATE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Transfer neurons: {{ config.model }}</title>
<style>
"""
    + STYLE
    + """</style></head><body>
<h1>Transfer neurons in {{ config.model }}</h1>
<nav>{% for id, title in sections %}<a href="#{{ id }}">{{ title }}</a>{% endfor %}</nav>

<h2 id="findings">Findings</h2>
{% if claims %}
<p>Each claim of the paper that this study measured, per language, with its effect, 95% interval and p from one test,
and p adjusted by Benjamini-Hochberg over the {{ tests }} tests of this table (false discovery rate {{ alpha }}).
<b>holds</b>: the effect has the claimed sign and adjusted p &lt; {{ alpha }}; <b>does not hold</b>: the other sign and
adjusted p &lt; {{ alpha }}; <b>inconclusive</b>: otherwise. Random baselines: {{ config.ablate.baseline_seeds }} draws (ablations) and {{ config.downstream.baseline_seeds }} (downstream tasks), each on
every unit, compared as a random effect (docs/method.md section 8).</p>
<table><tr><th class="l">language</th><th class="l">verdict</th><th>effect [95% CI]</th><th>p</th><th>adjusted p</th><th>n</th></tr>
{% for claim in claims %}
<tr class="claim"><td class="l" colspan="6">{{ claim.text }} <span class="note">(effect: {{ claim.effect }}; n counts {{ claim.units }})</span></td></tr>
{% for f in claim.rows %}<tr class="{{ f.verdict | replace(' ', '-') }}"><td class="l">{{ f.lang }}</td>
<td class="l">{{ f.verdict }}</td><td>{{ f.effect_text }}</td><td>{{ f.p_text }}</td><td>{{ f.adjusted_text }}</td><td>{{ f.n }}</td></tr>
{% endfor %}{% endfor %}</table>
<p class="note">The same rows are in findings.json.</p>
{% else %}<p>No step of this study measured one of the paper's claims.</p>{% endif %}

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
<p>Per layer, on each language's test pairs (bands: 95% bootstrap intervals over the pairs). Similarities are centred
on the per-layer mean (raw cosines are near 1 in models with massive dimensions).</p>
<table><tr><th class="l">language</th><th>pairs</th><th>mutual kNN peak layer</th><th>peak value</th>
<th>middle minus other layers [95% CI]</th><th>p</th></tr>
{% for row in latent %}<tr><td class="l">en-{{ row.lang }}</td><td>{{ row.n }}</td><td>{{ row.peak }}</td><td>{{ row.peak_value }}</td>
<td>{{ row.middle }}</td><td>{{ row.p }}</td></tr>{% endfor %}</table>
<div class="grid">
 <img alt="mutual kNN" src="{{ image('latent/mknn.png') }}">
 <img alt="parallel vs non-parallel similarity" src="{{ image('latent/similarity.png') }}">
 <img alt="centroid similarity" src="{{ image('latent/centroid_similarity.png') }}">
 <img alt="MLP activation similarity" src="{{ image('latent/act_similarity.png') }}">
</div>
<details><summary>PCA of the sentence states, every layer</summary>
<img alt="PCA per layer" src="{{ image('latent/pca.png') }}"></details>
{% endif %}

<h2 id="detect">Transfer neurons</h2>
<p>The top-10 neurons of each set (score: DESIGN.md 3.2); the layer distributions of the full top-n are in the
overlap section.{% if pages %} Each linked neuron has a page: what its value vector writes, where it fires, what removing it
does (<a href="neurons/index.html">index of all {{ pages | length }} pages</a>).{% endif %}</p>
{% for lang in config.languages %}<details><summary>{{ lang }}</summary><div class="grid">
{% for kind in config.detect.types %}{% set d = summary("detect/" ~ lang ~ "/" ~ kind) %}<div>
<h3>{{ kind }} <span class="note">({{ d.sentences }} sentences, top {{ d.top_n }})</span></h3>
<table><tr><th>rank</th><th>layer</th><th>neuron</th><th>score</th></tr>
{% for layer, neuron, score in d.top %}<tr><td>{{ loop.index }}</td><td>{{ layer }}</td>
<td>{% if (layer, neuron) in pages %}<a href="{{ card(layer, neuron) }}">{{ neuron }}</a>{% else %}{{ neuron }}{% endif %}</td><td>{{ "%+.5f" | format(score) }}</td></tr>{% endfor %}
</table></div>{% endfor %}
</div></details>{% endfor %}

{% if ablations %}
<h2 id="ablate">Deactivation vs random baseline</h2>
<p>The top {{ config.ablate.top_k }} Type-1 neurons of each language deactivated at the last token of its L2 inputs
(English untouched), against a random baseline of the same shape ({{ config.ablate.baseline }}, {{ config.ablate.baseline_seeds }}
draws, each on every pair; its cell shows the mean and, in brackets, the spread between draws). Values: mean over layers
with 95% intervals over the test pairs (mutual kNN: subsampling at a fixed neighbourhood fraction); deactivated minus random
with the draws a random effect, p from the same test ({{ ablations | length * 2 }} tests; unadjusted).</p>
{% for metric, title in (("mean_mknn", "mean mutual kNN"), ("mean_gap", "mean centred parallel minus non-parallel similarity")) %}
<h3>{{ title }}</h3>
<table><tr><th class="l">language</th><th>pairs</th><th>normal</th><th>deactivated</th><th>random (sd over seeds)</th>
<th>deactivated minus random</th><th>p</th></tr>
{% for row in ablations %}{% set c = row.metrics[metric] %}<tr><td class="l">{{ row.lang }}</td><td>{{ row.n }}</td>
<td>{{ c.normal }}</td><td>{{ c.deactivated }}</td><td>{{ c.random }}</td><td>{{ c.effect }}</td><td>{{ c.p }}</td></tr>{% endfor %}
</table>{% endfor %}
{% for row in ablations %}<details><summary>{{ row.lang }}: curves per layer</summary><div class="grid">
 <img alt="ablation mutual kNN" src="{{ image('ablate/' ~ row.lang ~ '/ablation_mknn.png') }}">
 <img alt="ablation similarity gap" src="{{ image('ablate/' ~ row.lang ~ '/ablation_similarity_gap.png') }}">
</div></details>{% endfor %}
{% endif %}

{% if methods %}
<h2 id="methods">Language-neuron methods side by side</h2>
<p>For each language, the top {{ config.ablate.top_k }} neurons of each method, found on the same train pairs with the
same reference pool (every other study language): <b>tn</b> the paper's Type-1 score, <b>tn-centred</b> the score
centred on the pool's mean state, <b>lape</b> and <b>ap</b> language-specific neurons (DESIGN.md 3.7). Under the same
tests and seeds: the ablation's effect vs random on mean mutual kNN and on the mean centred gap (95% intervals over
the test pairs, paired p), the share of the top-k with eta&sup2; &gt; 0.1 (target vs rest), the share of their value
vectors' squared norm in the massive dimensions, Jaccard overlap with the raw Type-1 / Type-2 sets and their mean
Type-1 / Type-2 transfer score (how many of them have one). methods.json holds every number.</p>
{% for view in methods %}<h3>{{ view.lang }} <span class="note">({{ view.n }} test pairs)</span></h3>
<table class="wide"><tr><th class="l">method</th><th>mutual kNN vs random</th><th>p</th><th>centred gap vs random</th><th>p</th>
<th>eta&sup2; &gt; 0.1</th><th>massive share</th><th>Jaccard Type-1</th><th>Jaccard Type-2</th><th>Type-1 score</th><th>Type-2 score</th></tr>
{% for r in view.rows %}<tr><td class="l">{{ r.method }}</td><td>{{ r.mknn_effect }}</td><td>{{ r.mknn_p }}</td><td>{{ r.gap_effect }}</td>
<td>{{ r.gap_p }}</td><td>{{ r.eta2_share }}</td><td>{{ r.massive_share }}</td><td>{{ r.jaccard_type1 }}</td><td>{{ r.jaccard_type2 }}</td>
<td>{{ r.tn_type1_score }}</td><td>{{ r.tn_type2_score }}</td></tr>{% endfor %}</table>
<img alt="methods {{ view.lang }}" src="{{ image(view.figure) }}">
{% endfor %}
{% endif %}

{% if specificity or overlap %}
<h2 id="characterise">Language specificity and overlap</h2>
{% if specificity %}
<p>Correlation ratio eta&sup2; of each neuron's last-token activation with the label "the set's language vs the rest",
over the test sentences of every language, for the top neurons of each set and a random baseline of the same layers
({{ config.baseline_seeds }} draws, spread in brackets). Intervals: delete-one-block jackknife over the sentences; p: top
vs random, the draws a random effect.</p>
<table><tr><th class="l">set (top-{{ specificity[0].n }})</th><th>top: share eta&sup2; &gt; 0.1</th><th>random</th><th>p</th>
<th>top: mean eta&sup2;</th><th>random</th><th>p</th></tr>
{% for row in specificity %}<tr><td>{{ row.name }}</td><td>{{ row.share_top }}</td><td>{{ row.share_random }}</td>
<td>{{ row.share_p }}</td><td>{{ row.mean_top }}</td><td>{{ row.mean_random }}</td><td>{{ row.mean_p }}</td></tr>{% endfor %}
</table>
<img alt="specificity" src="{{ image('specificity/specificity.png') }}">
{% endif %}
{% if overlap %}
<p>Jaccard overlap of the sets' top-{{ overlap.top_n }}, one matrix per type (a Type-1 and a Type-2 set never share
neurons when their candidate layers are disjoint).</p>
<img alt="Jaccard overlap" src="{{ image('overlap/overlap.png') }}">
<details><summary>Layer distribution of every set's top-{{ overlap.top_n }}</summary>
<img alt="layer distributions" src="{{ image('overlap/layers.png') }}"></details>
{% endif %}
{% endif %}

{% if downstream %}
<h2 id="downstream">Downstream effects</h2>
<p>Normal, the top {{ config.downstream.top_k }} neurons deactivated (Type-1 for QA and multiple choice, at the prompt;
Type-2 for the output language, at every position) and a random baseline of the same shape ({{ config.downstream.baseline_seeds }}
draws, each on every item). 95% intervals over the items (Wilson for shares, BCa for means); p: deactivated vs random,
the draws a random effect.</p>
{% for task in downstream %}
<h3>{{ task.title }}</h3>
<table><tr><th class="l">language</th><th>n</th><th>normal</th><th>deactivated</th><th>random (sd over seeds)</th>
<th>deactivated minus random</th><th>p</th></tr>
{% for row in task.rows %}<tr><td class="l">{{ row.lang }}</td><td>{{ row.n }}</td><td>{{ row.normal }}</td><td>{{ row.deactivated }}</td>
<td>{{ row.random }}</td><td>{{ row.effect }}</td><td>{{ row.p }}</td></tr>{% endfor %}
</table>
<img alt="{{ task.title }}" src="{{ task.figure }}">
{% endfor %}
{% endif %}

{% if finetune %}
<h2 id="finetune">Fine-tuning only the transfer neurons</h2>
<p>Causal-LM training on the L2 side of the train pairs that changes only the top {{ config.finetune.top_k }} neurons'
parameters (their rows of the MLP input projections and columns of the down projection; DESIGN.md 3.10), against
baselines with as many trainable parameters: <b>random</b> neurons of the same layers, <b>lora</b> (peft) on the MLPs of
those layers with its rank matched, <b>full</b> every MLP weight of those layers. Measured on the held-out test pairs
before and after; each cell: after [95% interval over the sentences or pairs], then the paired change after minus
before with its interval and p. Each condition's delta.safetensors applies with <code>--delta</code>.</p>
{% for view in finetune %}<h3>{{ view.lang }} <span class="note">({{ view.counts.train_sentences }} train sentences,
{{ view.steps }} steps, {{ view.counts.eval_pairs }} test pairs)</span></h3>
<table class="wide"><tr><th class="l">condition</th><th>trainable parameters</th><th>loss (first &rarr; last 10)</th>
{% for m in view.metrics %}<th>{{ m }}</th>{% endfor %}</tr>
<tr><td class="l">before</td><td></td><td></td>{% for b in view.before %}<td>{{ b }}</td>{% endfor %}</tr>
{% for r in view.rows %}<tr><td class="l"><a href="finetune/{{ view.lang }}/{{ r.condition }}/">{{ r.condition }}</a></td>
<td>{{ r.trainable }}</td><td>{{ r.loss }}</td>{% for after, change in r.cells %}<td>{{ after }}<br><span class="note">&Delta; {{ change }}</span></td>{% endfor %}</tr>{% endfor %}
</table>
<img alt="fine-tuning loss {{ view.lang }}" src="{{ view.figure }}">
{% endfor %}
{% endif %}

<details id="timings"><summary>Steps and timings ({{ "%.0f" | format(total_seconds) }} s in all)</summary>
<table><tr><th class="l">step</th><th class="l">status</th><th>seconds</th></tr>
{% for name, r in records.items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ r.status }}</td><td>{{ "%.1f" | format(r.seconds) }}</td></tr>{% endfor %}
</table></details>
<p class="note">Versions: {% for k, v in versions.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.
Every artifact is in the run directory (manifest.json lists inputs with hashes, seeds and timings).</p>
</body></html>
"""
)
