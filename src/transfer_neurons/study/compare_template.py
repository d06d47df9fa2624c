"""The Jinja template of a comparison of models' report.html (rendered by study.compare)."""

from transfer_neurons.study.template import STYLE

TEMPLATE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Transfer neurons: {{ models | length }} models compared</title>
<style>
"""
    + STYLE
    + """ tr.first td { border-top: 2px solid #bbb; }
</style></head><body>
<h1>Transfer neurons in {{ models | length }} models</h1>

<section id="models"><h2>Models compared</h2>
<table><tr><th class="l">model</th><th class="l">name</th><th>layers</th><th class="l">languages</th>
<th class="l">report</th></tr>
{% for m in models %}<tr><td class="l">{{ m.label }}</td><td class="l">{{ m.name }}</td><td>{{ m.num_layers }}</td>
<td class="l">{{ m.languages | join(", ") }}</td>
<td class="l"><a href="{{ m.run }}/report.html">{{ m.run }}/report.html</a></td></tr>
{% endfor %}</table>
<p class="note">Layer l (0-based) of a model with L layers sits at relative depth l / L, so models of different
depth share one axis. "&ndash;": the run did not compute that analysis. Every number is in models.json.</p>

{% if curves %}<h3>Latent space over relative depth</h3>
<p>Per language, each model's mutual kNN of parallel en / L2 test pairs and its centred parallel minus non-parallel
similarity, with 95% bootstrap bands over the pairs; the layer where mutual kNN peaks, with its 95% interval.</p>
<table><tr><th class="l">language</th><th class="l">model</th><th>pairs</th><th>mutual kNN peak layer</th>
<th>relative depth</th><th>peak value</th></tr>
{% for r in peaks %}<tr{% if loop.first or r.lang != loop.previtem.lang %} class="first"{% endif %}>
<td class="l">{{ r.lang }}</td><td class="l">{{ r.model }}</td><td>{{ r.n }}</td><td>{{ r.layer }}</td>
<td>{{ "%.2f" | format(r.depth) }}</td><td>{{ "%.3f" | format(r.value) }}</td></tr>
{% endfor %}</table>
{% for uri in curves %}<img alt="curves over relative depth" src="{{ uri }}">
{% endfor %}{% endif %}
{% if layers %}<h3>Where the transfer neurons sit</h3>
<p>Share of each type's top-n per layer, times L (1 = spread evenly over the layers): the mean over languages, thin
lines for each language.</p>
<img alt="layer distributions" src="{{ layers }}">{% endif %}

<h3>Deactivation vs random baseline</h3>
<p>Each model's top Type-1 neurons deactivated at the last token of the L2 inputs against a random baseline of the
same shape (spread between seeds in brackets); mean over layers with 95% intervals over the test pairs; p: paired
permutation test, deactivated vs random.</p>
{% for metric, rows in ablations.items() %}<h4>{{ metric_titles[metric] }}</h4>
<table class="wide"><tr><th class="l">language</th><th class="l">model</th><th>pairs</th><th>top-k</th><th>normal</th>
<th>deactivated</th><th>random (sd over seeds)</th><th>deactivated minus random</th><th>p</th></tr>
{% for r in rows %}<tr{% if loop.first or r.lang != loop.previtem.lang %} class="first"{% endif %}>
<td class="l">{{ r.lang }}</td><td class="l">{{ r.model }}</td><td>{{ r.n }}</td><td>{{ r.top_k }}</td>
<td>{{ r.normal }}</td><td>{{ r.deactivated }}</td><td>{{ r.random }}</td><td>{{ r.effect }}</td><td>{{ r.p }}</td></tr>
{% endfor %}</table>{% endfor %}

<h3>Language specificity</h3>
<p>Correlation ratio eta&sup2; of each neuron's activation with "the set's language vs the rest" for each type's
top-n and a random baseline of the same layers; intervals: bootstrap over the neurons; p: permutation test, top vs
random.</p>
<table class="wide"><tr><th class="l">language</th><th class="l">model</th><th class="l">type</th><th>n</th>
<th>top: share eta&sup2; &gt; 0.1</th><th>random</th><th>p</th>
<th>top: mean eta&sup2;</th><th>random</th><th>p</th></tr>
{% for r in specificity %}<tr{% if loop.first or r.lang != loop.previtem.lang %} class="first"{% endif %}>
<td class="l">{{ r.lang }}</td><td class="l">{{ r.model }}</td><td class="l">{{ r.type }}</td><td>{{ r.n }}</td>
{% for cell in r.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
</section>
</body></html>
"""
)
